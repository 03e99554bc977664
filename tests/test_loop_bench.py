"""A tiny run of the drift-recovery battery (bench/drift_recovery.py) end to end."""

from __future__ import annotations

import json

import pytest
from bench_loader import load_bench


def _bench():
    return load_bench("drift_recovery")


def test_bootstrap_interval_brackets_the_mean():
    bench = _bench()
    lo, hi = bench.bootstrap([0.1, 0.2, 0.3, 0.4])
    assert lo <= 0.25 <= hi and bench.bootstrap([0.5]) != bench.bootstrap([0.5, 0.6])


@pytest.mark.slow
def test_tiny_battery_runs_and_reports_every_arm(tmp_path, capsys):
    bench = _bench()
    out = tmp_path / "raw.jsonl"
    results = bench.main(["--seeds", "2", "--drifts", "operational,vignette_jpeg", "--train", "12", "--ops", "12",
                          "--test", "12", "--epochs", "1", "--retrain-epochs", "1", "--frames-in", "6",
                          "--size-in", "32", "--json", str(out)])
    assert len(results) == 4 and len(out.read_text().splitlines()) == 4
    for r in results:
        assert {"v1_clean", "v1_drift", "plain_drift", "derived_drift", "generic_drift", "derived+generic_drift",
                "choice_drift"} <= set(r)
        assert r["choice_drift"] == r[f"{r['choice']}_drift"]
    text = capsys.readouterr().out
    assert "(c) - (b)" in text and "(c) - (d)" in text and "recovery" in text and "vignette_jpeg" in text
    assert json.loads(out.read_text().splitlines()[0])["drift"] == "operational"
