"""``ScoringWidget``: a human scores clips one by one through the ingest endpoint.

Each class button sends the clip with that user score through
:meth:`~dlabel_lab.endpoints.IngestEndpoint.score` (raw payload, transformed
payload, prediction and score all land in the store). The store is
append-only, so Undo does not delete anything: it goes back one clip, and the
next click logs a *new* score row for the same scoring id
(``source="human-correction"``); the latest label wins and the history stays.

Frames play at the clip's own frame rate: the slider runs over the clip's
native frame numbers (with the time in seconds), each shows the nearest
decoded display frame at or before it, and a strip under the slider marks the
frames the model sees (the ingest endpoint's spec).

Keys (with the pointer over the widget): the number on a class button scores
that class, ``s`` skips, ``u`` undoes, space plays or pauses the frames.
ipyevents (BSD-3-Clause) brings the browser's key events to Python; no
JavaScript of our own. A clip that cannot be read is shown as an error with
its name; its class buttons are off and Skip moves on.

Example:
    >>> w = ScoringWidget(ingest, ["clip_0.mp4", "clip_1.mp4"])  # doctest: +SKIP
    >>> w.buttons["circle"].click()  # doctest: +SKIP
    >>> w.results[0].predicted_label  # doctest: +SKIP
    'square'
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import ipywidgets as widgets

from ..errors import ConfigError, MediaError, UnknownLabel
from ..media.video import Clip, ClipSpec, _sample_indices, read_clip
from ..plots import plot_filmstrip
from ..serving.endpoints import IngestEndpoint, ScoringResult
from ._common import (
    chart_image,
    class_buttons,
    figure_png,
    handler,
    key_actions,
    key_events,
    keys_hint,
    new_figure,
    press_key,
    show_png,
    text_html,
)
from ._player import ClipPlayer

__all__ = ["ScoringWidget"]

DISPLAY_SPEC = ClipSpec(frames=48, size=128)  # display only: 48 small frames (a shorter clip gives each once)


def _clip_paths(clips: Sequence) -> list[str]:
    paths = []
    for i, clip in enumerate(clips):
        if isinstance(clip, Mapping):
            if "path" not in clip:
                raise ConfigError(f"clip {i} is a dict without 'path'; pass paths or manifest rows (read_manifest)")
            clip = clip["path"]
        if not isinstance(clip, (str, os.PathLike)):
            raise ConfigError(f"clip {i} must be a path or a manifest row, got {type(clip).__name__}")
        paths.append(os.fspath(clip))
    if not paths:
        raise ConfigError("ScoringWidget needs at least one clip")
    return paths


class ScoringWidget(widgets.VBox):
    """Score clips by hand: frames, one button per class, Skip, Undo, the model's answer; keys for each.

    Args:
        ingest: The ingest endpoint (from :func:`~dlabel_lab.endpoints.deploy`).
        clips: Clip paths, or manifest rows with a ``path`` (``read_manifest``).
        display_spec: How frames are sampled and sized for display only (the
            model sees the ingest endpoint's own spec, marked on the strip).

    Attributes:
        buttons: Class name -> button, in the model's class order; the first
            nine are labelled with their key (``"1 circle"``).
        class_keys: Class name -> its number key.
        skip_button: Moves on without scoring (key ``s``).
        undo_button: Goes back one clip; the next class click corrects its score (key ``u``).
        key_events: The ipyevents ``Event`` that delivers key presses to :meth:`press`.
        player: The :class:`~dlabel_lab.widgets._player.ClipPlayer`: ``frame``,
            ``play`` and ``slider`` are its image, Play and slider over native frames.
        results: One :class:`~dlabel_lab.endpoints.ScoringResult` per scored
            clip, in scoring order (a correction updates its ``label``).
        position: Index of the clip shown (``len(clips)`` when done).
        skipped: Indices of the clips skipped.
        unreadable: Clip index -> the error that kept it from being shown.
        errors: Errors raised by the widget's own buttons and keys (also shown in ``output``).

    Example:
        >>> w = ScoringWidget(ingest, read_manifest("data/shapes/operational/labels.csv"))  # doctest: +SKIP
        >>> w  # doctest: +SKIP
    """

    def __init__(self, ingest: IngestEndpoint, clips: Sequence, *, display_spec: ClipSpec = DISPLAY_SPEC) -> None:
        self.ingest = ingest
        self.store = ingest.store
        self.paths = _clip_paths(clips)
        self.display_spec = display_spec
        self.results: list[ScoringResult] = []
        self.position = 0
        self.skipped: list[int] = []
        self.unreadable: dict[int, MediaError] = {}
        self.errors: list[Exception] = []
        self._by_position: dict[int, int] = {}  # clip index -> index into results
        self._done: list[int] = []  # clip indices acted on (scored or skipped), for Undo

        self.output = widgets.Output()
        self.header = widgets.HTML()
        self.clip_error = widgets.HTML()
        self.progress = widgets.IntProgress(min=0, max=len(self.paths), description="done")
        self.progress_text = widgets.HTML()
        self.player = ClipPlayer()
        self.frame, self.play, self.slider = self.player.image, self.player.play, self.player.slider
        self.filmstrip = chart_image()
        self.buttons, self.class_keys = class_buttons(self, ingest.classes, self.score)
        self.skip_button = widgets.Button(description="Skip (s)", icon="forward")
        self.skip_button.on_click(handler(self, self.skip))
        self.undo_button = widgets.Button(description="Undo (u)", icon="undo", disabled=True)
        self.undo_button.on_click(handler(self, self.undo))
        self.answer = widgets.HTML()
        self._keys = key_actions(
            self.buttons,
            self.class_keys,
            self.score,
            s=(self.skip_button, self.skip),
            u=(self.undo_button, self.undo),
            space=(self.play, self.toggle_play),
        )
        super().__init__(
            [
                self.header,
                widgets.HBox([self.progress, self.progress_text]),
                self.clip_error,
                self.player,
                self.filmstrip,
                widgets.HBox(list(self.buttons.values())),
                widgets.HBox([self.skip_button, self.undo_button]),
                keys_hint(len(self.buttons), "s skip, u undo, space play/pause"),
                self.answer,
                self.output,
            ]
        )
        self.key_events = key_events(self)
        self._show_clip()

    # -- actions (each a few lines that call the package) -----------------------------
    def score(self, label: str) -> ScoringResult | None:
        """Score the shown clip with ``label`` (a correction if it was scored before Undo); move on.

        Raises:
            UnknownLabel: ``label`` is not one of the model's classes.
            MediaError: The shown clip cannot be read (skip it).

        Example:
            >>> w.score("circle").predicted_label  # what a click on "circle" does  # doctest: +SKIP
            'square'
        """
        if label not in self.buttons:
            raise UnknownLabel(f"{label!r} is not one of the model's classes {list(self.buttons)}")
        if self.position >= len(self.paths):
            return None
        if self.position in self._by_position:
            result = self._correct(label)
        elif self.position in self.unreadable:
            exc = self.unreadable[self.position]
            raise type(exc)(f"clip {self.position + 1} cannot be read ({exc}); skip it with skip()")
        else:
            try:
                result = self.ingest.score(self.paths[self.position], label=label)
            except MediaError:
                self._show_clip()  # the file went away or changed since it was shown: show it as unreadable
                raise
            self._by_position[self.position] = len(self.results)
            self.results.append(result)
        self._show_answer(result)
        self._advance()
        return result

    def _correct(self, label: str) -> ScoringResult:
        i = self._by_position[self.position]
        self.ingest.store.log_score(self.results[i].scoring_id, label, source="human-correction")
        self.results[i] = dataclasses.replace(self.results[i], label=label)
        return self.results[i]

    def skip(self) -> None:
        """Move on without scoring the shown clip (a clip already scored keeps its score).

        Example:
            >>> w.skip(); w.skipped  # doctest: +SKIP
            [0]
        """
        if self.position < len(self.paths):
            if self.position not in self._by_position:
                self.skipped.append(self.position)
            self.answer.value = text_html(f"skipped {Path(self.paths[self.position]).name}")
            self._advance()

    def undo(self) -> None:
        """Go back one clip; if it was scored, the next class click logs a corrected score for it.

        Example:
            >>> w.undo(); w.score("square")  # a new score row for the same scoring id  # doctest: +SKIP
        """
        if not self._done:
            return
        self.position = self._done.pop()
        if self.position in self.skipped:
            self.skipped.remove(self.position)
        self.answer.value = text_html(f"back to clip {self.position + 1}")
        self._show_clip()

    def toggle_play(self) -> None:
        """Play the shown clip at its own frame rate from the slider's frame, or pause it.

        Example:
            >>> w.toggle_play(); w.play.playing  # doctest: +SKIP
            True
        """
        self.player.toggle()

    def model_indices(self, frame_count: int) -> list[int]:
        """The native frame numbers the model sees in a clip of ``frame_count`` frames (the ingest spec's sampling).

        Example:
            >>> w.model_indices(250)[:3]  # the default spec: 8 frames spread evenly  # doctest: +SKIP
            [0, 36, 71]
        """
        try:
            return _sample_indices(max(int(frame_count), 1), self.ingest.spec)
        except ConfigError:  # explicit indices past this clip's end: the model cannot score it; mark nothing
            return []

    def press(self, key: str) -> bool:
        """Do what ``key`` stands for: a class's number scores it, ``s`` skips, ``u`` undoes, space plays.

        Returns:
            Whether the key means something here (a number without a class, or a
            class button that is off, does nothing).

        Example:
            >>> w.press("1")  # scores the first class, like a click on "1 circle"  # doctest: +SKIP
            True
        """
        return press_key(self._keys, key)

    # -- view ---------------------------------------------------------------------------
    def _advance(self) -> None:
        self._done.append(self.position)
        self.position += 1
        self._show_clip()

    def _show_answer(self, result: ScoringResult) -> None:
        if not result.ok:
            self.answer.value = text_html(f"the model failed: {result.error}")
            return
        verdict = {True: "right", False: "wrong", None: "-"}[result.correct]
        self.answer.value = text_html(
            f"you said {result.label}; {result.model_version} predicted {result.predicted_label} "
            f"({result.confidence:.2f}): {verdict}"
        )

    def _show_progress(self) -> None:
        n, scored, skipped = len(self.paths), len(self.results), len(self.skipped)
        self.progress.value = scored + skipped
        self.progress_text.value = text_html(
            f"{scored + skipped} of {n} ({scored} scored, {skipped} skipped)", tag="span"
        )

    def _show_clip(self) -> None:
        n = len(self.paths)
        self._show_progress()
        self.undo_button.disabled = not self._done
        self.player.play.playing = False
        done = self.position >= n
        if done:
            self.header.value = f"<b>all {n} clips done</b>: {len(self.results)} scored, {len(self.skipped)} skipped"
            self._show_frames(None)
            return
        path = self.paths[self.position]
        self.header.value = text_html(f"clip {self.position + 1} of {n}: {Path(path).name}", tag="b")
        if self.position in self._by_position:
            label = self.results[self._by_position[self.position]].label
            self.answer.value = text_html(f"already scored as {label}: a class click logs a corrected score")
        try:
            clip = read_clip(path, self.display_spec)
        except MediaError as exc:
            self.unreadable[self.position] = exc
            self._show_frames(
                None, error=f"{Path(path).name} cannot be shown: {type(exc).__name__}: {exc}. Skip it (s) to go on."
            )
            return
        self.unreadable.pop(self.position, None)
        self._show_frames(clip)

    def _show_frames(self, clip: Clip | None, *, error: str | None = None) -> None:
        """Player and filmstrip of a readable clip; otherwise hide them and switch the class buttons off."""
        readable = clip is not None
        for button in self.buttons.values():
            button.disabled = not readable
        self.skip_button.disabled = self.position >= len(self.paths)
        self.clip_error.value = (
            "" if error is None else f'<div style="color:#b00020">{text_html(error, tag="span")}</div>'
        )
        if not readable:
            self.player.clear()
            show_png(self.filmstrip, None)
            return
        self.player.show(clip, marked=self.model_indices(clip.frame_count))
        fig, ax = new_figure((8, 1.4))
        plot_filmstrip(self.player.frames, max_frames=8, ax=ax)
        show_png(self.filmstrip, figure_png(fig))
