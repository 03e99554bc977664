"""The tutorials in a real JupyterLab and Chromium: Run All, then click and type as a labeller would.

Each test opens a temporary copy of a tutorial (``lab_server.copy_tutorials``),
runs all its cells in fast mode through JupyterLab's Run menu, and checks what
only a browser shows: that the widgets render, that a click and a number key
reach the kernel and land in the store, and that charts are drawn at a sane
size. With ``DLABEL_SCREENSHOTS=docs/screenshots`` each widget is also saved
as a small PNG cropped to its element.
"""

from __future__ import annotations

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


def test_attribution_viewer_charts_have_sane_sizes(page, lab):
    notebook = lab.root / NB03
    viewer_cell = cell_index(notebook, "AttributionViewer(")
    browser_cell = cell_index(notebook, "DatasetBrowser(")
    open_notebook(page, lab, NB03)
    run_all(page)
    _no_widget_errors(page)

    viewer = cell_widget(page, viewer_cell)
    expect(viewer).to_contain_text("predicted wrong")
    expect(viewer.locator("img.widget-image").first).to_be_visible()
    images = visible_images(viewer)
    assert len(images) >= 2, images  # the heatmap overlay and the attribution per frame
    for image in images:
        assert image["width"] > 100 and image["height"] < 600, image
        # drawn at the PNG's own pixels: never stretched or squashed by the tables beside it
        assert abs(image["width"] - image["natural_width"]) <= 2, image
        assert abs(image["height"] - image["natural_height"]) <= 2, image
    save_screenshot(viewer, "attribution_viewer")

    browser = cell_widget(page, browser_cell)
    expect(browser.locator(".widget-dropdown").first).to_be_visible()
    save_screenshot(browser, "dataset_browser")
    page.close()
    lab.shut_down_kernel(NB03)


# Screenshots of the widgets the two tests above do not open. Each notebook's copy is cut after the cell that
# shows the widget at work, so the rest of the tutorial (run_loop, calibration, retraining) is not run.
SCREENSHOTS = [
    ("notebooks/04_retrain_interactively.ipynb", "RetrainPanel(", "panel.retrain_button.click()",
     "retrain_panel"),
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
