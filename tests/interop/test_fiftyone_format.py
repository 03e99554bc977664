"""FiftyOne video labels export and import (``dlabel_lab.interop.fiftyone``), without FiftyOne installed.

Round trips, a hand-written ETA dataset, hostile files. No store and no video decoding: ``read`` never opens
the clips, so the media named here need not exist.
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

from dlabel_lab.errors import ConfigError, UnsafeSource
from dlabel_lab.interop import fiftyone
from dlabel_lab.interop.labelset import Box, ClipLabels, LabelSet, canonical

FIXTURES = Path(__file__).parent / "fixtures" / "fiftyone"


def _round_trip(ls: LabelSet, tmp: Path) -> tuple[Path, LabelSet]:
    """write -> read keeps the labels and the model's clip label with its confidence; write -> read -> write gives
    the same bytes."""
    path, back = json_round_trip(fiftyone, ls, tmp, "manifest.json")
    assert [c.predicted_confidence for c in back.clips] == \
        [c.predicted_confidence if c.predicted_label is not None else None for c in ls.clips]
    return path, back


def _handmade() -> LabelSet:
    return json_handmade("fiftyone", last_score=None, size=(1920, 1080))  # a model's box without a score


# --- round trips ---------------------------------------------------------------------------
def test_handmade_round_trip_keeps_labels_tracks_sources_and_predictions(tmp_path):
    ls = _handmade()
    path, _ = _round_trip(ls, tmp_path)
    manifest = json.loads(path.read_text())
    assert manifest["type"] == "eta.core.datasets.LabeledVideoDataset"
    assert [r["data"] for r in manifest["index"]] == ["media/a.mp4", "media/b.mp4", "media/c.mp4", "media/d.mp4"]
    assert manifest["dlabel_lab"] == {"classes": ls.classes, "model_version": "shapes-v1"}
    labels = json.loads((path.parent / manifest["index"][0]["labels"]).read_text())
    assert labels["metadata"] == {"frame_size": [96, 72], "frame_rate": 25.0, "total_frame_count": 8}
    assert {a["name"]: (a["value"], a.get("confidence")) for a in labels["attrs"]["attrs"]} == {
        "ground_truth": ("circle", None), "label_source": ("human", None), "label_author": ("ana", None),
        "predictions": ("square", 0.625), "scoring_id": ("sid-a", None)}
    assert sorted(labels["frames"], key=int) == ["1", "2", "6"]  # frame numbers from 1
    frame2 = labels["frames"]["2"]["objects"]["objects"]
    assert [(o["name"], o.get("index"), o.get("confidence")) for o in frame2] == [
        ("ground_truth", 1, None), ("ground_truth", None, None), ("ground_truth", 0, None), ("predictions", 7, 0.9)]
    first = labels["frames"]["1"]["objects"]["objects"][0]
    corners = first["bounding_box"]["top_left"], first["bounding_box"]["bottom_right"]
    assert [(c["x"] * 96, c["y"] * 72) for c in corners] == [pytest.approx((1.5, 2.25), abs=1e-9),
                                                          pytest.approx((10.1, 20.3), abs=1e-9)]
    assert first["attrs"]["attrs"] == [
        {"type": "eta.core.data.CategoricalAttribute", "name": "source", "value": "human"},
        {"type": "eta.core.data.CategoricalAttribute", "name": "author", "value": "bo"}]
    assert json.loads((path.parent / manifest["index"][2]["labels"]).read_text()) == {"filename": "c.mp4"}


def test_a_clip_with_boxes_but_no_size_cannot_be_written(tmp_path):
    ls = LabelSet(classes=["a"], clips=[ClipLabels(media="x.mp4", boxes=[Box(0, 1.0, 1.0, 2.0, 2.0, "a")])])
    with pytest.raises(ConfigError, match="no width and height"):
        fiftyone.write(ls, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_partly_known_size_survives(tmp_path):
    ls = LabelSet(classes=["a"], clips=[ClipLabels(media="x.mp4", width=64, label="a", label_source="human")])
    _, back = _round_trip(ls, tmp_path)
    assert (back.clips[0].width, back.clips[0].height) == (64, None)


@settings(max_examples=40, deadline=None)
@given(ls=label_sets())
def test_random_label_sets_survive_the_round_trip(ls):
    with tempfile.TemporaryDirectory() as tmp:
        _round_trip(ls, Path(tmp))


# --- other tools' files ----------------------------------------------------------------------
def test_hand_written_eta_dataset_reads_exact_boxes_tracks_and_default_sources():
    ls = fiftyone.read(FIXTURES)
    assert ls.classes == ["car", "person"] and ls.model_version is None  # no classes stored: every label, sorted
    street, empty = ls.clips
    assert street.media == str((FIXTURES / "data/street.mp4").resolve())
    assert (street.width, street.height, street.fps, street.frame_count) == (640, 480, 30.0, 20)
    assert (street.label, street.label_source, street.label_author) == ("car", "fiftyone", None)
    assert [(b.frame_index, b.label, b.track_id, b.x1, b.y1, b.x2, b.y2, b.score, b.source, b.author)
            for b in street.boxes] == [
        (0, "car", 1, 160.0, 240.0, 320.0, 360.0, None, "fiftyone", "ana"),
        (2, "car", 1, 200.0, 240.0, 360.0, 390.0, None, "cvat", None),
        (2, "person", None, 0.0, 0.0, 640.0, 480.0, None, "fiftyone", None),
    ]
    assert [(b.frame_index, b.label, b.track_id, b.x1, b.y1, b.x2, b.y2, b.score, b.source)
            for b in street.predictions] == [(0, "person", 3, 80.0, 0.0, 120.0, 120.0, 0.8, None)]
    assert empty.media.endswith("data/empty.mp4")
    assert canonical(LabelSet(clips=[empty], classes=ls.classes))[0] == canonical(
        LabelSet(clips=[ClipLabels(media="x")], classes=ls.classes))[0]


def test_a_manifest_path_reads_like_its_folder():
    assert canonical(fiftyone.read(FIXTURES / "manifest.json")) == canonical(fiftyone.read(FIXTURES))


# --- hostile files ---------------------------------------------------------------------------
def _copy_fixture(tmp: Path) -> Path:
    for p in FIXTURES.rglob("*.json"):
        target = tmp / p.relative_to(FIXTURES)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(p.read_bytes())
    return tmp / "manifest.json"


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("key", ["data", "labels"])
def test_hostile_media_and_labels_names_are_refused(tmp_path, name, key):
    path = _copy_fixture(tmp_path)
    doc = json.loads(path.read_text())
    doc["index"][1][key] = name
    path.write_text(json.dumps(doc))
    with pytest.raises(UnsafeSource):
        fiftyone.read(path)


def test_files_over_max_bytes_are_refused_before_reading(tmp_path):
    path = fiftyone.write(_handmade(), tmp_path)
    with pytest.raises(ConfigError, match="manifest.*max_bytes"):
        fiftyone.read(path, max_bytes=path.stat().st_size - 1)
    limit = max(p.stat().st_size for p in tmp_path.rglob("*.json"))
    assert fiftyone.read(path, max_bytes=limit).clips
    labels = tmp_path / "labels" / "000002.json"
    labels.write_text(labels.read_text() + " " * limit)
    with pytest.raises(ConfigError, match="000002.json.*max_bytes"):  # each labels file has the same limit
        fiftyone.read(path, max_bytes=limit)


MANIFEST_MALFORMED = [
    (lambda d: d.pop("type"), "'type'"),
    (lambda d: d.update(type="eta.core.datasets.LabeledImageDataset"), "video labels dataset"),
    (lambda d: d.update(index={}), "'index'"),
    (lambda d: d["index"][0].pop("labels"), "index\\[0\\] needs"),
    (lambda d: d["index"][0].update(data=3), "index\\[0\\] needs"),
    (lambda d: d["index"][0].update(labels="labels/missing.json"), "cannot be opened"),
    (lambda d: d.update(dlabel_lab=[]), "'dlabel_lab'"),
    (lambda d: d.update(dlabel_lab={"classes": ["car"]}), "not among the manifest's classes"),
    (lambda d: d.update(dlabel_lab={"classes": "car"}), "dlabel_lab.classes"),
    (lambda d: d.update(dlabel_lab={"classes": ["car", "person"], "model_version": 3}), "model_version"),
]


@pytest.mark.parametrize(("change", "match"), MANIFEST_MALFORMED)
def test_malformed_manifests_raise_config_error(tmp_path, change, match):
    path = _copy_fixture(tmp_path)
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=match):
        fiftyone.read(path)


def _objects(d: dict, frame: str = "1") -> list:
    return d["frames"][frame]["objects"]["objects"]


LABELS_MALFORMED = [
    (lambda d: d.update(metadata=[]), "'metadata'"),
    (lambda d: d["metadata"].update(frame_size=[-640, 480]), "frame_size"),
    (lambda d: d["metadata"].update(frame_size=[640]), "frame_size"),
    (lambda d: d.pop("metadata"), "frame_size.*is missing"),
    (lambda d: d["metadata"].update(frame_rate="fast"), "frame_rate"),
    (lambda d: d["metadata"].update(total_frame_count=2), "past the clip's 2 frames"),
    (lambda d: d.update(attrs=[]), "attrs"),
    (lambda d: d["attrs"]["attrs"][0].pop("value"), "attrs\\[0\\] needs"),
    (lambda d: d["attrs"]["attrs"][0].update(value=3), "must be a string"),
    (lambda d: d["attrs"]["attrs"][1].update(confidence=2), "confidence"),
    (lambda d: d.update(frames=[]), "'frames'"),
    (lambda d: d["frames"].update({"0": {"objects": {"objects": []}}}), "frame number"),
    (lambda d: d["frames"].update({"x": {}}), "frame number"),
    (lambda d: d["frames"].update({"4": []}), "is not an object"),
    (lambda d: d["frames"]["1"].update(objects=[]), "objects"),
    (lambda d: _objects(d)[0].pop("label"), "needs a str 'label'"),
    (lambda d: _objects(d)[0].pop("bounding_box"), "needs a bounding_box"),
    (lambda d: _objects(d)[0]["bounding_box"].update(top_left={"x": "0.1", "y": 0}), "needs a bounding_box"),
    (lambda d: _objects(d)[0]["bounding_box"].update(top_left={"x": 0.6, "y": 0.5}), "top_left must lie above"),
    (lambda d: _objects(d)[0].update(index="1"), "index"),
    (lambda d: _objects(d)[0].update(index=True), "index"),
    (lambda d: _objects(d)[0].update(confidence=-0.5), "confidence"),
    (lambda d: _objects(d)[0].update(name=5), "name"),
    (lambda d: _objects(d, "3")[1].update(index=1), "track 1 has two boxes on frame 2"),
]


@pytest.mark.parametrize(("change", "match"), LABELS_MALFORMED)
def test_malformed_labels_files_raise_config_error_naming_the_entry(tmp_path, change, match):
    _copy_fixture(tmp_path)
    labels = tmp_path / "labels" / "street.json"
    doc = json.loads(labels.read_text())
    change(doc)
    labels.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=match):
        fiftyone.read(tmp_path)


@pytest.mark.parametrize("text", ["{not json", "[]", "\xff\xfe", "[" * 100000])
@pytest.mark.parametrize("which", ["manifest.json", "labels/street.json"])
def test_files_that_are_not_json_objects_raise_config_error(tmp_path, text, which):
    _copy_fixture(tmp_path)
    (tmp_path / which).write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError):
        fiftyone.read(tmp_path)


def test_a_missing_manifest_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be opened"):
        fiftyone.read(tmp_path)


def test_a_dataset_without_any_label_has_no_classes(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"type": fiftyone.DATASET_TYPE, "index": [
        {"data": "data/a.mp4", "labels": "labels/a.json"}]}))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.json").write_text("{}")
    with pytest.raises(ConfigError, match="no classes"):
        fiftyone.read(tmp_path)


@pytest.mark.parametrize("media", HOSTILE_WRITES)
def test_writing_a_hostile_media_path_raises_and_writes_nothing(tmp_path, media):
    ls = _handmade()
    ls.clips[3].media = media
    assert_write_refused(fiftyone.write, ls, tmp_path)


def test_writing_an_invalid_label_set_raises_config_error(tmp_path):
    ls = _handmade()
    ls.clips[0].predictions.append(Box(0, 1.0, 1.0, 2.0, 2.0, "circle", score=1.5))
    with pytest.raises(ConfigError, match="score"):
        fiftyone.write(ls, tmp_path)
    ls = _handmade()
    ls.clips[0].boxes[0] = Box(0, 1.0, 1.0, 2.0, 2.0, "circle", track_id=1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="track_id"):
        fiftyone.write(ls, tmp_path)
    assert list(tmp_path.iterdir()) == []
