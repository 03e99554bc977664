"""A toy run of bench/label_noise.py and its label flips."""

from __future__ import annotations

import numpy as np
import torch
from bench_loader import load_bench


def test_flips_change_the_chosen_share_to_another_class():
    bench = load_bench("label_noise")
    labels = ["a", "b", "c"] * 20
    flipped = bench.flips(labels, ["a", "b", "c"], 0.05, np.random.default_rng(0))
    assert len(flipped) == 3 and all(new != labels[i] for i, new in flipped.items())
    assert bench.flips(labels, ["a", "b", "c"], 0.0, np.random.default_rng(0)) == {}


def test_quick_run_reports_precision_and_recall_per_rate_and_arm(tmp_path):
    before = torch.get_num_threads()
    try:
        out = load_bench("label_noise").main(["--quick", "--seeds", "0", "--datasets", "shapes", "--json",
                                              str(tmp_path / "n.json")])
    finally:
        torch.set_num_threads(before)
    (run,) = out["runs"]
    assert run["pool"] == 45 and {(c["rate"], c["arm"]) for c in run["cells"]} == {
        (r, a) for r in (0.0, 0.05, 0.10) for a in ("cross_validation", "held_out")}
    for cell in run["cells"]:
        assert cell["flipped"] == round(cell["rate"] * 45) and cell["true_flags"] <= min(cell["flagged"],
                                                                                           cell["flipped"])
        assert cell["rate"] == 0 or 0 <= cell["recall"] <= 1
    assert "goal: recall >= 0.9 at 5% flips" in out["table"] and (tmp_path / "n.json").is_file()
    assert ("-> met" in out["table"]) != ("-> missed" in out["table"])
