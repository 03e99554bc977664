"""``ScoringWidget``: a human scores clips one by one through the ingest endpoint.

Each class button sends the clip with that user score through
:meth:`~dlabel_lab.endpoints.IngestEndpoint.score` (raw payload, transformed
payload, prediction and score all land in the store). The store is
append-only, so Undo does not delete anything: it goes back one clip, and the
next click logs a *new* score row for the same scoring id
(``source="human-correction"``); the latest label wins and the history stays.

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

from ..errors import ConfigError, UnknownLabel
from ..media.video import ClipSpec, read_clip
from ..plots import plot_filmstrip
from ..serving.endpoints import IngestEndpoint, ScoringResult
from ._common import figure_png, frame_png, guarded, new_figure, text_html

__all__ = ["ScoringWidget"]

DISPLAY_SPEC = ClipSpec(frames=16, size=128)


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
    """Score clips by hand: frames, one button per class, Skip, Undo, the model's answer.

    Args:
        ingest: The ingest endpoint (from :func:`~dlabel_lab.endpoints.deploy`).
        clips: Clip paths, or manifest rows with a ``path`` (``read_manifest``).
        display_spec: How frames are sampled and sized for display only (the
            model sees the ingest endpoint's own spec).

    Attributes:
        buttons: Class name -> button, in the model's class order.
        skip_button: Moves on without scoring.
        undo_button: Goes back one clip; the next class click corrects its score.
        results: One :class:`~dlabel_lab.endpoints.ScoringResult` per scored
            clip, in scoring order (a correction updates its ``label``).
        position: Index of the clip shown (``len(clips)`` when done).
        skipped: Indices of the clips skipped.
        errors: Errors raised by callbacks (also printed in ``output``).

    Example:
        >>> w = ScoringWidget(ingest, read_manifest("data/shapes/operational/labels.csv"))  # doctest: +SKIP
        >>> w  # doctest: +SKIP
    """

    def __init__(self, ingest: IngestEndpoint, clips: Sequence, *, display_spec: ClipSpec = DISPLAY_SPEC) -> None:
        self.ingest = ingest
        self.paths = _clip_paths(clips)
        self.display_spec = display_spec
        self.results: list[ScoringResult] = []
        self.position = 0
        self.skipped: list[int] = []
        self.errors: list[Exception] = []
        self._by_position: dict[int, int] = {}  # clip index -> index into results
        self._done: list[int] = []  # clip indices acted on (scored or skipped), for Undo
        self._frames: list[bytes] = []

        self.output = widgets.Output()
        self.header = widgets.HTML()
        self.progress = widgets.IntProgress(min=0, max=len(self.paths), description="scored")
        self.frame = widgets.Image(format="png", width=256, height=256)
        self.play = widgets.Play(min=0, max=0, interval=150, description="play")
        self.slider = widgets.IntSlider(min=0, max=0, description="frame", continuous_update=True)
        widgets.jslink((self.play, "value"), (self.slider, "value"))
        self.slider.observe(self._show_frame, names="value")
        self.filmstrip = widgets.Image(format="png")
        self.buttons = {c: widgets.Button(description=c, button_style="primary") for c in ingest.classes}
        for cls, button in self.buttons.items():
            button.on_click(lambda _b, cls=cls: self.score(cls))
        self.skip_button = widgets.Button(description="Skip", icon="forward")
        self.skip_button.on_click(lambda _b: self.skip())
        self.undo_button = widgets.Button(description="Undo", icon="undo", disabled=True)
        self.undo_button.on_click(lambda _b: self.undo())
        self.answer = widgets.HTML()
        super().__init__([
            self.header, self.progress, self.frame, widgets.HBox([self.play, self.slider]), self.filmstrip,
            widgets.HBox(list(self.buttons.values())), widgets.HBox([self.skip_button, self.undo_button]),
            self.answer, self.output,
        ])
        self._show_clip()

    # -- actions (each a few lines that call the package) -----------------------------
    @guarded
    def score(self, label: str) -> ScoringResult | None:
        """Score the shown clip with ``label`` (a correction if it was scored before Undo); move on.

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
        else:
            result = self.ingest.score(self.paths[self.position], label=label)
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

    @guarded
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

    @guarded
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

    def _show_clip(self) -> None:
        n = len(self.paths)
        self.progress.value = len(self.results)
        self.undo_button.disabled = not self._done
        done = self.position >= n
        for button in [*self.buttons.values(), self.skip_button]:
            button.disabled = done
        if done:
            self.header.value = f"<b>all {n} clips done</b>: {len(self.results)} scored, {len(self.skipped)} skipped"
            return
        path = self.paths[self.position]
        self.header.value = text_html(f"clip {self.position + 1} of {n}: {Path(path).name}", tag="b")
        if self.position in self._by_position:
            label = self.results[self._by_position[self.position]].label
            self.answer.value = text_html(f"already scored as {label}: a class click logs a corrected score")
        frames = read_clip(path, self.display_spec).frames
        self._frames = [frame_png(f) for f in frames]
        self.play.max = self.slider.max = len(frames) - 1
        self.slider.value = 0
        self.frame.value = self._frames[0]
        fig, ax = new_figure((8, 1.4))
        plot_filmstrip(frames, max_frames=8, ax=ax)
        self.filmstrip.value = figure_png(fig)

    def _show_frame(self, change) -> None:
        if self._frames:
            self.frame.value = self._frames[min(change["new"], len(self._frames) - 1)]
