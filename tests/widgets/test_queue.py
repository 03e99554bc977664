"""The LabelQueue widget without a browser: clicks land in the store with the query as author."""

from __future__ import annotations

import pytest
import torch
from widget_helpers import latest, press

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
        ingest.score_many(
            [r["path"] for r in rows], [r["label"] if i < 3 else None for i, r in enumerate(rows)], progress=False
        )
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


def test_keys_label_skip_and_undo_with_corrections_appended(queued):
    store, queue = queued
    ids = queue.scoring_ids
    w = LabelQueue(store, queue, classes=CLASSES, author="ana")
    assert [b.description for b in w.buttons.values()] == ["1 circle", "2 square", "3 triangle"]
    assert w.key_events.source is w and w.key_events.watched_events == ["keydown"]
    assert w.key_events.prevent_default_action and w.undo_button.disabled
    assert "1-3 class, s skip, u undo, space play/pause" in w.children[-2].value

    press(w, "2")  # "2 square"
    assert w.labelled == [(ids[0], "square")] and latest(store, ids[0]) == "square"
    press(w, "s")
    assert w.position == 2 and w.skipped == [ids[1]]
    press(w, "s", ctrlKey=True)  # Ctrl+S saves the notebook; it does not skip
    press(w, "9")  # no ninth class
    assert w.position == 2

    press(w, "u")  # back to the skipped clip
    assert w.position == 1 and w.skipped == []
    press(w, "u")  # back to the labelled one: the next key corrects it
    assert w.position == 0 and "Already labelled square" in w.why.value
    press(w, "3")
    history = store.score_history(ids[0])
    assert history["label"].tolist() == ["square", "triangle"] and set(history["author"]) == {"ana"}
    assert set(history["source"]) == {"human"}  # an audit or estimate reads its labels by source
    assert w.labelled == [(ids[0], "triangle")] and latest(store, ids[0]) == "triangle"

    press(w, "1")
    press(w, "S")  # either case
    assert w.labelled == [(ids[0], "triangle"), (ids[1], "circle")] and w.skipped == [ids[2]]
    assert "queue done: 2 labelled, 1 skipped" in w.header.value and w.progress.value == 2
    assert not w.press("1") and w.press("u") and w.position == 2  # from code, the same
    assert w.errors == [] and w.output.outputs == ()


def test_the_queue_plays_the_stored_clip_with_the_models_frames_marked(queued):
    store, queue = queued
    w = LabelQueue(store, queue, classes=CLASSES)
    assert w.player.frame_count == 6 and w.player.slider.max == 5
    assert w.player.play.interval == round(1000 / 12)  # make_shape_clips writes 12 fps
    assert w.player.marked == [0, 2, 3, 5]  # the model's record: 4 frames of 6
    w.player.slider.value = 4
    assert w.player.shown_index == 4 and "frame 4 / 6 · 0.33 s" in w.player.readout.value
    press(w, " ")
    assert w.player.play.playing
    press(w, "1")
    assert not w.player.play.playing and w.player.slider.value == 0


def test_a_clip_whose_stored_copy_is_damaged_is_shown_as_an_error_and_skipped(queued):
    store, queue = queued
    store.verified_raw_path(queue.scoring_ids[1]).write_bytes(b"not a video any more")
    w = LabelQueue(store, queue, classes=CLASSES)
    press(w, "1")
    assert w.position == 1 and "clip 2 cannot be shown: StoreCorrupt" in w.clip_error.value
    assert all(b.disabled for b in w.buttons.values()) and not w.skip_button.disabled
    assert w.player.play.disabled and w.player.image.layout.display == "none" and list(w.unreadable) == [1]
    press(w, "2")  # off: nothing logged
    assert w.labelled == [(queue.scoring_ids[0], "circle")]
    press(w, "s")
    assert w.position == 2 and w.clip_error.value == "" and not w.buttons["circle"].disabled
    assert w.skipped == [queue.scoring_ids[1]] and w.errors == []
