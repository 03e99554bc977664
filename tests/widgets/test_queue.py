"""The LabelQueue widget without a browser: clicks land in the store with the query as author."""

from __future__ import annotations

import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.widgets import LabelQueue

CLASSES = ["circle", "square", "triangle"]
SPEC = dl.ClipSpec(frames=4, size=32)


@pytest.fixture
def queued(tmp_path):
    rows = dl.read_manifest(dl.make_shape_clips(tmp_path / "clips", 8, seed=2, frames=6, size=32))
    with dl.PayloadStore(tmp_path / "store") as store:
        torch.manual_seed(0)
        model = dl.ClipClassifier(classes=CLASSES, backbone="tiny3d", spec=SPEC, embed_dim=16)
        ingest = dl.deploy(model, store, classes=CLASSES, name="shapes")
        ingest.score_many([r["path"] for r in rows], [r["label"] if i < 3 else None for i, r in enumerate(rows)],
                          progress=False)
        yield store, dl.suggest(store, ingest.model_version, 3, strategy="entropy")


def test_clicks_label_the_suggested_clips_in_order(queued):
    store, queue = queued
    w = LabelQueue(store, queue, classes=CLASSES)
    assert "clip 1 of 3" in w.header.value and "why asked: entropy" in w.why.value
    assert bytes(w.filmstrip.value[:4]) == b"\x89PNG"
    w.buttons["square"].click()
    w.skip_button.click()
    w.buttons["circle"].click()
    assert w.labelled == [(queue.scoring_ids[0], "square"), (queue.scoring_ids[2], "circle")]
    assert w.skipped == [queue.scoring_ids[1]]
    assert all(b.disabled for b in w.buttons.values()) and "queue done: 2 labelled, 1 skipped" in w.header.value
    history = store.score_history()
    mine = history[history["author"] == f"suggest:{queue.run_id}"]
    assert sorted(mine["scoring_id"]) == sorted([queue.scoring_ids[0], queue.scoring_ids[2]])
    assert set(mine["source"]) == {"human"}
    w.buttons["circle"].click()  # nothing left: no new row, no error
    assert len(store.score_history()) == len(history) and w.errors == []


def test_errors_raise_from_code_show_in_the_widget_from_clicks_and_bad_arguments_are_refused(queued, monkeypatch):
    store, queue = queued
    w = LabelQueue(store, queue, classes=CLASSES, author="ana")
    with pytest.raises(dl.UnknownLabel, match="hexagon"):
        w.label("hexagon")  # from code: to the caller, not into the widget far above
    assert w.errors == [] and w.output.outputs == () and w.position == 0
    w.label("circle")
    assert store.score_history().iloc[-1]["author"] == "ana"

    def refuse(*args, **kwargs):
        raise dl.StoreError("the disk is full")

    monkeypatch.setattr(store, "log_score", refuse)
    w.buttons["square"].click()  # from the widget's own button: shown inside it
    assert [str(e) for e in w.errors] == ["the disk is full"] and w.position == 1
    assert w.output.outputs[0]["text"] == "StoreError: the disk is full\n"
    assert not w.buttons["square"].disabled  # the store is open: the widget stays on
    with pytest.raises(dl.ConfigError, match="what suggest"):
        LabelQueue(store, queue.table, classes=CLASSES)
    with pytest.raises(dl.ConfigError, match="source"):
        LabelQueue(store, queue, classes=CLASSES, source=" ")


def test_the_dataset_browser_filters_by_label_source(queued):
    from dlabel_lab.widgets import DatasetBrowser

    store, queue = queued
    w = LabelQueue(store, queue, classes=CLASSES)
    w.buttons["circle"].click()
    store.log_score(queue.scoring_ids[1], "square", source="auto", author="shapes-v1")
    browser = DatasetBrowser(store)
    assert [v for _, v in browser.source.options] == [browser.ANY, "auto", "human"]
    browser.source.value = "auto"
    assert browser.records["scoring_id"].tolist() == [queue.scoring_ids[1]]
    assert browser.filters()["label_source"] == "auto"
    browser.source.value = "human"
    assert len(browser.records) == 4  # three labelled at ingest, one from the queue


def test_the_queue_switches_off_when_its_store_is_closed(queued):
    store, queue = queued
    w = LabelQueue(store, queue, classes=CLASSES)
    store.close()
    w.buttons["circle"].click()
    assert w.errors == [] and w.labelled == [] and "is closed" in w.children[0].value
    assert all(b.disabled for b in [*w.buttons.values(), w.skip_button])
