"""Labelling pipelines on a real store: real clips, pre-labels, micro-tasks, answers, final boxes and COCO export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from detector_helpers import fit_detector

import dlabel_lab as dl
from dlabel_lab.labeling.pipelines import (
    answer_task,
    define_pipeline,
    export_coco,
    missed_objects,
    next_task,
    pipeline_status,
    resolved_objects,
    route_tracks,
    run_pipeline,
    task_frames,
)

H, W, FRAMES = 72, 96, 8
VERSION = "imp-v1"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """3 clips of 8 frames, 96x72, and their truth; tracks with odd ids will score 0.5 (uncertain), even 0.9."""
    labels = dl.make_object_clips(tmp_path_factory.mktemp("objects"), 3, frames=FRAMES, width=W, height=H,
                                  objects=(2, 3), min_size=10, max_size=24, seed=1)  # fmt: skip
    return dl.read_object_annotations(labels.parent / "annotations.json")


def _truth_rows(ann, path: str) -> list[dict]:
    rows = []
    for im in (im for im in ann.images if im["path"] == path):
        i = im["id"]
        for box, label, track in zip(ann.boxes[i], ann.labels[i], ann.track_ids[i], strict=True):
            rows.append({"frame_index": im["frame_index"], "box": [float(v) for v in box],
                         "label": ann.classes[label - 1], "score": 0.5 if track % 2 else 0.9, "track_id": int(track)})
    return rows


@pytest.fixture
def store(tmp_path):
    with dl.PayloadStore(tmp_path / "store") as s:
        yield s


@pytest.fixture
def stocked(store, clips):
    """The clips in the store (the first without metadata, so it is probed), their truth logged as pre-labels."""
    paths = sorted({im["path"] for im in clips.images})
    sids = []
    for k, path in enumerate(paths):
        sid = store.new_scoring_id()
        meta = None if k == 0 else {"fps": 12.0, "frame_count": FRAMES, "width": W, "height": H}
        store.log_raw(sid, Path(path).read_bytes(), source_name="clip.mp4", metadata=meta)
        store.log_objects(sid, model_version=VERSION, rows=_truth_rows(clips, path))
        sids.append(sid)
    return store, sids


STEPS = [
    {"name": "prelabel", "kind": "detect", "objects_from": VERSION, "classes": ["circle", "square", "triangle"]},
    {"name": "route", "kind": "route", "after": "prelabel", "low": 0.3, "high": 0.7},
    {"name": "verify", "kind": "verify_track", "after": "route"},
    {"name": "fix", "kind": "fix_box", "after": "route", "max_per_clip": 2},
    {"name": "missed", "kind": "mark_missed", "after": "prelabel", "tile": [40, 50], "overlap": 0.1, "frame_stride": 4},
]


@pytest.fixture
def running(stocked):
    store, sids = stocked
    pid = define_pipeline(store, name="boxes", steps=STEPS)
    run = run_pipeline(store, pid, sids, progress=False)
    return store, sids, pid, run


def _uncertain_tracks(store, sid) -> set[int]:
    objs = store.objects(model_version=VERSION, scoring_ids=[sid]).df()
    return set(objs.loc[objs.score == 0.5, "track_id"])


# --- the spec ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("steps", "match"), [
    ([], "non-empty list"),
    ([{"name": "a", "kind": "route", "after": "x"}], "after=<an earlier step"),
    ([{"name": "a", "kind": "detect"}], "exactly one of detector"),
    ([{"name": "a", "kind": "detect", "objects_from": VERSION}], "give classes"),
    ([STEPS[0], {**STEPS[1], "name": "prelabel"}], "unique name"),
    ([STEPS[0], {"name": "v", "kind": "verify_track", "after": "prelabel"}], "after a route step"),
    ([STEPS[0], {**STEPS[1], "low": 0.8, "high": 0.2}], "low 0.8 is above high"),
    ([STEPS[0], {"name": "m", "kind": "mark_missed", "after": "prelabel", "frame_stride": 0}], "frame_stride"),
    ([STEPS[0], {"name": "m", "kind": "mark_missed", "after": "prelabel", "colour": "red"}], "does not take"),
    ([STEPS[0], {"name": "m", "kind": "label_everything", "after": "prelabel"}], "choose one of"),
    ([{**STEPS[0], "tile": [60, 80]}], "tile applies to running a detector"),
    ([STEPS[0], STEPS[1], {**STEPS[1], "name": "again"}], "at most one route"),
    ([{**STEPS[0], "score_threshold": 1.5}], r"score_threshold must lie in \[0, 1\]"),
])  # fmt: skip
def test_bad_specs_raise_config_errors_that_say_what_to_do(store, steps, match):
    with pytest.raises(dl.ConfigError, match=match):
        define_pipeline(store, name="boxes", steps=steps)
    assert store.pipelines().empty


def test_define_pipeline_versions_specs_and_checks_detectors(store):
    assert define_pipeline(store, name="boxes", steps=STEPS) == "boxes-p1"
    assert define_pipeline(store, name="boxes", steps=STEPS) == "boxes-p1"  # the same steps again
    assert define_pipeline(store, name="boxes", steps=STEPS[:3]) == "boxes-p2"
    stored = store.pipeline("boxes-p1")["spec"]
    assert [s["name"] for s in stored] == ["prelabel", "route", "verify", "fix", "missed"]
    assert stored[2]["max_frames"] == 8 and stored[0]["score_threshold"] == 0.3  # defaults filled in
    with pytest.raises(dl.UnknownRecord):
        define_pipeline(store, name="boxes", steps=[{"name": "p", "kind": "detect", "detector": "nothing-v1"}])


def test_route_tracks_by_mean_score_and_drops_duplicate_tracks():
    import pandas as pd

    objs = pd.DataFrame({"scoring_id": ["a"] * 5, "object_n": range(5), "track_id": [1, 1, None, None, 2],
                         "score": [0.9, 0.6, 0.2, 0.5, None], "frame_index": [0, 1, 0, 0, 1],
                         "x1": [0.0, 0, 0, 0, 20], "y1": [0.0] * 5, "x2": [10.0, 10, 10, 40, 30],
                         "y2": [10.0] * 5})  # fmt: skip
    assert route_tracks(objs, low=0.3, high=0.7).tolist() == ["trusted", "trusted", "dropped", "uncertain", "uncertain"]
    # object 3 overlaps track 1 on frame 0 with IoU 0.25: kept at duplicate_iou 0.5, a duplicate at 0.2
    assert route_tracks(objs, low=0.3, high=0.7, duplicate_iou=0.5).tolist() == [
        "trusted", "trusted", "dropped", "uncertain", "uncertain"]
    assert route_tracks(objs, low=0.3, high=0.7, duplicate_iou=0.2).tolist() == [
        "trusted", "trusted", "dropped", "duplicate", "uncertain"]
    objs.loc[4, ["x1", "x2"]] = [0.0, 11.0]  # track 2 now repeats track 1 on frame 1 (IoU 10/11), whatever its class
    assert route_tracks(objs, low=0.3, high=0.7, duplicate_iou=0.5).tolist()[4] == "duplicate"


# --- running ---------------------------------------------------------------------------------------
def test_run_creates_tasks_per_step_and_is_idempotent(running):
    store, sids, pid, run = running
    uncertain = {sid: _uncertain_tracks(store, sid) for sid in sids}
    n_uncertain = sum(len(v) for v in uncertain.values())
    boxes = store.objects(model_version=VERSION).df()
    per_clip_fix = [min(2, int(((boxes.scoring_id == s) & (boxes.score == 0.5)).sum())) for s in sids]
    # mark_missed: frames 0 and 4 of each clip, tile_grid(72, 96, tile=(40, 50), overlap=0.1) has 2 x 3 tiles
    assert run.created == {"verify": n_uncertain, "fix": sum(per_clip_fix), "missed": 3 * 2 * 6}
    assert run.objects == len(boxes) and run.routed["dropped"] == 0 and run.routed["uncertain"] == n_uncertain
    again = run_pipeline(store, pid, list(reversed(sids)), progress=False)
    assert again.created == {"verify": 0, "fix": 0, "missed": 0} and again.tasks == run.tasks
    assert len(store.tasks(pipeline_id=pid)) == sum(run.created.values())
    verify = store.tasks(pipeline_id=pid, step="verify")
    for row in verify.to_dict("records"):
        p = row["payload"]
        assert {m["track_id"] for m in p["members"]} <= uncertain[row["scoring_id"]]
        assert len(p["frame_indices"]) <= 8 and {b["frame_index"] for b in p["boxes"]} <= set(p["frame_indices"])
        x0, y0, x1, y1 = p["region"]
        assert all(x0 <= m["box"][0] and m["box"][2] <= x1 and y0 <= m["box"][1] and m["box"][3] <= y1
                   for m in p["members"])  # fmt: skip
        assert row["instruction"] == f"Is every box on this track a {p['label']}?"
    missed = store.tasks(pipeline_id=pid, step="missed")
    assert sorted({tuple(p["region"]) for p in missed.payload}) == sorted(dl.tile_grid(H, W, tile=(40, 50),
                                                                                       overlap=0.1))  # fmt: skip
    assert {p["frame_indices"][0] for p in missed.payload} == {0, 4}
    assert run_pipeline(store, pid, sids[:1], progress=False).created == {"verify": 0, "fix": 0, "missed": 0}
    with pytest.raises(dl.UnknownRecord):
        run_pipeline(store, pid, [store.new_scoring_id()], progress=False)
    with pytest.raises(dl.ConfigError):
        run_pipeline(store, pid, [], progress=False)


@pytest.fixture
def one_thread():
    """One intra-op thread: on two shared cores, more threads made this tiny fit 30x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_detect_step_runs_a_registered_detector_through_the_endpoint(stocked, clips, tmp_path, one_thread):
    store, sids = stocked
    torch.manual_seed(0)
    det = dl.ObjectDetector(clips.classes, frame_size=(H, W))
    fit_detector(det, dl.frames_dataset(clips), tmp_path, epochs=3)
    version, _ = dl.register_detector(store, det, name="objects")
    pid = define_pipeline(store, name="auto", steps=[
        {"name": "prelabel", "kind": "detect", "detector": version, "score_threshold": 0.5},
        {"name": "missed", "kind": "mark_missed", "after": "prelabel", "frame_stride": 8}])  # fmt: skip
    run = run_pipeline(store, pid, sids[:2], progress=False)
    logged = store.objects(model_version=version).df()
    assert run.objects == len(logged) > 0 and set(logged.scoring_id) <= set(sids[:2]) and logged.score.min() >= 0.5
    assert run.created == {"missed": 2}  # frame 0 of each clip, the whole frame
    task = next_task(store, pid, author="ana")
    assert {b["ref"] for b in task.boxes} == {f"{version}#{n}" for n in
                                              logged[(logged.scoring_id == task.scoring_id)
                                                     & (logged.frame_index == 0)].object_n}  # fmt: skip
    assert run_pipeline(store, pid, sids[:2], progress=False).created == {"missed": 0}
    assert len(store.objects(model_version=version).df()) == len(logged)  # not detected again


# --- handing tasks out -------------------------------------------------------------------------------
def test_next_task_order_assignment_lease_and_skips(running):
    store, sids, pid, _ = running
    first = next_task(store, pid, author="ana")
    assert first.step == "verify" and first.kind == "verify_track"  # steps in spec order, then clips
    assert next_task(store, pid, author="ana").task_id == first.task_id  # hers until she answers
    bob = next_task(store, pid, author="bob")
    assert bob.task_id != first.task_id  # ana holds a lease on hers
    assert next_task(store, pid, author="carl", lease_s=0).task_id == first.task_id  # leases expire
    assignments = store.task_assignments(pipeline_id=pid)
    assert assignments.author.tolist() == ["ana", "ana", "bob", "carl"]
    answer_task(store, first.task_id, {"verdict": "skip"}, author="ana")
    assert next_task(store, pid, author="ana").task_id not in (first.task_id, bob.task_id)
    assert next_task(store, pid, author="dora", lease_s=0).task_id == first.task_id  # a skip leaves it open
    fix = next_task(store, pid, author="eve", step="fix")
    assert fix.kind == "fix_box" and len(fix.frame_indices) == 1 and len(fix.boxes) == 1
    assert fix.instruction == f"Is this box tight around one {fix.boxes[0]['label']}?"
    with pytest.raises(dl.ConfigError, match="not a human step"):
        next_task(store, pid, author="eve", step="route")
    with pytest.raises(dl.ConfigError, match="author"):
        next_task(store, pid, author=" ")


def test_every_task_is_handed_out_once_then_none(stocked):
    store, sids = stocked
    pid = define_pipeline(store, name="few", steps=[STEPS[0], STEPS[1], STEPS[2]])
    run = run_pipeline(store, pid, sids, progress=False)
    seen = []
    while (task := next_task(store, pid, author="ana")) is not None:
        seen.append(task.task_id)
        answer_task(store, task.task_id, {"verdict": "accept"}, author="ana")
    assert len(seen) == len(set(seen)) == run.created["verify"]
    assert pipeline_status(store, pid).to_dict("records") == [
        {"step": "verify", "kind": "verify_track", "tasks": len(seen), "answered": len(seen), "skipped": 0, "open": 0}
    ]


# --- answers ---------------------------------------------------------------------------------------
def _task(store, pid, step):
    return next_task(store, pid, author="ana", step=step)


BAD_ANSWERS = [
    ("verify", {"verdict": "maybe"}, "verdict one of"),
    ("verify", {"verdict": "relabel", "label": "hexagon"}, "not one of the task's classes"),
    ("verify", {"verdict": "accept", "label": "circle"}, "needs exactly"),
    ("verify", "accept", "an answer is a dict"),
    ("fix", {"verdict": "fix", "box": [10, 10, 120, 20], "label": "circle"}, "not inside the 96x72 frame"),
    ("fix", {"verdict": "fix", "box": [10, 10, 5, 20], "label": "circle"}, "x1 < x2"),
    ("fix", {"verdict": "fix", "box": [10, 10, 20], "label": "circle"}, "four finite numbers"),
    ("missed", {"boxes": [{"box": [1, 1, 5, 5], "label": "circle"}, {"box": [1, 1, 99, 5], "label": "circle"}]},
     "missed box 1"),
    ("missed", {"boxes": [{"box": [90, 60, 95, 70], "label": "circle"}]}, "outside the task's region"),
    ("missed", {"boxes": [{"box": [1, 1, 5, 5], "label": "dog"}]}, "not one of"),
    ("missed", {"boxes": "none"}, "mark_missed answer is"),
    ("missed", {"verdict": "skip", "why": "tired"}, "a skip"),
]


def test_bad_answers_raise_and_write_nothing(running):
    store, _, pid, _ = running
    for step, answer, match in BAD_ANSWERS:
        task = _task(store, pid, step)
        with pytest.raises(dl.ConfigError, match=match):
            answer_task(store, task.task_id, answer, author="ana")
        assert store.task_answers().empty and store.object_labels().empty, (step, answer)


def test_unknown_task_and_missing_author(running):
    store, _, pid, _ = running
    with pytest.raises(dl.UnknownRecord):
        answer_task(store, "nope", {"verdict": "accept"}, author="ana")
    task = _task(store, pid, "verify")
    with pytest.raises(dl.ConfigError, match="author"):
        answer_task(store, task.task_id, {"verdict": "accept"}, author="")
    assert store.task_answers().empty


def test_answers_append_object_labels_of_the_right_kind(running):
    store, _, pid, _ = running
    verify = _task(store, pid, "verify")
    members = store.task(verify.task_id)["payload"]["members"]
    answer_task(store, verify.task_id, {"verdict": "relabel", "label": "circle"}, author="ana")
    labels = store.object_labels(task_id=verify.task_id)
    assert labels.kind.tolist() == ["relabelled"] * len(members) and set(labels.label) == {"circle"}
    assert labels.refers_to.tolist() == [m["ref"] for m in members]
    assert set(labels.source) == {"pipeline"} and set(labels.author) == {"ana"}
    fix = _task(store, pid, "fix")
    x1, y1, x2, y2 = fix.boxes[0]["box"]
    answer_task(store, fix.task_id, {"verdict": "fix", "box": [x1 + 1, y1, x2, y2], "label": "square"}, author="ana")
    (row,) = store.object_labels(task_id=fix.task_id).to_dict("records")
    assert (row["kind"], row["refers_to"], row["x1"], row["label"]) == ("fixed", fix.boxes[0]["ref"], x1 + 1, "square")
    missed = _task(store, pid, "missed")
    rx0, ry0 = missed.region[:2]
    answer_task(store, missed.task_id, {"boxes": [{"box": [rx0 + 1, ry0 + 1, rx0 + 9, ry0 + 8], "label": "triangle"}]},
                author="ana")  # fmt: skip
    (row,) = store.object_labels(task_id=missed.task_id).to_dict("records")
    assert (row["kind"], row["frame_index"], row["refers_to"]) == ("missed", missed.frame_indices[0], None)
    answer_task(store, missed.task_id, {"verdict": "skip"}, author="bob")
    assert len(store.object_labels(task_id=missed.task_id)) == 1
    answers = store.task_answers(pipeline_id=pid)
    assert answers.answer.tolist()[-1] == {"verdict": "skip"} and len(answers) == 4


def test_latest_answer_wins_in_resolved_objects(running):
    store, sids, pid, _ = running
    objs = store.objects(model_version=VERSION).df()
    base = resolved_objects(store, pid)
    # before any answer: the trusted boxes only, unreviewed
    assert len(base) == int((objs.score == 0.9).sum()) and not base.reviewed.any() and set(base.status) == {"trusted"}
    fix = store.tasks(pipeline_id=pid, step="fix").iloc[0]
    ref = fix.payload["boxes"][0]["ref"]
    verify = store.tasks(pipeline_id=pid, step="verify", scoring_ids=[fix.scoring_id])
    verify = verify[verify.payload.map(lambda p: ref in {m["ref"] for m in p["members"]})].iloc[0]
    n = len(verify.payload["members"])
    answer_task(store, verify.task_id, {"verdict": "accept"}, author="ana")
    after = resolved_objects(store, pid)
    assert len(after) == len(base) + n and (after.status == "verified").sum() == n
    answer_task(store, verify.task_id, {"verdict": "reject"}, author="bob")  # a later answer supersedes
    assert len(resolved_objects(store, pid)) == len(base)
    answer_task(store, verify.task_id, {"verdict": "relabel", "label": "square"}, author="ana")
    relabelled = resolved_objects(store, pid).query("status == 'relabelled'")
    assert len(relabelled) == n and set(relabelled.label) == {"square"}
    # a box-level answer overrides the verdict on its track
    x1, y1, x2, y2 = fix.payload["boxes"][0]["box"]
    answer_task(store, fix.task_id, {"verdict": "fix", "box": [x1, y1, x2 - 1, y2], "label": "circle"}, author="ana")
    final = resolved_objects(store, pid)
    assert (final.status == "relabelled").sum() == n - 1
    assert final.query("status == 'fixed'")[["x2", "label", "ref"]].values.tolist() == [[x2 - 1, "circle", ref]]
    answer_task(store, fix.task_id, {"verdict": "reject"}, author="ana")
    assert len(resolved_objects(store, pid)) == len(base) + n - 1
    # the same missed object marked in two overlapping tiles counts once
    tasks = store.tasks(pipeline_id=pid, step="missed", scoring_ids=[sids[1]])
    where = {(p["frame_indices"][0], tuple(p["region"])): t for t, p in zip(tasks.task_id, tasks.payload, strict=True)}
    a, b = where[(0, (0, 0, 50, 40))], where[(0, (23, 0, 73, 40))]
    box = {"box": [30, 5, 45, 20], "label": "circle"}
    answer_task(store, a, {"boxes": [box]}, author="ana")
    answer_task(store, b, {"boxes": [{**box, "box": [31, 5, 45, 20]}]}, author="bob")
    marked = resolved_objects(store, pid, [sids[1]]).query("status == 'missed'")
    assert marked[["x1", "y1", "x2", "y2", "label", "frame_index"]].values.tolist() == [[30, 5, 45, 20, "circle", 0]]
    assert set(resolved_objects(store, pid, [sids[1]]).scoring_id) == {sids[1]}


def test_missed_objects_is_what_people_marked(running):
    store, sids, pid, _ = running
    tasks = store.tasks(pipeline_id=pid, step="missed")
    first, second = tasks.task_id.iloc[0], tasks.task_id.iloc[7]
    answer_task(store, first, {"boxes": [{"box": [2, 3, 12, 14], "label": "circle"}]}, author="ana")
    second_task = store.task(second)
    rx0, ry0 = second_task["payload"]["region"][:2]
    answer_task(store, second, {"boxes": [{"box": [rx0 + 2, ry0 + 2, rx0 + 9, ry0 + 9], "label": "square"}]},
                author="ana")  # fmt: skip
    answer_task(store, second, {"boxes": []}, author="bob")  # bob says nothing is missed there: his answer wins
    store.log_object_labels([{"scoring_id": sids[2], "frame_index": 5, "kind": "missed", "box": [1, 1, 6, 6],
                              "label": "triangle"}], author="zoe")  # fmt: skip
    got = missed_objects(store, pipeline_id=pid)
    assert got[["scoring_id", "frame_index", "x1", "y1", "x2", "y2", "label", "author"]].values.tolist() == [
        [tasks.scoring_id.iloc[0], 0, 2.0, 3.0, 12.0, 14.0, "circle", "ana"]]
    assert got.media_path.iloc[0] == str(store.raw_path(tasks.scoring_id.iloc[0]))
    assert (got.width.iloc[0], got.height.iloc[0], got.timestamp.iloc[0]) == (W, H, 0.0)
    everything = missed_objects(store)
    assert everything.author.tolist() == ["ana", "zoe"] and everything.timestamp.iloc[1] == pytest.approx(5 / 12)


# --- frames and export -----------------------------------------------------------------------------
def test_task_frames_are_crops_of_the_region(running):
    store, _, pid, _ = running
    for step in ("verify", "fix", "missed"):
        task = _task(store, pid, step)
        crops = task_frames(store, task)
        x0, y0, x1, y1 = task.region
        assert len(crops) == len(task.frame_indices)
        assert all(c.shape == (y1 - y0, x1 - x0, 3) and c.dtype == np.uint8 for c in crops)
    whole = dl.read_clip(store.raw_path(task.scoring_id), dl.ClipSpec(frames=None, size=(H, W)))
    assert np.array_equal(crops[0], whole.frames[task.frame_indices[0]][y0:y1, x0:x1])


def test_export_coco_round_trips_through_read_object_annotations(running, tmp_path):
    store, sids, pid, _ = running
    final = resolved_objects(store, pid)
    path = export_coco(store, final, tmp_path / "export", classes=["circle", "square", "triangle"],
                       frames={sids[0]: [7]})  # fmt: skip
    ann = dl.read_object_annotations(path, root=store.path)
    assert ann.classes == ["circle", "square", "triangle"] and ann.n_objects == len(final)
    got = sorted((im["path"], im["frame_index"], *map(float, b), ann.classes[lab - 1])
                 for im in ann.images for b, lab in zip(ann.boxes[im["id"]], ann.labels[im["id"]], strict=True))
    want = sorted((str(store.raw_path(r.scoring_id)), r.frame_index, r.x1, r.y1, r.x2, r.y2, r.label)
                  for r in final.itertuples())  # fmt: skip
    assert got == want
    empty = [im for im in ann.images if im["frame_index"] == 7 and im["path"] == str(store.raw_path(sids[0]))]
    assert len(empty) == 1 and empty[0]["timestamp"] == pytest.approx(7 / 12)
    image, target = dl.frames_dataset(ann)[0]
    assert image.shape == (3, H, W) and target["boxes"].shape[1] == 4
    doc = json.loads(path.read_text())
    assert {"images", "annotations", "categories", "videos"} <= set(doc)
    with pytest.raises(dl.ConfigError, match="not in classes"):
        export_coco(store, final, tmp_path / "bad.json", classes=["circle"])
