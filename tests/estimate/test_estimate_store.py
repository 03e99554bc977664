"""Operational accuracy on a real store: clips scored through both endpoints by a tiny model, then estimated."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.estimate import (
    Estimate,
    EstimationRequest,
    compute_pseudo_oracles,
    estimate_accuracy,
    estimate_history,
    load_pseudo_oracles,
    plan_labels,
    plot_estimates,
    tta_views,
)
from dlabel_lab.estimate.api import log_sample_labels
from dlabel_lab.labeling import Suggestion

CLASSES = ["circle", "square", "triangle"]
SPEC = dl.ClipSpec(frames=4, size=32)


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return dl.read_manifest(dl.make_shape_clips(tmp_path_factory.mktemp("est"), 25, seed=7, frames=6, size=32))


@pytest.fixture
def scored(tmp_path, rows):
    """24 clips scored, the first 10 labelled at ingestion (the pilot); the truth of every clip."""
    store = dl.PayloadStore(tmp_path / "store")
    torch.manual_seed(0)
    model = dl.ClipClassifier(classes=CLASSES, backbone="tiny3d", spec=SPEC, embed_dim=16, dropout=0.3)
    ingest = dl.deploy(model, store, classes=CLASSES, name="shapes")
    labels = [r["label"] if i < 10 else None for i, r in enumerate(rows[:24])]
    results = ingest.score_many([r["path"] for r in rows[:24]], labels, progress=False)
    truth = {res.scoring_id: r["label"] for res, r in zip(results, rows, strict=False)}
    yield store, ingest, truth
    store.close()


def test_tta_views_are_deterministic_and_invertible():
    x = torch.rand(2, 3, 4, 8, 8)
    a, b = tta_views(x, mean=(0.45,) * 3, std=(0.225,) * 3), tta_views(x, mean=(0.45,) * 3, std=(0.225,) * 3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    back = tta_views(a["hflip"], mean=(0.45,) * 3, std=(0.225,) * 3)["hflip"]
    pix = (x * 0.225 + 0.45).clamp(0, 1)
    assert torch.allclose(back * 0.225 + 0.45, pix, atol=1e-6)
    assert (a["brighter"] >= a["darker"]).all()


def test_pseudo_oracles_are_computed_for_every_clip_and_stored(scored):
    store, ingest, _ = scored
    version = ingest.model_version
    with pytest.raises(dl.ConfigError, match="no ancestor"):
        compute_pseudo_oracles(store, version, oracles=["lineage_agreement"])
    got = compute_pseudo_oracles(store, version, mc_passes=4)
    assert list(got.columns) == ["scoring_id", "confidence", "tta_agreement", "mc_agreement"] and len(got) == 24
    for column in got.columns[1:]:
        assert got[column].between(0, 1).all(), column
    assert set(np.unique(got["tta_agreement"] * 4)) <= {0.0, 1.0, 2.0, 3.0, 4.0}
    stored = load_pseudo_oracles(store, version)
    assert stored.equals(got)
    run = store.runs("pseudo-oracles").iloc[-1]
    assert run["status"] == "ok" and "skipped" in json.loads(run["params"])["notes"]["lineage_agreement"]

    # a child version scored on the same clips: its lineage is an ensemble for free
    torch.manual_seed(1)
    child = dl.ClipClassifier(classes=CLASSES, backbone="tiny3d", spec=SPEC, embed_dim=16, dropout=0.3)
    v2, _ = dl.register_version(store, child, name="shapes", parent=version)
    dl.deploy(child, store, classes=CLASSES, model_version=v2).shadow_score(got["scoring_id"], progress=False)
    lineage = compute_pseudo_oracles(store, v2, oracles=["lineage_agreement"])
    parent = store.matched(model_version=version).df().set_index("scoring_id")["predicted_label"]
    mine = store.matched(model_version=v2).df().set_index("scoring_id")["predicted_label"]
    expected = (mine.loc[lineage["scoring_id"]] == parent.loc[lineage["scoring_id"]]).to_numpy(dtype=float)
    assert lineage["lineage_agreement"].tolist() == expected.tolist()


def test_estimate_requests_labels_then_estimates_and_stores(scored, rows):
    store, ingest, truth = scored
    version = ingest.model_version
    compute_pseudo_oracles(store, version, oracles=["confidence", "tta_agreement"])
    req = estimate_accuracy(store, version, budget=8, sampler="failure-seeking", oracle="tta_agreement", seed=1)
    assert isinstance(req, EstimationRequest) and not req.ready
    run = store.runs("estimation-sample").iloc[-1]
    assert run["run_id"] == req.run_id and run["status"] == "ok"
    result = json.loads(run["result"])
    assert len(result["scoring_ids"]) == 8 and len(result["inclusion_probabilities"]) == 8
    assert all(0 < p <= 1 for p in result["draw_probabilities"])
    pilot = set(list(truth)[:10])
    assert set(req.scoring_ids) == set(result["scoring_ids"]) - pilot  # labels already given are reused
    queue = req.as_suggestion()
    assert isinstance(queue, Suggestion) and queue.scoring_ids == req.scoring_ids
    assert queue.table["score"].between(0, 1).all()

    # new clips scored meanwhile do not change the recorded sample's population
    truth[ingest.score(rows[24]["path"]).scoring_id] = rows[24]["label"]
    again = estimate_accuracy(store, version, budget=8, sampler="failure-seeking", oracle="tta_agreement", seed=1)
    assert again.run_id == req.run_id and len(store.runs("estimation-sample")) == 1

    # an auto-label is the model's guess, not ground truth: the clip is still asked for
    store.log_score(req.scoring_ids[0], "circle", source="auto")
    assert req.scoring_ids[0] in estimate_accuracy(store, version, budget=8, sampler="failure-seeking",
                                                   oracle="tta_agreement", seed=1).scoring_ids
    with pytest.raises(dl.ConfigError, match="not in sample"):
        log_sample_labels(store, req, {"0190aaaa-0000-7000-8000-000000000000": "circle"})
    log_sample_labels(store, req, {sid: truth[sid] for sid in req.scoring_ids})
    assert set(store.score_history(req.scoring_ids[0])["source"]) >= {"estimation-sample"}

    est = estimate_accuracy(store, version, budget=8, sampler="failure-seeking", oracle="tta_agreement", seed=1)
    assert isinstance(est, Estimate) and est.ready and est.method == "weighted"
    assert est.oracle == "tta_agreement" and est.request_id == req.run_id and est.model_version == version
    assert est.labels_used == len(set(result["scoring_ids"])) and est.details["draws"] == 8
    assert 0 <= est.low <= est.high <= 1
    # the estimate is exactly the Hansen-Hurwitz difference estimator of the recorded design
    correct = np.array([truth[s] == store.matched(model_version=version, scoring_ids=[s]).df()["predicted_label"][0]
                        for s in result["scoring_ids"]], dtype=float)
    z = result["control_mean"] + (correct - np.array(result["control"])) / (24 * np.array(result["draw_probabilities"]))
    assert est.point == pytest.approx(z.mean(), abs=1e-12)
    estimate_accuracy(store, version, budget=8, sampler="failure-seeking", oracle="tta_agreement", seed=1)
    history = estimate_history(store, version)
    assert history["method"].tolist() == ["weighted"]  # asking again stores nothing new

    # SRS: the same labelled sample gives the classical and the prediction-powered estimate
    srs_req = estimate_accuracy(store, version, budget=6, method="srs", seed=0)
    from dlabel_lab.widgets import LabelQueue  # people label the request in the active-learning queue

    queue = LabelQueue(store, srs_req.as_suggestion(), classes=CLASSES, source="estimation-sample", show_guess=False)
    assert "model guess" not in queue.why.value  # a shown guess would pull labels towards the model
    while queue.position < len(queue.rows):
        queue.buttons[truth[queue.rows[queue.position]["scoring_id"]]].click()
    assert not queue.errors and len(queue.labelled) == len(srs_req.scoring_ids)
    given = store.score_history().set_index("scoring_id").loc[srs_req.scoring_ids]
    assert set(given["source"]) == {"estimation-sample"}
    classical = estimate_accuracy(store, version, budget=6, method="srs", seed=0)
    ppi = estimate_accuracy(store, version, budget=6, method="ppi", seed=0)
    assert classical.labels_used == ppi.labels_used == 6 and classical.request_id == ppi.request_id
    assert ppi.oracle == "confidence" and 0 <= ppi.details["lam"] <= 1
    history = estimate_history(store, version)
    assert history["method"].tolist() == ["weighted", "srs", "ppi"]
    assert any(ev["split"] == "estimate:ppi" for ev in store.lineage(version)["evaluations"])
    assert plot_estimates(history).get_xlabel() == "labels spent"
    with pytest.raises(dl.ConfigError, match="not unbiased"):
        estimate_accuracy(store, version, budget=6, sampler="failure-seeking", method="srs")


def test_stratified_sample_through_the_store(scored):
    store, ingest, truth = scored
    version = ingest.model_version
    req = estimate_accuracy(store, version, budget=6, sampler="stratified", n_strata=3, seed=2)
    assert req.table["stratum"].value_counts().sort_index().tolist() == [2, 2, 2]
    log_sample_labels(store, req, {sid: truth[sid] for sid in req.scoring_ids})
    est = estimate_accuracy(store, version, budget=6, sampler="stratified", n_strata=3, seed=2)
    assert est.method == "stratified" and est.oracle == "confidence" and est.labels_used == 6
    assert est.details["stratum_sizes"] == [8, 8, 8] and 0 <= est.low <= est.point <= est.high <= 1
    with pytest.raises(dl.ConfigError, match="below 2 labels"):
        estimate_accuracy(store, version, budget=4, sampler="stratified", n_strata=3)


def test_plan_labels_from_the_pilot(scored):
    store, ingest, _ = scored
    version = ingest.model_version
    plan = plan_labels(store, version, width=0.2)
    assert plan.pilot_size == 10 and plan.population_size == 24
    assert plan.table["method"].tolist() == ["srs", "ppi", "stratified", "weighted"]
    wider = plan_labels(store, version, width=0.4)
    for method in plan.table["method"]:
        assert wider.labels(method) is None or plan.labels(method) is None or \
            wider.labels(method) <= plan.labels(method)
    with pytest.raises(dl.ConfigError, match="pilot of at least 20"):
        plan_labels(store, version, min_pilot=20)


def test_cli_estimate_asks_for_labels_then_prints_the_estimate(scored, capsys):
    from dlabel_lab.cli import main

    store, ingest, truth = scored
    version = ingest.model_version
    path = str(store.path)
    store.close()
    assert main(["estimate", path, "--budget", "6", "--version", version]) == 0
    out = capsys.readouterr().out
    assert "need a person's label (source 'estimation-sample')" in out and "run the same command again" in out
    with dl.PayloadStore(path) as s:
        req = estimate_accuracy(s, version, budget=6)
        assert isinstance(req, EstimationRequest) and all(sid in out for sid in req.scoring_ids)
        log_sample_labels(s, req, {sid: truth[sid] for sid in req.scoring_ids})
    assert main(["estimate", path, "--budget", "6", "--version", version]) == 0
    out = capsys.readouterr().out
    assert f"{version}: accuracy " in out and "95% interval [" in out and "(ppi, srs sample, oracle confidence)" in out
    assert main(["estimate", path, "--budget", "6", "--sampler", "failure-seeking", "--method", "srs"]) == 2


def test_an_estimate_can_speak_for_a_chosen_pool(scored):
    store, ingest, truth = scored
    version = ingest.model_version
    pool = sorted(truth)[12:24]  # e.g. one site's clips
    req = estimate_accuracy(store, version, budget=5, pool=pool, seed=3)
    assert req.population_size == 12 and set(req.table["scoring_id"]) <= set(pool)
    whole = estimate_accuracy(store, version, budget=5, seed=3)
    assert whole.run_id != req.run_id and whole.population_size == 24  # the whole population is another sample
    log_sample_labels(store, req, {sid: truth[sid] for sid in req.scoring_ids})
    est = estimate_accuracy(store, version, budget=5, pool=list(reversed(pool)), seed=3, method="srs")
    assert isinstance(est, Estimate) and est.request_id == req.run_id and est.labels_used == len(req.table)
    with pytest.raises(dl.ConfigError, match="not operational clips"):
        estimate_accuracy(store, version, budget=5, pool=["01900000-0000-7000-8000-000000000000"])
