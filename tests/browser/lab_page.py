"""Driving a JupyterLab 4.6 notebook page with Playwright: open, Run All, find a cell's widget, screenshot it.

The selectors are JupyterLab's and ipywidgets 8's own DOM classes
(``.jp-Notebook``, ``.jp-Cell``, ``.jp-InputPrompt``, ``.widget-vbox``,
``.widget-image``). Cells stay in the DOM because the server's settings turn
the notebook's virtual scrolling off (``lab_server.LAB_SETTINGS``), so the
n-th ``.jp-Cell`` is the notebook's n-th cell.

Example:
    >>> open_notebook(page, server, "notebooks/01_score_clips.ipynb")  # doctest: +SKIP
    >>> run_all(page)  # doctest: +SKIP
    >>> cell_widget(page, 10).get_by_role("button", name="1 circle").click()  # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat
from lab_server import REPO, LabServer

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

OPEN_TIMEOUT_MS = 120_000  # JupyterLab's first page load on a loaded 2-core machine
RUN_ALL_TIMEOUT_MS = 300_000  # a tutorial in fast mode takes about 30 s alone on 2 cores
WIDGET_TIMEOUT_MS = 60_000
SCREENSHOT_LIMIT = 200_000  # bytes per PNG under docs/screenshots
MAX_VIEWPORT_HEIGHT = 3000
MAX_SHOT_HEIGHT = 2600  # a taller widget is shown from its top

_PROMPTS = "() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]" \
           ".map(e => e.textContent.trim())"
# Run All has finished (or stopped at an error) when the first cell has run and no cell is queued any more.
_RUN_ALL_OVER = """() => {
  const p = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim());
  return p.length > 0 && /^\\[\\d+\\]:$/.test(p[0]) && !p.includes('[*]:');
}"""


def cell_index(notebook: Path, text: str) -> int:
    """Index (among all cells) of the first code cell of ``notebook`` whose source contains ``text``."""
    cells = nbformat.read(notebook, as_version=4).cells
    found = next((i for i, c in enumerate(cells) if c.cell_type == "code" and text in c.source), None)
    if found is None:
        raise LookupError(f"no code cell of {notebook.name} contains {text!r}")
    return found


def edit_notebook(notebook: Path, change: Callable[[list], list]) -> None:
    """Rewrite ``notebook`` (a temporary copy) with ``change(cells)``."""
    nb = nbformat.read(notebook, as_version=4)
    nb.cells = change(list(nb.cells))
    nbformat.write(nb, notebook)


def open_notebook(page: Page, server: LabServer, notebook: str) -> None:
    """Open ``notebook`` (relative to the server's root) alone in a fresh workspace; wait for an idle kernel."""
    workspace = Path(notebook).stem.replace("_", "-")
    page.goto(server.lab_url(notebook, workspace), timeout=OPEN_TIMEOUT_MS)
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=OPEN_TIMEOUT_MS)
    server.wait_for_idle_kernel(notebook)


def run_all(page: Page, *, timeout_ms: int = RUN_ALL_TIMEOUT_MS) -> None:
    """Run > Run All Cells, wait until it is over, and fail with the notebook's errors if a cell failed."""
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
    page.wait_for_function(_RUN_ALL_OVER, timeout=timeout_ms, polling=500)
    prompts = page.evaluate(_PROMPTS)
    not_run = [i for i, p in enumerate(prompts) if not (p.startswith("[") and p[1:-2].isdigit())]
    if not_run:
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        text = "\n".join(errors.all_inner_texts())[-4000:]
        raise AssertionError(f"Run All stopped: code cells {not_run} did not run (prompts {prompts}).\n{text}")


def cell(page: Page, index: int) -> Locator:
    """The notebook's ``index``-th cell (markdown cells count)."""
    return page.locator(".jp-Notebook .jp-Cell").nth(index)


def cell_widget(page: Page, index: int) -> Locator:
    """The outermost widget (a ``VBox``) shown by cell ``index``, once it has rendered."""
    widget = cell(page, index).locator(".jp-OutputArea-output .widget-vbox").first
    widget.wait_for(timeout=WIDGET_TIMEOUT_MS)
    return widget


def visible_images(widget: Locator) -> list[dict]:
    """Bounding box and PNG size of every image the widget shows (hidden ones left out)."""
    return widget.locator("img.widget-image").evaluate_all("""els => els
        .filter(e => e.getClientRects().length > 0 && getComputedStyle(e).display !== 'none')
        .map(e => { const r = e.getBoundingClientRect();
                    return {width: r.width, height: r.height, natural_width: e.naturalWidth,
                            natural_height: e.naturalHeight}; })""")


def screenshot_dir() -> Path | None:
    """Where widget screenshots go: ``$DLABEL_SCREENSHOTS`` (relative to the repository), or ``None``."""
    folder = os.environ.get("DLABEL_SCREENSHOTS", "").strip()
    if not folder:
        return None
    path = Path(folder)
    return path if path.is_absolute() else REPO / path


def save_screenshot(widget: Locator, name: str) -> Path | None:
    """A PNG of ``widget`` cropped to its element, as ``<screenshot_dir>/<name>.png``; nothing when unset.

    The page grows as tall as the widget (up to ``MAX_VIEWPORT_HEIGHT``) so that JupyterLab's notebook
    scroller shows all of it; a taller widget is cut at ``MAX_SHOT_HEIGHT``. The PNG is reduced to a
    256-colour palette (Pillow) so that it stays well under 200 KB.
    """
    folder = screenshot_dir()
    if folder is None:
        return None
    from PIL import Image

    page = widget.page
    before = page.viewport_size
    box = widget.bounding_box()
    assert box is not None, f"{name}: the widget is not shown"
    page.set_viewport_size({"width": before["width"],
                            "height": max(before["height"], min(int(box["height"]) + 300, MAX_VIEWPORT_HEIGHT))})
    try:
        page.evaluate(_NEXT_FRAMES)  # Lumino lays the shell out again on the next animation frame
        widget.evaluate("e => e.scrollIntoView({block: 'start'})")
        widget.evaluate(_IMAGES_LOADED)
        page.evaluate(_NEXT_FRAMES)
        clip = page.evaluate(_VISIBLE_PART, widget.element_handle())
        clip["height"] = min(clip["height"], MAX_SHOT_HEIGHT)
        png = page.screenshot(clip=clip, animations="disabled", caret="hide")
    finally:
        page.set_viewport_size(before)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    with Image.open(io.BytesIO(png)) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    assert path.stat().st_size < SCREENSHOT_LIMIT, f"{path} is {path.stat().st_size} bytes"
    return path


_NEXT_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
_IMAGES_LOADED = """e => Promise.all([...e.querySelectorAll('img')].map(
    i => i.complete ? null : new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); })))"""
# The part of the element inside the notebook's scroller (never the toolbar or the status bar above and below it).
_VISIBLE_PART = """e => {
  const r = e.getBoundingClientRect();
  const s = e.closest('.jp-WindowedPanel-outer') || document.documentElement;
  const v = s.getBoundingClientRect();
  const top = Math.max(r.top, v.top), bottom = Math.min(r.bottom, v.bottom);
  return {x: r.left, y: top, width: r.width, height: Math.max(bottom - top, 1)};
}"""
