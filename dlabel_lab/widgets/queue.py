"""``LabelQueue``: people label the clips a query chose (:func:`~dlabel_lab.suggest`), best first.

The queue mode of scoring: the clips are already in the store (scored by the
model, unlabelled), so a class click only logs a user score for the shown
clip. Each label's ``author`` names the query that asked for it
(``suggest:<run id>``, unless the labeller gives a name), so every label can
be traced to its query in the execution log. The widget shows the strategy's
reason and the model's guess next to the frames, read from the store's own
copy of the clip, played at the clip's frame rate with the frames the model
saw marked under the slider.

Keys are those of the :class:`~dlabel_lab.widgets.ScoringWidget`: the number
on a class button labels that class, ``s`` skips, ``u`` undoes, space plays.
The store is append-only, so Undo deletes nothing: it goes back one clip, and
the next class click logs a *new* score row for it (same source and author;
the latest label wins, the history stays). A clip whose stored copy cannot be
read is shown as an error; Skip moves on.

Example:
    >>> queue = dl.suggest(store, "shapes-v1", 10, strategy="margin")  # doctest: +SKIP
    >>> w = LabelQueue(store, queue, classes=["circle", "square", "triangle"])  # doctest: +SKIP
    >>> w.buttons["circle"].click()  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import ipywidgets as widgets

from ..errors import ConfigError, DLabelError, MediaError, StoreCorrupt, UnknownLabel, UnknownRecord
from ..labeling.suggest import Suggestion
from ..media.video import ClipSpec, read_checked_file
from ..plots import plot_filmstrip
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

__all__ = ["LabelQueue"]

DISPLAY_SPEC = ClipSpec(frames=48, size=128)  # display only: 48 small frames (a shorter clip gives each once)


class LabelQueue(widgets.VBox):
    """Label a suggestion's clips one by one: frames, the reason, one button per class, Skip, Undo; keys for each.

    Args:
        store: The payload store the suggestion came from.
        suggestion: What :func:`~dlabel_lab.suggest` returned.
        classes: The label set (the model's classes, in order).
        author: Who labels (default: the query, ``suggest:<run id>``).
        display_spec: How frames are sampled and sized for display.
        source: The labels' source (``"human"``; ``"estimation-sample"`` for
            an accuracy estimate's sample, ``"audit"`` for an audit).
        show_guess: Show the model's guess next to the frames. Leave it off
            when the labels measure the model (an estimate or an audit): a
            shown guess pulls labellers towards it and flatters the model.

    Attributes:
        buttons: Class name -> button, in class order; the first nine are
            labelled with their key (``"1 circle"``).
        class_keys: Class name -> its number key.
        skip_button: Moves on without labelling (key ``s``).
        undo_button: Goes back one clip; the next class click corrects its label (key ``u``).
        key_events: The ipyevents ``Event`` that delivers key presses to :meth:`press`.
        player: Frames at the clip's frame rate, the slider over native frames,
            the frames the model saw marked.
        labelled: ``(scoring_id, label)`` per labelled clip, in labelling order
            (a correction updates its label; the store keeps every row).
        skipped: Scoring ids skipped.
        position: Index of the clip shown (``len(queue)`` when done).
        unreadable: Queue index -> the error that kept its clip from being shown.
        errors: Errors raised by the widget's own buttons and keys (also shown in ``output``).

    Example:
        >>> LabelQueue(store, dl.suggest(store, "shapes-v1", 5), classes=model.classes)  # doctest: +SKIP
    """

    def __init__(
        self,
        store,
        suggestion: Suggestion,
        *,
        classes: Sequence[str],
        author: str | None = None,
        display_spec: ClipSpec = DISPLAY_SPEC,
        source: str = "human",
        show_guess: bool = True,
    ) -> None:
        if not isinstance(suggestion, Suggestion):
            raise ConfigError(f"LabelQueue needs what suggest() returned, got {type(suggestion).__name__}")
        if not classes:
            raise ConfigError("LabelQueue needs the class names to label with")
        self.store = store
        self.suggestion = suggestion
        self.rows = suggestion.table.to_dict("records")
        self.author = author or f"suggest:{suggestion.run_id}"
        if not isinstance(source, str) or not source.strip():
            raise ConfigError(f"LabelQueue source must be a non-empty string, got {source!r}")
        self.source = source
        self.show_guess = bool(show_guess)
        self.display_spec = display_spec
        self.labelled: list[tuple[str, str]] = []
        self.skipped: list[str] = []
        self.position = 0
        self.unreadable: dict[int, DLabelError] = {}
        self.errors: list[Exception] = []
        self._by_position: dict[int, int] = {}  # queue index -> index into labelled
        self._done: list[int] = []  # queue indices acted on (labelled or skipped), for Undo
        self._seen: dict[str, list[int]] | None = None  # scoring id -> frames the model saw, read once
        self.output = widgets.Output()
        self.header = widgets.HTML()
        self.progress = widgets.IntProgress(min=0, max=len(self.rows), description="labelled")
        self.clip_error = widgets.HTML()
        self.player = ClipPlayer()
        self.filmstrip = chart_image()
        self.why = widgets.HTML()
        self.buttons, self.class_keys = class_buttons(self, list(classes), self.label)
        self.skip_button = widgets.Button(description="Skip (s)", icon="forward")
        self.skip_button.on_click(handler(self, self.skip))
        self.undo_button = widgets.Button(description="Undo (u)", icon="undo", disabled=True)
        self.undo_button.on_click(handler(self, self.undo))
        self._keys = key_actions(
            self.buttons,
            self.class_keys,
            self.label,
            s=(self.skip_button, self.skip),
            u=(self.undo_button, self.undo),
            space=(self.player.play, self.player.toggle),
        )
        super().__init__(
            [
                self.header,
                self.progress,
                self.clip_error,
                self.player,
                self.filmstrip,
                self.why,
                widgets.HBox(list(self.buttons.values())),
                widgets.HBox([self.skip_button, self.undo_button]),
                keys_hint(len(self.buttons), "s skip, u undo, space play/pause"),
                self.output,
            ]
        )
        self.key_events = key_events(self)
        self._show()

    def label(self, label: str) -> None:
        """Log ``label`` as the shown clip's user score (a correction if it was labelled before Undo); move on.

        Raises:
            UnknownLabel: ``label`` is not one of the classes.

        Example:
            >>> w.label("circle")  # what a click on "circle" (or key 1) does  # doctest: +SKIP
        """
        if label not in self.buttons:
            raise UnknownLabel(f"{label!r} is not one of the classes {list(self.buttons)}")
        if self.position >= len(self.rows):
            return
        sid = self.rows[self.position]["scoring_id"]
        self.store.log_score(sid, label, source=self.source, author=self.author)
        if self.position in self._by_position:
            self.labelled[self._by_position[self.position]] = (sid, label)
        else:
            self._by_position[self.position] = len(self.labelled)
            self.labelled.append((sid, label))
        self._advance()

    def skip(self) -> None:
        """Move on without labelling the shown clip (a clip already labelled keeps its label).

        Example:
            >>> w.skip(); w.skipped  # doctest: +SKIP
        """
        if self.position < len(self.rows):
            if self.position not in self._by_position:
                self.skipped.append(self.rows[self.position]["scoring_id"])
            self._advance()

    def undo(self) -> None:
        """Go back one clip; if it was labelled, the next class click logs a corrected label for it.

        Example:
            >>> w.undo(); w.label("square")  # a new score row for the same clip  # doctest: +SKIP
        """
        if not self._done:
            return
        self.position = self._done.pop()
        sid = self.rows[self.position]["scoring_id"]
        if self.position not in self._by_position and sid in self.skipped:
            self.skipped.remove(sid)
        self._show()

    def press(self, key: str) -> bool:
        """Do what ``key`` stands for: a class's number labels it, ``s`` skips, ``u`` undoes, space plays.

        Returns:
            Whether the key means something here (a number without a class, or
            a button that is off, does nothing).

        Example:
            >>> w.press("2")  # labels the second class, like a click on "2 square"  # doctest: +SKIP
            True
        """
        return press_key(self._keys, key)

    # -- view ---------------------------------------------------------------------------
    def _advance(self) -> None:
        self._done.append(self.position)
        self.position += 1
        self._show()

    def _model_frames(self, sid: str) -> list[int]:
        """The frames the suggestion's model saw of clip ``sid`` (its logged preprocessing record), or none."""
        if self._seen is None:  # one query for the whole queue, on the first clip shown
            ids = [r["scoring_id"] for r in self.rows]
            df = self.store.matched(scoring_ids=ids, model_version=self.suggestion.model_version).df()
            self._seen = {}
            for scoring_id, record in zip(df["scoring_id"], df["record"], strict=True):
                record = json.loads(record) if isinstance(record, str) else record
                self._seen[scoring_id] = [int(i) for i in (record or {}).get("indices", [])]
        return self._seen.get(sid, [])

    def _show(self) -> None:
        n = len(self.rows)
        self.progress.value = len(self.labelled)
        self.undo_button.disabled = not self._done
        done = self.position >= n
        for button in [*self.buttons.values(), self.skip_button]:
            button.disabled = done
        self.clip_error.value = ""
        if done:
            self.header.value = text_html(
                f"queue done: {len(self.labelled)} labelled, {len(self.skipped)} skipped", tag="b"
            )
            self.why.value = ""
            self._show_frames(None)
            return
        row = self.rows[self.position]
        self.header.value = text_html(f"clip {self.position + 1} of {n} ({self.suggestion.strategy})", tag="b")
        guess = f"model guess: {row['predicted_label']} ({row['confidence']:.2f}); " if self.show_guess else ""
        again = ""
        if self.position in self._by_position:
            earlier = self.labelled[self._by_position[self.position]][1]
            again = f" Already labelled {earlier}: a class click corrects it."
        self.why.value = text_html(f"{guess}why asked: {row['reason']}.{again}")
        sid = row["scoring_id"]
        try:
            clip = read_checked_file(self.store.verified_raw_path(sid), self.display_spec, name=f"clip {sid}")
        except (MediaError, StoreCorrupt, UnknownRecord) as exc:  # this clip only: show it, Skip goes on
            self._unreadable(exc)
            return
        self.unreadable.pop(self.position, None)
        self.player.show(clip, marked=self._model_frames(sid))
        self._show_frames(clip)

    def _unreadable(self, exc: DLabelError) -> None:
        self.unreadable[self.position] = exc
        for button in self.buttons.values():
            button.disabled = True
        self.clip_error.value = (
            '<div style="color:#b00020">'
            + text_html(
                f"clip {self.position + 1} cannot be shown: {type(exc).__name__}: {exc}. Skip it (s) to go on.",
                tag="span",
            )
            + "</div>"
        )
        self._show_frames(None)

    def _show_frames(self, clip) -> None:
        if clip is None:
            self.player.clear()
            show_png(self.filmstrip, None)
            return
        fig, ax = new_figure((8, 1.4))
        plot_filmstrip(self.player.frames, max_frames=8, ax=ax)
        show_png(self.filmstrip, figure_png(fig))
