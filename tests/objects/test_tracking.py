"""Tracks from detections: norfair links boxes over frames, motmetrics scores them against the clips' track ids."""

from __future__ import annotations

import numpy as np
import pytest
from detector_helpers import fit_detector

import dlabel_lab as dl
from dlabel_lab.objects.tracking import ObjectTracks, detect_and_track, evaluate_tracks, track_detections

pytest.importorskip("norfair")
pytest.importorskip("motmetrics")
CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """One 16-frame clip with 4 objects: 2 enter the frame after frame 0, 2 leave it before the last frame."""
    labels = dl.make_object_clips(tmp_path_factory.mktemp("track"), 1, frames=16, objects=(4, 4), seed=11)
    ann = dl.read_object_annotations(labels.parent / "annotations.json")
    return ann, ann.images[0]["path"], [im["id"] for im in ann.images]


def _truth_as_detections(ann, ids):
    return [{"boxes": ann.boxes[i], "labels": ann.labels[i], "scores": np.full(len(ann.labels[i]), 0.9)} for i in ids]


def _span(ann, ids, track):
    frames = [f for f, i in enumerate(ids) if track in ann.track_ids[i]]
    return min(frames), max(frames)


def test_perfect_detections_give_perfect_tracks(clip):
    ann, path, ids = clip
    spans = [_span(ann, ids, t) for t in np.unique(np.concatenate([ann.track_ids[i] for i in ids]))]
    assert len(spans) == 4 and sum(a > 0 for a, _ in spans) == 2 and sum(b < 15 for _, b in spans) == 2
    frames = track_detections(_truth_as_detections(ann, ids), fps=12.0)
    assert len(frames) == 16 and frames[3][0]["timestamp"] == 0.25
    got = evaluate_tracks(frames, ann, path)
    assert got["mota"] == 1.0 and got["idf1"] == 1.0 and got["id_switches"] == 0
    assert got["gt_tracks"] == got["predicted_tracks"] == 4 and got["misses"] == got["false_positives"] == 0
    # every track carries the class of its object
    truth_label = {int(t): int(lab) for i in ids for t, lab in zip(ann.track_ids[i], ann.labels[i], strict=True)}
    pairs = {(r["track_id"], r["label"]) for frame in frames for r in frame}
    assert sorted(lab for _, lab in pairs) == sorted(truth_label.values())


def test_jitter_and_a_one_frame_gap_keep_track_ids(clip):
    ann, path, ids = clip
    rng = np.random.default_rng(0)
    dets = _truth_as_detections(ann, ids)
    gap_track = int(ann.track_ids[ids[0]][0])  # visible from frame 0; its box is dropped on frame 5
    for f, d in enumerate(dets):
        keep = ~((ann.track_ids[ids[f]] == gap_track) & (f == 5))
        keep &= (rng.random(len(keep)) > 0.1) | (ann.track_ids[ids[f]] == gap_track)
        boxes = d["boxes"][keep] + rng.normal(0, 0.5, (int(keep.sum()), 4))
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        dets[f] = {"boxes": boxes, "labels": d["labels"][keep], "scores": d["scores"][keep]}
    frames = track_detections(dets, fps=12.0)
    got = evaluate_tracks(frames, ann, path)
    # measured: of 46 boxes, 6 dropped (the gap and 5 at random) are missed, one jittered 6x2-pixel sliver of an
    # entering object falls under IoU 0.5 (a miss and a false positive); 3 fragmentations, no id switch
    assert (got["objects"], got["misses"], got["false_positives"], got["id_switches"]) == (46, 6, 1, 0)
    assert got["mota"] == pytest.approx(1 - 7 / 46) and got["idf1"] == pytest.approx(0.9195, abs=1e-4)
    # the object with the gap keeps one track id on both sides of it
    ids_of_gap = {
        r["track_id"] for f in (3, 4, 6, 7) for r in frames[f] if _iou(r["box"], _box_of(ann, ids[f], gap_track)) > 0.5
    }
    assert len(ids_of_gap) == 1
    assert got["predicted_tracks"] == 4


def _box_of(ann, image_id, track):
    return ann.boxes[image_id][list(ann.track_ids[image_id]).index(track)]


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_majority_label_names_the_track():
    boxes = [np.array([[10.0, 10, 30, 30]]) + 2 * t for t in range(5)]
    labels = [1, 2, 2, 1, 2]
    frames = track_detections([{"boxes": b, "labels": [lab]} for b, lab in zip(boxes, labels, strict=True)])
    rows = [r for frame in frames for r in frame]
    assert {r["track_id"] for r in rows} == {1}
    assert [r["label"] for r in rows] == [2] * 5 and [r["detected_label"] for r in rows] == labels


def test_empty_detections_give_no_tracks_and_defined_metrics(clip):
    ann, path, ids = clip
    empty = [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int), "scores": np.zeros(0)} for _ in ids]
    frames = track_detections(empty)
    assert frames == [[] for _ in ids]
    got = evaluate_tracks(frames, ann, path)
    assert got["mota"] == 0.0 and got["idf1"] == 0.0 and got["id_switches"] == 0
    assert got["misses"] == got["objects"] == 46 and got["predicted_tracks"] == 0
    assert track_detections([]) == []


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"boxes": np.zeros((2, 3)), "labels": [1, 1]}, r"shaped \(n, 4\)"),
        ({"boxes": [[10.0, 10, 5, 20]], "labels": [1]}, "x2 > x1.*box_convert"),
        ({"boxes": [[10.0, 10, 20, 20]], "labels": [1, 2]}, "one label"),
        ({"boxes": [[10.0, 10, 20, np.nan]], "labels": [1]}, "finite"),
        ({"labels": [1]}, "must be a dict with 'boxes'"),
    ],
)
def test_bad_detections_raise_config_error(bad, match):
    with pytest.raises(dl.ConfigError, match=match):
        track_detections([bad])


def test_bad_options_and_mismatched_clips_raise_config_error(clip, tmp_path):
    ann, path, ids = clip
    dets = _truth_as_detections(ann, ids)
    with pytest.raises(dl.ConfigError, match="unknown tracker"):
        track_detections(dets, tracker="bytetrack")
    with pytest.raises(dl.ConfigError, match="norfair.Tracker"):
        track_detections(dets, no_such_option=1)
    with pytest.raises(dl.ConfigError, match="frame_indices"):
        track_detections(dets, frame_indices=[0, 0])
    with pytest.raises(dl.ConfigError, match="not in"):
        evaluate_tracks([], ann, tmp_path / "other.mp4")
    with pytest.raises(dl.ConfigError, match="does not annotate"):
        evaluate_tracks([{"frame_index": 99, "box": [0, 0, 1, 1], "track_id": 1}], ann, path)


def test_object_tracks_table():
    tracks = ObjectTracks(
        objects=[{"frame_index": 0, "timestamp": 0.0, "box": [1.0, 2, 3, 4], "label": 2, "score": 0.5, "track_id": 1}],
        clip="c.mp4",
        fps=12.0,
        n_frames=1,
        classes=CLASSES,
        detector_version="v1",
    )
    table = tracks.table()
    assert list(table.columns[:10]) == [
        "frame_index",
        "timestamp",
        "x1",
        "y1",
        "x2",
        "y2",
        "label",
        "class",
        "score",
        "track_id",
    ]
    assert table.loc[0, "class"] == "square" and table.loc[0, "detector_version"] == "v1" and tracks.n_tracks == 1


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_trained_detector_tracks_better_than_an_untrained_one(tmp_path, one_thread):
    import pytorch_lightning as pl

    from dlabel_lab.models.detection import ObjectDetector
    from dlabel_lab.objects.frames import frames_dataset

    train = frames_dataset(dl.make_object_clips(tmp_path / "train", 8, frames=8, seed=0).parent)
    held_out = dl.make_object_clips(tmp_path / "test", 2, frames=16, seed=100).parent / "annotations.json"
    pl.seed_everything(0, workers=True)
    model = ObjectDetector(CLASSES, lr=5e-3)

    def mota(detector) -> float:
        ann = dl.read_object_annotations(held_out)
        clips = sorted({im["path"] for im in ann.images})
        tracks = [detect_and_track(detector, c, score_threshold=0.7) for c in clips]
        results = [evaluate_tracks(t, ann, iou_threshold=0.3) for t in tracks]
        n = sum(r["objects"] for r in results)
        return sum(r["mota"] * r["objects"] for r in results) / n, sum(r["idf1"] * r["objects"] for r in results) / n

    before = mota(model)
    fit_detector(model, train, tmp_path)
    tracks = detect_and_track(model, held_out.parent / "objects_0000.mp4", detector_version="t")
    assert tracks.fps == 12.0 and tracks.n_frames == 16 and tracks.table()["detector_version"].eq("t").all()
    after = mota(model)
    # measured (MOTA, IDF1) on the 2 held-out clips: untrained (0, 0) (no box scores 0.7), trained (0.180, 0.220).
    # This briefly trained detector is weak (mAP50 about 0.3): at IoU 0.5 and score 0.5 its MOTA is -0.46 (57 false
    # positives for 61 objects) though IDF1 is 0.40, and on 6 other held-out clips MOTA at (0.7, 0.3) was only 0.02.
    assert before == (0.0, 0.0) and after[0] > 0.1 and after[1] > 0.1, (before, after)
