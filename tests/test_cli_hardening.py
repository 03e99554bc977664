"""`dlabel-lab ingest` creates nothing on bad paths and names the file and line of every bad row."""

from __future__ import annotations

import json
import re

import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.cli import main
from dlabel_lab.models.registry import register_version

HEADER = "path,label,brightness,scale,speed,clutter,noise\n"


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """A real store with one tiny registered model (frame2d, 4 frames of 32 px)."""
    folder = tmp_path_factory.mktemp("cli_hardening") / "store"
    torch.manual_seed(0)
    model = dl.ClipClassifier(classes=["circle", "square", "triangle"], backbone="frame2d", embed_dim=4,
                              spec=dl.ClipSpec(frames=4, size=32))
    with dl.PayloadStore(folder) as store:
        register_version(store, model, name="tiny")
    return folder


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three good clips plus a text file posing as a clip, in one folder."""
    manifest = dl.make_shape_clips(tmp_path_factory.mktemp("clips"), 3, seed=0, frames=4, size=32)
    (manifest.parent / "notes.mp4").write_text("not a video\n")
    return manifest.parent


def _manifest(folder, name, lines):
    path = folder / name
    path.write_text(HEADER + "".join(f"{line}\n" for line in lines))
    return path


GOOD = ["clip_0000.mp4,circle,0.5,,,,", "clip_0001.mp4,square,,,,,", "clip_0002.mp4,triangle,,,,,"]


def _counts(store_dir):
    with dl.PayloadStore(store_dir, read_only=True) as store:
        return len(store.matched().df()), len(store.runs("ingest"))


def test_missing_store_or_manifest_creates_nothing(tmp_path, clips, capsys):
    manifest = _manifest(clips, "ok.csv", GOOD)
    missing_store = tmp_path / "nowhere" / "store"
    assert main(["ingest", str(missing_store), str(manifest), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dlabel-lab: ConfigError: ")
    assert "no store.duckdb" in err and "dlabel-lab demo" in err
    assert not (tmp_path / "nowhere").exists()
    assert main(["ingest", str(tmp_path / "store2"), str(tmp_path / "missing.csv"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_a_store_is_left_alone(tmp_path, clips, capsys):
    manifest = _manifest(clips, "ok2.csv", GOOD)
    (tmp_path / "plain").mkdir()
    assert main(["ingest", str(tmp_path / "plain"), str(manifest), "--no-progress"]) == 2
    assert "no store.duckdb" in capsys.readouterr().err
    assert list((tmp_path / "plain").iterdir()) == []


def test_bad_manifest_row_stops_before_the_store_is_opened(store_dir, clips, capsys):
    manifest = _manifest(clips, "badrow.csv", [GOOD[0], "clip_0001.mp4,square,bright,,,,", GOOD[2]])
    before = _counts(store_dir)
    assert main(["ingest", str(store_dir), str(manifest), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"dlabel-lab: ConfigError: {manifest} line 3: brightness 'bright' is not a number\n")
    assert "Traceback" not in captured.out + captured.err
    assert _counts(store_dir) == before


def test_bad_clip_stops_with_file_and_line(store_dir, clips, capsys):
    manifest = _manifest(clips, "badclip.csv", [GOOD[0], "notes.mp4,square,,,,,", GOOD[2]])
    scored, runs = _counts(store_dir)
    assert main(["ingest", str(store_dir), str(manifest), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"dlabel-lab: UnsupportedMedia: {manifest} line 3: clip {clips / 'notes.mp4'}: ")
    with dl.PayloadStore(store_dir, read_only=True) as store:
        log = store.runs("ingest")
        assert len(store.matched().df()) == scored + 1  # the row before the bad one; none after
    assert len(log) == runs + 1 and log["status"].iloc[-1] == "failed"
    assert "line 3" in log["error"].iloc[-1]


def test_skip_bad_prints_and_records_every_skipped_row(store_dir, clips, capsys):
    manifest = _manifest(clips, "mixed.csv", [
        GOOD[0],
        "notes.mp4,square,,,,,",           # line 3: not a video
        "clip_0001.mp4,square,x,,,,",      # line 4: bad factor
        "gone.mp4,circle,,,,,",            # line 5: missing file
        "../escape.mp4,circle,,,,,",       # line 6: outside the folder
        "clip_0002.mp4,hexagon,,,,,",      # line 7: not a class of the model
        GOOD[1],
        GOOD[2],
    ])
    scored, runs = _counts(store_dir)
    assert main(["ingest", str(store_dir), str(manifest), "--skip-bad", "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    skipped = [line for line in out if line.startswith("skipped ")]
    assert [line.split(":")[0] for line in skipped] == [f"skipped {manifest} line {n}" for n in (3, 4, 5, 6, 7)]
    assert "notes.mp4" in skipped[0] and "UnsupportedMedia" in skipped[0]
    assert "brightness 'x' is not a number" in skipped[1]
    assert "gone.mp4" in skipped[2] and "MissingMedia" in skipped[2]
    assert "outside" in skipped[3]
    assert "'hexagon' is not one of the model's classes" in skipped[4]
    assert re.fullmatch(r"scored 3 of 8 clips with tiny-v1; \d of 3 agree with their user scores; 5 rows skipped",
                        out[-1])
    with dl.PayloadStore(store_dir, read_only=True) as store:
        log = store.runs("ingest")
        assert len(store.matched().df()) == scored + 3
    assert len(log) == runs + 1 and log["status"].iloc[-1] == "ok"
    result = json.loads(log["result"].iloc[-1])
    assert result["scored"] == 3 and [s["row"] for s in result["skipped"]] == [3, 4, 5, 6, 7]
    assert result["skipped"][0]["path"] == "notes.mp4" and "UnsupportedMedia" in result["skipped"][0]["reason"]


def test_skip_bad_with_no_good_row_opens_no_store(tmp_path, clips, capsys):
    manifest = _manifest(clips, "allbad.csv", ["clip_0000.mp4,circle,x,,,,"])
    assert main(["ingest", str(tmp_path / "s"), str(manifest), "--skip-bad", "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert f"skipped {manifest} line 2: clip_0000.mp4: brightness 'x' is not a number" in captured.out
    assert "no row of" in captured.err
    assert list(tmp_path.iterdir()) == []


def test_retrain_on_a_missing_store_creates_nothing(tmp_path, capsys):
    from dlabel_lab.cli import main

    target = tmp_path / "no-store"
    assert main(["retrain", str(target), "--epochs", "1"]) == 2
    assert "is not a payload store" in capsys.readouterr().err
    assert not target.exists()
