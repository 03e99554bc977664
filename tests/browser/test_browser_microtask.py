"""The object micro-task widget in a real JupyterLab and Chromium: boxes drawn on the crop, a click, a drag, a key.

A small notebook (written next to the tutorials' copies) logs one clip of
moving objects with hand-set model objects, runs a pipeline on them and shows
two :class:`~dlabel_lab.widgets.MicroTaskWidget`: one on the ``verify_track``
step, one on the ``mark_missed`` step. In the page: the BBoxWidget shows the
scaled crop with the model's boxes where the kernel put them, a click on
Accept answers the track, a box dragged with the mouse and the Enter key
answer a tile; then the store, read after the kernel let it go, holds exactly
those answers in native pixels.
"""

from __future__ import annotations

import nbformat
import pytest

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])").expect

from lab_page import cell_widget, open_notebook, run_all, save_screenshot  # noqa: E402 - needs playwright

from dlabel_lab import PayloadStore  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NOTEBOOK = "microtask_in_browser.ipynb"
STORE = "runs/microtask/store"
SETUP = f"""\
from pathlib import Path
import dlabel_lab as dl
from dlabel_lab.labeling.pipelines import define_pipeline, run_pipeline
from dlabel_lab.widgets import MicroTaskWidget

root = Path("runs/microtask")
dl.make_object_clips(root / "clips", 1, width=96, height=64, frames=8, seed=0)
store = dl.PayloadStore("{STORE}")
sid = store.new_scoring_id()
store.log_raw(sid, (root / "clips" / "objects_0000.mp4").read_bytes(), source_name="objects_0000.mp4")
track = [{{"frame_index": f, "box": [40 + f, 20, 56 + f, 37.5], "label": "circle", "score": 0.5, "track_id": 1}}
         for f in (0, 2, 4, 6)]
trusted = {{"frame_index": 0, "box": [6, 40, 20.25, 58], "label": "square", "score": 0.9, "track_id": 2}}
store.log_objects(sid, model_version="imported-v1", rows=[*track, trusted])
pid = define_pipeline(store, name="micro", steps=[
    {{"name": "pre", "kind": "detect", "objects_from": "imported-v1", "classes": ["circle", "square", "triangle"]}},
    {{"name": "route", "kind": "route", "after": "pre", "low": 0.3, "high": 0.7}},
    {{"name": "verify", "kind": "verify_track", "after": "route"}},
    {{"name": "missed", "kind": "mark_missed", "after": "route", "tile": [64, 64], "frame_stride": 8}}])
run = run_pipeline(store, pid, [sid], progress=False)
assert run.created == {{"verify": 1, "missed": 2}}, run.created"""
VERIFY_CELL = 'verify = MicroTaskWidget(store, pid, author="browser", step="verify")\nverify'
MISSED_CELL = 'missed = MicroTaskWidget(store, pid, author="browser", step="missed")\nmissed'

# What the page draws: the BBoxWidget's <img> and one <text fill="#333"> label per box over it (an SVG).
_IMAGE = "img[alt='annotate me']"
_LABELS = "svg text[fill='#333']"


def _write_notebook(path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in (SETUP, VERIFY_CELL, MISSED_CELL)]
    nbformat.write(nb, path)


def _image(widget) -> dict:
    """Where the BBoxWidget's image is on the page and its PNG's size, once it has loaded."""
    image = widget.locator(_IMAGE)
    expect(image).to_be_visible()
    widget.page.wait_for_function("e => e.complete && e.naturalWidth > 1", arg=image.element_handle())
    return image.evaluate("""e => { const r = e.getBoundingClientRect();
        return {x: r.x, y: r.y, width: r.width, height: r.height, natural_width: e.naturalWidth,
                natural_height: e.naturalHeight}; }""")


def test_micro_tasks_are_answered_with_a_click_a_drag_and_a_key(page, lab):
    _write_notebook(lab.root / NOTEBOOK)
    open_notebook(page, lab, NOTEBOOK)
    run_all(page)
    expect(page.get_by_text("Error displaying widget")).to_have_count(0)

    verify = cell_widget(page, 1)
    expect(verify).to_contain_text("Is every box on this track a circle?")
    expect(verify).to_contain_text("task 1 of 1 · step verify · 1 open")
    shown = _image(verify)
    # the 40 x 36 px crop at 12 screen px per native px, drawn at its own size
    assert (shown["natural_width"], shown["natural_height"]) == (480, 432), shown
    assert (round(shown["width"]), round(shown["height"])) == (480, 432), shown
    labels = verify.locator(_LABELS)
    expect(labels).to_have_count(1)
    expect(labels.first).to_have_text("circle 0.50")
    box = verify.locator("svg rect").first  # view only: the box's own rectangle, no handles
    assert [float(box.get_attribute(k)) for k in ("x", "y", "width", "height")] == [108, 108, 192, 210]  # × 12
    save_screenshot(verify, "microtask_verify")
    verify.get_by_role("button", name="Accept (a)").click()
    expect(verify).to_contain_text("all tasks done here: 1 answered (0 skipped)")

    missed = cell_widget(page, 2)
    expect(missed).to_contain_text("task 1 of 2 · step missed · 2 open")
    shown = _image(missed)
    assert (shown["natural_width"], round(shown["width"])) == (448, 448), shown  # the 64 px tile × 7
    expect(missed.locator(_LABELS)).to_have_count(2)  # the model's kept boxes, for context
    # draw a box: press at (70, 14) of the shown crop, drag to (175, 105), release
    def at(dx: int, dy: int) -> tuple[int, int]:  # the page's whole pixel nearest to (dx, dy) in the crop
        return round(shown["x"] + dx), round(shown["y"] + dy)  # (mouse events carry whole pixels)

    page.mouse.move(*at(70, 14))
    page.mouse.down()
    page.mouse.move(*at(120, 60), steps=4)
    page.mouse.move(*at(175, 105), steps=4)
    page.mouse.up()
    expect(missed.locator(_LABELS)).to_have_count(3)
    save_screenshot(missed, "microtask_missed")
    page.keyboard.press("Enter")  # the pointer is over the widget: ipyevents brings the key to the kernel
    expect(missed).to_contain_text("task 2 of 2 · step missed · 1 open")
    expect(page.locator(".jp-Notebook .jp-OutputArea-output", has_text="Traceback")).to_have_count(0)

    page.close()
    lab.shut_down_kernel(NOTEBOOK)  # the kernel owns the store; it lets go when it exits
    with PayloadStore(lab.root / STORE, read_only=True) as store:
        answers = store.task_answers()
        labels = store.object_labels()
    assert [(a["step"], a["author"], a["answer"]) for a in answers.to_dict("records")] == [
        ("verify", "browser", {"verdict": "accept"}),
        ("missed", "browser", {"boxes": [{"box": [10.0, 2.0, 25.0, 15.0], "label": "circle"}]}),
    ]  # 70 / 7 = 10, 14 / 7 = 2, 175 / 7 = 25, 105 / 7 = 15: native pixels of the frame
    assert labels["kind"].tolist() == ["verified"] * 4 + ["missed"]
    assert labels[["x1", "y1", "x2", "y2"]].values.tolist()[-1] == [10.0, 2.0, 25.0, 15.0]
