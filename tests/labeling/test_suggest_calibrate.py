"""suggest and calibrate on a real store: real clips scored through both endpoints by a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.labeling import apply_temperature, fit_temperature, mc_dropout_probabilities

CLASSES = ["circle", "square", "triangle"]
SPEC = dl.ClipSpec(frames=4, size=32)


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return dl.read_manifest(dl.make_shape_clips(tmp_path_factory.mktemp("al"), 16, seed=5, frames=6, size=32))


def _scored(root, rows, *, dropout: float):
    store = dl.PayloadStore(root)
    torch.manual_seed(0)
    model = dl.ClipClassifier(classes=CLASSES, backbone="tiny3d", spec=SPEC, embed_dim=16, dropout=dropout)
    ingest = dl.deploy(model, store, classes=CLASSES, name="shapes")
    labels = [r["label"] if i < 10 else None for i, r in enumerate(rows)]  # 10 labelled, 6 in the pool
    ingest.score_many([r["path"] for r in rows], labels, progress=False)
    return store, ingest.model_version


@pytest.fixture
def scored(tmp_path, rows):
    store, version = _scored(tmp_path / "store", rows, dropout=0.3)
    yield store, version
    store.close()


def test_suggest_picks_from_the_unlabelled_pool_and_logs_the_query(scored):
    store, version = scored
    queue = dl.suggest(store, version, 4, strategy="margin")
    unlabelled = set(store.matched(model_version=version).df().query("user_label.isna()")["scoring_id"])
    assert queue.pool_size == 6 and len(queue.scoring_ids) == 4 and set(queue.scoring_ids) <= unlabelled
    assert list(queue.table["rank"]) == [1, 2, 3, 4]
    assert list(queue.table["score"]) == sorted(queue.table["score"], reverse=True)
    runs = store.runs("suggest")
    assert len(runs) == 1 and runs.iloc[0]["run_id"] == queue.run_id and runs.iloc[0]["status"] == "ok"
    assert queue.scoring_ids == dl.suggest(store, version, 4, strategy="margin").scoring_ids  # deterministic


def test_suggest_with_a_given_pool_and_every_array_strategy(scored):
    store, version = scored
    ids = sorted(store.matched(model_version=version).df()["scoring_id"])[:8]
    for strategy in ("random", "balanced_random", "entropy", "least_confidence", "coreset", "typiclust",
                     "cluster_margin"):
        queue = dl.suggest(store, version, 3, strategy=strategy, pool=ids)
        assert len(queue.scoring_ids) == 3 and set(queue.scoring_ids) <= set(ids), strategy
    with pytest.raises(dl.UnknownRecord, match="not scored by"):
        dl.suggest(store, version, 1, pool=["01900000-0000-7000-8000-000000000000"])
    with pytest.raises(dl.ConfigError, match="unknown strategy"):
        dl.suggest(store, version, 1, strategy="nope")


def test_bald_runs_mc_dropout_passes_over_clips_rebuilt_from_the_store(scored):
    store, version = scored
    queue = dl.suggest(store, version, 2, strategy="bald", mc_passes=4)
    assert len(queue.scoring_ids) == 2 and (queue.table["score"] >= 0).all()
    assert store.runs("suggest").iloc[-1]["status"] == "ok"


def test_bald_refuses_a_model_without_dropout(tmp_path, rows):
    store, version = _scored(tmp_path / "nodrop", rows[:12], dropout=0.0)
    with store, pytest.raises(dl.ConfigError, match="no dropout"):
        dl.suggest(store, version, 1, strategy="bald")


def test_mc_dropout_passes_differ_and_repeat_with_the_seed():
    torch.manual_seed(0)
    model = dl.ClipClassifier(classes=CLASSES, backbone="tiny3d", spec=SPEC, embed_dim=16, dropout=0.5)
    model.eval()
    x = torch.randn(3, 3, 4, 32, 32)
    a = mc_dropout_probabilities(model, x, passes=5, seed=1)
    assert a.shape == (5, 3, 3) and np.allclose(a.sum(axis=2), 1.0)
    assert not np.allclose(a[0], a[1])
    assert np.array_equal(a, mc_dropout_probabilities(model, x, passes=5, seed=1))
    assert not model.training and not model.dropout.training  # the model is left as it was


def test_temperature_scaling_fixes_over_confidence():
    rng = np.random.default_rng(0)
    n, k = 400, 3
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += 1.0                      # right 60-70 % of the time
    over = np.exp(4 * logits) / np.exp(4 * logits).sum(1, keepdims=True)   # the model is 4x over-confident
    t = fit_temperature(over, y)
    assert 3.0 < t < 5.5
    fixed = apply_temperature(over, t)
    assert np.array_equal(fixed.argmax(1), over.argmax(1))  # predictions never change
    assert fixed.max(1).mean() < over.max(1).mean()


def test_calibrate_on_a_store_records_the_temperature_with_the_version(scored):
    store, version = scored
    cal = dl.calibrate(store, version)
    assert cal.n == 10 and cal.temperature > 0
    assert cal.nll_after <= cal.nll_before + 1e-9  # fitted on these clips: never worse in-sample
    lineage = store.lineage(version)
    assert any(ev["split"] == "calibration" and ev["metrics"]["temperature"] == pytest.approx(cal.temperature)
               for ev in lineage["evaluations"])
    with pytest.raises(dl.ConfigError, match="at least 10"):
        dl.calibrate(store, version, scoring_ids=cal.scoring_ids[:5])


def test_cli_suggest_prints_and_exports_the_queue(tmp_path, rows, capsys):
    from dlabel_lab.cli import main

    store, version = _scored(tmp_path / "cli", rows, dropout=0.0)
    store.close()
    assert main(["suggest", str(tmp_path / "cli"), "--budget", "3", "--strategy", "entropy"]) == 0
    out = capsys.readouterr().out
    assert f"entropy over 6 unlabelled clips scored by {version}" in out and out.count("entropy ") >= 3
    assert "should stop: no (the lineage has one version" in out
    csv = tmp_path / "queue.csv"
    assert main(["suggest", str(tmp_path / "cli"), "--budget", "2", "--out", str(csv)]) == 0
    import pandas as pd

    assert list(pd.read_csv(csv)["rank"]) == [1, 2]
    assert main(["suggest", str(tmp_path / "none"), "--budget", "2"]) == 2
    assert not (tmp_path / "none").exists()


def test_the_endpoint_logs_mc_passes_on_request_and_bald_uses_them(tmp_path, rows):
    store = dl.PayloadStore(tmp_path / "mc")
    torch.manual_seed(0)
    model = dl.ClipClassifier(classes=CLASSES, backbone="tiny3d", spec=SPEC, embed_dim=16, dropout=0.3)
    ingest = dl.deploy(model, store, classes=CLASSES, name="shapes", mc_passes=5)
    results = ingest.score_many([r["path"] for r in rows[:6]], progress=False)
    logged = store.attributions(ingest.model_version, kind="mc_dropout")
    assert sorted(logged["scoring_id"]) == sorted(r.scoring_id for r in results)
    mc = np.asarray(logged["values"].iloc[0])
    assert mc.shape == (5, 3) and np.allclose(mc.sum(axis=1), 1.0) and mc.std(axis=0).max() > 0  # passes differ
    queue = dl.suggest(store, ingest.model_version, 2, strategy="bald")
    params = store.runs("suggest").iloc[-1]["params"]
    assert "logged by the endpoint" in str(params) and len(queue.scoring_ids) == 2
    with pytest.raises(dl.ConfigError, match="mc_passes"):
        dl.deploy(model, store, classes=CLASSES, model_version=ingest.model_version, mc_passes=1)
    nodrop = dl.ClipClassifier(classes=CLASSES, backbone="tiny3d", spec=SPEC, embed_dim=16, dropout=0.0)
    with pytest.raises(dl.ConfigError, match="dropout"):
        dl.deploy(nodrop, store, classes=CLASSES, name="nodrop", mc_passes=4)
    store.close()


def test_suggest_reports_whether_to_stop_with_the_evidence(scored):
    store, version = scored
    first = dl.suggest(store, version, 2)
    assert not first.should_stop and "one version" in first.stop.reason
    # a second round's version scores the same clips; identical weights predict identically: kappa 1
    model = dl.load_version(store, version)
    v2, _ = dl.register_version(store, model, name="shapes", parent=version, params={})
    ingest = dl.deploy_version(store, v2)
    pool = sorted(store.matched(model_version=version).df()["scoring_id"])
    ingest.shadow_score(pool, progress=False)
    second = dl.suggest(store, v2, 2, stop_window=1)
    assert second.should_stop and second.stop.kappas == [1.0] and second.stop.versions == [version, v2]
    assert second.stop.n_stop_set == 6  # the clips both versions scored without a user score
    result = json.loads(store.runs("suggest").iloc[-1]["result"])
    assert result["stop"]["should_stop"] is True and result["stop"]["kappas"] == [1.0]
    assert not dl.suggest(store, v2, 2, stop_window=2).should_stop  # one comparison cannot fill a window of 2
