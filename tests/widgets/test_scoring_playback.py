"""The ScoringWidget plays a clip at its own frame rate over native frame numbers, the model's frames marked.

Real clips written at a known frame rate, a real store and a tiny trained
model behind the endpoints (``loop``); the slider is moved as the browser
would move it (its ``value``), then we look at what the player shows.
"""

from __future__ import annotations

import numpy as np
import pytest
from widget_helpers import PNG, press

import dlabel_lab as dl
from dlabel_lab.media.video import Clip, _sample_indices
from dlabel_lab.widgets import ScoringWidget
from dlabel_lab.widgets._player import (
    HERE_COLOUR,
    MARK_COLOUR,
    ClipPlayer,
    marker_strip,
    playback_timing,
    row_at_or_before,
)

N_FRAMES = 30


def ramp_clip(path, fps):
    """``N_FRAMES`` frames of 32 x 32 whose grey level climbs with the frame number."""
    return dl.write_clip(path, (np.full((32, 32, 3), 8 * k, np.uint8) for k in range(N_FRAMES)), fps=fps)


@pytest.fixture
def ramps(tmp_path):
    return {fps: ramp_clip(tmp_path / f"ramp_{fps}fps.mp4", fps) for fps in (10, 25)}


def test_play_steps_native_frames_at_the_clips_own_rate(loop, ramps):
    store, ingest, version = loop
    w = ScoringWidget(ingest, [ramps[10], ramps[25]], display_spec=dl.ClipSpec(frames=4, size=32))
    assert w.play.interval == round(1000 / 10) == 100 and w.play.step == 1
    assert w.slider.max == w.play.max == N_FRAMES - 1 and w.player.frame_count == N_FRAMES
    assert w.player.display_indices == [0, 10, 19, 29]  # four display frames over 30 native frames

    for native, shown in [(0, 0), (9, 0), (10, 10), (15, 10), (18, 10), (19, 19), (28, 19), (29, 29)]:
        w.slider.value = native
        assert w.player.shown_index == shown, native  # the decoded frame at or before it
        row = w.player.display_indices.index(shown)
        assert bytes(w.frame.value) == w.player.frame_png(row)
        assert abs(float(w.player.frames[row].mean()) - 8 * shown) < 6  # the grey level of native frame `shown`
    w.slider.value = 15
    assert "frame 15 / 30 · 1.50 s" in w.player.readout.value

    w.skip_button.click()  # the next clip, at 25 fps: the player starts again at frame 0
    assert w.play.interval == round(1000 / 25) == 40 and w.slider.value == 0 and w.player.shown_index == 0
    w.slider.value = 15
    assert "frame 15 / 30 · 0.60 s" in w.player.readout.value
    assert w.errors == []


def test_the_frames_the_model_sees_are_marked_under_the_slider(loop, ramps):
    store, ingest, version = loop
    w = ScoringWidget(ingest, [ramps[25]])  # the default display spec: every native frame once
    assert w.player.display_indices == list(range(N_FRAMES)) and len(w.player.frames) == N_FRAMES
    assert w.player.marked == _sample_indices(N_FRAMES, ingest.spec) == [0, 10, 19, 29]  # spec: 4 frames
    strip = bytes(w.player.strip.value)
    assert strip.startswith(PNG) and w.player.strip.layout.display is None
    assert "a frame the model sees" in w.player.readout.value  # frame 0 is one
    w.slider.value = 5
    assert bytes(w.player.strip.value) != strip  # the red mark moved with the slider
    assert (
        "a frame the model sees" not in w.player.readout.value and "4 frames the model sees" in w.player.readout.value
    )
    w.slider.value = 19
    assert "a frame the model sees" in w.player.readout.value and w.player.shown_index == 19

    press(w, " ")  # space still plays, from where the slider stands
    assert w.play.playing
    w.buttons["circle"].click()  # scoring stops playback and clears the player at the end
    assert not w.play.playing and w.play.disabled and w.player.marked == [] and w.frame.layout.display == "none"
    assert w.errors == []


def test_a_clip_without_a_frame_rate_plays_at_25_fps_and_says_so():
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    frames[1] = 200
    player = ClipPlayer(width=64)
    assert player.play.disabled and player.image.layout.display == "none"
    player.show(
        Clip(frames=frames, fps=0.0, frame_count=10, width=8, height=8, codec="", indices=(0, 4, 4)), marked=[4, 99]
    )
    assert player.play.interval == 40 and player.fps == 25.0 and "declares no frame rate" in player.readout.value
    assert player.marked == [4] and player.display_indices == [0, 4]  # a repeat shown once, marks inside the clip
    player.slider.value = 7
    assert player.shown_index == 4 and "frame 7 / 10 · 0.28 s" in player.readout.value
    with pytest.raises(dl.ConfigError, match="read_clip"):
        player.show(Clip(frames=frames[:0], fps=25.0, frame_count=0, width=8, height=8, codec="", indices=()))


def test_timing_rows_and_strip_are_computed_exactly():
    assert playback_timing(10) == (100, 1, 10.0) and playback_timing(25) == (40, 1, 25.0)
    assert playback_timing(60) == (33, 2, 60.0)  # above 50 fps: two frames per tick, still real time
    assert playback_timing(0.5) == (1000, 1, 0.5) and playback_timing(float("nan")) == (40, 1, 25.0)
    assert [row_at_or_before([2, 5, 9], k) for k in (0, 2, 4, 5, 8, 9, 12)] == [0, 0, 0, 1, 1, 2, 2]
    strip = marker_strip(5, [0, 4], 2, width=9, height=3)
    assert strip.shape == (3, 9, 3) and strip.dtype == np.uint8
    assert [tuple(strip[-1, x]) for x in (0, 4, 8)] == [MARK_COLOUR, HERE_COLOUR, MARK_COLOUR]
    assert tuple(strip[0, 0]) != MARK_COLOUR  # a mark is shorter than the red line of the current frame
