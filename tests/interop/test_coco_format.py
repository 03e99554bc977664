"""COCO export and import (``dlabel_lab.interop.coco``): round trips, pycocotools, other tools' files, hostile files.

No store and no video decoding: ``read`` never opens the clips, so the media named here need not exist.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dlabel_lab.errors import ConfigError, UnsafeSource
from dlabel_lab.interop import coco
from dlabel_lab.interop.labelset import Box, ClipLabels, LabelSet, canonical

FIXTURES = Path(__file__).parent / "fixtures" / "coco"
HOSTILE = ["../../etc/passwd", "/etc/passwd", "http://x/a.mp4"]


# --- helpers -------------------------------------------------------------------------------
def _close(a: list[dict], b: list[dict]) -> bool:
    """Two canonical label sets are equal, box corners within 1e-6 px."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if {k: v for k, v in x.items() if k not in ("boxes", "predictions")} != \
                {k: v for k, v in y.items() if k not in ("boxes", "predictions")}:
            return False
        for key in ("boxes", "predictions"):
            if len(x[key]) != len(y[key]):
                return False
            for p, q in zip(x[key], y[key], strict=True):
                if p[:3] != q[:3] or p[7:] != q[7:]:
                    return False
                if any(not math.isclose(u, v, rel_tol=0, abs_tol=1e-6) for u, v in zip(p[3:7], q[3:7], strict=True)):
                    return False
    return True


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.json"))}


def _relative(ls: LabelSet, folder: Path) -> LabelSet:
    return ls.with_media([Path(c.media).relative_to(folder.resolve()).as_posix() for c in ls.clips])


def _round_trip(ls: LabelSet, tmp: Path) -> tuple[Path, LabelSet]:
    """write -> read keeps the labels; write -> read -> write gives the same bytes."""
    one, two = tmp / "one", tmp / "two"
    one.mkdir()
    two.mkdir()
    path = coco.write(ls, one)
    assert path == one / "annotations.json"
    back = coco.read(one)
    assert _close(canonical(back), canonical(ls)), (canonical(back), canonical(ls))
    assert [c.media for c in back.clips] == [str((one / c.media).resolve()) for c in ls.clips]
    assert back.classes == ls.classes and back.model_version == ls.model_version
    assert [(c.fps, c.scoring_id, c.predicted_confidence) for c in back.clips] == \
        [(c.fps, c.scoring_id, c.predicted_confidence) for c in ls.clips]
    coco.write(_relative(back, one), two)
    assert _files(one) == _files(two)
    return path, back


def _handmade() -> LabelSet:
    return LabelSet(classes=["circle", "square", "triangle"], model_version="shapes-v1", clips=[
        ClipLabels(media="media/a.mp4", width=96, height=72, fps=25.0, frame_count=8, scoring_id="sid-a",
                   label="circle", label_source="human", label_author="ana", predicted_label="square",
                   predicted_confidence=0.625,
                   boxes=[Box(0, 1.5, 2.25, 10.1, 20.3, "circle", track_id=1, source="human", author="bo"),
                          Box(1, 2.5, 3.25, 11.1, 21.3, "circle", track_id=1, source="audit"),
                          Box(1, 0.1, 0.2, 0.3, 0.7, "triangle", source="human", author="cy"),  # untracked
                          Box(1, 40.0, 30.0, 60.0, 50.0, "square", track_id=0, source=None)],
                   predictions=[Box(1, 2.0, 3.0, 11.0, 21.0, "circle", track_id=7, score=0.9),
                                Box(5, 2.0, 3.0, 11.0, 21.0, "square", score=0.25)]),  # a frame with predictions only
        ClipLabels(media="media/b.mp4", width=96, height=72, frame_count=8, label="square", label_source="coco"),
        ClipLabels(media="media/c.mp4"),  # nothing known but the clip
        ClipLabels(media="media/d.mp4", width=32, height=24, label="triangle", label_source=None,
                   boxes=[Box(3, 1.0, 1.0, 2.0, 2.0, "triangle", track_id=2, source="cvat", author="zoë")]),
    ])


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


CLASS_POOL = ["circle", "square", "triangle", "zoë", "two words"]
_source = st.one_of(st.none(), st.sampled_from(["human", "audit", "cvat", "auto"]))
_author = st.one_of(st.none(), st.sampled_from(["ana", "bo", "Zoë Ø"]))
_score = st.floats(0, 1, allow_nan=False)


def _draw_boxes(draw, classes: list[str], frames: int, *, predicted: bool) -> list[Box]:
    out, seen = [], set()
    for _ in range(draw(st.integers(0, 5))):
        f = draw(st.integers(0, frames - 1))
        track = draw(st.one_of(st.none(), st.integers(0, 4)))
        if track is not None and (f, track) in seen:
            continue
        seen.add((f, track))
        x1, y1 = draw(st.floats(-50, 4000, allow_nan=False)), draw(st.floats(-50, 4000, allow_nan=False))
        w, h = draw(st.floats(1e-3, 900, allow_nan=False)), draw(st.floats(1e-3, 900, allow_nan=False))
        score = draw(_score) if predicted else draw(st.one_of(st.none(), _score))
        out.append(Box(f, x1, y1, x1 + w, y1 + h, draw(st.sampled_from(classes)), track_id=track, score=score,
                       source=draw(_source), author=draw(_author)))
    return out


@st.composite
def label_sets(draw) -> LabelSet:
    """1-3 clips, random classes, boxes on random frames with fractional corners, tracks, sources, predictions."""
    classes = draw(st.lists(st.sampled_from(CLASS_POOL), min_size=1, max_size=4, unique=True))
    clips = []
    for k in range(draw(st.integers(1, 3))):
        frame_count = draw(st.one_of(st.none(), st.integers(1, 40)))
        label = draw(st.one_of(st.none(), st.sampled_from(classes)))
        predicted = draw(st.one_of(st.none(), st.sampled_from(classes)))
        clips.append(ClipLabels(
            media=f"media/clip {k}.mp4", width=draw(st.integers(1, 4000)), height=draw(st.integers(1, 4000)),
            frame_count=frame_count, fps=draw(st.one_of(st.none(), st.floats(1, 120, allow_nan=False))),
            scoring_id=draw(st.one_of(st.none(), st.just(f"s{k}"))), label=label,
            label_source=draw(_source) if label is not None else None,
            label_author=draw(_author) if label is not None else None,
            boxes=_draw_boxes(draw, classes, frame_count or 40, predicted=False),
            predictions=_draw_boxes(draw, classes, frame_count or 40, predicted=True) if draw(st.booleans()) else [],
            predicted_label=predicted, predicted_confidence=draw(_score) if predicted is not None else None))
    return LabelSet(clips=clips, classes=classes, model_version=draw(st.one_of(st.none(), st.just("m-1"))))


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


@pytest.mark.parametrize("media", ["../x.mp4", "/abs/x.mp4", "http://x/a.mp4", "media/../../x.mp4"])
def test_writing_a_hostile_media_path_raises_and_writes_nothing(tmp_path, media):
    out = tmp_path / "out"
    out.mkdir()
    ls = _handmade()
    ls.clips[1].media = media
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UnsafeSource):
        coco.write(ls, out)
    assert sorted(tmp_path.rglob("*")) == before and list(out.iterdir()) == []


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
