"""A tiny real run of the tiling benchmark (bench/tiling.py): every arm is scored and the table is printed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from bench_loader import load_bench

pytest.importorskip("pycocotools")


def test_random_crop_keeps_the_boxes_mostly_inside_clipped():
    bench = load_bench("tiling")
    image = np.zeros((100, 200, 3), np.uint8)
    target = {
        "boxes": torch.tensor([[10.0, 10, 30, 30], [90.0, 10, 130, 30], [0.0, 80, 10, 100]]),
        "labels": torch.tensor([1, 2, 3]),
    }

    class Fixed:  # a "generator" that puts the crop at x 0..100, y 0..60
        def integers(self, lo, hi):
            return 0

    crop, tg = bench.random_crop(image, target, (60, 100), Fixed())
    assert crop.shape == (60, 100, 3)
    # box 2 has a quarter of its area inside (x 90..100 of 90..130): dropped; box 3 lies below the crop
    assert tg["boxes"].tolist() == [[10.0, 10.0, 30.0, 30.0]] and tg["labels"].tolist() == [1]


def test_quick_run_reports_every_arm(tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        out = load_bench("tiling").main(["--quick", "--json", str(tmp_path / "t.json")])
    finally:
        torch.set_num_threads(before)
    arms = out["results"][0]["arms"]
    assert set(arms) == {"full", "tiled", "tiled_nms", "native"}
    for v in arms.values():
        assert {"map", "map_small", "mar_small", "recall_small50", "dets_per_frame", "sec_per_frame"} <= set(v)
        assert v["sec_per_frame"] > 0
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["summary"]["paired"]["time tiled/full"][0] > 1
    text = capsys.readouterr().out
    assert "goal >= +5 AP_small at <= 6x the time" in text and "tiled / full" in text
