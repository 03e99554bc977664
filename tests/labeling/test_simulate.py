"""The simulated person answers micro-tasks from the truth, on a real store and real clips."""

from __future__ import annotations

from pathlib import Path

import pytest

import dlabel_lab as dl
from dlabel_lab.labeling.pipelines import answer_task, define_pipeline, next_task, resolved_objects, run_pipeline
from dlabel_lab.labeling.simulate import TruthAnnotator, kept_boxes, missed_boxes

H, W, FRAMES = 72, 96, 8
CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def ann(tmp_path_factory):
    labels = dl.make_object_clips(tmp_path_factory.mktemp("sim"), 2, frames=FRAMES, width=W, height=H,
                                  objects=(2, 3), min_size=10, max_size=24, seed=4)  # fmt: skip
    return dl.read_object_annotations(labels.parent / "annotations.json")


def test_the_simulated_person_restores_the_truth(ann, tmp_path):
    """Pre-labels = truth with every odd track given the wrong class at score 0.5 and one track left out.

    The person relabels the wrong tracks, accepts the rest and draws the left-out track's boxes; the
    resolved objects then equal the truth on the frames the missed step covers."""
    paths = sorted({im["path"] for im in ann.images})
    with dl.PayloadStore(tmp_path / "store") as store:
        sids, dropped = [], None
        for path in paths:
            sid = store.new_scoring_id()
            store.log_raw(sid, Path(path).read_bytes(), source_name=path,
                          metadata={"fps": 12.0, "frame_count": FRAMES, "width": W, "height": H})  # fmt: skip
            rows = []
            for im in (im for im in ann.images if im["path"] == path):
                i = im["id"]
                for box, lab, track in zip(ann.boxes[i], ann.labels[i], ann.track_ids[i], strict=True):
                    dropped = int(track) if dropped is None else dropped
                    if int(track) == dropped:
                        continue  # the detector missed this object entirely
                    name = CLASSES[lab - 1] if track % 2 == 0 else CLASSES[lab % 3]  # odd tracks: wrong class
                    rows.append({"frame_index": im["frame_index"], "box": [float(v) for v in box], "label": name,
                                 "score": 0.5, "track_id": int(track)})  # fmt: skip
            store.log_objects(sid, model_version="pre-v1", rows=rows)
            sids.append(sid)
        pid = define_pipeline(store, name="sim", steps=[
            {"name": "prelabel", "kind": "detect", "objects_from": "pre-v1", "classes": CLASSES},
            {"name": "route", "kind": "route", "after": "prelabel", "low": 0.3, "high": 0.7, "duplicate_iou": None},
            {"name": "verify", "kind": "verify_track", "after": "route"},
            {"name": "missed", "kind": "mark_missed", "after": "route", "frame_stride": 1}])  # fmt: skip
        run_pipeline(store, pid, sids, progress=False)
        person = TruthAnnotator(store, ann.path)
        verdicts = []
        while (task := next_task(store, pid, author="sim", step="verify")) is not None:
            answer = person.answer(task)
            verdicts.append(answer["verdict"])
            answer_task(store, task.task_id, answer, author="sim")
        assert "relabel" in verdicts and "accept" in verdicts and "reject" not in verdicts
        kept = resolved_objects(store, pid)
        drawn = 0
        while (task := next_task(store, pid, author="sim", step="missed")) is not None:
            answer = person.answer(task, kept=kept_boxes(kept, task))
            drawn += len(answer["boxes"])
            answer_task(store, task.task_id, answer, author="sim")
        truth_boxes = sum(len(v) for v in person.truth.values())
        final = resolved_objects(store, pid)
        assert drawn > 0 and len(final) == truth_boxes
        for (sid, frame), truth in person.truth.items():
            got = final[(final.scoring_id == sid) & (final.frame_index == frame)]
            assert sorted((round(r.x1, 2), r.label) for r in got.itertuples()) == \
                sorted((round(b[0], 2), c) for b, c in truth)


def test_missed_boxes_respects_the_region_and_class():
    truth = [([0, 0, 4, 4], "a"), ([10, 10, 14, 14], "a"), ([20, 0, 24, 4], "b")]
    kept = [([0, 0, 4, 4], "b")]  # right place, wrong class: still missed
    assert [m["box"][0] for m in missed_boxes(truth, kept)] == [0.0, 10.0, 20.0]
    assert [m["box"][0] for m in missed_boxes(truth, kept, region=(0, 0, 16, 16))] == [0.0, 10.0]


def test_annotations_of_other_clips_are_refused(ann, tmp_path):
    with dl.PayloadStore(tmp_path / "store") as store, pytest.raises(dl.ConfigError, match="none of the clips"):
        TruthAnnotator(store, ann.path)
