"""suggest, autolabel, audits, estimates and reports run by the service when given its client instead of a store."""

from __future__ import annotations

import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.estimate.api import EstimationRequest
from dlabel_lab.labeling.autolabel import AutoLabelResult

CLASSES = ["circle", "square", "triangle"]
SPEC = dl.ClipSpec(frames=4, size=32)


@pytest.fixture
def served(tmp_path):
    rows = dl.read_manifest(dl.make_shape_clips(tmp_path / "clips", 24, seed=5, frames=6, size=32))
    path = tmp_path / "store"
    with dl.PayloadStore(path) as store:
        torch.manual_seed(0)
        model = dl.ClipClassifier(classes=CLASSES, backbone="tiny3d", spec=SPEC, embed_dim=16, dropout=0.3)
        ingest = dl.deploy(model, store, classes=CLASSES, name="shapes")
        ingest.score_many([r["path"] for r in rows], [r["label"] if i < 12 else None for i, r in enumerate(rows)],
                          progress=False)
        version = ingest.model_version
        local = dl.suggest(store, version, 4, strategy="entropy")
    with dl.start_service(path) as running, dl.connect(running.url) as remote:
        yield remote, version, local, path


def test_suggest_through_the_service_is_the_local_query_recorded_in_the_store(served):
    remote, version, local, path = served
    got = dl.suggest(remote, version, 4, strategy="entropy")
    assert isinstance(got, dl.Suggestion) and got.strategy == "entropy" and got.pool_size == local.pool_size == 12
    assert got.scoring_ids == local.scoring_ids
    assert got.table["score"].round(6).tolist() == local.table["score"].round(6).tolist()
    assert got.stop is None or isinstance(got.stop.should_stop, bool)
    assert got.run_id in set(remote.runs("suggest")["run_id"])
    with pytest.raises(dl.ConfigError, match="unknown strategy"):
        dl.suggest(remote, version, 4, strategy="psychic")


def test_autolabel_audit_and_estimate_through_the_service(served):
    remote, version, _, _ = served
    result = dl.autolabel(remote, version, target_precision=0.9, min_support=1, audit_rate=0.5)
    assert isinstance(result, AutoLabelResult) and result.pool_size == 12
    assert set(result.labelled.columns) >= {"scoring_id", "label", "confidence"}
    assert result.run_id in set(remote.runs("autolabel")["run_id"])
    sources = set(remote.label_sources())
    assert ("auto" in sources) == (len(result.labelled) > 0)
    report = dl.audit_report(remote, version)
    assert report.model_version == version and report.n_audited == 0
    asked = dl.estimate_accuracy(remote, version, budget=5, fresh=True)
    assert isinstance(asked, EstimationRequest) and len(asked.table) == 5
    for sid in asked.table["scoring_id"]:  # people answer the sample through the same client
        remote.log_score(sid, "circle", source=asked.label_source)
    estimate = dl.estimate_accuracy(remote, version, budget=5)
    assert isinstance(estimate, dl.Estimate) and 0 <= estimate.low <= estimate.point <= estimate.high <= 1


def test_reports_come_as_self_contained_pages(served):
    remote, version, _, _ = served
    html = remote.report_html("data", model_version=version)
    assert html.lstrip().lower().startswith("<!doctype html") and "<script" not in html.lower()
    with pytest.raises(dl.UnknownRecord, match="no stored model report"):
        remote.report_html("model", model_version=version)


def test_the_suggest_and_estimate_commands_go_through_the_service(served):
    import os
    import subprocess
    import sys
    from pathlib import Path

    remote, version, _, path = served
    env = {**os.environ, "PYTHONPATH": str(Path(dl.__file__).parents[1])}
    before = len(remote.runs("suggest"))
    got = subprocess.run([sys.executable, "-m", "dlabel_lab.cli", "suggest", str(path), "--budget", "3"],
                         capture_output=True, text=True, env=env, timeout=180)
    assert got.returncode == 0, got.stderr
    assert "going through it" in got.stderr and "should stop" in got.stdout
    assert len(remote.runs("suggest")) == before + 1  # recorded by the service in its store
    est = subprocess.run([sys.executable, "-m", "dlabel_lab.cli", "estimate", str(path), "--budget", "4"],
                         capture_output=True, text=True, env=env, timeout=180)
    assert est.returncode == 0, est.stderr
    assert "need a person's label" in est.stdout
