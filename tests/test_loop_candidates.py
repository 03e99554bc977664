"""The loop's candidates: generic augmentation beside derived parameters, picked on validation; a stable recipe."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.loop import pick_candidate, run_loop
from dlabel_lab.train.training import ModelVersion

CLASSES = ["circle", "square", "triangle"]
SPEC = dl.ClipSpec(frames=4, size=32)


def _mv(version: str, acc: float, loss: float) -> ModelVersion:
    return ModelVersion(version=version, evaluation=SimpleNamespace(accuracy=acc), selection={"val_loss": loss})


def test_pick_candidate_uses_validation_accuracy_then_loss_then_order():
    assert pick_candidate({"derived": _mv("v2", 0.7, 0.5), "generic": _mv("v3", 0.8, 0.9)}) == "generic"
    assert pick_candidate({"derived": _mv("v2", 0.8, 0.4), "generic": _mv("v3", 0.8, 0.9)}) == "derived"
    assert pick_candidate({"derived": _mv("v2", 0.8, 0.4), "generic": _mv("v3", 0.8, 0.4)}) == "derived"
    with pytest.raises(dl.ConfigError):
        pick_candidate({})


def test_verdict_says_when_a_tie_in_accuracy_was_broken_by_cross_entropy():
    from dlabel_lab.loop import _verdict

    params = dl.TransformationParams(scale=(0.5, 1.0))
    tied = _verdict({"derived": _mv("v2", 0.607, 0.91), "generic": _mv("v3", 0.607, 0.95)}, params)
    assert tied == ("derived parameters (scale) beat the generic augmentation on validation: 0.607 vs 0.607 "
                    "(tied; cross-entropy 0.910 vs 0.950)")
    lost = _verdict({"derived": _mv("v2", 0.5, 0.4), "generic": _mv("v3", 0.6, 0.9)}, params)
    assert lost == "derived parameters (scale) did not beat the generic augmentation on validation: 0.500 vs 0.600"


@pytest.fixture(scope="module")
def store_with_scores(tmp_path_factory):
    root = tmp_path_factory.mktemp("cand")
    train = dl.make_shape_clips(root / "train", 9, seed=0, frames=6, size=32)
    ops = dl.make_shape_clips(root / "ops", 12, seed=1, frames=6, size=32, drift="operational")
    with dl.PayloadStore(root / "store") as store:
        v1 = dl.train_initial(store, train, name="shapes", classes=CLASSES, spec=SPEC, epochs=1, progress=False,
                              embed_dim=8)
        rows = dl.read_manifest(ops)
        dl.deploy_version(store, v1.version).score_many([r["path"] for r in rows], [r["label"] for r in rows],
                                                        progress=False)
        yield store, v1


def test_retraining_is_deterministic_and_records_its_selection(store_with_scores):
    store, v1 = store_with_scores
    a = dl.retrain(store, v1.version, epochs=2, seed=3, generic=True, candidate="generic", progress=False)
    b = dl.retrain(store, v1.version, epochs=2, seed=3, generic=True, candidate="generic", progress=False)
    wa, wb = dl.load_version(store, a.version).state_dict(), dl.load_version(store, b.version).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.holdout_ids == b.holdout_ids and a.selection == b.selection and a.candidate == "generic"
    info = store.get_model(a.version)
    saved = info["params"] if isinstance(info["params"], dict) else json.loads(info["params"])
    assert saved["training"]["generic"] is True and saved["selection"]["epochs_run"] == 2
    # a different training seed on the same split: same held-out ids
    c = dl.retrain(store, v1.version, epochs=1, seed=4, split_seed=3, progress=False)
    assert c.holdout_ids == a.holdout_ids
    with pytest.raises(dl.ConfigError):
        dl.retrain(store, v1.version, epochs=1, generic="mixup", progress=False)


def test_loop_trains_all_candidates_on_one_split_and_records_the_choice(store_with_scores):
    store, v1 = store_with_scores
    report = run_loop(store, from_version=v1.version, iterations=1, epochs=1, top_neurons=2, n_steps=2,
                      candidates=("derived", "generic", "plain"), progress=False)
    it = report.iterations[0]
    assert list(it.candidates) == ["derived", "generic", "plain"]
    assert len({tuple(mv.holdout_ids) for mv in it.candidates.values()}) == 1
    assert it.chosen == pick_candidate(it.candidates) and it.child is it.candidates[it.chosen]
    table = it.candidate_table()
    assert table["chosen"].sum() == 1 and set(table["candidate"]) == {"derived", "generic", "plain"}
    run = store.runs("loop-iteration").iloc[-1]
    result = run["result"] if isinstance(run["result"], dict) else json.loads(run["result"])
    assert result["chosen"] == it.chosen
    assert "generic" in result["verdict"] or "no parameter" in result["verdict"]
    with pytest.raises(dl.ConfigError):
        run_loop(store, from_version=v1.version, iterations=1, candidates=("magic",), progress=False)
