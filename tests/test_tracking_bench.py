"""A toy run of bench/tracking.py and its hand-written baseline tracker."""

from __future__ import annotations

import numpy as np
import torch
from bench_loader import load_bench


def test_iou_greedy_links_overlapping_boxes_and_ends_tracks_on_a_gap():
    bench = load_bench("tracking")
    frames = [
        {"boxes": np.array([[0, 0, 10, 10], [50, 50, 60, 60]])},
        {"boxes": np.array([[52, 51, 62, 61], [1, 0, 11, 10]])},  # both moved a little, order swapped
        {"boxes": np.zeros((0, 4))},  # a gap ends both tracks
        {"boxes": np.array([[1, 1, 11, 11]])},
    ]
    assert bench.iou_greedy(frames) == [[(0, 1), (1, 2)], [(0, 2), (1, 1)], [], [(0, 3)]]


def test_quick_run_scores_every_arm_on_both_sources(tmp_path):
    before = torch.get_num_threads()
    try:
        out = load_bench("tracking").main(["--quick", "--seeds", "0", "--json", str(tmp_path / "t.json")])
    finally:
        torch.set_num_threads(before)
    (result,) = out["results"]
    assert {k for k in result if "/" in k} == {f"{s}/{a}" for s in ("noisy_truth", "detector")
                                             for a in ("norfair", "norfair_centroid", "iou_greedy")}  # fmt: skip
    truth = result["noisy_truth/norfair"]
    assert truth["objects"] > 0 and -1 <= truth["mota"] <= 1 and 0 <= truth["idf1"] <= 1
    assert "| noisy_truth | norfair |" in out["table"] and (tmp_path / "t.json").is_file()
