"""Label Studio JSON tasks (video): lossless round trips, Label Studio's keyframe semantics, hostile files.

No store and no video decoding: media paths name files that need not exist (reading only resolves them).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from interop_helpers import (
    HOSTILE,
    HOSTILE_WRITES,
    TEXTS,
    TRACK_CLASS_POOL,
    assert_write_refused,
    close,
    forbid_opening,
    gappy_track_boxes,
    label_sets,
    one_per_track_and_frame,
    small_track_set,
    track_box,
)

from dlabel_lab.errors import ConfigError, DLabelError, UnsafeSource
from dlabel_lab.interop import labelstudio
from dlabel_lab.interop.labelset import Box, ClipLabels, LabelSet, canonical

FIXTURES = Path(__file__).parent / "fixtures" / "labelstudio"


def _boxes(clip: ClipLabels, *, predictions: bool = False) -> list[tuple]:
    """(frame, track, label, x1, y1, x2, y2) sorted, for exact comparisons."""
    rows = clip.predictions if predictions else clip.boxes
    return sorted((b.frame_index, -1 if b.track_id is None else b.track_id, b.label, b.x1, b.y1, b.x2, b.y2)
                  for b in rows)


def _handmade() -> LabelSet:
    """Tracks with gaps and a change of label, untracked boxes, a clip with nothing, a model's boxes."""
    a = ClipLabels(
        media="media/a.mp4", width=200, height=100, fps=25.0, frame_count=12, scoring_id="s-a", label="cat",
        label_source="human", label_author="ann",
        boxes=[*gappy_track_boxes(),
               Box(7, -5.0, -2.5, 5.0, 2.5, "cat", None, source="coco", author=None)],  # partly outside the frame
        predictions=[Box(0, 1.0, 1.0, 5.0, 5.0, "cat", 0, score=0.5), Box(1, 2.0, 1.0, 6.0, 5.0, "cat", 0, score=0.25),
                     Box(3, 2.0, 1.0, 6.0, 5.0, "cat", 0, score=None),
                     Box(9, 8.0, 8.0, 9.0, 9.0, "dog", None, score=1.0)],
        predicted_label="dog", predicted_confidence=0.875)
    b = ClipLabels(media="media/b.mp4")  # nothing known, nothing labelled
    c = ClipLabels(media="media/sub dir/c.mp4", width=64, height=48, fps=None, frame_count=None, label="dog",
                   label_source="auto", label_author=None,
                   boxes=[Box(20, 1.0, 2.0, 3.0, 4.0, "cat", 1, source="human", author="é <&> \"q\"")])
    return LabelSet(clips=[a, b, c], classes=["cat", "dog", "bird & <fish>"], model_version="shapes-v1")


def _relative(ls: LabelSet, original: LabelSet) -> LabelSet:
    return ls.with_media([c.media for c in original.clips])


def test_handmade_round_trip_is_lossless_and_a_rewrite_is_byte_identical(tmp_path):
    ls = _handmade()
    (tmp_path / "one").mkdir()
    main = labelstudio.write(ls, tmp_path / "one")
    assert main == tmp_path / "one" / "tasks.json"
    back = labelstudio.read(tmp_path / "one")
    assert close(canonical(back), canonical(ls))  # predictions too
    assert back.classes == ls.classes and back.model_version == "shapes-v1"
    assert [c.media for c in back.clips] == [str((tmp_path / "one" / c.media).resolve()) for c in ls.clips]
    assert [(c.scoring_id, c.fps) for c in back.clips] == [("s-a", 25.0), (None, None), (None, None)]
    assert [(c.predicted_label, c.predicted_confidence) for c in back.clips] == [("dog", 0.875), (None, None),
                                                                                (None, None)]
    (tmp_path / "two").mkdir()
    labelstudio.write(_relative(back, ls), tmp_path / "two")
    for name in ("tasks.json", "label_config.xml"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    # the same set always gives the same bytes
    labelstudio.write(ls, tmp_path / "two")
    assert (tmp_path / "one" / "tasks.json").read_bytes() == (tmp_path / "two" / "tasks.json").read_bytes()


def test_written_keyframes_follow_label_studio_semantics(tmp_path):
    """Every box a keyframe; enabled only where the region's next box is on the next frame; ids carry tracks."""
    labelstudio.write(_handmade(), tmp_path)
    task = json.loads((tmp_path / "tasks.json").read_text())[0]
    assert task["data"] == {"video": "media/a.mp4", "scoring_id": "s-a", "width": 200, "height": 100, "fps": 25.0,
                            "frame_count": 12}
    results = {r["id"]: r for r in task["annotations"][0]["result"]}
    assert list(results) == ["label", "t0", "t3", "t3_1", "t3_2", "b0", "b1", "b2"]
    assert results["label"]["value"] == {"choices": ["cat"]}
    assert results["label"]["meta"] == {"source": "human", "author": "ann"}
    seq = results["t3"]["value"]["sequence"]
    assert [(k["frame"], k["enabled"]) for k in seq] == [(1, True), (2, False), (6, False)]
    assert seq[0] == {"frame": 1, "enabled": True, "rotation": 0, "x": 0.75, "y": 2.25, "width": 4.3125,
                      "height": 17.75, "time": 0.04}
    assert results["t3_1"]["meta"] == {"source": "audit", "author": "bo"}
    assert results["t3_2"]["value"]["labels"] == ["dog"]
    assert results["t0"]["meta"] == {"source": None, "author": None}
    assert results["t0"]["value"]["framesCount"] == 12 and results["t0"]["value"]["duration"] == 12 / 25
    pred = task["predictions"][0]
    assert (pred["model_version"], pred["score"]) == ("shapes-v1", 0.875)
    region = next(r for r in pred["result"] if r["id"] == "t0")
    assert region["score"] == 0.25 and [k.get("score") for k in region["value"]["sequence"]] == [0.5, 0.25, None]
    assert [k["enabled"] for k in region["value"]["sequence"]] == [True, False, False]
    empty = json.loads((tmp_path / "tasks.json").read_text())[1]
    assert empty["annotations"] == [] and empty["predictions"] == []
    config = (tmp_path / "label_config.xml").read_text()
    assert '<Choice value="bird &amp; &lt;fish&gt;"/>' in config and '<Label value="cat"/>' in config
    assert "framerate" in config


def test_no_labels_at_all_round_trips(tmp_path):
    ls = LabelSet(clips=[ClipLabels(media="a.mp4", width=10, height=10), ClipLabels(media="b.mp4")], classes=["x"])
    labelstudio.write(ls, tmp_path)
    back = labelstudio.read(tmp_path / "tasks.json")
    assert canonical(back) == canonical(ls) and back.classes == ["x"] and back.model_version is None


def test_hand_written_export_expands_keyframes_as_label_studio_shows_them():
    ls = labelstudio.read(FIXTURES / "keyframes.json")
    assert ls.classes == ["run", "walk", "person", "dog"]  # label_config.xml beside it, then the file
    (clip,) = ls.clips
    assert clip.media == str((FIXTURES / "videos" / "walk.mp4").resolve())
    assert (clip.width, clip.height, clip.frame_count, clip.fps) == (200, 100, 12, None)
    assert (clip.label, clip.label_source, clip.label_author) == ("walk", "labelstudio", "3")
    person = [  # frames 1..5 interpolated, hidden 6-7 (enabled false), 8..10, hidden after 10
        (0, 0, "person", 20.0, 20.0, 30.0, 30.0), (1, 0, "person", 30.0, 25.0, 42.0, 36.0),
        (2, 0, "person", 40.0, 30.0, 54.0, 42.0), (3, 0, "person", 50.0, 35.0, 66.0, 48.0),
        (4, 0, "person", 60.0, 40.0, 78.0, 54.0), (7, 0, "person", 100.0, 50.0, 120.0, 60.0),
        (8, 0, "person", 110.0, 50.0, 130.0, 60.0), (9, 0, "person", 120.0, 50.0, 140.0, 60.0)]
    dog = [(f, 1, "dog", 0.0, 0.0, 20.0, 20.0) for f in range(2, 12)]  # held from frame 3 to the last (12)
    assert _boxes(clip) == sorted(person + dog)
    assert {(b.source, b.author) for b in clip.boxes} == {("labelstudio", "3")}
    assert clip.predictions == [] and ls.model_version is None


def test_single_task_with_predictions_ground_truth_and_separate_labels():
    ls = labelstudio.read(FIXTURES / "predictions.json")
    (clip,) = ls.clips
    assert clip.media == str((FIXTURES / "2" / "run.mp4").resolve())  # /data/upload/ prefix
    assert (clip.label, clip.label_author) == ("run", "bo@example.com")  # the ground-truth annotation
    assert (clip.width, clip.height, clip.fps, clip.frame_count) == (320, 240, 10.0, 20)
    assert _boxes(clip) == [(1, 0, "person", 80.0, 120.0, 120.0, 180.0), (2, 0, "person", 100.0, 105.0, 150.0, 165.0),
                            (3, 0, "person", 120.0, 90.0, 180.0, 150.0), (4, 0, "person", 140.0, 75.0, 210.0, 135.0),
                            (5, 0, "person", 160.0, 60.0, 240.0, 120.0)]
    assert _boxes(clip, predictions=True) == [(0, 0, "person", 0.0, 0.0, 32.0, 24.0),
                                              (1, 0, "person", 16.0, 12.0, 48.0, 36.0),
                                              (2, 0, "person", 32.0, 24.0, 64.0, 48.0)]
    assert {b.score for b in clip.predictions} == {0.5}
    assert (clip.predicted_label, clip.predicted_confidence, ls.model_version) == ("walk", 0.75, "yolo-v8")


def test_region_ids_from_label_studio_become_tracks_in_order_and_ours_keep_theirs(tmp_path):
    rect = {"framesCount": 4, "labels": ["x"], "sequence": [{"frame": 1, "enabled": False, "x": 0, "y": 0,
                                                              "width": 10, "height": 10}]}
    results = [{"id": rid, "type": "videorectangle", "value": rect} for rid in ("zz", "t0", "b4", "zz2", "t5_1")]
    (tmp_path / "t.json").write_text(json.dumps([{"data": {"video": "v.mp4", "width": 10, "height": 10},
                                                  "annotations": [{"result": results}]}]))
    (clip,) = labelstudio.read(tmp_path / "t.json").clips
    assert [b.track_id for b in clip.boxes] == [1, 0, None, 2, 5]


# --- property ----------------------------------------------------------------------------
_TEXT = st.sampled_from(TEXTS)


def _clip(draw, classes: list[str], i: int) -> ClipLabels:
    """Random labels, sources, authors, fractional boxes on random frames and tracks, a model's boxes and label."""
    frame_count = draw(st.one_of(st.none(), st.integers(1, 12)))
    last = (frame_count or 16) - 1
    width, height = draw(st.integers(16, 640)), draw(st.integers(16, 480))
    boxes = one_per_track_and_frame(draw(st.lists(track_box(classes, last, width, height, _TEXT), max_size=8)))
    predictions = one_per_track_and_frame(draw(st.lists(track_box(classes, last, width, height, _TEXT, model=True),
                                                        max_size=4)))
    sized = bool(boxes or predictions) or draw(st.booleans())  # Label Studio needs the size for boxes
    label = draw(st.one_of(st.none(), st.sampled_from(classes)))
    predicted = draw(st.one_of(st.none(), st.sampled_from(classes)))
    return ClipLabels(
        media=f"media/clip {i}.mp4", width=width if sized else None, height=height if sized else None,
        fps=draw(st.one_of(st.none(), st.sampled_from([10.0, 25.0, 29.97]))), frame_count=frame_count,
        scoring_id=draw(st.one_of(st.none(), st.sampled_from(["s1", "../evil", "a b/c"]))), label=label,
        label_source=draw(st.one_of(st.none(), _TEXT)) if label else None,
        label_author=draw(st.one_of(st.none(), _TEXT)) if label else None,
        boxes=boxes, predictions=predictions,
        predicted_label=predicted, predicted_confidence=draw(st.floats(0, 1)) if predicted else None)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ls=label_sets(_clip, TRACK_CLASS_POOL))
def test_random_label_sets_round_trip(tmp_path_factory, ls):
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    labelstudio.write(ls, one)
    back = labelstudio.read(one)
    assert close(canonical(back, predictions=False), canonical(ls, predictions=False))
    assert close(canonical(back), canonical(ls))  # Label Studio keeps predictions as pre-annotations
    labelstudio.write(_relative(back, ls), two)
    assert (one / "tasks.json").read_bytes() == (two / "tasks.json").read_bytes()
    assert (one / "label_config.xml").read_bytes() == (two / "label_config.xml").read_bytes()


# --- hostile and malformed files ---------------------------------------------------------
def _valid(tmp_path: Path) -> list[dict]:
    labelstudio.write(small_track_set(), tmp_path)
    return json.loads((tmp_path / "tasks.json").read_text())


@pytest.mark.parametrize("name", [*HOSTILE, "/data/local-files/?d=../a.mp4"])
def test_hostile_media_names_are_refused_on_reading(tmp_path, name):
    doc = _valid(tmp_path)
    doc[0]["data"]["video"] = name
    (tmp_path / "tasks.json").write_text(json.dumps(doc))
    with pytest.raises(UnsafeSource):
        labelstudio.read(tmp_path)


@pytest.mark.parametrize("name", HOSTILE_WRITES)
def test_writing_refuses_hostile_media_and_writes_nothing(tmp_path, name):
    ls = LabelSet(clips=[ClipLabels(media="ok.mp4", label="x"), ClipLabels(media=name, label="x")], classes=["x"])
    assert_write_refused(labelstudio.write, ls, tmp_path)


def test_hostile_scoring_id_stays_data_and_nothing_is_written_outside(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    ls = LabelSet(clips=[ClipLabels(media="a.mp4", scoring_id="../../evil", label="x")], classes=["x"])
    labelstudio.write(ls, out)
    assert sorted(p.name for p in out.iterdir()) == ["label_config.xml", "tasks.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert labelstudio.read(out).clips[0].scoring_id == "../../evil"
    with pytest.raises(ConfigError, match="name"):
        labelstudio.write(ls, out, name="../tasks.json")


def test_a_file_over_max_bytes_is_refused_before_it_is_read(tmp_path, monkeypatch):
    _valid(tmp_path)
    size = (tmp_path / "tasks.json").stat().st_size
    forbid_opening(monkeypatch)
    with pytest.raises(ConfigError, match="max_bytes"):
        labelstudio.read(tmp_path, max_bytes=size - 1)


def _set(path: list, value):
    def change(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return doc
    return change


_SEQ = [0, "annotations", 0, "result", 1, "value", "sequence"]


@pytest.mark.parametrize("change, match", [
    (lambda doc: 3, "list of Label Studio tasks"),
    (lambda doc: [1], "task 0 is a int"),
    (_set([0, "data"], "v.mp4"), "no 'data' object"),
    (lambda doc: [{"data": {"image": "a.png"}}], "no 'video'"),
    (_set([0, "annotations"], {}), "annotations must be a list"),
    (_set([0, "data", "width"], "100"), "width must be a positive integer"),
    (_set([0, "data", "width"], None), "gives no size"),
    (_set([*_SEQ, 0, "frame"], 0), "keyframe 0: frame must be an integer from 1"),
    (_set([*_SEQ, 0, "frame"], "1"), "frame must be an integer"),
    (_set([*_SEQ, 1, "frame"], 1), "two keyframes on frame 1"),
    (_set([*_SEQ, 0, "x"], "3"), "x must be a finite number"),
    (_set([*_SEQ, 0, "width"], 0), "width and height must be positive"),
    (_set([*_SEQ, 0, "enabled"], "yes"), "enabled must be true or false"),
    (_set([*_SEQ, 0, "rotation"], 30), "rotation 30 is not supported"),
    (_set([*_SEQ, 0], 5), "keyframe 0 is a int"),
    (_set(_SEQ, []), "non-empty list"),
    (_set([0, "annotations", 0, "result", 1, "value", "labels"], []), "exactly one label"),
    (_set([0, "annotations", 0, "result", 1, "value", "framesCount"], -1), "framesCount"),
    (_set([0, "annotations", 0, "result", 1, "meta"], {"author": 3}), "meta.author must be text"),
    (_set([0, "annotations", 0, "result", 0, "value", "choices"], ["x", "x"]), "exactly one label"),
    (_set([0, "annotations", 0, "result", 0], "x"), "result 0 is a str"),
    (_set([0, "annotations", 0, "result", 0, "value", "choices"], [""]), "exactly one label"),
    (_set([*_SEQ, 1, "frame"], 9), "but the clip has 5 frames"),
    (_set([0, "predictions"], [{"score": "hi", "result": [{"type": "choices", "value": {"choices": ["x"]}}]}]),
     "score must be a number"),
])
def test_malformed_tasks_raise_config_errors_naming_the_entry(tmp_path, change, match):
    doc = change(_valid(tmp_path))
    (tmp_path / "tasks.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=match):
        labelstudio.read(tmp_path / "tasks.json")


@pytest.mark.parametrize("text", ["[{", '[{"data": {"video": NaN}}]', "\xff\xfe\x00", "[" * 100_000])
def test_not_json_is_a_config_error(tmp_path, text):
    (tmp_path / "tasks.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError, match="not valid JSON"):
        labelstudio.read(tmp_path)


def test_missing_file_and_folder_without_tasks(tmp_path):
    with pytest.raises(ConfigError, match="cannot be opened"):
        labelstudio.read(tmp_path / "nope.json")
    (tmp_path / "a.json").write_text("[]")
    (tmp_path / "b.json").write_text("[]")
    with pytest.raises(ConfigError, match="holds no tasks.json"):
        labelstudio.read(tmp_path)


def test_entity_expansion_in_the_labelling_config_is_refused(tmp_path):
    _valid(tmp_path)
    (tmp_path / "label_config.xml").write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;">]>\n<View><Label value="&lol3;"/></View>')
    with pytest.raises(DLabelError) as info:
        labelstudio.read(tmp_path)
    assert isinstance(info.value, ConfigError) and "EntitiesForbidden" in str(info.value)


def test_expansion_budget_refuses_a_region_held_over_a_huge_video(tmp_path, monkeypatch):
    monkeypatch.setattr(labelstudio, "MAX_EXPANDED_BOXES", 1000)
    doc = [{"data": {"video": "v.mp4", "width": 10, "height": 10},
            "annotations": [{"result": [{"id": "r", "type": "videorectangle", "value": {
                "framesCount": 10**12, "labels": ["x"],
                "sequence": [{"frame": 1, "enabled": True, "x": 0, "y": 0, "width": 1, "height": 1}]}}]}]}]
    (tmp_path / "tasks.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="more than 1000 boxes"):
        labelstudio.read(tmp_path)


def test_clips_with_boxes_need_a_size_to_be_written(tmp_path):
    ls = LabelSet(clips=[ClipLabels(media="a.mp4", boxes=[Box(0, 1.0, 1.0, 2.0, 2.0, "x")])], classes=["x"])
    with pytest.raises(ConfigError, match="no width/height"):
        labelstudio.write(ls, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_fixture_folder_is_not_modified(tmp_path):
    """Reading never writes: a copy of the fixtures reads the same and stays byte-identical."""
    copy = tmp_path / "ls"
    shutil.copytree(FIXTURES, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    labelstudio.read(copy / "keyframes.json")
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before


def test_text_xml_cannot_carry_in_a_class_is_refused_before_writing(tmp_path):
    ls = LabelSet(clips=[ClipLabels(media="a.mp4", label="x\x07")], classes=["x\x07"])
    with pytest.raises(ConfigError, match="XML cannot carry"):
        labelstudio.write(ls, tmp_path)
    assert list(tmp_path.iterdir()) == []
