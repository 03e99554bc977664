"""The loop end to end on tiny data: train, deploy, score, match, evaluate, retrain, iterate."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import dlabel_lab as dl
from dlabel_lab.loop import run_loop

CLASSES = ["circle", "square", "triangle"]
SPEC = dl.ClipSpec(frames=4, size=32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    train = dl.make_shape_clips(root / "train", 9, seed=0, frames=6, size=32)
    ops = dl.make_shape_clips(root / "ops", 12, seed=1, frames=6, size=32, drift="operational")
    return train, ops


@pytest.fixture
def scored_store(tmp_path, clips):
    train, ops = clips
    with dl.PayloadStore(tmp_path / "store") as store:
        v1 = dl.train_initial(store, train, name="shapes", classes=CLASSES, spec=SPEC, epochs=2, progress=False,
                              embed_dim=16)
        rows = dl.read_manifest(ops)
        dl.deploy_version(store, v1.version).score_many([r["path"] for r in rows], [r["label"] for r in rows],
                                                        progress=False)
        yield store, v1


def test_end_to_end_retrain(scored_store):
    store, v1 = scored_store
    assert v1.version == "shapes-v1" and len(v1.history) == 2
    matched = store.matched(model_version=v1.version).df()
    assert len(matched) == 12 and matched["user_label"].notna().all()
    ev = dl.evaluate(matched, classes=CLASSES)
    assert ev.n == 12 and 0.0 <= ev.accuracy <= 1.0 and ev.confusion.sum() == 12
    v2 = dl.retrain(store, v1.version, epochs=1, holdout=0.34, progress=False)
    assert v2.version == "shapes-v2" and v2.parent == "shapes-v1"
    assert set(v2.train_ids).isdisjoint(v2.holdout_ids) and len(v2.train_ids) + len(v2.holdout_ids) == 12
    # parent and child are compared on exactly the same held-out ids, both present in matched()
    for version in ("shapes-v1", "shapes-v2"):
        got = store.matched(model_version=version, scoring_ids=v2.holdout_ids).df()
        assert sorted(got["scoring_id"]) == sorted(v2.holdout_ids)
    assert v2.evaluation.n == v2.parent_evaluation.n == len(v2.holdout_ids)
    assert {"before", "after", "delta"} <= set(v2.comparison.columns)
    lineage = store.lineage(v2.version)
    assert lineage["chain"][:2] == ["shapes-v2", "shapes-v1"]
    assert lineage["dataset"]["version"] == v2.dataset_version
    assert lineage["dataset"]["n_members"] == 12
    runs = store.runs("retrain")
    assert (runs["status"] == "ok").sum() == 1
    # a deployed child is analysed on the whole data set: it shadow-scores what it has not seen
    from dlabel_lab.loop import ensure_scored

    assert ensure_scored(store, v2.version) == len(v2.train_ids)
    assert len(store.matched(model_version=v2.version).df()) == 12
    assert ensure_scored(store, v2.version) == 0


def test_retrain_records_its_params_and_spec(scored_store):
    store, v1 = scored_store
    params = dl.TransformationParams(brightness=(0.5, 1.0), frame_window=(0.0, 0.5), p=1.0)
    v2 = dl.retrain(store, v1.version, epochs=1, params=params, progress=False)
    info = store.get_model(v2.version)
    saved = info["params"] if isinstance(info["params"], dict) else json.loads(info["params"])
    assert dl.TransformationParams.from_dict(saved["transformation_params"]) == params
    spec = info["spec"] if isinstance(info["spec"], dict) else json.loads(info["spec"])
    assert tuple(spec["window"]) == (0.0, 0.5)  # the child's endpoint preprocessing follows the params
    assert dl.load_version(store, v2.version).spec.window == (0.0, 0.5)


def test_retrain_weighs_labels_by_source_and_records_it(scored_store, monkeypatch):
    store, v1 = scored_store
    ids = sorted(store.matched(model_version=v1.version).df()["scoring_id"])
    truth = store.matched(model_version=v1.version).df().set_index("scoring_id")["user_label"]
    for sid in ids[:4]:  # four clips re-labelled by an accuracy estimate's sample
        store.log_score(sid, truth[sid], source="estimation-sample")
    import dlabel_lab.loop as loop

    seen = {}
    real = loop.train_model

    def spy(model, train, **kwargs):
        seen["train"] = train
        return real(model, train, **kwargs)

    monkeypatch.setattr(loop, "train_model", spy)
    v2 = dl.retrain(store, v1.version, epochs=1, progress=False, source_weights={"estimation-sample": 3.0})
    ops, lab = seen["train"].datasets
    by_id = dict(zip([r["scoring_id"] for r in ops.rows], ops.weights, strict=True))
    assert {by_id[s] for s in ids[:4] if s in by_id} == {3.0} and set(ops.weights) == {1.0, 3.0}
    assert set(lab.weights) == {1.0} and len(lab[0]) == 3  # every part yields (x, y, w)
    info = store.get_model(v2.version)
    saved = info["params"] if isinstance(info["params"], dict) else json.loads(info["params"])
    assert saved["training"]["source_weights"] == {"estimation-sample": 3.0}
    members = store.dataset_members(v2.dataset_version)
    assert (members["label_source"] == "estimation-sample").sum() == 4  # lineage says which came from estimation
    with pytest.raises(dl.ConfigError, match="source_weights"):
        dl.retrain(store, v1.version, epochs=1, progress=False, source_weights={"human": -1})


def test_retrain_failure_is_in_the_execution_log(scored_store):
    store, _ = scored_store
    with pytest.raises(dl.DLabelError):
        dl.retrain(store, "shapes-v9", epochs=1, progress=False)
    runs = store.runs("retrain")
    assert (runs["status"] == "failed").sum() == 1


def test_two_iteration_loop(scored_store, tmp_path):
    store, v1 = scored_store
    report = run_loop(store, from_version=v1.version, iterations=2, epochs=1, top_neurons=2, n_steps=2,
                      progress=False, plots_dir=tmp_path / "plots")
    table = report.table()
    assert list(table["iteration"]) == [1, 2]
    # two candidates per iteration (derived, generic), trained on the same split; the child is the chosen one
    first, second = report.iterations
    assert [mv.version for mv in first.candidates.values()] == ["shapes-v2", "shapes-v3"]
    assert [mv.version for mv in second.candidates.values()] == ["shapes-v4", "shapes-v5"]
    assert first.candidates["derived"].holdout_ids == first.candidates["generic"].holdout_ids
    assert table["child"].tolist() == [first.child.version, second.child.version]
    assert first.child is first.candidates[first.chosen]
    assert table.loc[1, "parent"] == (table.loc[0, "child"] if table.loc[0, "deployed"] else "shapes-v1")
    runs = store.runs("loop-iteration")
    assert len(runs) == 2 and (runs["status"] == "ok").all()
    result = runs.iloc[0]["result"]
    result = json.loads(result) if isinstance(result, str) else result
    assert result["chosen"] == first.chosen and result["verdict"]
    assert {r["candidate"] for r in result["candidate_table"]} == {"derived", "generic"}
    analysed_v1 = int((table["parent"] == v1.version).sum())  # append-only: one set per analysis
    assert len(store.neuron_functions(v1.version)) == 16 * analysed_v1  # one function per embedding neuron
    assert len(store.clip_tags(v1.version)) > 0
    assert any(p.suffix == ".png" for p in (tmp_path / "plots").iterdir())
    lineage = store.lineage("shapes-v5")
    assert lineage["chain"][-1] == "shapes-v1"


def test_split_ids_is_stable_as_data_grows():
    ids = [f"id-{i}" for i in range(40)]
    train, held = dl.split_ids(ids, holdout=0.25, seed=3)
    train2, held2 = dl.split_ids(ids + [f"new-{i}" for i in range(40)], holdout=0.25, seed=3)
    assert set(held) <= set(held2) and set(train) <= set(train2)
    assert 4 <= len(held) <= 16


def test_clip_dataset_rejects_unknown_labels(shape_rows):
    with pytest.raises(dl.UnknownLabel):
        dl.ClipDataset([{"path": shape_rows[0]["path"], "label": "hexagon"}], classes=CLASSES, spec=SPEC)


def test_store_data_module_splits_by_id(scored_store):
    store, _ = scored_store
    dm = dl.StoreDataModule(store, classes=CLASSES, spec=SPEC, holdout=0.34, batch_size=4)
    dm.setup()
    assert sorted(dm.train_ids + dm.holdout_ids) == sorted(store.matched().df()["scoring_id"])
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (3, 4, 32, 32) and y.dtype.is_floating_point is False
    assert isinstance(dm.rows(), pd.DataFrame)


def test_no_clip_content_is_both_trained_on_and_held_out(scored_store, clips):
    """The same clips ingested a second time (new scoring ids) stay on their copy's side of every split."""
    store, v1 = scored_store
    rows = dl.read_manifest(clips[1])
    again = dl.deploy_version(store, v1.version).score_many([r["path"] for r in rows], [r["label"] for r in rows],
                                                            progress=False)
    assert all(r.duplicate_of is not None for r in again)
    assert len(store.runs("duplicate_clip")) == len(rows)
    for seed in range(3):
        child = dl.retrain(store, v1.version, epochs=1, holdout=0.34, seed=seed, progress=False)
        sha = store.matched(model_version=v1.version).df().set_index("scoring_id")["sha256"]
        train, held = set(sha[child.train_ids]), set(sha[child.holdout_ids])
        assert train and held and train.isdisjoint(held)
        assert len(child.train_ids) + len(child.holdout_ids) == 2 * len(rows)
        assert child.dataset_version.startswith("shapes-labelled")
