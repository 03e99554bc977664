"""COCO export and import (``dlabel_lab.interop.coco``): round trips, pycocotools, other tools' files, hostile files.

No store and no video decoding: ``read`` never opens the clips, so the media named here need not exist.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from interop_helpers import (
    HOSTILE,
    HOSTILE_WRITES,
    assert_write_refused,
    json_handmade,
    json_round_trip,
    label_sets,
)
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dlabel_lab.errors import ConfigError, UnsafeSource
from dlabel_lab.interop import coco
from dlabel_lab.interop.labelset import Box, ClipLabels, LabelSet, canonical

FIXTURES = Path(__file__).parent / "fixtures" / "coco"


def _round_trip(ls: LabelSet, tmp: Path) -> tuple[Path, LabelSet]:
    """write -> read keeps the labels and the model's clip confidences; write -> read -> write gives the same bytes."""
    path, back = json_round_trip(coco, ls, tmp, "annotations.json")
    assert [c.predicted_confidence for c in back.clips] == [c.predicted_confidence for c in ls.clips]
    return path, back


def _handmade() -> LabelSet:
    return json_handmade("coco", last_score=0.25, size=(32, 24))


# --- round trips ---------------------------------------------------------------------------
def test_handmade_round_trip_keeps_labels_tracks_sources_and_predictions(tmp_path):
    ls = _handmade()
    path, back = _round_trip(ls, tmp_path)
    assert canonical(back) == canonical(ls)  # the nudged widths make these boxes exact, not only close
    doc = json.loads(path.read_text())
    assert [v["file_name"] for v in doc["videos"]] == ["media/a.mp4", "media/b.mp4", "media/c.mp4", "media/d.mp4"]
    assert [c["name"] for c in sorted(doc["categories"], key=lambda c: c["id"])] == ls.classes
    assert [(im["video_id"], im["frame_index"], im["frame_id"]) for im in doc["images"]] == \
        [(1, 0, 0), (1, 1, 1), (1, 5, 5), (4, 3, 3)]
    untracked = [a for a in doc["annotations"] if "track_id" not in a]
    assert len(untracked) == 1 and untracked[0]["author"] == "cy"
    assert doc["info"]["model_version"] == "shapes-v1" and doc["info"]["predictions"] == "predictions.json"


def test_a_set_without_predictions_writes_no_predictions_file(tmp_path):
    ls = LabelSet(classes=["a"], clips=[ClipLabels(media="x.mp4", label="a", label_source="human")])
    path, back = _round_trip(ls, tmp_path)
    assert not (path.parent / "predictions.json").exists()
    assert json.loads(path.read_text())["images"] == [] and back.clips[0].boxes == []


def test_written_files_load_in_pycocotools(tmp_path, capsys):
    ls = _handmade()
    path = coco.write(ls, tmp_path)
    gt = COCO(str(path))
    assert len(gt.getImgIds()) == 4
    assert len(gt.getAnnIds()) == sum(len(c.boxes) for c in ls.clips)
    assert [c["name"] for c in gt.loadCats(gt.getCatIds())] == ls.classes
    dt = gt.loadRes(str(tmp_path / "predictions.json"))
    assert len(dt.getAnnIds()) == sum(len(c.predictions) for c in ls.clips)
    assert sorted(a["score"] for a in dt.loadAnns(dt.getAnnIds())) == [0.25, 0.9]


def test_cocoeval_scores_predictions_equal_to_the_truth_as_ap_one(tmp_path, capsys):
    boxes = [Box(0, 4.0, 4.0, 30.0, 30.0, "circle", track_id=1, source="human"),
             Box(1, 50.0, 10.0, 90.0, 60.0, "square", track_id=2, source="human"),
             Box(2, 10.0, 40.0, 40.0, 70.0, "circle", source="human")]
    preds = [Box(b.frame_index, b.x1, b.y1, b.x2, b.y2, b.label, track_id=b.track_id, score=0.5 + 0.1 * k)
             for k, b in enumerate(boxes)]
    ls = LabelSet(classes=["circle", "square"], clips=[
        ClipLabels(media="m/a.mp4", width=96, height=72, frame_count=4, boxes=boxes, predictions=preds)])
    path = coco.write(ls, tmp_path)
    gt = COCO(str(path))
    ev = COCOeval(gt, gt.loadRes(str(tmp_path / "predictions.json")), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0) and ev.stats[1] == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(ls=label_sets())
def test_random_label_sets_survive_the_round_trip(ls):
    with tempfile.TemporaryDirectory() as tmp:
        _round_trip(ls, Path(tmp))


# --- other tools' files ----------------------------------------------------------------------
def test_hand_written_cocovid_file_reads_exact_boxes_tracks_and_default_sources():
    ls = coco.read(FIXTURES / "cocovid.json")
    assert ls.classes == ["dog", "person"]  # category-id order
    walk, park = ls.clips
    assert walk.media == str((FIXTURES / "videos/walk.mp4").resolve())
    assert park.media == str((FIXTURES / "videos/park.mp4").resolve())  # TAO's "name"
    assert (walk.width, walk.height, walk.fps, walk.frame_count) == (640, 480, 30.0, 90)
    assert (park.width, park.height, park.fps, park.frame_count) == (320, 240, None, 12)
    assert walk.label is None and walk.label_source is None and walk.predictions == []
    assert [(b.frame_index, b.label, b.track_id, b.x1, b.y1, b.x2, b.y2, b.source, b.author) for b in walk.boxes] == [
        (0, "person", 1, 10.5, 20.25, 40.5, 60.75, "coco", None),
        (5, "person", 1, 12.5, 22.0, 42.5, 62.0, "coco", None),
        (5, "dog", 2, 300.0, 200.0, 350.0, 225.0, "coco", None),  # mmtracking's instance_id
    ]
    assert [(b.frame_index, b.label, b.track_id, b.x1, b.y1, b.x2, b.y2) for b in park.boxes] == [
        (11, "dog", None, 0.0, 0.0, 8.0, 16.0)]


def test_hand_written_plain_coco_file_makes_one_clip_per_file_name():
    ls = coco.read(FIXTURES / "plain.json")
    assert ls.classes == ["circle", "square"]
    a, b = ls.clips
    assert a.media.endswith("clips/a.mp4") and b.media.endswith("stills/b.jpg")
    assert (a.width, a.height, a.frame_count, b.width, b.height) == (64, 48, None, 100, 80)
    assert [(x.frame_index, x.label, x.track_id, x.x1, x.y1, x.x2, x.y2, x.source) for x in a.boxes] == [
        (0, "circle", 5, 1.0, 2.0, 4.0, 6.0, "coco"), (2, "square", None, 5.5, 6.5, 15.5, 9.0, "coco")]
    assert [(x.frame_index, x.x1, x.y1, x.x2, x.y2) for x in b.boxes] == [(0, 0.0, 0.0, 100.0, 80.0)]


def test_a_file_without_our_source_keys_gets_the_format_as_source(tmp_path):
    path = coco.write(_handmade(), tmp_path)
    doc = json.loads(path.read_text())
    for v in doc["videos"]:
        v.pop("label_source", None)
    for a in doc["annotations"]:
        a.pop("source")
    path.write_text(json.dumps(doc))
    ls = coco.read(path)
    assert [c.label_source for c in ls.clips] == ["coco", "coco", None, "coco"]
    assert {b.source for c in ls.clips for b in c.boxes} == {"coco"}
    assert {b.source for c in ls.clips for b in c.predictions} == {None}  # a model's boxes have no source


# --- hostile files ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_media_names_are_refused(tmp_path, name):
    path = coco.write(_handmade(), tmp_path)
    doc = json.loads(path.read_text())
    doc["videos"][2]["file_name"] = name
    path.write_text(json.dumps(doc))
    with pytest.raises(UnsafeSource):
        coco.read(path)
    plain = json.loads((FIXTURES / "plain.json").read_text())
    plain["images"][2]["file_name"] = name
    (tmp_path / "plain.json").write_text(json.dumps(plain))
    with pytest.raises(UnsafeSource):
        coco.read(tmp_path / "plain.json")
    doc = json.loads((FIXTURES / "cocovid.json").read_text())
    doc["info"]["predictions"] = name
    (tmp_path / "pred.json").write_text(json.dumps(doc))
    with pytest.raises(UnsafeSource):
        coco.read(tmp_path / "pred.json")


def test_a_file_over_max_bytes_is_refused_before_reading(tmp_path):
    path = coco.write(_handmade(), tmp_path)
    with pytest.raises(ConfigError, match="max_bytes"):
        coco.read(path, max_bytes=path.stat().st_size - 1)
    assert coco.read(path, max_bytes=path.stat().st_size).clips
    preds = tmp_path / "predictions.json"
    preds.write_text(preds.read_text() + " " * path.stat().st_size)
    with pytest.raises(ConfigError, match="predictions.json.*max_bytes"):  # the predictions file has the same limit
        coco.read(path, max_bytes=path.stat().st_size)


def _set(doc: dict, keys: tuple, value) -> None:
    for k in keys[:-1]:
        doc = doc[k]
    if value is KeyError:
        del doc[keys[-1]]
    else:
        doc[keys[-1]] = value


MALFORMED = [
    (("images",), {}, "not a list"),
    (("categories",), KeyError, "'categories'"),
    (("categories",), [], "empty"),
    (("categories", 1, "name"), "person", "repeats name"),
    (("categories", 0, "id"), "3", "int 'id'"),
    (("videos",), "walk.mp4", "'videos'"),
    (("videos", 1, "id"), 7, "repeats id"),
    (("videos", 0, "width"), -640, "positive int"),
    (("videos", 0, "frame_count"), 3, "frame 5 of a video of 3"),
    (("videos", 0, "label"), "cat", "not one of the categories"),
    (("images", 0, "id"), KeyError, "int 'id'"),
    (("images", 1, "id"), 100, "repeats id"),
    (("images", 0, "video_id"), 8, "not the id of a listed video"),
    (("images", 0, "frame_id"), -1, "frames count from 0"),
    (("images", 0, "frame_id"), KeyError, "frame_index' or 'frame_id"),
    (("images", 0, "height"), 0, "positive int"),
    (("annotations", 0, "image_id"), 999, "not the id of a listed image"),
    (("annotations", 0, "category_id"), 42, "category_id 42"),
    (("annotations", 0, "bbox"), [1, 1, -3, 4], "width and height must be > 0"),
    (("annotations", 0, "bbox"), [1, 1, 3, 0], "width and height must be > 0"),
    (("annotations", 0, "bbox"), ["a", 1, 2, 3], "finite numbers"),
    (("annotations", 0, "bbox"), [1, 2, 3], "finite numbers"),
    (("annotations", 0, "track_id"), "x", "track_id"),
    (("annotations", 0, "track_id"), True, "track_id"),
    (("annotations", 1, "track_id"), 2, "track 2 has two boxes on frame 5"),  # dog's track 2 is on frame 5 too
    (("annotations", 0, "source"), 3, "source"),
    (("annotations", 0, "score"), 1.5, "score"),
    (("annotations", 0), [1, 2], "not an object"),
    (("info",), [], "'info'"),
    (("info", "predictions"), 3, "predictions"),
    (("info", "predictions"), "missing.json", "cannot be opened"),
]


@pytest.mark.parametrize(("keys", "value", "match"), MALFORMED, ids=[f"{'.'.join(map(str, k))}={v!r}"[:60]
                                                                     for k, v, _ in MALFORMED])
def test_malformed_files_raise_config_error_naming_the_entry(tmp_path, keys, value, match):
    doc = json.loads((FIXTURES / "cocovid.json").read_text())
    _set(doc, keys, value)
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=match):
        coco.read(tmp_path / "bad.json")


@pytest.mark.parametrize("text", ["{not json", "[]", "\"annotations\"", "\xff\xfe", "[" * 100000])
def test_files_that_are_not_coco_json_raise_config_error(tmp_path, text):
    (tmp_path / "annotations.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError):
        coco.read(tmp_path)


def test_a_predictions_file_that_is_not_a_results_list_raises_config_error(tmp_path):
    path = coco.write(_handmade(), tmp_path)
    (tmp_path / "predictions.json").write_text('{"image_id": 1}')
    with pytest.raises(ConfigError, match="list of COCO results"):
        coco.read(path)
    (tmp_path / "predictions.json").write_text('[{"image_id": 77, "category_id": 1, "bbox": [1, 2, 3, 4]}]')
    with pytest.raises(ConfigError, match="predictions.json\\[0\\] has image_id 77"):
        coco.read(path)


def test_a_missing_file_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be opened"):
        coco.read(tmp_path)


@pytest.mark.parametrize("media", HOSTILE_WRITES)
def test_writing_a_hostile_media_path_raises_and_writes_nothing(tmp_path, media):
    ls = _handmade()
    ls.clips[1].media = media
    assert_write_refused(coco.write, ls, tmp_path)


def test_writing_an_invalid_label_set_raises_config_error(tmp_path):
    ls = _handmade()
    ls.clips[0].boxes.append(Box(0, 5.0, 5.0, 1.0, 9.0, "circle"))
    with pytest.raises(ConfigError, match="x1 < x2"):
        coco.write(ls, tmp_path)
    ls = _handmade()
    ls.clips[0].fps = float("nan")
    with pytest.raises(ConfigError, match="fps"):
        coco.write(ls, tmp_path)
    assert list(tmp_path.iterdir()) == []
