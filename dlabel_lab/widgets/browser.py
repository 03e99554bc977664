"""``DatasetBrowser``: the comprehensive data set in a data grid, filtered, with frames, metrics and bulk relabelling.

Every filter above the grid is a parameter of
:meth:`~dlabel_lab.store.PayloadStore.matched` (bound values, never a query
string): label, prediction, correct or wrong, a confidence range, the model
version, a neuron tag and the label's source. The rows land in an
ipydatagrid grid (see :mod:`~dlabel_lab.widgets.grid`) whose columns sort and
filter further from their header menus; one line says which filters are on
and how many rows match. Selecting rows shows the last one's frames (the
frames its model saw, rebuilt from the raw clip and its logged record), its
probabilities and its score history, and "Relabel n selected" gives every
selected clip the chosen class in one action: one append-only user score per
clip with its author. The grid shows a short id (head and unique tail of the
scoring id) and the clip's file name, in columns as wide as their text; the
selected clip's details show its whole scoring id. The metrics tab evaluates
the rows of the current filter. The data quality tab builds
:func:`~dlabel_lab.data_report` on a click (it decodes clips and fits
models: seconds, so never at construction), shows the report's page, its
top likely label errors, and queues the flagged clips in a
:class:`~dlabel_lab.widgets.LabelQueue`, most likely wrong first (recorded
in the execution log unless the store is read-only). A filter set to "any" (``ANY``, the empty string: no label, version
or tag is empty) does not filter.

Example:
    >>> browser = DatasetBrowser(store, author="ana")  # doctest: +SKIP
    >>> browser.correct.value = False  # doctest: +SKIP
    >>> len(browser.records) == len(store.matched(model_version="shapes-v1", correct=False).df())  # doctest: +SKIP
    True
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterable
from typing import Any

import ipywidgets as widgets
import pandas as pd

from ..errors import ConfigError, StoreError
from ..evaluation import evaluate
from ..media.video import read_clip, spec_from_record
from ..plots import plot_confusion, plot_filmstrip
from ..quality.data_report import DataReport, data_report
from ._common import (
    chart_image,
    default_author,
    figure_png,
    handler,
    new_figure,
    show_png,
    store_is_closed,
    table_html,
    text_html,
)
from .grid import (
    BULK_SOURCE,
    column_widths,
    grid_filters_text,
    grid_frame,
    grid_rows,
    make_grid,
    relabel,
    selected_positions,
    shown_positions,
)
from .queue import LabelQueue

__all__ = ["ANY", "DatasetBrowser", "store_filters_text"]

ANY = ""  # the "any"/"all" choice of a filter: a real value, so the menus show it selected
TOP_ISSUES = 10  # likely label errors listed in the data quality tab (the report's page lists more)
_ISSUE_COLUMNS = ("rank", "scoring_id", "source", "given_label", "suggested_label", "label_quality")


def _classes(versions: pd.DataFrame) -> list[str]:
    seen: list[str] = []
    for classes in versions.get("classes", []):
        seen += [str(c) for c in classes if str(c) not in seen]
    return seen


def store_filters_text(filters: dict[str, Any]) -> str:
    """``store.matched`` filters in words; ``"none"`` without any.

    Example:
        >>> store_filters_text({"model_version": "shapes-v1", "correct": False, "min_confidence": 0.3})
        'model version shapes-v1, prediction wrong, confidence ≥ 0.3'
    """
    words = {
        "model_version": "model version",
        "label": "user label",
        "prediction": "prediction",
        "label_source": "label source",
        "tags": "tag",
    }
    parts = []
    for key, value in filters.items():
        if key == "correct":
            parts.append(f"prediction {'right' if value else 'wrong'}")
        elif key == "min_confidence":
            parts.append(f"confidence ≥ {value:g}")
        elif key == "max_confidence":
            parts.append(f"confidence ≤ {value:g}")
        else:
            shown = ", ".join(value) if isinstance(value, list) else value
            parts.append(f"{words.get(key, key)} {shown}")
    return ", ".join(parts) or "none"


class DatasetBrowser(widgets.VBox):
    """Browse ``store.matched()`` in a sortable, filterable grid; see a clip's frames; relabel rows in bulk.

    Args:
        store: The payload store.
        max_rows: Most rows put in the grid (the line above it says when there are more).
        author: Who relabels (default: the operating system's user name); editable in the widget.
        relabel_source: The ``source`` of the user scores a bulk relabel gives.

    Attributes:
        records: The rows of the current filter (a DataFrame from ``store.matched``);
            row ``i`` of the grid is row ``i`` of ``records``.
        version, label, prediction, correct, confidence, tag, source: The filter
            widgets; ``ANY`` (shown as "any" or "all") does not filter.
        grid: The ``ipydatagrid.DataGrid`` of the rows; its header menus sort and filter, its rows select.
        state: The line saying which filters are on, how many rows match and how many are selected.
        relabel_to, author, relabel_button: The bulk action: the class, who gives it, "Relabel n selected".
        report_button, quality_status, report_html, top_issues, queue_button, queue_box: The data
            quality tab: "Build report", the line saying what it is doing or what went wrong, the
            report's page, its first ``TOP_ISSUES`` likely label errors, "Queue flagged clips" and
            the box that holds the queue.
        report: The last :class:`~dlabel_lab.DataReport` built (``None`` before the first).
        label_queue: The :class:`~dlabel_lab.widgets.LabelQueue` over the report's flagged clips, once opened.
        errors: Errors raised by the widget's own controls (also shown in ``output``; the data
            quality tab's in its status line).

    Example:
        >>> browser = DatasetBrowser(store)  # doctest: +SKIP
        >>> browser.label.value = "circle"; browser.filters()  # doctest: +SKIP
        {'model_version': 'shapes-v1', 'label': 'circle'}
    """

    def __init__(
        self, store, *, max_rows: int = 1000, author: str | None = None, relabel_source: str = BULK_SOURCE
    ) -> None:
        self.store = store
        self.max_rows = max_rows
        self.relabel_source = relabel_source
        self.records = pd.DataFrame()
        self.errors: list[Exception] = []
        self.output = widgets.Output()
        style = {"description_width": "initial"}
        self.version = widgets.Dropdown(description="model version", style=style)
        self.label = widgets.Dropdown(description="user label", style=style)
        self.prediction = widgets.Dropdown(description="prediction", style=style)
        self.tag = widgets.Dropdown(description="tag", style=style)
        self.source = widgets.Dropdown(description="label source", style=style)
        self.correct = widgets.ToggleButtons(
            options=[("all", ANY), ("correct", True), ("wrong", False)],
            value=ANY,
            description="prediction is",
            style={**style, "button_width": "5.5em"},
            layout=widgets.Layout(flex="0 0 auto"),  # its three buttons stay on one line
        )
        self.confidence = widgets.FloatRangeSlider(
            value=(0.0, 1.0), min=0.0, max=1.0, step=0.01, description="confidence", readout_format=".2f", style=style
        )
        self.state = widgets.HTML()
        self.grid = make_grid(grid_frame(self.records))
        self.relabel_to = widgets.Dropdown(description="relabel as", style=style)
        self.author = widgets.Text(
            value=author or default_author(), description="author", style=style, layout=widgets.Layout(width="16em")
        )
        self.relabel_button = widgets.Button(
            description="Relabel 0 selected",
            icon="tags",
            disabled=True,
            tooltip="one new user score per selected clip; the history stays",
            layout=widgets.Layout(width="auto"),
        )
        self.relabel_button.on_click(handler(self, self.relabel_selected))
        self.relabelled = widgets.HTML()
        self.filmstrip = chart_image()
        self.details = widgets.HTML()
        self.metrics = widgets.HTML()
        self.confusion = chart_image()
        self.unmatched = widgets.HTML()
        self.reload_button = widgets.Button(description="Reload", icon="refresh", tooltip="new versions, clips, tags")
        self.reload_button.on_click(handler(self, self.reload))
        self.report: DataReport | None = None
        self.label_queue: LabelQueue | None = None
        self.report_button = widgets.Button(
            description="Build report",
            icon="stethoscope",
            tooltip="data_report(store): missing parts, distribution, shift, duplicates, label errors (seconds)",
            layout=widgets.Layout(width="auto"),
        )
        self.report_button.on_click(handler(self, self._status_shown, self.build_report))
        self.quality_status = widgets.HTML(text_html("the data report is built on request: click Build report"))
        self.report_html = widgets.HTML()
        self.top_issues = widgets.HTML()
        self.queue_button = widgets.Button(
            description="Queue flagged clips",
            icon="list-ol",
            disabled=True,
            tooltip="label the report's likely label errors, most likely wrong first",
            layout=widgets.Layout(width="auto"),
        )
        self.queue_button.on_click(handler(self, self._status_shown, self.queue_flagged))
        self.queue_box = widgets.VBox()
        self._quiet = False
        self._classes: list[str] = []
        self.update_options()
        for w in (self.version, self.label, self.prediction, self.tag, self.source, self.correct, self.confidence):
            w.observe(handler(self, self.refresh), names="value")
        self.grid.observe(handler(self, self.show_selection), names="selections")
        self.grid.observe(handler(self, self.show_state), names=["_transforms", "_visible_rows"])
        tabs = widgets.Tab(
            [
                widgets.VBox([self.filmstrip, self.details]),
                widgets.HBox([self.metrics, self.confusion]),
                self.unmatched,
                widgets.VBox(
                    [
                        widgets.HBox([self.report_button, self.queue_button]),
                        self.quality_status,
                        self.top_issues,
                        self.queue_box,
                        self.report_html,
                    ]
                ),
            ],
            titles=("selected clip", "metrics", "unmatched", "data quality"),
        )
        super().__init__(
            [
                widgets.HBox([self.version, self.label, self.prediction, self.tag]),
                widgets.HBox(
                    [self.source, self.correct, self.confidence, self.reload_button],
                    layout=widgets.Layout(flex_flow="row wrap"),
                ),
                self.state,
                self.grid,
                widgets.HBox([self.relabel_to, self.author, self.relabel_button]),
                self.relabelled,
                tabs,
                self.output,
            ]
        )
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
            keep = self.relabel_to.value
            self.relabel_to.options = classes
            self.relabel_to.value = keep if keep in classes else (classes[0] if classes else None)
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
            "model_version": self.version.value,
            "label": self.label.value,
            "prediction": self.prediction.value,
            "correct": self.correct.value,
            "tags": [self.tag.value] if self.tag.value != ANY else None,
            "label_source": self.source.value,
            "min_confidence": lo if lo > 0 else None,
            "max_confidence": hi if hi < 1 else None,
        }
        return {k: v for k, v in given.items() if v is not None and v != ANY}

    def reload(self) -> None:
        """Pick up what arrived in the store since (versions, clips, tags, label sources) and redraw.

        Example:
            >>> browser.reload()  # doctest: +SKIP
        """
        self.update_options()
        self.refresh()

    def refresh(self, change: dict | None = None) -> None:
        """Query the store with the current filters; redraw the grid, the state line, metrics and unmatched ids.

        The selection is cleared (the rows have changed); the grid's own
        sorting and filtering stay.

        Example:
            >>> browser.refresh(); len(browser.records)  # doctest: +SKIP
            24
        """
        if self._quiet:
            return
        self.records = self.store.matched(**self.filters()).order("received_at, scoring_id, model_version").df()
        self.grid.selections = []
        self.grid._visible_rows = []  # the browser reports the new view once it has the new rows
        frame = grid_frame(self.records.head(self.max_rows))
        self.grid.column_widths = column_widths(frame)  # the new text fits: the grid cuts what does not
        self.grid.data = frame
        self.show_selection()
        self._show_metrics()
        self.unmatched.value = table_html(self.store.unmatched(), max_rows=50)

    def show_state(self, change: dict | None = None) -> None:
        """Redraw the line that says which filters are on, how many rows match, are shown and are selected.

        Example:
            >>> browser.state.value  # doctest: +SKIP
            '<p>filters: model version shapes-v1 · 24 rows match · 0 selected</p>'
        """
        n, in_grid = len(self.records), grid_rows(self.grid)
        parts = [f"filters: {store_filters_text(self.filters())}"]
        by_grid = grid_filters_text(self.grid._transforms)
        if by_grid:
            parts.append(f"grid: {by_grid}")
        parts.append(f"{n} rows match" + (f" (the first {in_grid} are in the grid)" if in_grid < n else ""))
        if any(t.get("type") == "filter" for t in self.grid._transforms):
            parts.append(f"{len(shown_positions(self.grid))} shown")
        parts.append(f"{len(self.selected())} selected")
        self.state.value = text_html(" · ".join(parts))

    def select_rows(self, rows: Iterable[int]) -> None:
        """Select grid rows by their place in the grid as shown (0 is the top row), as clicking them does.

        Example:
            >>> browser.select_rows(range(3)); browser.relabel_button.description  # doctest: +SKIP
            'Relabel 3 selected'
        """
        self.grid.selections = [{"r1": int(r), "c1": 0, "r2": int(r), "c2": 0} for r in rows]

    def selected(self) -> list[tuple[str, str]]:
        """The selected rows as ``(scoring_id, model_version)``, in the order the grid shows them.

        Example:
            >>> browser.grid.set_state({"selections": [{"r1": 0, "c1": 0, "r2": 2, "c2": 0}]})  # doctest: +SKIP
            >>> len(browser.selected())  # doctest: +SKIP
            3
        """
        rows = self.records.iloc[selected_positions(self.grid)]
        return list(zip(rows["scoring_id"], rows["model_version"], strict=True)) if len(rows) else []

    def show_selection(self, change: dict | None = None) -> None:
        """Show the last selected row's clip; update "Relabel n selected" and the state line.

        Example:
            >>> browser.grid.set_state({"selections": [{"r1": 1, "c1": 0, "r2": 1, "c2": 0}]})  # doctest: +SKIP
        """
        chosen = self.selected()
        n_clips = len({sid for sid, _ in chosen})
        self.relabel_button.description = f"Relabel {n_clips} selected"
        self.relabel_button.disabled = n_clips == 0 or not self._classes
        self.show_state()
        self.show_row(chosen[-1] if chosen else None)

    def relabel_selected(self) -> list[int]:
        """Give every selected clip the class in ``relabel_to``: one user score each, with ``author``.

        Returns:
            The new ``label_id``s (see :func:`~dlabel_lab.widgets.grid.relabel`).

        Example:
            >>> browser.relabel_to.value = "circle"; browser.relabel_button.click()  # doctest: +SKIP
        """
        ids = list(dict.fromkeys(sid for sid, _ in self.selected()))
        label, author = self.relabel_to.value, self.author.value
        label_ids = relabel(self.store, ids, label, author=author, source=self.relabel_source, classes=self._classes)
        self.relabelled.value = text_html(
            f"relabelled {len(ids)} clips as {label} (by {author.strip()}, "
            f"source {self.relabel_source}); their earlier labels stay in the history"
        )
        self.update_options()  # a new label source
        self.refresh()
        return label_ids

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

    def show_row(self, key: tuple[str, str] | None = None) -> None:
        """Show one row's clip: the frames its model saw, its probabilities and score history (``None``: clear).

        Example:
            >>> browser.show_row(browser.selected()[0])  # doctest: +SKIP
        """
        if key is None:
            show_png(self.filmstrip, None)
            self.details.value = text_html("select rows in the grid to see a clip")
            return
        sid, version = key
        row = self.records[(self.records.scoring_id == sid) & (self.records.model_version == version)].iloc[0]
        record = json.loads(row["record"]) if isinstance(row["record"], str) else row["record"]
        frames = read_clip(self.store.verified_raw_path(sid), spec_from_record(record)).frames  # local or served
        fig, ax = new_figure((8, 1.6))
        name = grid_frame(pd.DataFrame([row]))["clip"].iloc[0]
        plot_filmstrip(frames, max_frames=8, title=f"{name} ({sid}) as {version} saw it", ax=ax)
        show_png(self.filmstrip, figure_png(fig))
        classes = self.store.get_model(version)["classes"]
        probs = pd.DataFrame({"class": classes, "probability": list(row["probabilities"])})
        history = self.store.score_history(sid)[["label", "source", "author", "labelled_at", "is_latest"]]
        self.details.value = (
            text_html(f"{name}: user label {row['user_label']}, predicted {row['predicted_label']}")
            + table_html(probs)
            + "<b>score history</b>"
            + table_html(history)
            + f"<small>scoring id <code>{html.escape(sid)}</code></small>"
        )

    # -- the data quality tab ------------------------------------------------------------------------------
    def _status_shown(self, action) -> None:
        """Run one of the data quality tab's actions; what goes wrong is one typed line in its status.

        A closed store is left to the handler (it switches the widget off).
        """
        try:
            action()
        except Exception as exc:
            if isinstance(exc, StoreError) and store_is_closed(self.store):
                raise
            self.errors.append(exc)
            self.quality_status.value = f'<p style="color:#b00020">{html.escape(f"{type(exc).__name__}: {exc}")}</p>'

    def build_report(self) -> DataReport:
        """Build :func:`~dlabel_lab.data_report` of the store and show it in the data quality tab.

        The report reads the newest model version that scored clips (it writes
        nothing). Its page, its first ``TOP_ISSUES`` likely label errors and
        the "Queue flagged clips" button (on when clips were flagged) replace
        the previous report's; a queue opened from it is closed.

        Returns:
            The report (also in :attr:`report`).

        Example:
            >>> browser.report_button.click(); print(browser.report.summary())  # doctest: +SKIP
        """
        self.report, self.label_queue = None, None
        self.queue_box.children = ()
        self.queue_button.disabled = True
        self.report_html.value = self.top_issues.value = ""
        self.quality_status.value = text_html("building the data report (decoding clips, fitting models)…")
        self.report_button.disabled = True
        started = time.perf_counter()
        try:
            report = data_report(self.store, model_version=None, progress=False)
            page = report._repr_html_()
        finally:
            self.report_button.disabled = False
        self.report = report
        self.report_html.value = page
        issues = report.label_issues
        check = report.label_check
        if check is None:
            why = next((n for n in report.notes if "label issues" in n), "see the report's notes")
            self.top_issues.value = text_html(f"no label check, nothing to queue: {why}")
        else:
            columns = [c for c in _ISSUE_COLUMNS if c in issues.columns]
            self.top_issues.value = (
                f"<b>likely label errors ({len(issues)} of {len(check.checked)} labelled clips checked)</b>"
                + table_html(issues[columns], max_rows=TOP_ISSUES)
            )
        self.queue_button.description = f"Queue {len(issues)} flagged clips"
        self.queue_button.disabled = check is None or len(issues) == 0
        self.quality_status.value = text_html(
            f"data report of model version {report.model_version or 'none'} built in "
            f"{time.perf_counter() - started:.1f} s"
        )
        return report

    def queue_flagged(self, limit: int | None = None) -> LabelQueue:
        """Open a :class:`~dlabel_lab.widgets.LabelQueue` over the report's flagged clips, most likely wrong first.

        The queue is :meth:`DataReport.relabel_queue`, recorded as a
        ``label-issues`` run (its labels name it as their author) unless the
        store is read-only; its classes are those of the label check.

        Args:
            limit: At most this many clips (default all flagged).

        Raises:
            ConfigError: No report was built, or it has no label check.

        Example:
            >>> browser.queue_button.click(); browser.label_queue.suggestion.scoring_ids[:3]  # doctest: +SKIP
        """
        if self.report is None:
            raise ConfigError("build the data report first (Build report)")
        read_only = bool(getattr(self.store, "read_only", False))
        queue = self.report.relabel_queue(limit, record=not read_only)
        check = self.report.label_check
        classes = [str(c) for c in check.classes] if check is not None and len(check.classes) else self._classes
        self.label_queue = LabelQueue(self.store, queue, classes=classes)
        self.queue_box.children = (self.label_queue,)
        self.quality_status.value = text_html(
            f"{len(queue.table)} flagged clips queued, most likely wrong first"
            + (
                " (the store is read-only: the queue is not recorded and labels cannot be saved)"
                if read_only
                else f" (run {queue.run_id} in the execution log)"
            )
        )
        return self.label_queue
