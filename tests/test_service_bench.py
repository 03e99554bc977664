"""A toy run of bench/service.py: a real service subprocess, client processes, every phase measured, rows counted."""

from __future__ import annotations

import json

import pytest
import torch
from bench_loader import load_bench


@pytest.mark.slow
def test_toy_run_counts_every_acknowledged_row_and_reports_each_phase(tmp_path):
    before = torch.get_num_threads()
    out_json = tmp_path / "service.json"
    try:
        out = load_bench("service").main([
            "--clips", "4", "--clients", "2", "--labels", "12", "--label-batch", "5", "--single-labels", "3",
            "--score-batch", "2", "--repeats", "1", "--frames", "4", "--size", "32", "--threads", "1",
            "--per-request-baseline", "--json", str(out_json), "--dir", str(tmp_path / "run")])  # fmt: skip
    finally:
        torch.set_num_threads(before)
    assert json.loads(out_json.read_text())["goals"] == out["goals"]
    (rep,) = out["repeats"]
    assert rep["stopped_cleanly"] and rep["score_errors"] == 0
    assert rep["rows_sent"] == 2 * (12 + 3) == rep["rows_acknowledged"] == rep["rows_landed"]
    assert rep["acknowledged_missing"] == 0 and rep["landed_not_acknowledged"] == 0
    assert out["goals"]["rows_landed"]["met"]
    assert rep["labels_batched"]["rows"] == 24 and rep["labels_batched"]["requests"] == 2 * 3  # 5 + 5 + 2 rows
    assert rep["labels_single"]["rows"] == 6 and rep["labels_single"]["requests"] == 6
    assert rep["scores"]["clips"] == 8 and rep["scores"]["requests"] == 4
    assert rep["in_process"]["clips"] == 8 and rep["in_process"]["threads_used"] == 1
    assert rep["in_process"]["per_request_clips_per_s"] > 0 and "| service / that, % |" in out["table"]
    for phase in ("labels_batched", "labels_single", "scores"):
        figures = rep[phase]
        assert figures["seconds"] > 0 and 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert rep["ratio"] == pytest.approx(rep["scores"]["clips_per_s"] / rep["in_process"]["clips_per_s"])
    assert set(out["goals"]) == {"rows_landed", "label_rows_per_s", "scoring_ratio"}
    assert out["table"].count("goal ") == 3 and "| label rows landed |" in out["table"]
