"""The dlabel-lab command on a real store: demo, versions, ingest, retrain, export, errors."""

from __future__ import annotations

import duckdb
import pytest

import dlabel_lab as dl
from dlabel_lab.cli import main


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("cli") / "store"
    assert main(["demo", "--fast", "--store", str(store), "--no-progress"]) == 0
    return store


def test_demo_builds_the_whole_loop(demo_store, capsys):
    assert (demo_store / "store.duckdb").exists()
    assert any(p.suffix == ".png" for p in (demo_store / "plots").iterdir())
    with dl.PayloadStore(demo_store, read_only=True) as store:
        versions = store.model_versions()["model_version"].tolist()
        assert versions[:2] == ["shapes-v1", "shapes-v2"]
        assert len(store.runs("loop-iteration")) == 1
        assert store.lineage("shapes-v2")["chain"] == ["shapes-v2", "shapes-v1"]


def test_versions_ingest_retrain_export(demo_store, tmp_path, capsys):
    assert main(["versions", str(demo_store), "--lineage", "shapes-v2"]) == 0
    out = capsys.readouterr().out
    assert "shapes-v1" in out and "shapes-v2 <- shapes-v1" in out
    manifest = dl.make_shape_clips(tmp_path / "more", 3, seed=9, frames=8, size=64)
    with dl.PayloadStore(demo_store, read_only=True) as store:
        before = len(store.matched(model_version="shapes-v1").df())
    assert main(["ingest", str(demo_store), str(manifest), "--model-version", "shapes-v1", "--no-progress"]) == 0
    assert "scored 3 of 3 clips with shapes-v1" in capsys.readouterr().out
    with dl.PayloadStore(demo_store, read_only=True) as store:
        assert len(store.matched(model_version="shapes-v1").df()) == before + 3
    assert main(["retrain", str(demo_store), "--from", "shapes-v1", "--epochs", "1", "--no-progress"]) == 0
    assert "held-out ids" in capsys.readouterr().out
    out_dir = tmp_path / "parquet"
    assert main(["export", str(demo_store), str(out_dir)]) == 0
    n = duckdb.connect().execute(
        "SELECT count(*) FROM read_parquet(?, hive_partitioning = true)", [str(out_dir / "**" / "*.parquet")]
    ).fetchone()[0]
    with dl.PayloadStore(demo_store, read_only=True) as store:
        assert n == len(store.matched().df())


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["read", str(tmp_path / "missing.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlabel-lab: ConfigError:") and "does not exist" in err


def test_train_a_first_model_from_the_users_own_clips(tmp_path, capsys):
    manifest = dl.make_shape_clips(tmp_path / "mine", 6, seed=3, frames=8, size=32)
    store = tmp_path / "store"
    assert main(["train", str(store), str(manifest), "--name", "mine", "--epochs", "1", "--frames", "4",
                 "--size", "32", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mine-v1: 6 clips, 1 epochs") and "--model-version mine-v1" in out
    with dl.PayloadStore(store, read_only=True) as s:
        assert s.model_versions()["model_version"].tolist() == ["mine-v1"]
    # the next step it prints works: ingest with that version (old spelling --version still accepted)
    more = dl.make_shape_clips(tmp_path / "more", 2, seed=4, frames=8, size=32)
    assert main(["ingest", str(store), str(more), "--version", "mine-v1", "--no-progress"]) == 0
    assert "scored 2 of 2 clips with mine-v1" in capsys.readouterr().out


def test_train_refuses_bad_input_before_creating_a_store(tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["train", str(store), str(tmp_path / "missing.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    manifest = dl.make_shape_clips(tmp_path / "mine", 3, seed=3, frames=8, size=32)
    assert main(["train", str(store), str(manifest), "--classes", "circle,square"]) == 2
    assert "not among --classes" in capsys.readouterr().err
    assert not store.exists()


def test_help_describes_positionals_and_shows_defaults(capsys):
    for command, expected in (("train", ["payload store folder", "(default: 8)"]),
                              ("ingest", ["a labels.csv manifest", "--model-version VERSION"]),
                              ("retrain", ["payload store folder", "(default: 15)"])):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert all(e in text for e in expected), (command, text)
        assert "(default: None)" not in text and "(default: False)" not in text


def test_objects_lists_and_exports_filtered_objects(tmp_path, capsys):
    store_dir = tmp_path / "store"
    with dl.PayloadStore(store_dir) as store:
        sid = store.new_scoring_id()
        store.log_objects(sid, model_version="det-v1", rows=[
            {"frame_index": 0, "box": [1, 2, 10, 12], "label": "circle", "score": 0.9, "track_id": 1},
            {"frame_index": 5, "box": [3, 4, 9, 9], "label": "square", "score": 0.4, "track_id": 2}])  # fmt: skip
    assert main(["objects", str(store_dir), "--min-confidence", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "circle" in out and "square" not in out and "1 objects in 1 clips" in out
    csv = tmp_path / "o.csv"
    assert main(["objects", str(store_dir), "--frames", "1", "9", "--out", str(csv)]) == 0
    rows = csv.read_text().splitlines()
    assert len(rows) == 2 and ",square," in rows[1]
    assert main(["objects", str(store_dir), "--label", "triangle"]) == 0
    assert "no objects match" in capsys.readouterr().out
