"""Sample clips with ground-truth boxes: COCO validity, exact boxes, determinism, hostile files refused."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

import dlabel_lab as dl
from dlabel_lab.media.objects import read_object_annotations

COCO = pytest.importorskip("pycocotools.coco").COCO


@pytest.fixture(scope="module")
def objects_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("objects")
    dl.make_object_clips(out, 4, frames=16, objects=(2, 4), seed=3)
    return out


def test_annotations_are_valid_coco_with_frames_and_tracks(objects_dir):
    coco = COCO(str(objects_dir / "annotations.json"))
    assert len(coco.imgs) == 4 * 16
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == ["circle", "square", "triangle"]
    for img in coco.imgs.values():
        assert (objects_dir / img["file_name"]).is_file()
        assert img["timestamp"] == pytest.approx(img["frame_index"] / 12.0, abs=1e-6)
        assert (img["width"], img["height"]) == (160, 120)
    anns = list(coco.anns.values())
    assert anns and all(a["iscrowd"] == 0 for a in anns)
    for a in anns:
        x, y, w, h = a["bbox"]
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 160 and y + h <= 120  # clipped to the frame
        assert a["area"] == w * h
    frames_per_track = Counter(a["track_id"] for a in anns)
    clips_per_track = {
        t: {coco.imgs[a["image_id"]]["video_id"] for a in anns if a["track_id"] == t} for t in frames_per_track
    }
    assert all(len(v) == 1 for v in clips_per_track.values())  # a track stays in its clip
    assert min(frames_per_track.values()) < 16  # some objects enter or leave the frame
    assert any(a["area"] < 32 * 32 for a in anns)  # COCO-small objects
    per_frame = Counter((a["image_id"], a["track_id"]) for a in anns)
    assert max(per_frame.values()) == 1  # at most one box per track and frame


def test_manifest_names_the_most_frequent_class_and_reads_as_before(objects_dir):
    rows = dl.read_manifest(objects_dir / "labels.csv")
    coco = json.loads((objects_dir / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    video_of = {im["id"]: im["file_name"] for im in coco["images"]}
    for row in rows:
        name = row["path"].rsplit("/", 1)[-1]
        counts = Counter(names[a["category_id"]] for a in coco["annotations"] if video_of[a["image_id"]] == name)
        assert counts[row["label"]] == max(counts.values())


def test_boxes_are_exact_on_the_decoded_frames(tmp_path):
    dl.make_object_clips(tmp_path, 1, frames=4, objects=(1, 1), min_size=30, max_size=36, seed=5)
    ann = read_object_annotations(tmp_path)
    clip = dl.read_clip(ann.images[0]["path"], dl.ClipSpec(frames=None, size=(120, 160), indices=(0, 1, 2, 3)))
    for im, frame in zip(ann.images, clip.frames, strict=True):
        grey = frame.astype(np.float32).mean(axis=2)
        inside = np.zeros(grey.shape, bool)
        for x0, y0, x1, y1 in ann.boxes[im["id"]].astype(int):
            inside[max(0, y0 - 2) : y1 + 2, max(0, x0 - 2) : x1 + 2] = True
            assert grey[y0:y1, x0:x1].max() > 120  # the object is in its box
        assert grey[~inside].max() < 110  # and nothing bright outside the boxes


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a, b, c = (
        dl.make_object_clips(tmp_path / k, 2, frames=4, seed=s).parent for k, s in (("a", 1), ("b", 1), ("c", 2))
    )
    assert (a / "annotations.json").read_bytes() == (b / "annotations.json").read_bytes()
    assert (a / "labels.csv").read_bytes() == (b / "labels.csv").read_bytes()
    assert (a / "objects_0000.mp4").read_bytes() == (b / "objects_0000.mp4").read_bytes()
    assert (a / "annotations.json").read_bytes() != (c / "annotations.json").read_bytes()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"width": 161}, "even"),
        ({"objects": (0, 2)}, "objects"),
        ({"min_size": 20, "max_size": 10}, "min_size"),
        ({"classes": ["a", "a"]}, "distinct"),
        ({"frames": 0}, "frames"),
        ({"fps": 0}, "fps"),
    ],
)
def test_bad_arguments_raise_config_error(tmp_path, kwargs, match):
    with pytest.raises(dl.ConfigError, match=match):
        dl.make_object_clips(tmp_path, 1, **kwargs)


def _write(path, doc):
    path.write_text(json.dumps(doc))
    return path


def test_hostile_annotation_files_are_refused(tmp_path, objects_dir):
    good = json.loads((objects_dir / "annotations.json").read_text())
    with pytest.raises(dl.ConfigError, match="max_bytes"):
        read_object_annotations(objects_dir / "annotations.json", max_bytes=100)
    with pytest.raises(dl.ConfigError, match="cannot be opened"):
        read_object_annotations(tmp_path / "missing.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(dl.ConfigError, match="JSON"):
        read_object_annotations(tmp_path / "deep.json")
    escape = {**good, "images": [{**good["images"][0], "file_name": "../../etc/passwd"}], "annotations": []}
    with pytest.raises(dl.UnsafeSource, match="outside"):
        read_object_annotations(_write(tmp_path / "escape.json", escape))
    bad_box = {**good, "annotations": [{**good["annotations"][0], "bbox": [1, 2, -3, 4]}]}
    with pytest.raises(dl.ConfigError, match=r"annotations\[0\].*bbox"):
        read_object_annotations(_write(objects_dir / "bad_box.json", bad_box))
    no_frame = {
        **good,
        "images": [{k: v for k, v in good["images"][0].items() if k != "frame_index"}],
        "annotations": [],
    }
    with pytest.raises(dl.ConfigError, match="frame_index"):
        read_object_annotations(_write(objects_dir / "no_frame.json", no_frame))


def test_read_object_annotations_gives_xyxy_boxes_per_frame(objects_dir):
    ann = read_object_annotations(objects_dir)
    coco = json.loads((objects_dir / "annotations.json").read_text())
    a = coco["annotations"][0]
    x, y, w, h = a["bbox"]
    boxes, labels = ann.boxes[a["image_id"]], ann.labels[a["image_id"]]
    assert [x, y, x + w, y + h] in boxes.tolist()
    assert ann.n_objects == len(coco["annotations"])
    assert set(np.concatenate(list(ann.labels.values())).tolist()) <= {1, 2, 3}
    assert labels.dtype == np.int64 and boxes.dtype == np.float32
