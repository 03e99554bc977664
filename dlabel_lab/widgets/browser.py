"""``DatasetBrowser``: the comprehensive data set, filtered, with frames and metrics.

Every filter is a parameter of :meth:`~dlabel_lab.store.PayloadStore.matched`
(bound values, never a query string): label, prediction, correct or wrong,
a confidence range, the model version and a neuron tag. Selecting a row shows
the frames the model saw (rebuilt from the raw clip and its logged record),
its probabilities and its score history; the metrics tab evaluates the rows
of the current filter. A filter set to "any" (``ANY``, the empty string: no
label, version or tag is empty) does not filter.

Example:
    >>> browser = DatasetBrowser(store)  # doctest: +SKIP
    >>> browser.correct.value = False  # doctest: +SKIP
    >>> len(browser.records) == len(store.matched(model_version="shapes-v1", correct=False).df())  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
from typing import Any

import ipywidgets as widgets
import pandas as pd

from ..errors import ConfigError
from ..evaluation import evaluate
from ..media.video import read_clip, spec_from_record
from ..plots import plot_confusion, plot_filmstrip
from ._common import chart_image, figure_png, handler, new_figure, show_png, table_html, text_html

__all__ = ["ANY", "DatasetBrowser"]

ANY = ""  # the "any"/"all" choice of a filter: a real value, so the menus show it selected

TABLE_COLUMNS = ["scoring_id", "model_version", "user_label", "predicted_label", "confidence", "correct",
                 "label_source", "tags", "source_name"]


def _classes(versions: pd.DataFrame) -> list[str]:
    seen: list[str] = []
    for classes in versions.get("classes", []):
        seen += [str(c) for c in classes if str(c) not in seen]
    return seen


class DatasetBrowser(widgets.VBox):
    """Browse ``store.matched()`` with filters; see a clip's frames, the unmatched ids and the metrics.

    Args:
        store: The payload store.
        max_rows: Rows shown in the table and the selection list.

    Attributes:
        records: The rows of the current filter (a DataFrame from ``store.matched``).
        version, label, prediction, correct, confidence, tag, source: The filter
            widgets; ``ANY`` (shown as "any" or "all") does not filter.
        select: The row list; its value is ``(scoring_id, model_version)``.
        errors: Errors raised by the widget's own controls (also shown in ``output``).

    Example:
        >>> browser = DatasetBrowser(store)  # doctest: +SKIP
        >>> browser.label.value = "circle"; browser.filters()  # doctest: +SKIP
        {'model_version': 'shapes-v1', 'label': 'circle'}
    """

    def __init__(self, store, *, max_rows: int = 50) -> None:
        self.store = store
        self.max_rows = max_rows
        self.records = pd.DataFrame(columns=TABLE_COLUMNS)
        self.errors: list[Exception] = []
        self.output = widgets.Output()
        style = {"description_width": "initial"}
        self.version = widgets.Dropdown(description="model version", style=style)
        self.label = widgets.Dropdown(description="user label", style=style)
        self.prediction = widgets.Dropdown(description="prediction", style=style)
        self.tag = widgets.Dropdown(description="tag", style=style)
        self.source = widgets.Dropdown(description="label source", style=style)
        self.correct = widgets.ToggleButtons(options=[("all", ANY), ("correct", True), ("wrong", False)], value=ANY,
                                             description="prediction is", style=style)
        self.confidence = widgets.FloatRangeSlider(value=(0.0, 1.0), min=0.0, max=1.0, step=0.01,
                                                   description="confidence", readout_format=".2f", style=style)
        self.count = widgets.HTML()
        self.table = widgets.HTML()
        self.select = widgets.Select(options=[], rows=10, layout=widgets.Layout(width="28em"))
        self.filmstrip = chart_image()
        self.details = widgets.HTML()
        self.metrics = widgets.HTML()
        self.confusion = chart_image()
        self.unmatched = widgets.HTML()
        self.reload_button = widgets.Button(description="Reload", icon="refresh", tooltip="new versions, clips, tags")
        self.reload_button.on_click(handler(self, self.reload))
        self._quiet = False
        self._classes: list[str] = []
        self.update_options()
        for w in (self.version, self.label, self.prediction, self.tag, self.source, self.correct, self.confidence):
            w.observe(handler(self, self.refresh), names="value")
        self.select.observe(handler(self, self.show_row), names="value")
        tabs = widgets.Tab([
            widgets.HBox([self.select, widgets.VBox([self.filmstrip, self.details])]), self.table,
            widgets.HBox([self.metrics, self.confusion]), self.unmatched,
        ], titles=("clips", "table", "metrics", "unmatched"))
        super().__init__([
            widgets.HBox([self.version, self.label, self.prediction, self.tag]),
            widgets.HBox([self.source, self.correct, self.confidence, self.reload_button]), self.count, tabs,
            self.output,
        ])
        self.refresh()

    ANY = ANY

    def update_options(self) -> None:
        """Reload the dropdown choices (versions, classes, tags) from the store, keeping valid selections.

        Example:
            >>> browser.update_options(); browser.tag.options  # doctest: +SKIP
            (('any', ''), ('dark', 'dark'))
        """
        versions = self.store.model_versions()
        names = [str(v) for v in versions["model_version"]] if len(versions) else []
        classes = self._classes = _classes(versions)
        tags = sorted({str(t) for t in self.store.clip_tags()["tag"]})
        self._quiet = True
        try:
            keep = self.version.value
            self.version.options = [("all", ANY)] + [(v, v) for v in names]
            self.version.value = keep if keep in names else (names[-1] if names else ANY)
            for w in (self.label, self.prediction):
                keep = w.value
                w.options = [("any", ANY)] + [(c, c) for c in classes]
                w.value = keep if keep in classes else ANY
            keep = self.tag.value
            self.tag.options = [("any", ANY)] + [(t, t) for t in tags]
            self.tag.value = keep if keep in tags else ANY
            sources = self.store.label_sources()
            keep = self.source.value
            self.source.options = [("any", ANY)] + [(x, x) for x in sources]
            self.source.value = keep if keep in sources else ANY
        finally:
            self._quiet = False

    def filters(self) -> dict[str, Any]:
        """The ``store.matched()`` keyword arguments the filter widgets stand for.

        Example:
            >>> DatasetBrowser(store).filters()  # doctest: +SKIP
            {'model_version': 'shapes-v1'}
        """
        lo, hi = self.confidence.value
        given = {
            "model_version": self.version.value, "label": self.label.value, "prediction": self.prediction.value,
            "correct": self.correct.value, "tags": [self.tag.value] if self.tag.value != ANY else None,
            "label_source": self.source.value,
            "min_confidence": lo if lo > 0 else None, "max_confidence": hi if hi < 1 else None,
        }
        return {k: v for k, v in given.items() if v is not None and v != ANY}

    def reload(self) -> None:
        """Pick up what arrived in the store since (versions, clips, tags) and redraw.

        Example:
            >>> browser.reload()  # doctest: +SKIP
        """
        self.update_options()
        self.refresh()

    def refresh(self, change: dict | None = None) -> None:
        """Query the store with the current filters and redraw the table, list, metrics and unmatched ids.

        Example:
            >>> browser.refresh(); len(browser.records)  # doctest: +SKIP
            24
        """
        if self._quiet:
            return
        self.records = self.store.matched(**self.filters()).order("received_at, scoring_id, model_version").df()
        self.count.value = text_html(f"{len(self.records)} rows match {self.filters() or 'no filter'}")
        self.table.value = table_html(self.records[TABLE_COLUMNS], max_rows=self.max_rows)
        shown = self.records.head(self.max_rows)
        self.select.options = [
            (f"{r.scoring_id[:8]}… {r.user_label or '?'} → {r.predicted_label} ({r.confidence:.2f})",
             (r.scoring_id, r.model_version)) for r in shown.itertuples()
        ]
        self._show_metrics()
        self.unmatched.value = table_html(self.store.unmatched(), max_rows=self.max_rows)

    def _show_metrics(self) -> None:
        try:
            ev = evaluate(self.records, classes=self._classes or None)
        except ConfigError as exc:  # no labelled rows in this filter
            self.metrics.value = text_html(str(exc))
            show_png(self.confusion, None)
            return
        self.metrics.value = table_html(ev.table()) + table_html(ev.per_class)
        fig, ax = new_figure((3.5, 3.0))
        plot_confusion(ev.confusion, ev.classes, ax=ax)
        show_png(self.confusion, figure_png(fig))

    def show_row(self, change: dict | None = None) -> None:
        """Show the selected clip: the frames its model saw, its probabilities and score history.

        Example:
            >>> browser.select.value = browser.select.options[0][1]  # calls show_row  # doctest: +SKIP
        """
        if self.select.value is None:
            show_png(self.filmstrip, None)
            self.details.value = ""
            return
        sid, version = self.select.value
        row = self.records[(self.records.scoring_id == sid) & (self.records.model_version == version)].iloc[0]
        record = json.loads(row["record"]) if isinstance(row["record"], str) else row["record"]
        frames = read_clip(row["media_path"], spec_from_record(record)).frames
        fig, ax = new_figure((8, 1.6))
        plot_filmstrip(frames, max_frames=8, title=f"{sid} as {version} saw it", ax=ax)
        show_png(self.filmstrip, figure_png(fig))
        classes = self.store.get_model(version)["classes"]
        probs = pd.DataFrame({"class": classes, "probability": list(row["probabilities"])})
        history = self.store.score_history(sid)[["label", "source", "author", "labelled_at", "is_latest"]]
        self.details.value = (text_html(f"user label {row['user_label']}, predicted {row['predicted_label']}")
                              + table_html(probs) + "<b>score history</b>" + table_html(history))
