"""Tiled detection: the grid covers the frame, tile boxes map back exactly, border-cut objects merge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.objects.tiling import detect_tiled, merge_detections, tile_grid


def _covered(h: int, w: int, grid) -> np.ndarray:
    hits = np.zeros((h, w), np.int64)
    for x0, y0, x1, y1 in grid:
        hits[y0:y1, x0:x1] += 1
    return hits


def test_tile_grid_hand_case():
    assert tile_grid(100, 200, tile=(100, 120), overlap=0.2) == [(0, 0, 120, 100), (80, 0, 200, 100)]
    assert tile_grid(10, 10, tile=(20, 30)) == [(0, 0, 10, 10)]  # a tile larger than the frame is cut to it
    assert tile_grid(720, 1280, tile=(400, 712), overlap=0.2) == [
        (0, 0, 712, 400),
        (568, 0, 1280, 400),
        (0, 320, 712, 720),
        (568, 320, 1280, 720),
    ]


@pytest.mark.parametrize(
    "h, w, tile, overlap", [(720, 1280, (360, 640), 0.2), (97, 203, (40, 50), 0.33), (64, 64, (16, 16), 0)]
)
def test_tile_grid_covers_every_pixel_with_the_overlap_asked(h, w, tile, overlap):
    grid = tile_grid(h, w, tile=tile, overlap=overlap)
    assert _covered(h, w, grid).min() >= 1
    assert all(x1 - x0 == tile[1] and y1 - y0 == tile[0] for x0, y0, x1, y1 in grid)
    xs, ys = sorted({g[0] for g in grid}), sorted({g[1] for g in grid})
    assert xs[0] == ys[0] == 0 and xs[-1] + tile[1] == w and ys[-1] + tile[0] == h  # flush with both borders
    for starts, side in ((xs, tile[1]), (ys, tile[0])):
        steps = np.diff(starts)
        assert (side - steps >= np.ceil(overlap * side)).all()  # neighbours overlap at least as asked
        assert steps.max() - steps.min() <= 1  # evenly spread
    assert len(grid) == len(xs) * len(ys)


def test_tile_grid_without_overlap_is_a_partition():
    grid = tile_grid(64, 96, tile=(32, 32), overlap=0.0)
    assert len(grid) == 6 and (_covered(64, 96, grid) == 1).all()


class OneBoxPerTile:
    """A fake detector: one box at (2, 3, 12, 23) in every image it gets, label = image width, score 0.5."""

    def __init__(self):
        self.calls = []

    def detect(self, frames):
        self.calls.append([tuple(f.shape) for f in frames])
        return [
            {
                "boxes": torch.tensor([[2.0, 3.0, 12.0, 23.0]]),
                "labels": torch.tensor([f.shape[-1]]),
                "scores": torch.tensor([0.5]),
            }
            for f in frames
        ]


def test_tile_boxes_map_back_to_frame_coordinates():
    detector = OneBoxPerTile()
    frames = np.zeros((2, 100, 200, 3), np.uint8)
    dets, record = detect_tiled(detector, frames, tile=(100, 120), overlap=0.2, full_frame=False, batch_size=3)
    assert detector.calls == [[(3, 100, 120)] * 3, [(3, 100, 120)]]  # the tiles of both frames, in batches of 3
    for d in dets:
        assert sorted(d["boxes"].tolist()) == [[2.0, 3.0, 12.0, 23.0], [82.0, 3.0, 92.0, 23.0]]
        assert d["labels"].tolist() == [120, 120] and d["scores"].tolist() == [0.5, 0.5]
        assert d["boxes"].dtype == torch.float32 and d["labels"].dtype == torch.int64
    assert record == {
        "tile": [100, 120],
        "overlap": 0.2,
        "full_frame": False,
        "merge": "nms",
        "iou": 0.5,
        "n_tiles": 2,
    }


def test_full_frame_pass_is_included_or_left_out():
    detector = OneBoxPerTile()
    frame = torch.zeros(3, 100, 200)
    (with_full,), record = detect_tiled(detector, frame, tile=(100, 120), full_frame=True, merge="nms")
    assert detector.calls[-1] == [(3, 100, 200)]
    assert 200 in with_full["labels"].tolist() and len(with_full["boxes"]) == 3  # labels differ: nothing merges
    assert record["full_frame"] is True and record["merge"] == "nms"
    detector.calls.clear()
    (without,), _ = detect_tiled(detector, frame, tile=(100, 120), full_frame=False)
    assert detector.calls == [[(3, 100, 120)] * 2] and 200 not in without["labels"].tolist()


def test_an_object_cut_by_a_tile_border_merges_into_one_box():
    # an object at x 60..110 seen by two tiles, each cutting off one end: two partial boxes
    boxes = torch.tensor([[60.0, 10, 100, 30], [70.0, 10, 110, 30]])
    d = {"boxes": boxes, "labels": torch.tensor([1, 1]), "scores": torch.tensor([0.9, 0.8])}
    greedy = merge_detections(d, iou=0.5, merge="greedy")
    assert greedy["boxes"].tolist() == [[60.0, 10.0, 110.0, 30.0]] and greedy["scores"].tolist() == [pytest.approx(0.9)]
    nms = merge_detections(d, iou=0.5, merge="nms")  # IoU 30/50 = 0.6 > 0.5: the better partial box stays
    assert nms["boxes"].tolist() == [[60.0, 10.0, 100.0, 30.0]]
    other_class = {**d, "labels": torch.tensor([1, 2])}
    assert len(merge_detections(other_class, merge="greedy")["boxes"]) == 2  # merging is per class


def test_detect_tiled_joins_the_two_parts_of_a_cut_object():
    # frame 200 wide, tiles 100 wide with overlap 0.3 start at 0, 50 and 100; an object at x 60..110 shows as
    # 60..100 in tile 0, whole in tile 1 (local 10..60) and as a sliver 0..10 in tile 2
    def detector(images):
        out = []
        for k in range(len(images)):
            part = {0: [60.0, 10, 100, 30], 1: [10.0, 10, 60, 30], 2: [0.0, 10, 10, 30]}[k % 3]
            out.append(
                {"boxes": torch.tensor([part]), "labels": torch.tensor([1]), "scores": torch.tensor([0.9 - 0.1 * k])}
            )
        return out

    frame = np.zeros((40, 200, 3), np.uint8)
    (greedy,), record = detect_tiled(detector, frame, tile=(40, 100), overlap=0.3, full_frame=False, merge="greedy")
    assert record["n_tiles"] == 3
    assert greedy["boxes"].tolist() == [[60.0, 10.0, 110.0, 30.0]] and greedy["scores"].tolist() == [pytest.approx(0.9)]
    (nms,), _ = detect_tiled(detector, frame, tile=(40, 100), overlap=0.3, full_frame=False, merge="nms")
    # the first two parts (60..100, 60..110) overlap with IoU 0.8 -> one; the sliver 100..110 has IoU 0.2 -> stays
    assert nms["boxes"].tolist() == [[60.0, 10.0, 100.0, 30.0], [100.0, 10.0, 110.0, 30.0]]


def test_no_detections_and_empty_input():
    def nothing(images):
        return [
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0)}
            for _ in images
        ]

    (d,), _ = detect_tiled(nothing, np.zeros((50, 50, 3), np.uint8), tile=(20, 20))
    assert d["boxes"].shape == (0, 4) and len(d["labels"]) == len(d["scores"]) == 0
    dets, record = detect_tiled(nothing, [], tile=(20, 20))
    assert dets == [] and record["tile"] == [20, 20]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tile": (0, 10)}, "tile"),
        ({"tile": 64}, "tile"),
        ({"overlap": 1.0}, "overlap"),
        ({"overlap": -0.1}, "overlap"),
        ({"iou": 0}, "iou"),
        ({"merge": "wbf"}, "merge"),
        ({"full_frame": "yes"}, "full_frame"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_say_what_to_do(kwargs, match):
    with pytest.raises(dl.ConfigError, match=match):
        detect_tiled(OneBoxPerTile(), np.zeros((40, 40, 3), np.uint8), **kwargs)


def test_bad_detectors_and_frames():
    frame = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(dl.ConfigError, match="detect"):
        detect_tiled(object(), frame)
    with pytest.raises(dl.ConfigError, match="one each"):
        detect_tiled(lambda images: [], frame, tile=(20, 20))
    with pytest.raises(dl.ConfigError, match="one size"):
        detect_tiled(OneBoxPerTile(), [frame, np.zeros((30, 40, 3), np.uint8)])
    with pytest.raises(dl.ConfigError, match="uint8"):
        detect_tiled(OneBoxPerTile(), np.zeros((40, 40, 3), np.float32))
    with pytest.raises(dl.ConfigError, match="height"):
        tile_grid(0, 10)
