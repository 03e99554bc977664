"""The tutorials in a real JupyterLab and Chromium: Run All, then click and type as a labeller would.

Each test opens a temporary copy of a tutorial (``lab_server.copy_tutorials``),
runs all its cells in fast mode through JupyterLab's Run menu, and checks what
only a browser shows: that the widgets render, that a click and a number key
reach the kernel and land in the store, and that charts are drawn at a sane
size, that the review and retraining widgets stay about a screen tall, and
that the data grid's columns are wide enough for their text in the browser's
own font. With ``DLABEL_SCREENSHOTS=docs/screenshots`` each widget is also
saved as a small PNG cropped to its element.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])").expect

from lab_page import (  # noqa: E402 - needs playwright
    cell_index,
    cell_widget,
    edit_notebook,
    open_notebook,
    run_all,
    save_screenshot,
    screenshot_dir,
    visible_images,
)

from dlabel_lab import PayloadStore, read_manifest  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(480)]

NB01 = "notebooks/01_score_clips.ipynb"
NB03 = "notebooks/03_neuron_attributions.ipynb"
MAX_WIDGET_HEIGHT = 1200  # px at the suite's 1280-wide viewport: a widget stays about a screen tall

# Appended to the copy of notebook 03: retrain with the review it saved (chosen in the panel's params menu),
# and report what the DatasetBrowser's grid holds, for the column widths to be checked against the browser's font.
RETRAIN_CELL = """\
retrain_panel = RetrainPanel(store, v1.version, params=params_version, epochs=1)
assert retrain_panel.params_menu.value == params_version
retrain_panel.retrain_button.click()
assert retrain_panel.errors == [], retrain_panel.errors
retrain_panel"""
GRID_CELL = """\
import json
print("GRID" + json.dumps({"widths": browser.grid.column_widths, "id": browser.grid.data["id"].tolist(),
                           "clip": browser.grid.data["clip"].tolist()}))"""
GRID_FONT = "12px sans-serif"  # ipydatagrid's TextRenderer default
GRID_PADDING = 2 * 8  # its horizontal padding, both sides

# Appended to the copy of notebook 01: a second ScoringWidget on the last two operational clips, which the
# tutorial leaves unscored in fast mode, so the browser scores clips of its own.
BROWSER_CELL = """\
browser_clips = ops_rows[-2:]
browser_widget = ScoringWidget(ingest, browser_clips)
browser_widget"""


def _no_widget_errors(page) -> None:
    expect(page.get_by_text("Error displaying widget")).to_have_count(0)
    expect(page.locator(".jp-Notebook .jp-OutputArea-output", has_text="Traceback")).to_have_count(0)


def test_scoring_widget_click_and_number_key_land_in_the_store(page, lab):
    notebook = lab.root / NB01
    edit_notebook(notebook, lambda cells: [*cells, nbformat.v4.new_code_cell(BROWSER_CELL)])
    tutorial_cell = cell_index(notebook, "ScoringWidget(")
    browser_cell = len(nbformat.read(notebook, as_version=4).cells) - 1
    open_notebook(page, lab, NB01)
    run_all(page)
    _no_widget_errors(page)

    # The tutorial's own widget, clicked in code by the cells below it, shows that it is done.
    expect(cell_widget(page, tutorial_cell)).to_contain_text(re.compile(r"all \d+ clips done"))

    widget = cell_widget(page, browser_cell)
    names = [Path(p).name for p in _browser_clip_paths(lab.root)]
    expect(widget).to_contain_text(f"clip 1 of 2: {names[0]}")
    expect(widget.locator("img.widget-image").first).to_be_visible()
    save_screenshot(widget, "scoring_widget")
    markdown_cells = page.locator(".jp-Notebook .jp-MarkdownCell").count()

    widget.get_by_role("button", name="2 square").click()  # a click on a class button
    expect(widget).to_contain_text(f"clip 2 of 2: {names[1]}")
    expect(widget).to_contain_text("you said square")

    widget.locator(".widget-html").first.hover()  # ipyevents takes the keyboard while the pointer is over it
    page.keyboard.press("3")  # "3 triangle"
    expect(widget).to_contain_text("all 2 clips done")
    expect(widget).to_contain_text("you said triangle")
    expect(widget).to_contain_text("2 of 2 (2 scored, 0 skipped)")
    # The key went to the widget alone: JupyterLab's own "3" (make the cell a heading) did not fire.
    expect(page.locator(".jp-Notebook .jp-MarkdownCell")).to_have_count(markdown_cells)
    _no_widget_errors(page)

    page.close()
    lab.shut_down_kernel(NB01)  # the kernel owns the store; it lets go when it exits
    with PayloadStore(lab.root / "runs" / "nb01_store", read_only=True) as store:
        matched = store.matched().df()
        history = store.score_history()
    mine = matched[matched["source_name"].map(lambda p: Path(p).name).isin(names)]
    assert sorted(zip(mine["source_name"].map(lambda p: Path(p).name), mine["user_label"], mine["label_source"],
                      strict=True)) == [(names[0], "square", "human"), (names[1], "triangle", "human")]
    assert mine["predicted_label"].notna().all() and mine["media_ok"].all()
    assert history[history["scoring_id"].isin(mine["scoring_id"])]["label"].tolist() == ["square", "triangle"]


def _browser_clip_paths(root: Path) -> list[str]:
    """The clips the appended cell scores: the last two rows of the operational manifest."""
    return [r["path"] for r in read_manifest(root / "data" / "shapes" / "operational" / "labels.csv")[-2:]]


def _height(widget) -> float:
    box = widget.bounding_box()
    assert box is not None, "the widget is not shown"
    return box["height"]


def test_attribution_viewer_and_retrain_panel_are_compact_with_sane_charts(page, lab):
    notebook = lab.root / NB03
    edit_notebook(notebook, lambda cells: [*cells, nbformat.v4.new_code_cell(RETRAIN_CELL),
                                           nbformat.v4.new_code_cell(GRID_CELL)])
    viewer_cell = cell_index(notebook, "AttributionViewer(")
    browser_cell = cell_index(notebook, "DatasetBrowser(")
    retrain_cell, grid_cell = cell_index(notebook, "retrain_panel = "), cell_index(notebook, 'print("GRID"')
    open_notebook(page, lab, NB03)
    run_all(page)
    _no_widget_errors(page)
    assert page.viewport_size["width"] == 1280

    viewer = cell_widget(page, viewer_cell)
    expect(viewer).to_contain_text("predicted wrong")
    expect(viewer.get_by_role("button", name="Save review")).to_be_visible()  # the review is the first tab
    expect(viewer.locator("img.widget-image").first).to_be_visible()
    images = visible_images(viewer)
    assert len(images) >= 2, images  # the heatmap overlay and the attribution per frame
    for image in images:
        assert image["width"] > 100 and image["height"] < 600, image
        # drawn at the PNG's own pixels: never stretched or squashed by what is beside it
        assert abs(image["width"] - image["natural_width"]) <= 2, image
        assert abs(image["height"] - image["natural_height"]) <= 2, image
    assert _height(viewer) < MAX_WIDGET_HEIGHT, f"AttributionViewer is {_height(viewer)} px tall"
    save_screenshot(viewer, "attribution_viewer")

    panel = cell_widget(page, retrain_cell)
    expect(panel).to_contain_text("held-out clips")  # retrained: the comparison with its parent is shown
    expect(panel.locator("img.widget-image").first).to_be_visible()
    for image in visible_images(panel):  # the learning curves at their own size
        assert abs(image["width"] - image["natural_width"]) <= 2 and image["height"] < 600, image
    assert _height(panel) < MAX_WIDGET_HEIGHT, f"RetrainPanel is {_height(panel)} px tall"
    save_screenshot(panel, "retrain_panel")

    browser = cell_widget(page, browser_cell)
    expect(browser.locator(".widget-dropdown").first).to_be_visible()
    save_screenshot(browser, "dataset_browser")
    # ipydatagrid draws on a canvas: measure the grid's text in the browser's font against its column widths
    printed = page.locator(".jp-Notebook .jp-Cell").nth(grid_cell).locator(".jp-OutputArea-output").inner_text()
    grid = json.loads(printed.strip().removeprefix("GRID"))
    assert grid["id"] and all("…" in i and len(i) >= 13 for i in grid["id"]), grid["id"][:3]
    for column in ("id", "clip"):
        widths = page.evaluate("""([texts, font]) => { const c = document.createElement('canvas').getContext('2d');
                                   c.font = font; return texts.map(t => c.measureText(t).width); }""",
                               [grid[column], GRID_FONT])
        assert max(widths) + GRID_PADDING <= grid["widths"][column], (column, max(widths), grid["widths"][column])
    page.close()
    lab.shut_down_kernel(NB03)


# Screenshots of the widgets the two tests above do not open (the RetrainPanel's is notebook 03's, retrained).
# Each notebook's copy is cut after the cell that shows the widget at work, so the rest of the tutorial
# (run_loop, calibration, retraining) is not run.
SCREENSHOTS = [
    ("notebooks/05_label_less.ipynb", "LabelQueue(", "LabelQueue(", "label_queue"),
]


@pytest.mark.parametrize(("name", "shown_by", "last", "png"), SCREENSHOTS, ids=[s[3] for s in SCREENSHOTS])
def test_screenshot_of_widget(page, lab, name, shown_by, last, png):
    if screenshot_dir() is None:
        pytest.skip("screenshots only: set DLABEL_SCREENSHOTS=docs/screenshots to take them")
    notebook = lab.root / name
    stop = cell_index(notebook, last)
    edit_notebook(notebook, lambda cells: cells[: stop + 1])
    open_notebook(page, lab, name)
    run_all(page)
    _no_widget_errors(page)
    widget = cell_widget(page, cell_index(notebook, shown_by))
    expect(widget.locator(".widget-button").first).to_be_visible()
    expect(widget.locator("img.widget-image").first).to_be_visible()
    assert save_screenshot(widget, png) is not None
    page.close()
    lab.shut_down_kernel(name)
