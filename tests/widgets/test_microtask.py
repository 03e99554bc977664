"""The object micro-task widget without a browser: a real store, a real pipeline, its model driven as the page would.

One clip of moving objects (``make_object_clips``) is logged in a store with
hand-set model objects (``log_objects``): an uncertain track of a circle over
frames 0, 2, 4, 6 and a trusted square on frame 0. A pipeline reads them
(``objects_from``), routes them, and makes one ``verify_track`` task, one
``fix_box`` task and two ``mark_missed`` tiles. The widget's buttons, keys
(ipyevents' message) and the BBoxWidget's synced ``bboxes`` stand in for the
labeller; each answer is checked row by row in the store.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from widget_helpers import press

import dlabel_lab as dl
from dlabel_lab.labeling.pipelines import define_pipeline, pipeline_status, run_pipeline, task_frames
from dlabel_lab.widgets import MicroTaskWidget
from dlabel_lab.widgets._boxes import display_zoom, to_display, to_native

CLASSES = ["circle", "square", "triangle"]
VERSION = "imported-v1"
TRACK = [{"frame_index": f, "box": [40 + f, 20, 56 + f, 37.5], "label": "circle", "score": 0.5, "track_id": 1}
         for f in (0, 2, 4, 6)]  # fmt: skip
TRUSTED = {"frame_index": 0, "box": [6, 40, 20.25, 58], "label": "square", "score": 0.9, "track_id": 2}
STEPS = [
    {"name": "pre", "kind": "detect", "objects_from": VERSION, "classes": CLASSES},
    {"name": "route", "kind": "route", "after": "pre", "low": 0.3, "high": 0.7},
    {"name": "verify", "kind": "verify_track", "after": "route"},
    {"name": "fix", "kind": "fix_box", "after": "route", "max_per_clip": 1},
    {"name": "missed", "kind": "mark_missed", "after": "route", "tile": [64, 64], "frame_stride": 8},
]
# The track's union box with a margin of 8.75 px (half its longest side), floored and ceiled: 40 x 36 px.
VERIFY_REGION, VERIFY_ZOOM = (31, 11, 71, 47), 12  # 480 / 40
FIX_REGION, FIX_ZOOM = (31, 11, 65, 47), 14  # the first box's neighbourhood, 34 x 36 px: 480 // 34
TILES = [(0, 0, 64, 64), (32, 0, 96, 64)]  # mark_missed: 64 px tiles of the 96 x 64 frame


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory):
    out = tmp_path_factory.mktemp("objects")
    dl.make_object_clips(out, 1, width=96, height=64, frames=8, seed=0)
    return (out / "objects_0000.mp4").read_bytes()


@pytest.fixture
def pipeline(tmp_path, clip_bytes):
    """A store with one clip, its model objects, and a pipeline run on it: ``(store, pipeline_id, scoring_id)``."""
    with dl.PayloadStore(tmp_path / "store") as store:
        sid = store.new_scoring_id()
        store.log_raw(sid, clip_bytes, source_name="objects_0000.mp4")
        store.log_objects(sid, model_version=VERSION, rows=[*TRACK, TRUSTED])
        pid = define_pipeline(store, name="micro", steps=STEPS)
        run = run_pipeline(store, pid, [sid], progress=False)
        assert run.created == {"verify": 1, "fix": 1, "missed": 2}
        yield store, pid, sid


def decoded(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


def enlarged(frame: np.ndarray, zoom: int) -> np.ndarray:
    return np.repeat(np.repeat(frame, zoom, axis=0), zoom, axis=1)


def shown(box, region, zoom, label, ref):
    x1, y1, x2, y2 = box
    return {"x": (x1 - region[0]) * zoom, "y": (y1 - region[1]) * zoom, "width": (x2 - x1) * zoom,
            "height": (y2 - y1) * zoom, "label": label, "ref": ref}  # fmt: skip


def labels_of(store, task_id):
    cols = ["frame_index", "x1", "y1", "x2", "y2", "label", "kind", "refers_to", "source", "author", "task_id"]
    return [tuple(r) for r in store.object_labels(task_id=task_id)[cols].itertuples(index=False)]


# -- coordinates ----------------------------------------------------------------------------------
def test_native_boxes_go_to_the_shown_crop_and_back_exactly():
    rng = np.random.default_rng(0)
    for region, zoom in [((31, 11, 71, 47), 12.0), ((0, 0, 64, 64), 7.0), ((100, 40, 1060, 700), 0.5)]:
        x0, y0, x1, y1 = region
        for _ in range(200):
            xs = np.round(np.sort(rng.uniform(x0, x1, 2)), 2)
            ys = np.round(np.sort(rng.uniform(y0, y1, 2)), 2)
            box = [xs[0], ys[0], xs[1], ys[1]]
            assert to_native(to_display(box, region, (zoom, zoom)), region, (zoom, zoom)) == box
    # a box dragged past the crop's edge ends at the region's edge; one drawn leftwards is turned round
    assert to_native({"x": 470, "y": -12, "width": 30, "height": 24}, VERIFY_REGION, (12.0, 12.0)) == [
        70.17, 11.0, 71.0, 12.0]  # fmt: skip
    assert to_native({"x": 60, "y": 24, "width": -36, "height": 12}, VERIFY_REGION, (12.0, 12.0)) == [
        33.0, 13.0, 36.0, 14.0]  # fmt: skip
    assert display_zoom(40, 36) == 12.0 and display_zoom(34, 36) == 14.0 and display_zoom(96, 64) == 5.0
    assert display_zoom(1920, 1080) == 0.25 and display_zoom(8, 200) == 3.0  # the height caps it too


# -- verify_track ---------------------------------------------------------------------------------
def test_a_track_shows_its_crop_scaled_up_with_its_boxes_and_accept_lands_in_the_store(pipeline):
    store, pid, sid = pipeline
    w = MicroTaskWidget(store, pid, author="ana", step="verify")
    task = w.task
    assert task.kind == "verify_track" and task.region == VERIFY_REGION and task.frame_indices == [0, 2, 4, 6]
    assert w.instruction.value == "<b>Is every box on this track a circle?</b>"
    assert w.progress.value == "<span>task 1 of 1 · step verify · 1 open</span>"
    assert w.scale == (VERIFY_ZOOM, VERIFY_ZOOM)
    crops = task_frames(store, task)
    image = decoded(w.bbox_widget.image_bytes)
    assert image.shape == (36 * VERIFY_ZOOM, 40 * VERIFY_ZOOM, 3)  # 432 x 480: each native pixel a 12 px square
    np.testing.assert_array_equal(image, enlarged(crops[0], VERIFY_ZOOM))
    assert w.bbox_widget.bboxes == [shown(TRACK[0]["box"], VERIFY_REGION, 12, "circle 0.50", f"{VERSION}#0")]
    assert w.bbox_widget.view_only and w.bbox_widget.classes == CLASSES
    visible = [b.description for b in (w.accept_button, w.reject_button, w.relabel_button, w.submit_button,
                                       w.skip_button) if b.layout.display != "none"]  # fmt: skip
    assert visible == ["Accept (a)", "Reject (r)", "Relabel (l)", "Skip (s)"]

    press(w, "ArrowRight")  # the stepper goes over the track's frames
    assert w.frame_label.value == "<span>frame 2 (2 of 4)</span>"
    assert w.bbox_widget.bboxes == [shown(TRACK[1]["box"], VERIFY_REGION, 12, "circle 0.50", f"{VERSION}#1")]
    np.testing.assert_array_equal(decoded(w.bbox_widget.image_bytes), enlarged(crops[1], VERIFY_ZOOM))
    w.frame_slider.value = 3
    assert w.bbox_widget.bboxes[0]["x"] == (46 - 31) * 12

    w.accept_button.click()
    answers = store.task_answers(pipeline_id=pid)
    assert answers[["task_id", "author", "answer", "source"]].values.tolist() == [
        [task.task_id, "ana", {"verdict": "accept"}, "human"]]  # fmt: skip
    assert labels_of(store, task.task_id) == [
        (t["frame_index"], *t["box"], "circle", "verified", f"{VERSION}#{n}", "pipeline", "ana", task.task_id)
        for n, t in enumerate(TRACK)
    ]
    # nothing left in this step: the done state, nothing to click
    assert w.task is None and w.answered == [(task.task_id, {"verdict": "accept"})]
    assert w.instruction.value == "<b>all tasks done here: 1 answered (0 skipped)</b>"
    assert "step verify: 1 answered, 0 skipped, 0 open" in w.progress.value
    assert w.bbox_widget.layout.display == "none" and w.bbox_widget.bboxes == []
    assert all(b.disabled for b in (w.accept_button, w.reject_button, w.relabel_button, w.skip_button))
    w.accept_button.click()
    press(w, "a")
    assert len(store.task_answers()) == 1 and w.errors == []


def test_number_keys_pick_the_class_and_l_relabels_the_track(pipeline):
    store, pid, sid = pipeline
    w = MicroTaskWidget(store, pid, author="ana", step="verify")
    assert w.relabel_menu.value == "square"  # Relabel offers another class than the model's
    w.bbox_widget.label = "triangle"  # a click on a class in the BBoxWidget's row of classes
    assert w.relabel_menu.value == "triangle"
    press(w, "1")
    assert w.relabel_menu.value == "circle" and w.bbox_widget.label == "circle"
    press(w, "2")
    press(w, "l")
    task_id = w.answered[0][0]
    assert w.answered == [(task_id, {"verdict": "relabel", "label": "square"})]
    assert [r[5:7] for r in labels_of(store, task_id)] == [("square", "relabelled")] * 4
    assert pipeline_status(store, pid).set_index("step").loc["verify", "answered"] == 1


def test_skip_logs_a_skip_and_r_rejects(pipeline):
    store, pid, sid = pipeline
    w = MicroTaskWidget(store, pid, author="ana", step="verify")
    press(w, "s")
    assert store.task_answers()["answer"].tolist() == [{"verdict": "skip"}] and store.object_labels().empty
    assert w.task is None and w.instruction.value == "<b>all tasks done here: 1 answered (1 skipped)</b>"
    status = pipeline_status(store, pid).set_index("step")
    assert status.loc["verify", ["answered", "skipped", "open"]].tolist() == [0, 1, 0]
    fix = MicroTaskWidget(store, pid, author="ana", step="fix")
    press(fix, "r")
    assert fix.answered[0][1] == {"verdict": "reject"}
    assert [r[6:8] for r in labels_of(store, fix.answered[0][0])] == [("rejected", f"{VERSION}#0")]


# -- fix_box ----------------------------------------------------------------------------------------
def test_a_moved_box_is_submitted_as_a_fix_in_native_pixels(pipeline):
    store, pid, sid = pipeline
    w = MicroTaskWidget(store, pid, author="ana", step="fix")
    task = w.task
    assert task.kind == "fix_box" and task.region == FIX_REGION and w.scale == (FIX_ZOOM, FIX_ZOOM)
    assert w.instruction.value == "<b>Is this box tight around one circle?</b>"
    assert decoded(w.bbox_widget.image_bytes).shape == (36 * FIX_ZOOM, 34 * FIX_ZOOM, 3)
    model = shown(TRACK[0]["box"], FIX_REGION, FIX_ZOOM, "circle 0.50", f"{VERSION}#0")
    assert w.bbox_widget.bboxes == [model] and not w.bbox_widget.view_only
    # the labeller drags the left edge 7 shown px right and the bottom edge 21 px up (the page syncs bboxes)
    w.bbox_widget.bboxes = [{**model, "x": model["x"] + 7, "width": model["width"] - 7, "height": model["height"] - 21}]
    w.submit_button.click()
    fixed = [40.5, 20.0, 56.0, 36.0]  # 7 / 14 = 0.5 px, 21 / 14 = 1.5 px
    assert w.answered == [(task.task_id, {"verdict": "fix", "box": fixed, "label": "circle"})]  # its class, no score
    assert labels_of(store, task.task_id) == [
        (0, *fixed, "circle", "fixed", f"{VERSION}#0", "pipeline", "ana", task.task_id)]  # fmt: skip
    assert w.task is None


def test_the_box_submitted_as_shown_is_accepted(pipeline):
    store, pid, sid = pipeline
    w = MicroTaskWidget(store, pid, author="ana", step="fix")
    task_id = w.task.task_id
    w.bbox_widget.selected_index = 0
    press(w, "1")  # the model's own class, now without its score: the box is as the model had it
    assert w.bbox_widget.bboxes[0]["label"] == "circle"
    w.bbox_widget._handle_custom_msg({"type": "submit"}, [])  # the BBoxWidget's own Submit message
    assert w.answered == [(task_id, {"verdict": "accept"})]
    assert [r[6] for r in labels_of(store, task_id)] == ["verified"]
    assert MicroTaskWidget(store, pid, author="ben", step="fix").task is None  # answered: nothing open


def test_a_selected_box_takes_the_picked_class_and_is_sent_as_a_fix(pipeline):
    store, pid, sid = pipeline
    w = MicroTaskWidget(store, pid, author="ana", step="fix")
    w.bbox_widget.selected_index = 0  # the labeller clicked the box
    press(w, "2")
    assert w.bbox_widget.bboxes[0]["label"] == "square"
    press(w, "Enter")  # the box is unchanged, its class is not: a fix with the same box
    assert w.answered[0][1] == {"verdict": "fix", "box": TRACK[0]["box"], "label": "square"}


# -- mark_missed --------------------------------------------------------------------------------------
def test_drawn_boxes_are_sent_as_missed_objects_and_the_next_tile_follows(pipeline):
    store, pid, sid = pipeline
    w = MicroTaskWidget(store, pid, author="ana", step="missed")
    first = w.task
    assert first.kind == "mark_missed" and first.region == TILES[0] and w.scale == (7.0, 7.0)  # 480 // 64
    assert w.instruction.value.startswith("<b>Draw a box around every circle, square or triangle in this tile")
    assert [b["ref"] for b in w.bbox_widget.bboxes] == [f"{VERSION}#0", f"{VERSION}#4"]  # the kept boxes, shown
    assert [b["label"] for b in w.bbox_widget.bboxes] == ["circle 0.50", "square 0.90"]
    assert not w.bbox_widget.view_only and w.submit_button.layout.display is None
    assert w.accept_button.layout.display == "none"
    # the labeller picks "triangle" (key 3) and draws one box; a click without a drag makes an empty one
    press(w, "3")
    drawn = {"x": 70, "y": 14, "width": 105, "height": 91, "label": w.bbox_widget.label}
    click = {"x": 300, "y": 300, "width": 0, "height": 0, "label": "triangle"}
    w.bbox_widget.bboxes = [*w.bbox_widget.bboxes, drawn, click]
    assert w.progress.value == "<span>task 1 of 2 · step missed · 2 open</span>"
    press(w, "a")
    box = [10.0, 2.0, 25.0, 15.0]  # 70 / 7, 14 / 7, (70 + 105) / 7, (14 + 91) / 7
    assert w.answered == [(first.task_id, {"boxes": [{"box": box, "label": "triangle"}]})]
    assert labels_of(store, first.task_id) == [(0, *box, "triangle", "missed", None, "pipeline", "ana", first.task_id)]

    second = w.task  # the next tile: its crop starts 32 px right
    assert second.region == TILES[1] and w.progress.value == "<span>task 2 of 2 · step missed · 1 open</span>"
    crop = task_frames(store, second)[0]
    np.testing.assert_array_equal(decoded(w.bbox_widget.image_bytes), enlarged(crop, 7))
    w.bbox_widget.bboxes = [*w.bbox_widget.bboxes, {"x": 7, "y": 7, "width": 14, "height": 21, "label": "circle"}]
    w.bbox_widget.selected_index = len(w.bbox_widget.bboxes) - 1
    press(w, "Delete")  # a box drawn by mistake goes; the model's boxes stay
    assert [b.get("ref") for b in w.bbox_widget.bboxes] == [f"{VERSION}#0"]
    w.bbox_widget.selected_index = 0
    press(w, "Delete")
    assert len(w.bbox_widget.bboxes) == 1
    press(w, "Enter")  # nothing drawn: nothing missed
    assert w.answered[-1] == (second.task_id, {"boxes": []}) and store.object_labels(task_id=second.task_id).empty
    assert w.task is None


def test_a_scripted_box_is_drawn_in_display_pixels_and_lands_in_native_ones(pipeline):
    store, pid, _ = pipeline
    w = MicroTaskWidget(store, pid, author="ana", step="missed")
    first = w.task
    w.draw_box([10.0, 2.0, 25.0, 15.0], "triangle")
    assert w.bbox_widget.bboxes[-1] == {"x": 70.0, "y": 14.0, "width": 105.0, "height": 91.0, "label": "triangle"}
    with pytest.raises(dl.UnknownLabel, match="hexagon"):
        w.draw_box([1, 1, 5, 5], "hexagon")
    w.submit()
    assert w.answered == [(first.task_id, {"boxes": [{"box": [10.0, 2.0, 25.0, 15.0], "label": "triangle"}]})]


def test_give_answers_through_the_widgets_own_controls(pipeline):
    store, pid, _ = pipeline
    verify = MicroTaskWidget(store, pid, author="ana", step="verify")
    tid = verify.task.task_id
    verify.give({"verdict": "relabel", "label": "square"})
    assert verify.answered == [(tid, {"verdict": "relabel", "label": "square"})]
    fix = MicroTaskWidget(store, pid, author="ana", step="fix")
    tid = fix.task.task_id
    fix.give({"verdict": "fix", "box": [40.5, 20.0, 56.0, 36.0], "label": "circle"})
    assert fix.answered == [(tid, {"verdict": "fix", "box": [40.5, 20.0, 56.0, 36.0], "label": "circle"})]
    missed = MicroTaskWidget(store, pid, author="ana", step="missed")
    first = missed.task.task_id
    missed.give({"boxes": [{"box": [10.0, 2.0, 25.0, 15.0], "label": "triangle"}]})
    missed.give({"verdict": "skip"})
    assert missed.answered[0] == (first, {"boxes": [{"box": [10.0, 2.0, 25.0, 15.0], "label": "triangle"}]})
    assert missed.answered[1][1] == {"verdict": "skip"}
    with pytest.raises(dl.ConfigError, match="give takes"):
        missed.give({"verdict": "maybe"})


def test_a_box_without_a_class_is_refused_in_the_widget_and_nothing_is_written(pipeline):
    store, pid, sid = pipeline
    w = MicroTaskWidget(store, pid, author="ana", step="missed")
    task_id = w.task.task_id
    w.bbox_widget.bboxes = [*w.bbox_widget.bboxes, {"x": 70, "y": 14, "width": 105, "height": 91, "label": ""}]
    w.submit_button.click()
    assert [type(e) for e in w.errors] == [dl.ConfigError] and "box 3 has no class" in str(w.errors[0])
    assert w.output.outputs[0]["text"].startswith("ConfigError: box 3 has no class ('')")
    assert store.task_answers().empty and store.object_labels().empty
    assert w.task.task_id == task_id and not w.submit_button.disabled  # still the same task, still answerable
    fix = MicroTaskWidget(store, pid, author="ana", step="fix")
    fix.bbox_widget.bboxes = [*fix.bbox_widget.bboxes, {"x": 7, "y": 7, "width": 14, "height": 14, "label": "circle"}]
    press(fix, "f")
    assert "a fixed box is one box, 2 are drawn" in str(fix.errors[0]) and store.task_answers().empty


def test_a_clip_that_cannot_be_read_is_shown_as_such_and_skip_goes_on(pipeline):
    store, pid, sid = pipeline
    store.raw_path(sid).write_bytes(b"not the clip any more")
    w = MicroTaskWidget(store, pid, author="ana", step="fix")
    assert "cannot be shown: StoreCorrupt" in w.task_error.value and "Skip it (s)" in w.task_error.value
    assert w.accept_button.disabled and w.submit_button.disabled and not w.skip_button.disabled
    assert w.bbox_widget.layout.display == "none"
    press(w, "a")
    assert store.task_answers().empty  # the button is off: the key does nothing either
    w.skip_button.click()
    assert store.task_answers()["answer"].tolist() == [{"verdict": "skip"}] and w.task is None


def test_bad_arguments_raise_and_a_closed_store_switches_the_widget_off(pipeline):
    store, pid, sid = pipeline
    with pytest.raises(dl.ConfigError, match="zoom"):
        MicroTaskWidget(store, pid, author="ana", zoom=0)
    with pytest.raises(dl.ConfigError, match="not a human step"):
        MicroTaskWidget(store, pid, author="ana", step="route")
    w = MicroTaskWidget(store, pid, author="ana", zoom=2)  # any step: the first in pipeline order
    assert w.task.step == "verify" and w.scale == (2.0, 2.0)
    assert decoded(w.bbox_widget.image_bytes).shape == (72, 80, 3)
    store.close()
    w.accept_button.click()
    assert w.errors == [] and "is closed" in w.switched_off.value and w.accept_button.disabled
