"""A tiny real run of the pipeline-effort benchmark (bench/pipeline_effort.py), and its oracle on hand-made boxes."""

from __future__ import annotations

import json

import pytest
import torch
from bench_loader import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("pipeline_effort")


def test_oracle_answers_from_the_truth(bench):
    truth = {0: [([10.0, 10, 20, 20], "circle")], 1: [([12.0, 10, 22, 20], "circle")], 2: []}
    boxes = ((0, [10, 10, 20, 20]), (1, [12, 10, 22, 21]), (2, [0, 0, 5, 5]))
    members = [{"frame_index": f, "box": b} for f, b in boxes]
    assert bench.verify_verdict(members, truth.get, "circle") == {"verdict": "accept"}
    assert bench.verify_verdict(members, truth.get, "square") == {"verdict": "relabel", "label": "circle"}
    assert bench.verify_verdict(members[1:], truth.get, "circle") == {"verdict": "reject"}  # 1 of 2 is no majority
    gt = [([10.0, 10, 20, 20], "circle"), ([40.0, 10, 50, 20], "square")]
    assert bench.fix_verdict([10, 10, 20, 21], "circle", gt, []) == {"verdict": "accept"}
    assert bench.fix_verdict([38, 8, 46, 20], "circle", gt, []) == {"verdict": "fix", "box": [40.0, 10, 50, 20],
                                                                     "label": "square"}  # fmt: skip
    assert bench.fix_verdict([38, 8, 46, 20], "circle", gt, [[40, 10, 50, 20]]) == {"verdict": "reject"}  # claimed
    assert bench.missed_boxes(gt, [([10, 10, 20, 20], "circle"), ([40, 10, 50, 20], "circle")]) == [
        {"box": [40.0, 10.0, 50.0, 20.0], "label": "square"}]
    assert bench.true_positives([([10, 10, 20, 20], "circle"), ([10, 10, 20, 20], "circle")], gt) == 1


def test_quick_run_reports_both_arms_complete(tmp_path, capsys, bench):
    before = torch.get_num_threads()
    try:
        out = bench.main(["--quick", "--json", str(tmp_path / "e.json")])
    finally:
        torch.set_num_threads(before)
    (r,) = out["results"]
    scratch = r["scratch"]["actions"]
    assert scratch == sum(r["scratch"]["per_clip"]) == r["scratch"]["quality"]["truth"] > 0
    assert r["scratch"]["quality"] == {"precision": 1.0, "recall": 1.0, "boxes": scratch, "truth": scratch,
                                       "false_positives": 0, "duplicates": 0}  # fmt: skip
    for arm in ("pipeline", "no_dedupe"):
        a = r["arms"][arm]["actions"]
        assert a["total"] == a["verdicts"] + a["fixes"] + a["drawn"] + a["nothing_missed"] == sum(
            r["arms"][arm]["per_clip"]) > 0
        assert r["arms"][arm]["ratio"] == a["total"] / scratch
        # every truth box is kept, verified, fixed or drawn; only heavily overlapping objects of one class can be lost
        assert r["arms"][arm]["quality"]["recall"] >= 0.9
        s = out["summary"]["arms"][arm]
        assert s["bootstrap95"][0] <= s["pooled_ratio"] <= s["bootstrap95"][1]
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved["summary"]["arms"]["pipeline"]["markdown_row"].startswith("| pipeline | 2 x 1 | 4 |")
    assert "| arm | clips x seeds |" in capsys.readouterr().out
