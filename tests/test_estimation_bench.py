"""A tiny real run of the estimation benchmark (bench/estimation.py), and its draws checked against the API."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bench_loader import load_bench

from dlabel_lab.estimate import ORACLES, SAMPLERS
from dlabel_lab.estimate.api import _draw


def _bench():
    return load_bench("estimation")


def test_draws_are_estimate_accuracys_and_every_valid_pair_is_listed():
    bench = _bench()
    f = np.random.default_rng(0).uniform(0, 1, 80)
    design = {"n_strata": 4, "uniform_share": 0.2}
    for sampler in SAMPLERS:
        mine = bench.draw(sampler, 20, 7, 80, f, n_strata=4, uniform_share=0.2)
        theirs = _draw(sampler, 20, 7, 80, f, design)
        assert mine.indices.tolist() == theirs.indices.tolist(), sampler
    keys = [p.key for p in bench.valid_pairs(ORACLES)]
    assert keys[0] == "srs -> srs" and keys[-1] == f"srs -> {bench.REFERENCE}" and len(keys) == len(set(keys))
    assert len(keys) == 2 + sum(len(ms) - (s == "srs") for s, ms in SAMPLERS.items()) * len(ORACLES)


@pytest.mark.slow
def test_tiny_run_measures_every_pair_against_the_pools_truth(tmp_path, capsys):
    bench = _bench()
    out, fig = tmp_path / "raw.json", tmp_path / "est.png"
    rows = bench.main(["--dataset", "shapes", "--pool", "60", "--lab", "24", "--adapt", "40", "--holdout", "0.4",
                       "--epochs", "1", "--retrain-epochs", "1", "--reps", "30", "--budgets", "10,20",
                       "--frames-in", "8", "--size-in", "32", "--json", str(out), "--plot", str(fig)])
    doc = json.loads(out.read_text())
    (run,) = doc["runs"]
    expected = {p.key for p in bench.valid_pairs(ORACLES)}  # the lineage is real: v1 is v2's parent
    assert set(run["raw"]) == expected and {r["pair"] for r in rows} == expected
    assert len(rows) == 2 * len(expected) and run["meta"]["v2"] != run["meta"]["v1"]
    correct = np.array(run["correct"], dtype=float)
    oracles = {o: np.array(v) for o, v in run["oracles"].items()}
    assert correct.size == 60 and set(np.unique(correct)) <= {0.0, 1.0}
    assert run["meta"]["true_accuracy"] == correct.mean() and run["meta"]["mispredictions"] == (correct == 0).sum()
    assert all(((f >= 0) & (f <= 1)).all() for f in oracles.values())
    for r in rows:
        assert 0.0 <= r["coverage"] <= 1.0 and r["reps"] == 30 and r["true_accuracy"] == correct.mean()
        assert r["labels"] <= r["budget"]
    for b in (10, 20):
        srs = run["raw"]["srs -> srs"][str(b)]
        (row,) = [r for r in rows if r["pair"] == "srs -> srs" and r["budget"] == b]
        assert row["bias"] == pytest.approx(np.mean(srs["point"]) - correct.mean())
        assert row["saving"] == pytest.approx(1.0) and row["found_ratio"] == pytest.approx(1.0)
        for r in range(30):  # found mispredictions: the distinct sampled clips v2 got wrong, redrawn here
            s = bench.draw("failure-seeking", b, bench.rep_seed(0, r), 60, oracles["confidence"], n_strata=4,
                           uniform_share=0.2)
            cell = run["raw"]["failure-seeking -> weighted [confidence]"][str(b)]
            assert cell["found"][r] == int((correct[s.unique] == 0).sum()) and cell["labels"][r] == len(s.unique)
            assert srs["found"][r] == int((correct[bench.draw("srs", b, bench.rep_seed(0, r), 60, None, n_strata=4,
                                                              uniform_share=0.2).indices] == 0).sum())
    assert fig.stat().st_size > 0
    text = capsys.readouterr().out
    assert "Goals" in text and "best estimator" in text and "failure-seeking goal" in text and "seconds:" in text
    again = bench.main(["--summarise", str(out)])
    assert [(r["pair"], r["budget"], r["bias"], r["coverage"]) for r in again] == \
        [(r["pair"], r["budget"], r["bias"], r["coverage"]) for r in rows]
