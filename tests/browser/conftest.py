"""Fixtures of the browser suite: Debian's Chromium through Playwright, and one JupyterLab for the session.

Playwright's own browser download cannot work offline, so the suite drives the
system's Chromium (``apt-get install chromium`` gives ``/usr/bin/chromium``;
``DLABEL_CHROMIUM`` names another binary). Without Playwright or a Chromium
that starts, every test here is skipped with the reason; anything that goes
wrong after that fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from lab_server import LabServer

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VIEWPORT = {"width": 1280, "height": 1400}  # a laptop's width; tall enough that a whole widget fits on screen


def find_chromium() -> str | None:
    """``$DLABEL_CHROMIUM``, else the first Chromium or Chrome on ``PATH`` (``/usr/bin/chromium`` on Debian)."""
    wanted = os.environ.get("DLABEL_CHROMIUM", "").strip()
    if wanted:
        return wanted if Path(wanted).is_file() else None
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium driven by Playwright (sync API); skips the suite where none can be started."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found: apt-get install chromium (Debian), or set DLABEL_CHROMIUM to a "
                    "Chromium/Chrome binary")
    playwright = sync_api.sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],  # root in a container, small /dev/shm
        )
    except Exception as error:  # Playwright raises its own Error; a missing library shows up the same way
        playwright.stop()
        pytest.skip(f"Playwright could not start Chromium at {executable}: {str(error).splitlines()[0]}")
    try:
        yield browser
    finally:
        browser.close()
        playwright.stop()


@pytest.fixture(scope="session")
def lab(chromium, tmp_path_factory):
    """JupyterLab on 127.0.0.1 serving temporary copies of the tutorials; shut down, kernels too, at the end."""
    server = LabServer.start(tmp_path_factory.mktemp("jupyterlab"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(chromium, lab):
    """A fresh browser page (its own context: no cookies or storage shared between tests)."""
    context = chromium.new_context(viewport=VIEWPORT, device_scale_factor=1)
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
