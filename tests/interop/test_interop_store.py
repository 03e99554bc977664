"""Export from a real store, import into another through a real endpoint, export again: the same labels.

Real clips (written and decoded), real DuckDB stores, a tiny tiny3d classifier behind the ingest endpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from interop_helpers import close, one_per_track_and_frame

import dlabel_lab as dl
from dlabel_lab.interop import FORMATS, canonical
from dlabel_lab.interop.from_store import collect

CLASSES = ["circle", "square", "triangle"]
SPEC = dl.ClipSpec(frames=4, size=32)
W, H, FRAMES = 96, 72, 8


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """3 real clips of 8 frames (96 x 72) with their true boxes and tracks."""
    manifest = dl.make_object_clips(tmp_path_factory.mktemp("objects"), 3, frames=FRAMES, width=W, height=H,
                                    objects=(1, 2), min_size=10, max_size=24, seed=3)
    ann = dl.read_object_annotations(manifest.parent / "annotations.json")
    paths = sorted({im["path"] for im in ann.images})
    truth = {p: [] for p in paths}
    for im in ann.images:
        i = im["id"]
        for box, label, track in zip(ann.boxes[i], ann.labels[i], ann.track_ids[i], strict=True):
            truth[im["path"]].append({"frame_index": im["frame_index"], "box": [float(v) for v in box],
                                      "label": ann.classes[label - 1], "track_id": int(track)})
    return paths, truth


def _endpoint(store):
    torch.manual_seed(0)
    model = dl.ClipClassifier(classes=CLASSES, backbone="tiny3d", spec=SPEC, embed_dim=8)
    return dl.deploy(model, store, classes=CLASSES, name="shapes", batch_size=4, num_threads=1)


def _fill(store, paths, labels, boxes) -> str:
    """Ingest the clips with labels; people's boxes; a model's boxes (predictions); the model version."""
    ingest = _endpoint(store)
    results = ingest.score_many(paths, [lab for lab, _, _ in labels], progress=False)
    for r, (lab, source, author) in zip(results, labels, strict=True):
        if lab is not None and (source, author) != ("human", None):
            store.log_score(r.scoring_id, lab, source=source, author=author)
    rows = [{**b, "scoring_id": results[k].scoring_id} for k, clip in enumerate(boxes) for b in clip]
    if rows:
        store.log_object_labels(rows)
    for r, clip in zip(results, boxes, strict=True):
        preds = [{"frame_index": b["frame_index"], "box": b["box"], "label": b["label"], "score": 0.5,
                  "track_id": b.get("track_id")} for b in clip if b["kind"] == "box"]
        if preds:
            store.log_objects(r.scoring_id, model_version=ingest.model_version, rows=preds)
    return ingest.model_version


def _truth_labels(paths, truth):
    labels = [("circle", "human", None), ("square", "coco", "ana"), (None, None, None)]
    boxes = []
    for k, p in enumerate(paths):
        clip = [{**b, "kind": "box", "source": "human", "author": "bo" if k == 0 else None} for b in truth[p]]
        if k == 1:  # an untracked box a person marked as missed, and a fixed one
            clip.append({"frame_index": 2, "box": [1.25, 2.5, 20.125, 30.0], "label": "triangle", "kind": "missed",
                         "author": "cy"})
        boxes.append(clip)
    return labels, boxes


def _round_trip(tmp: Path, fmt: str, paths, labels, boxes) -> tuple[list, list, dl.ImportReport]:
    with dl.PayloadStore(tmp / "a") as a:
        version = _fill(a, paths, labels, boxes)
        first = dl.export_labels(a, tmp / "one", format=fmt, model_version=version)
        before = canonical(collect(a), predictions=False)
    with dl.PayloadStore(tmp / "b") as b:
        report = dl.import_labels(_endpoint(b), first, format=fmt, progress=False)
        after = canonical(collect(b), predictions=False)
        dl.export_labels(b, tmp / "two", format=fmt)
    one = canonical(dl.read_labels(tmp / "one", format=fmt), predictions=False)
    two = canonical(dl.read_labels(tmp / "two", format=fmt), predictions=False)
    assert close(before, after), (before, after)
    assert close(one, two)
    return one, two, report


@pytest.mark.parametrize("fmt", FORMATS)
def test_store_round_trip_keeps_labels_boxes_tracks_and_sources(tmp_path, clips, fmt):
    paths, truth = clips
    labels, boxes = _truth_labels(paths, truth)
    one, _, report = _round_trip(tmp_path, fmt, paths, labels, boxes)
    n_boxes = sum(len(c) for c in boxes)
    assert report.scoring_ids and all(s is not None for s in report.scoring_ids)
    assert (report.labels, report.boxes) == (2, n_boxes)
    assert report.tracks == len({(k, b["track_id"]) for k, c in enumerate(boxes) for b in c if "track_id" in b})
    assert [c["label"] for c in one] == ["circle", "square", None]
    assert [(c["label_source"], c["label_author"]) for c in one] == [("human", None), ("coco", "ana"), (None, None)]
    untracked = [b for c in one for b in c["boxes"] if b[1] is None]
    assert [(b[2], b[8], b[9]) for b in untracked] == [("triangle", "human", "cy")]
    # the clips travelled with the export, named by scoring id, inside the export folder
    media = sorted(p.name for p in (tmp_path / "one" / "media").iterdir())
    assert len(media) == 3 and all(m.endswith(".mp4") for m in media)


@pytest.mark.parametrize("fmt", FORMATS)
def test_import_records_the_run_and_the_format_as_default_source(tmp_path, clips, fmt):
    paths, truth = clips
    labels = [("circle", "human", None)] * 3
    with dl.PayloadStore(tmp_path / "a") as a:
        _fill(a, paths, labels, [[] for _ in paths])
        out = dl.export_labels(a, tmp_path / "x", format=fmt)
    ls = dl.read_labels(out, format=fmt)
    for c in ls.clips:  # as a file from another tool would hold it: no source, no author
        c.label_source, c.label_author = None, None
    rel = ls.with_media([Path(c.media).relative_to((tmp_path / "x").resolve()).as_posix() for c in ls.clips])
    dl.write_labels(rel, tmp_path / "x", format=fmt)
    with dl.PayloadStore(tmp_path / "b") as b:
        report = dl.import_labels(_endpoint(b), out, format=fmt, progress=False)
        history = b.score_history()
        runs = b.runs("import")
    assert list(history["source"]) == [fmt] * 3 and list(history["label"]) == ["circle"] * 3
    assert list(runs["run_id"]) == [report.run_id] and list(runs["status"]) == ["ok"]


def test_hostile_media_name_in_a_label_file_imports_nothing(tmp_path, clips):
    paths, _ = clips
    with dl.PayloadStore(tmp_path / "a") as a:
        _fill(a, paths[:1], [("circle", "human", None)], [[]])
        out = dl.export_labels(a, tmp_path / "x", format="labelstudio")
    doc = json.loads(out.read_text())
    doc[0]["data"]["video"] = "../../" + Path(paths[0]).name
    out.write_text(json.dumps(doc))
    with dl.PayloadStore(tmp_path / "b") as b, pytest.raises(dl.UnsafeSource, match="outside"):
        dl.import_labels(_endpoint(b), out, format="labelstudio", progress=False)
    with dl.PayloadStore(tmp_path / "b") as b:
        assert b.score_history().empty and b.matched_df().empty


def test_export_writes_nothing_outside_its_folder_whatever_the_clip_was_called(tmp_path, clips):
    paths, _ = clips
    hostile = tmp_path / "src" / "..%2f..%2fevil ; rm -rf.mp4"
    hostile.parent.mkdir()
    hostile.write_bytes(Path(paths[0]).read_bytes())
    with dl.PayloadStore(tmp_path / "store") as store:
        _endpoint(store).score_many([hostile, Path(paths[0]).read_bytes()], ["circle", "square"], progress=False)
        before = sorted(tmp_path.parent.iterdir()), sorted(tmp_path.iterdir()), sorted(hostile.parent.iterdir())
        for fmt in FORMATS:
            dl.export_labels(store, tmp_path / "out" / fmt, format=fmt)
        after = sorted(tmp_path.parent.iterdir()), sorted(tmp_path.iterdir()), sorted(hostile.parent.iterdir())
    assert after == (before[0], sorted([*before[1], tmp_path / "out"]), before[2])
    for fmt in FORMATS:
        names = {p.name for p in (tmp_path / "out" / fmt / "media").iterdir()}
        assert len(names) == 2 and not any("evil" in n for n in names)


def test_missing_clip_or_unknown_label_imports_nothing(tmp_path, clips):
    paths, _ = clips
    with dl.PayloadStore(tmp_path / "a") as a:
        _fill(a, paths[:2], [("circle", "human", None), ("square", "human", None)], [[], []])
        out = dl.export_labels(a, tmp_path / "x", format="coco")
    media = sorted((tmp_path / "x" / "media").iterdir())
    media[1].unlink()
    with dl.PayloadStore(tmp_path / "b") as b:
        with pytest.raises(dl.MissingMedia, match="nothing was imported"):
            dl.import_labels(_endpoint(b), out, format="coco", progress=False)
        assert b.matched_df().empty
    with dl.PayloadStore(tmp_path / "c") as c:
        model = dl.ClipClassifier(classes=["cat", "dog", "eel"], backbone="tiny3d", spec=SPEC, embed_dim=8)
        media[1].write_bytes(Path(paths[1]).read_bytes())
        with pytest.raises(dl.UnknownLabel):
            dl.import_labels(dl.deploy(model, c, name="pets"), out, format="coco", progress=False)
        assert c.matched_df().empty and c.score_history().empty


def test_parquet_unknown_format_and_nothing_to_export(tmp_path, clips):
    paths, _ = clips
    with dl.PayloadStore(tmp_path / "empty") as e, pytest.raises(dl.ConfigError, match="nothing to export"):
        dl.export_labels(e, tmp_path / "none", format="cvat")
    with dl.PayloadStore(tmp_path / "a") as a:
        _fill(a, paths[:1], [("circle", "human", None)], [[]])
        out = dl.export_labels(a, tmp_path / "pq", format="parquet")
        assert Path(out).exists()
        with pytest.raises(dl.ConfigError, match="format must be one of"):
            dl.export_labels(a, tmp_path / "x", format="yolo")


_box = st.builds(
    lambda f, x, y, w, h, lab, track, src, author: {"frame_index": f, "box": [x, y, x + w, y + h], "label": lab,
                                                    "track_id": track, "kind": "box", "source": src,
                                                    "author": author},
    st.integers(0, FRAMES - 1), st.floats(0, 60, allow_nan=False), st.floats(0, 40, allow_nan=False),
    st.floats(0.5, 30, allow_nan=False), st.floats(0.5, 30, allow_nan=False), st.sampled_from(CLASSES),
    st.one_of(st.none(), st.integers(0, 3)), st.sampled_from(["human", "audit", "cvat"]),
    st.one_of(st.none(), st.sampled_from(["ana", "bo"])))


def _track_and_frame(b: dict) -> tuple:
    return b["track_id"], b["frame_index"]


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=4, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # no shrinking: each example takes seconds
@given(data=st.data())
def test_random_label_sets_survive_the_store_round_trip(tmp_path_factory, clips, fmt, data):
    paths, _ = clips
    labels = data.draw(st.lists(st.tuples(st.one_of(st.none(), st.sampled_from(CLASSES)),
                                          st.sampled_from(["human", "auto", "audit"]),
                                          st.one_of(st.none(), st.sampled_from(["ana", "bo"]))),
                                min_size=3, max_size=3))
    labels = [(lab, src, author) if lab is not None else (None, None, None) for lab, src, author in labels]
    boxes = [one_per_track_and_frame(data.draw(st.lists(_box, max_size=5)), _track_and_frame) for _ in paths]
    assume(any(lab is not None for lab, _, _ in labels) or any(boxes))  # an empty store has nothing to export
    _round_trip(tmp_path_factory.mktemp(fmt), fmt, paths, labels, boxes)


def test_detector_objects_export_as_predictions_and_boxes_import_through_the_detection_endpoint(tmp_path, clips):
    paths, truth = clips
    torch.manual_seed(0)
    det = dl.ObjectDetector(CLASSES, frame_size=(H, W))  # untrained: what it finds does not matter here
    with dl.PayloadStore(tmp_path / "a") as a:
        version, _ = dl.register_detector(a, det, name="objects")
        results = dl.deploy_detector(a, version, score_threshold=0.05).score_many(paths, progress=False)
        a.log_object_labels([{**b, "scoring_id": r.scoring_id, "kind": "box"}
                             for r, p in zip(results, paths, strict=True) for b in truth[p]], author="ana")
        n_objects = len(a.objects_df(model_version=version))
        out = dl.export_labels(a, tmp_path / "ls", format="labelstudio", model_version=version)
    ls = dl.read_labels(out, format="labelstudio")
    assert sum(len(c.predictions) for c in ls.clips) == n_objects
    with dl.PayloadStore(tmp_path / "b") as b:
        version_b, _ = dl.register_detector(b, det, name="objects")
        report = dl.import_labels(dl.deploy_detector(b, version_b), out, format="labelstudio", progress=False)
        boxes = b.object_labels(kind="box")
    n_truth = sum(len(v) for v in truth.values())
    assert (report.boxes, report.predictions_skipped, report.labels) == (n_truth, n_objects, 0)
    assert len(boxes) == n_truth and set(boxes["author"]) == {"ana"} and set(boxes["source"]) == {"human"}
