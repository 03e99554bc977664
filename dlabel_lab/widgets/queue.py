"""``LabelQueue``: people label the clips a query chose (:func:`~dlabel_lab.suggest`), best first.

The queue mode of scoring: the clips are already in the store (scored by the
model, unlabelled), so a class click only logs a user score for the shown
clip. Each label's ``author`` names the query that asked for it
(``suggest:<run id>``, unless the labeller gives a name), so every label can
be traced to its query in the execution log. The widget shows the strategy's
reason and the model's guess next to the frames, read from the store's own
copy of the clip.

Example:
    >>> queue = dl.suggest(store, "shapes-v1", 10, strategy="margin")  # doctest: +SKIP
    >>> w = LabelQueue(store, queue, classes=["circle", "square", "triangle"])  # doctest: +SKIP
    >>> w.buttons["circle"].click()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets

from ..errors import ConfigError, UnknownLabel
from ..labeling.suggest import Suggestion
from ..media.video import ClipSpec, read_checked_file
from ..plots import plot_filmstrip
from ._common import chart_image, figure_png, handler, new_figure, show_png, text_html

__all__ = ["LabelQueue"]

DISPLAY_SPEC = ClipSpec(frames=8, size=128)


class LabelQueue(widgets.VBox):
    """Label a suggestion's clips one by one: frames, the reason, one button per class, Skip.

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
        buttons: Class name -> button.
        skip_button: Moves on without labelling.
        labelled: ``(scoring_id, label)`` pairs logged, in order.
        skipped: Scoring ids skipped.
        position: Index of the clip shown (``len(queue)`` when done).
        errors: Errors raised by the widget's own buttons (also shown in ``output``).

    Example:
        >>> LabelQueue(store, dl.suggest(store, "shapes-v1", 5), classes=model.classes)  # doctest: +SKIP
    """

    def __init__(self, store, suggestion: Suggestion, *, classes: Sequence[str], author: str | None = None,
                 display_spec: ClipSpec = DISPLAY_SPEC, source: str = "human", show_guess: bool = True) -> None:
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
        self.errors: list[Exception] = []
        self.output = widgets.Output()
        self.header = widgets.HTML()
        self.progress = widgets.IntProgress(min=0, max=len(self.rows), description="labelled")
        self.filmstrip = chart_image()
        self.why = widgets.HTML()
        self.buttons = {c: widgets.Button(description=c, button_style="primary") for c in classes}
        for cls, button in self.buttons.items():
            button.on_click(handler(self, self.label, cls))
        self.skip_button = widgets.Button(description="Skip", icon="forward")
        self.skip_button.on_click(handler(self, self.skip))
        super().__init__([self.header, self.progress, self.filmstrip, self.why,
                          widgets.HBox(list(self.buttons.values())), self.skip_button, self.output])
        self._show()

    def label(self, label: str) -> None:
        """Log ``label`` as the shown clip's user score and move on.

        Example:
            >>> w.label("circle")  # what a click on "circle" does  # doctest: +SKIP
        """
        if label not in self.buttons:
            raise UnknownLabel(f"{label!r} is not one of the classes {list(self.buttons)}")
        if self.position >= len(self.rows):
            return
        sid = self.rows[self.position]["scoring_id"]
        self.store.log_score(sid, label, source=self.source, author=self.author)
        self.labelled.append((sid, label))
        self.position += 1
        self._show()

    def skip(self) -> None:
        """Move on without labelling the shown clip.

        Example:
            >>> w.skip(); w.skipped  # doctest: +SKIP
        """
        if self.position < len(self.rows):
            self.skipped.append(self.rows[self.position]["scoring_id"])
            self.position += 1
            self._show()

    def _show(self) -> None:
        n = len(self.rows)
        self.progress.value = len(self.labelled)
        done = self.position >= n
        for button in [*self.buttons.values(), self.skip_button]:
            button.disabled = done
        if done:
            self.header.value = text_html(f"queue done: {len(self.labelled)} labelled, {len(self.skipped)} skipped",
                                          tag="b")
            self.why.value = ""
            show_png(self.filmstrip, None)
            return
        row = self.rows[self.position]
        self.header.value = text_html(f"clip {self.position + 1} of {n} ({self.suggestion.strategy})", tag="b")
        guess = f"model guess: {row['predicted_label']} ({row['confidence']:.2f}); " if self.show_guess else ""
        self.why.value = text_html(f"{guess}why asked: {row['reason']}")
        path = self.store.verified_raw_path(row["scoring_id"])
        frames = read_checked_file(path, self.display_spec, name=f"clip {row['scoring_id']}").frames
        fig, ax = new_figure((8, 1.4))
        plot_filmstrip(frames, max_frames=8, ax=ax)
        show_png(self.filmstrip, figure_png(fig))
