"""COCO mAP of detections: perfect, shifted, empty and hand-checked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dlabel_lab as dl

pytest.importorskip("pycocotools")


@pytest.fixture(scope="module")
def ann(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_objects")
    dl.make_object_clips(out, 3, frames=4, objects=(2, 3), seed=7)
    return dl.read_object_annotations(out)


def _perfect(ann):
    return [{**ann.target(im["id"]), "scores": np.ones(len(ann.labels[im["id"]]), np.float32)} for im in ann.images]


def test_perfect_predictions_score_one(ann):
    report = dl.evaluate_detections(_perfect(ann), ann.path)
    assert report.map == pytest.approx(1.0) and report.map_50 == pytest.approx(1.0)
    assert report.mar_100 == pytest.approx(1.0)
    assert report.n_images == len(ann.images) and report.n_objects == ann.n_objects == report.n_predictions
    assert all(v["recall"] == pytest.approx(1.0) for v in report.per_class.values() if v["objects"])
    table = report.table()
    assert list(table.columns) == ["class", "objects", "ap", "recall"]
    assert list(table["class"]) == [*ann.classes, "all"]
    assert table["objects"].iloc[-1] == ann.n_objects


def test_boxes_shifted_by_half_a_box_score_zero_at_iou_half(ann):
    shifted = []
    for p in _perfect(ann):
        b = p["boxes"].copy()
        w = b[:, 2] - b[:, 0]
        b[:, 0] += w / 2
        b[:, 2] += w / 2  # IoU 1/3 with the truth
        shifted.append({**p, "boxes": b})
    report = dl.evaluate_detections(shifted, ann)
    assert report.map_50 == 0.0 and report.map == 0.0


def test_empty_predictions_score_zero(ann):
    empty = [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64), "scores": np.zeros(0)} for _ in ann.images]
    report = dl.evaluate_detections(empty, ann)
    assert report.map == 0.0 and report.map_50 == 0.0 and report.mar_100 == 0.0
    assert report.n_predictions == 0


def _case(first_score: float, second_score: float):
    truth = [
        {"boxes": torch.tensor([[10.0, 10, 30, 30]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[50.0, 50, 60, 60]]), "labels": torch.tensor([1])},
    ]
    preds = [
        {
            "boxes": torch.tensor([[10.0, 10, 30, 30]]),
            "labels": torch.tensor([1]),
            "scores": torch.tensor([first_score]),
        },  # a hit on frame 1
        {"boxes": torch.tensor([[0.0, 0, 5, 5]]), "labels": torch.tensor([1]), "scores": torch.tensor([second_score])},
    ]  # a false alarm on frame 2, which misses its object
    return dl.evaluate_detections(preds, truth, classes=["thing"])


def test_hand_checked_precision_recall_curves():
    # hit ranked first: precision 1 up to recall 0.5, then nothing -> 51 of COCO's 101 recall points
    hit_first = _case(0.9, 0.8)
    assert hit_first.map == pytest.approx(51 / 101, abs=1e-6)
    assert hit_first.map_50 == pytest.approx(51 / 101, abs=1e-6)
    assert hit_first.per_class["thing"] == {
        "objects": 2,
        "ap": pytest.approx(51 / 101, abs=1e-6),
        "recall": pytest.approx(0.5),
    }
    # false alarm ranked first: precision 1/2 at recall 0.5 -> half of that
    alarm_first = _case(0.8, 0.9)
    assert alarm_first.map == pytest.approx(0.5 * 51 / 101, abs=1e-6)
    # both objects are small (under 32 x 32), so the small-object AP is the AP; none is large
    assert hit_first.map_small == pytest.approx(hit_first.map)
    assert math.isnan(hit_first.map_large)


def test_predictions_by_image_id_evaluate_those_frames(ann):
    some = {im["id"]: p for im, p in list(zip(ann.images, _perfect(ann), strict=True))[:3]}
    report = dl.evaluate_detections(some, ann)
    assert report.n_images == 3 and report.map == pytest.approx(1.0)


def test_bad_inputs_raise_config_error(ann):
    with pytest.raises(dl.ConfigError, match="bbox"):
        dl.evaluate_detections(_perfect(ann), ann, iou_type="segm")
    with pytest.raises(dl.ConfigError, match="predictions for"):
        dl.evaluate_detections(_perfect(ann)[:-1], ann)
    with pytest.raises(dl.ConfigError, match="not in"):
        dl.evaluate_detections({10**9: _perfect(ann)[0]}, ann)
    bad = _perfect(ann)
    bad[0] = {**bad[0], "boxes": bad[0]["boxes"][:, ::-1].copy()}
    with pytest.raises(dl.ConfigError, match="x1 >= x0"):
        dl.evaluate_detections(bad, ann)
    with pytest.raises(dl.ConfigError, match="scores"):
        dl.evaluate_detections([{"boxes": [[0, 0, 1, 1]], "labels": [1]}], [{"boxes": [[0, 0, 1, 1]], "labels": [1]}])
