"""The clip player shared by the scoring widgets: playback at the clip's own frame rate.

Play and the slider run over the clip's native frame numbers; each native
frame shows the nearest decoded display frame at or before it, and a thin
strip under the slider marks the frames the model sees and the position.

Example:
    >>> playback_timing(25.0)[:2]
    (40, 1)
"""

from __future__ import annotations

import bisect
import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np

from ..errors import ConfigError
from ._common import BLANK_PNG, frame_png

__all__ = ["FALLBACK_FPS", "playback_timing", "row_at_or_before", "marker_strip", "ClipPlayer"]


# -- playback at the clip's own frame rate --------------------------------------------------------
FALLBACK_FPS = 25.0
"""The frame rate assumed for a clip whose container declares none."""
MIN_INTERVAL_MS, MAX_INTERVAL_MS = 20, 1000


def playback_timing(fps: float) -> tuple[int, int, float]:
    """How to play native frames at ``fps``: ``(interval_ms, step, fps_used)``.

    One native frame every ``round(1000 / fps)`` ms; above 50 fps the player
    steps over several frames per tick (keeping real time), below 1 fps it
    waits at most a second. A missing or non-positive fps plays at
    :data:`FALLBACK_FPS`.

    Example:
        >>> playback_timing(25.0), playback_timing(120.0), playback_timing(0)
        ((40, 1, 25.0), (25, 3, 120.0), (40, 1, 25.0))
    """
    fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else FALLBACK_FPS
    step = max(1, math.ceil(MIN_INTERVAL_MS * fps / 1000 - 1e-9))
    interval = round(1000 * step / fps)
    return min(max(interval, MIN_INTERVAL_MS), MAX_INTERVAL_MS), step, fps


def row_at_or_before(indices: Sequence[int], native: int) -> int:
    """The row of the decoded frame shown at native frame ``native``: the last at or before it (else the first).

    Example:
        >>> row_at_or_before([0, 4, 8], 7), row_at_or_before([2, 4], 0)
        (1, 0)
    """
    return max(bisect.bisect_right(list(indices), native) - 1, 0)


MARK_COLOUR, HERE_COLOUR, STRIP_COLOUR = (31, 119, 180), (214, 39, 40), (228, 228, 228)


def marker_strip(
    frame_count: int, marked: Iterable[int], current: int | None = None, *, width: int = 256, height: int = 10
) -> np.ndarray:
    """A thin RGB strip over native frames ``0..frame_count-1``: blue ticks at ``marked``, red at ``current``.

    Frame ``k`` sits at column ``round(k / (frame_count - 1) * (width - 1))``,
    like a slider's handle over the same range.

    Example:
        >>> strip = marker_strip(11, [0, 10], 5, width=11, height=2)
        >>> strip[0, 0].tolist(), strip[0, 10].tolist(), strip[0, 5].tolist()
        ([31, 119, 180], [31, 119, 180], [214, 39, 40])
    """
    strip = np.empty((height, width, 3), np.uint8)
    strip[:] = STRIP_COLOUR

    def column(k: int) -> int:
        return 0 if frame_count <= 1 else round(min(max(k, 0), frame_count - 1) / (frame_count - 1) * (width - 1))

    for k in marked:
        strip[height // 3 :, column(k)] = MARK_COLOUR
    if current is not None:
        strip[:, column(current)] = HERE_COLOUR
    return strip


class ClipPlayer(widgets.VBox):
    """A decoded clip played at its own frame rate, with a slider over native frame numbers and marked frames.

    The slider and the ``Play`` step over the clip's native frame numbers
    ``0..frame_count-1`` at :func:`playback_timing` (one frame every
    ``round(1000 / fps)`` ms); each native frame shows the nearest decoded
    display frame at or before it. A strip under the slider marks ``marked``
    (the frames a model sees) and the current position; the readout says
    ``frame 37 / 250 · 1.48 s``. Frames are PNG-encoded when first shown and
    kept, one small PNG per decoded frame at most.

    Attributes:
        image: The frame on show.
        play: Steps the slider at the clip's frame rate.
        slider: Native frame number.
        readout: Frame number, time, whether the model sees this frame.
        strip: The marker strip (an image as wide as the slider).
        fps: The frame rate played (the clip's, or :data:`FALLBACK_FPS`).
        frame_count: Native frames in the clip.
        display_indices: Native frame number of each decoded display frame.
        marked: Native frame numbers marked on the strip.
        shown_index: Native frame number of the decoded frame on show (``None`` when empty).

    Example:
        >>> player = ClipPlayer()
        >>> player.show(read_clip("clip.mp4", ClipSpec(frames=48, size=128)), marked=[0, 5, 9])  # doctest: +SKIP
        >>> player.slider.value = 7; player.shown_index  # doctest: +SKIP
        6
    """

    def __init__(self, *, width: int = 256) -> None:
        self.width = int(width)
        self.fps = FALLBACK_FPS
        self.frame_count = 0
        self.display_indices: list[int] = []
        self.marked: list[int] = []
        self.shown_index: int | None = None
        self.note = ""
        self._frames: np.ndarray | None = None
        self._pngs: dict[int, bytes] = {}
        self.image = widgets.Image(value=BLANK_PNG, format="png", width=self.width, height=self.width)
        self.play = widgets.Play(min=0, max=0, interval=round(1000 / FALLBACK_FPS), description="play")
        self.slider = widgets.IntSlider(
            min=0, max=0, readout=False, continuous_update=True, layout=widgets.Layout(width=f"{self.width}px")
        )
        widgets.jslink((self.play, "value"), (self.slider, "value"))
        self.strip = widgets.Image(
            value=BLANK_PNG,
            format="png",
            width=self.width,
            height=10,
            layout=widgets.Layout(width=f"{self.width}px", height="10px", margin="0 0 0 4px"),
        )
        self.readout = widgets.HTML()
        self.slider.observe(self._on_slider, names="value")
        super().__init__([self.image, widgets.HBox([self.play, widgets.VBox([self.slider, self.strip]), self.readout])])
        self.clear()

    def show(self, clip: Any, *, marked: Iterable[int] = ()) -> None:
        """Show ``clip`` (a :class:`~dlabel_lab.media.video.Clip`) from native frame 0, marking ``marked``.

        Raises:
            ConfigError: The clip has no frames.

        Example:
            >>> player.show(clip, marked=[0, 4, 8])  # doctest: +SKIP
        """
        indices = [int(i) for i in clip.indices]
        if not indices or len(clip.frames) != len(indices):
            raise ConfigError("ClipPlayer.show needs a decoded clip with one index per frame; read it with read_clip")
        order = sorted(dict.fromkeys(indices))  # a short clip sampled with repeats: each frame once
        first_row = {i: r for r, i in reversed(list(enumerate(indices)))}
        self.play.playing = False
        self._frames = np.asarray(clip.frames)[[first_row[i] for i in order]]
        self._pngs = {}
        self.display_indices = order
        self.frame_count = max(int(clip.frame_count), order[-1] + 1)
        interval, step, self.fps = playback_timing(clip.fps)
        self.note = "" if self.fps == clip.fps else f" (the clip declares no frame rate: played at {self.fps:g} fps)"
        self.marked = sorted({int(k) for k in marked if 0 <= int(k) < self.frame_count})
        self.play.interval, self.play.step = interval, step
        self.play.max = self.slider.max = self.frame_count - 1
        self.play.disabled = self.slider.disabled = False
        self.image.layout.display = None
        if self.slider.value == 0:
            self._show_at(0)
        else:
            self.slider.value = 0  # the observer shows frame 0

    def clear(self) -> None:
        """Show nothing: the image and strip hidden, play and slider off.

        Example:
            >>> player.clear(); player.play.disabled  # doctest: +SKIP
            True
        """
        self.play.playing = False
        self._frames, self._pngs = None, {}
        self.display_indices, self.marked, self.frame_count, self.shown_index = [], [], 0, None
        self.play.max = self.slider.max = 0
        self.slider.value = 0
        self.play.disabled = self.slider.disabled = True
        self.image.value, self.image.layout.display = BLANK_PNG, "none"
        self.strip.value, self.strip.layout.display = BLANK_PNG, "none"
        self.readout.value = ""

    @property
    def frames(self) -> np.ndarray | None:
        """The decoded display frames on show, each native frame once, in order (``None`` when empty)."""
        return self._frames

    def toggle(self) -> None:
        """Play from the slider's frame, or pause.

        Example:
            >>> player.toggle(); player.play.playing  # doctest: +SKIP
            True
        """
        self.play.playing = not self.play.playing

    def frame_png(self, row: int) -> bytes:
        """The PNG of decoded display frame ``row`` (encoded once, then kept).

        Example:
            >>> player.frame_png(0)[:4]  # doctest: +SKIP
            b'\\x89PNG'
        """
        if self._frames is None:
            raise ConfigError("the player shows no clip; call show(clip) first")
        if row not in self._pngs:
            self._pngs[row] = frame_png(self._frames[row])
        return self._pngs[row]

    def _on_slider(self, change: dict) -> None:
        if self._frames is not None:
            self._show_at(int(change["new"]))

    def _show_at(self, native: int) -> None:
        row = row_at_or_before(self.display_indices, native)
        self.shown_index = self.display_indices[row]
        self.image.value = self.frame_png(row)
        self.strip.value = frame_png(marker_strip(self.frame_count, self.marked, native, width=self.width))
        self.strip.layout.display = None
        seen = " · <b>a frame the model sees</b>" if native in self.marked else ""
        self.readout.value = (
            f"<span>frame {native} / {self.frame_count} · {native / self.fps:.2f} s{seen}"
            f"<br><small>blue ticks: the {len(self.marked)} frames the model sees; red: here"
            f"{html.escape(self.note)}</small></span>"
        )
