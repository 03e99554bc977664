"""The ScoringWidget at the speed of a keyboard, with clips that cannot be read, and where its errors go.

Key presses arrive the way the browser sends them: ipyevents posts the key
event as a custom comm message to its ``Event`` widget.
"""

from __future__ import annotations

import shutil

import pytest
from widget_helpers import PNG, hidden, latest, press, shown_png

import dlabel_lab as dl
from dlabel_lab.widgets import ScoringWidget


def test_number_keys_score_s_skips_u_undoes_space_plays(loop, clips):
    store, ingest, version = loop
    w = ScoringWidget(ingest, clips[:4])
    assert w.key_events.source is w and w.key_events.watched_events == ["keydown"]
    assert w.key_events.prevent_default_action  # the notebook's own shortcuts do not fire as well
    assert "0 of 4" in w.progress_text.value and w.progress.max == 4

    press(w, "2")  # "2 square"
    assert w.position == 1 and w.results[0].label == "square"
    assert latest(store, w.results[0].scoring_id) == "square"
    press(w, "s")
    assert w.position == 2 and w.skipped == [1]
    press(w, "u")
    assert w.position == 1 and w.skipped == []
    press(w, "3")
    assert w.position == 2 and latest(store, w.results[1].scoring_id) == "triangle"
    assert w.progress.value == 2 and "2 of 4 (2 scored, 0 skipped)" in w.progress_text.value

    assert not w.play.playing
    press(w, " ")
    assert w.play.playing
    press(w, " ")
    assert not w.play.playing

    press(w, "s", ctrlKey=True)  # Ctrl+S saves the notebook; it does not skip
    press(w, "9")  # no ninth class
    press(w, "x")
    assert w.position == 2 and len(store.matched().df()) == 2
    w.key_events._handle_msg(
        {"content": {"data": {"method": "custom", "content": {"type": "keyup", "key": "1"}}}, "buffers": []}
    )
    assert w.position == 2

    press(w, "u")  # back to clip 2, scored: the next number key corrects it
    press(w, "1")
    assert store.score_history(w.results[1].scoring_id)["label"].tolist() == ["triangle", "circle"]
    assert w.press("1") and not w.press("q")  # the same, called from code
    assert w.errors == [] and w.output.outputs == ()


def test_a_missing_middle_clip_is_shown_as_an_error_and_skipped(loop, clips, tmp_path):
    store, ingest, version = loop
    gone = tmp_path / "deleted_meanwhile.mp4"
    w = ScoringWidget(ingest, [clips[0]["path"], gone, clips[2]["path"]])
    w.buttons[clips[0]["label"]].click()
    assert "clip 2 of 3: deleted_meanwhile.mp4" in w.header.value
    assert "deleted_meanwhile.mp4 cannot be shown: MissingMedia" in w.clip_error.value
    assert all(b.disabled for b in w.buttons.values()) and not w.skip_button.disabled
    assert w.frame.layout.display == "none" and hidden(w.filmstrip)  # not the previous clip's frames
    assert list(w.unreadable) == [1]

    w.buttons["circle"].click()  # off: a click that still arrives does nothing ...
    press(w, "1")  # ... and neither does its key
    with pytest.raises(dl.MissingMedia, match="skip it"):
        w.score("circle")  # from code: raised to the caller
    assert w.position == 1 and len(store.matched().df()) == 1 and w.output.outputs == ()

    press(w, "s")
    assert w.position == 2 and w.skipped == [1] and w.clip_error.value == ""
    assert not any(b.disabled for b in w.buttons.values()) and shown_png(w.filmstrip)
    assert bytes(w.frame.value).startswith(PNG) and w.frame.layout.display is None
    w.buttons[clips[2]["label"]].click()
    assert "all 3 clips done" in w.header.value and "3 of 3 (2 scored, 1 skipped)" in w.progress_text.value
    assert len(store.matched().df()) == 2 and w.errors == []


def test_a_missing_first_clip_does_not_stop_the_widget(loop, clips, tmp_path):
    store, ingest, version = loop
    w = ScoringWidget(ingest, [tmp_path / "gone.mp4", clips[1]["path"]])
    assert "clip 1 of 2: gone.mp4" in w.header.value and "gone.mp4 cannot be shown" in w.clip_error.value
    assert all(b.disabled for b in w.buttons.values()) and w.play.disabled and w.frame.layout.display == "none"
    w.skip_button.click()
    assert w.position == 1 and w.clip_error.value == "" and not w.buttons["circle"].disabled
    w.undo_button.click()  # back to it: still an error, still off
    assert w.position == 0 and "gone.mp4 cannot be shown" in w.clip_error.value and w.buttons["circle"].disabled
    assert w.errors == []


def test_calls_from_code_raise_clicks_show_errors_in_the_widget(loop, clips, tmp_path):
    store, ingest, version = loop
    with pytest.raises(dl.UnknownLabel, match="NotAClass"):
        ScoringWidget(ingest, clips[:2]).score("NotAClass")

    copy = tmp_path / "copy.mp4"
    shutil.copy(clips[0]["path"], copy)
    w = ScoringWidget(ingest, [copy, clips[1]["path"]])
    with pytest.raises(dl.UnknownLabel):
        w.score("NotAClass")
    assert w.output.outputs == () and w.errors == [] and w.position == 0  # nothing shown far above

    copy.unlink()  # the file goes away after it was shown; the click fails inside the widget
    w.buttons["circle"].click()
    assert [type(e) for e in w.errors] == [dl.MissingMedia] and w.position == 0
    assert len(w.output.outputs) == 1 and w.output.outputs[0]["text"].startswith("MissingMedia: ")
    assert "copy.mp4 cannot be shown" in w.clip_error.value and w.buttons["circle"].disabled
    assert store.matched().df().empty
