"""After ``store.close()`` (a notebook's last cell), a widget says its store is closed and switches off.

Its controls are disabled and a message stands above them; no callback raises
``StoreError`` on every click. Calls from code still raise to their caller.
"""

from __future__ import annotations

import ipywidgets as widgets
import pytest
from widget_helpers import press, score_all

import dlabel_lab as dl
from dlabel_lab.widgets import DatasetBrowser, RetrainPanel, ScoringWidget


def controls(widget):
    """Every widget under ``widget`` that can be switched off."""
    found = [widget] if widget.has_trait("disabled") else []
    for child in getattr(widget, "children", ()):
        found += controls(child)
    return found


def assert_switched_off(view, store):
    assert view.errors == [] and view.output.outputs == ()
    banner = view.children[0]
    assert isinstance(banner, widgets.HTML) and banner is view.switched_off
    assert f"The payload store {store.path} is closed" in banner.value and "this widget is switched off" in banner.value
    assert controls(view) and all(c.disabled for c in controls(view))


def test_the_scoring_widget_switches_off(loop, clips):
    store, ingest, version = loop
    w = ScoringWidget(ingest, clips[:3])
    w.buttons[clips[0]["label"]].click()
    assert [c for c in controls(w) if not c.disabled]  # alive while the store is open
    store.close()
    w.buttons[clips[1]["label"]].click()
    assert_switched_off(w, store)
    assert w.position == 1 and len(w.results) == 1
    press(w, "1")  # keys too: no error, still one banner
    assert_switched_off(w, store)
    assert sum(isinstance(c, widgets.HTML) and "is closed" in c.value for c in w.children) == 1
    with pytest.raises(dl.StoreError, match="closed"):
        w.score(clips[1]["label"])  # from code: raised as usual


def test_the_dataset_browser_and_retrain_panel_switch_off(loop, clips):
    store, ingest, version = loop
    score_all(ingest, clips[:4])
    browser = DatasetBrowser(store)
    panel = RetrainPanel(store, version)
    store.close()
    browser.correct.value = False  # nb02's "wrong" filter
    assert_switched_off(browser, store)
    browser.reload_button.click()
    assert_switched_off(browser, store)
    panel.retrain_button.click()  # nb04's Retrain
    assert_switched_off(panel, store)
    assert panel.last_version is None
