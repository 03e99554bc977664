"""``AttributionViewer``: what the model looked at, what its neurons do, and which parameters follow.

It shows an :class:`~dlabel_lab.derive.Analysis` (from ``analyse``): per clip
the LayerGradCam heatmaps over the frames the model saw (one colour scale,
with its colorbar) and the per-frame attribution, the clip's tags and
factors; for the model the neuron functions and the implicated factors; and
every derived :class:`~dlabel_lab.transforms.TransformationParams` row with
its evidence and an accept/reject toggle, rejected rows struck through. A
candidate the derivation reported but did not apply can be accepted too: it
then takes the value its evidence records. *Save review* stores the reviewed
parameters, with the reviewer and the time, as a params version that
``retrain(store, version, params=<id>)`` uses (see
:func:`~dlabel_lab.explain.review.save_reviewed_params`).

Layout: the clip menu, then the heatmap overlay and the per-frame bars side
by side (each drawn at its own pixel size), then tabs: the review (first),
the clip's tags and factors, the neuron functions, the implicated factors;
long lists scroll inside their tab, so the widget stays about a screen tall.

Example:
    >>> viewer = AttributionViewer(analysis, params, store=store, author="ana")  # doctest: +SKIP
    >>> viewer.toggles["brightness"].value = False  # doctest: +SKIP
    >>> viewer.save_button.click(); viewer.params_version  # doctest: +SKIP
    'shapes-v1-reviewed-v1'
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from ..errors import ConfigError
from ..explain.review import candidate_value, params_review, review_params, reviewable, save_reviewed_params
from ..plots import plot_attribution_overlay, plot_frame_attribution
from ..train.transforms import TransformationParams
from ._common import (
    chart_image,
    default_author,
    figure_png,
    handler,
    new_figure,
    short_ids,
    show_png,
    table_html,
    text_html,
)

__all__ = ["AttributionViewer", "overlay_figure", "reject_params", "review_row_html"]

FRAME_BARS_SIZE = (2.8, 1.8)  # inches: 252 x 162 px at the widgets' 90 dpi, beside the overlay
OVERLAY_INCHES = 6.4  # widest the overlay gets (576 px): it and the frame bars share one row of a notebook
FRAME_INCHES = 1.4  # widest one overlaid frame gets; more frames share the overlay's width
TITLE_INCHES = 0.3  # a frame's title ("t=3") above it
COLORBAR_INCHES = 0.8  # the overlay's colorbar and its label
SCROLL_HEIGHT = "300px"  # tables in the tabs scroll past this; the review list past REVIEW_HEIGHT
REVIEW_HEIGHT = "420px"
REJECTED_STYLE = "text-decoration:line-through;color:#b00020"


def reject_params(
    params: TransformationParams, rejected: list[str], *, note: str = "rejected by a person"
) -> TransformationParams:
    """``params`` with the ``rejected`` parameters reset (see :meth:`TransformationParams.reject`).

    Example:
        >>> p = reject_params(TransformationParams(blur=(0.5, 1.0), noise=(0.0, 0.1)), ["blur"])
        >>> p.blur, p.noise
        (None, (0.0, 0.1))
    """
    return params.reject(rejected, note=note)


def _clip_label(i: int, analysis: Any, short: dict[str, str]) -> str:
    mark = "right" if bool(analysis.correct[i]) else "WRONG"
    return f"{i}: {short[str(analysis.scoring_ids[i])]} {analysis.labels[i]} → {analysis.predicted[i]} ({mark})"


def _value_text(value: Any) -> str:  # noqa: ANN401 - any parameter value
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:g}" for k, v in value.items())
    if isinstance(value, tuple):
        return "(" + ", ".join(f"{v:g}" for v in value) + ")"
    return str(value)


def review_row_html(row: Any, *, accepted: bool, candidate: Any) -> str:  # noqa: ANN401 - a describe() row
    """One parameter of the review: name, the value saving applies, evidence; struck through in red when rejected.

    Example:
        >>> row = TransformationParams(blur=(0.5, 1.0)).describe().iloc[0]
        >>> "line-through" in review_row_html(row, accepted=False, candidate=(0.5, 1.0))
        True
    """
    if candidate is None:
        value = "nothing to apply (no candidate value recorded)"
    elif row["value"] is None:
        value = f"candidate {_value_text(candidate)} (reported, not applied by the derivation)"
    else:
        value = _value_text(candidate)
    support = {True: "supported", False: "not supported"}.get(row["supported"], "no evidence")
    evidence = ", ".join(str(x) for x in (row["source"], support, row["note"]) if x)
    body = f"<b>{html.escape(str(row['parameter']))}</b> {html.escape(value)} <small>({html.escape(evidence)})</small>"
    if accepted:
        return f'<span title="accepted">✓ {body}</span>'
    return f'<span title="rejected">✗ <span style="{REJECTED_STYLE}">{body}</span> <b>rejected</b></span>'


def overlay_figure(frames: np.ndarray, heatmap: np.ndarray, *, max_frames: int = 8) -> Figure:
    """Frames with their attribution heatmaps overlaid on one colour scale, and its colorbar.

    One row, at most :data:`OVERLAY_INCHES` wide: each frame gets up to
    :data:`FRAME_INCHES` at its own aspect ratio, more frames get less each.

    Example:
        >>> fig = overlay_figure(np.zeros((4, 8, 8, 3), np.uint8), np.ones((4, 2, 2)), max_frames=2)
        >>> fig.axes[-1].get_ylabel()
        'attribution'
    """
    frames = np.asarray(frames)
    shown = min(max_frames, frames.shape[0])
    width = min(FRAME_INCHES, (OVERLAY_INCHES - COLORBAR_INCHES) / shown)  # one row, at most OVERLAY_INCHES wide
    aspect = frames.shape[1] / frames.shape[2] if frames.ndim == 4 else 1.0  # height / width of a frame
    fig, axes = new_figure((width * shown + COLORBAR_INCHES, width * aspect + TITLE_INCHES), ncols=shown)
    axes = plot_attribution_overlay(frames, heatmap, max_frames=max_frames, axes=axes)
    # every frame shares one colour scale (vmin/vmax), so one colorbar reads them all
    fig.colorbar(axes[-1].images[-1], ax=list(axes), shrink=0.85, label="attribution")
    return fig


class AttributionViewer(widgets.VBox):
    """Heatmaps, frame attributions, neuron functions and derived parameters, with accept/reject and save.

    Args:
        analysis: An ``Analysis`` (from ``dlabel_lab.derive.analyse``) or any
            object with its fields (``model_version``, ``scoring_ids``,
            ``labels``, ``predicted``, ``correct``, ``frames``, ``gradcam``,
            ``frame_profile``, ``functions``, ``tags``, ``factors``,
            ``implicated_factors``).
        params: The derived transformation parameters.
        store: The payload store the review is saved in (``None``: no Save button).
        author: The reviewer (default: the operating system's user name); editable in the widget.
        max_frames: Frames shown per clip.

    Attributes:
        clip: The clip selector (value: row index into the analysis).
        toggles: Parameter name -> ``ToggleButtons`` (True accept, False
            reject), one per row of ``params.describe()``. Set values start
            accepted, candidates the derivation did not apply start rejected;
            a candidate without a recorded value cannot be accepted (its toggle is off).
        review: Parameter name -> the ``HTML`` row that shows the decision.
        author: The reviewer's name (a ``Text``).
        save_button: Saves the review (:meth:`save`).
        params_version: The id of the last saved review, else ``None``.
        tabs: The review, the clip's tags and factors, neuron functions, implicated factors.
        errors: Errors raised by the widget's own controls (also shown in ``output``).

    Example:
        >>> viewer = AttributionViewer(analysis, params, store=store)  # doctest: +SKIP
        >>> viewer.accepted_params().describe()  # doctest: +SKIP
    """

    def __init__(
        self,
        analysis: Any,
        params: TransformationParams,
        *,
        store: Any = None,
        author: str | None = None,
        max_frames: int = 8,
    ) -> None:
        self.analysis = analysis
        self.params = params
        self.store = store
        self.max_frames = max_frames
        self.params_version: str | None = None
        self.errors: list[Exception] = []
        self.output = widgets.Output()
        n = len(analysis.scoring_ids)
        wrong_first = sorted(range(n), key=lambda i: (bool(analysis.correct[i]), i))
        short = short_ids(str(s) for s in analysis.scoring_ids)
        self.clip = widgets.Dropdown(
            options=[(_clip_label(i, analysis, short), i) for i in wrong_first],
            description="clip",
            layout=widgets.Layout(width="36em"),
        )
        self.overlay = chart_image()
        self.frame_bars = chart_image()  # sized to its PNG: nothing beside it can stretch it
        self.clip_info = widgets.HTML()
        self.clip.observe(handler(self, self.show_clip), names="value")
        self._described = params.describe().set_index("parameter", drop=False)
        self._candidates = {name: candidate_value(params, name) for name in reviewable(params)}
        self.toggles: dict[str, widgets.ToggleButtons] = {}
        self.review: dict[str, widgets.HTML] = {}
        for name, candidate in self._candidates.items():
            applied = self._described.loc[name, "value"] is not None
            self.toggles[name] = widgets.ToggleButtons(
                options=[("accept", True), ("reject", False)],
                value=applied,
                disabled=candidate is None,
                tooltips=["apply it when retraining", "retrain without it"],
                style={"button_width": "5em"},
                layout=widgets.Layout(flex="0 0 auto", width="11.5em"),
            )  # side by side, never squeezed
            self.review[name] = widgets.HTML(layout=widgets.Layout(flex="1 1 0", min_width="0"))  # wraps its text
            self.toggles[name].observe(handler(self, self.show_review), names="value")
        self.summary = widgets.HTML()
        self.author = widgets.Text(
            value=author or default_author(), description="reviewer", layout=widgets.Layout(width="18em")
        )
        self.save_button = widgets.Button(
            description="Save review",
            icon="save",
            button_style="primary",
            disabled=store is None,
            tooltip="store the reviewed parameters as a params version for retrain",
        )
        self.save_button.on_click(handler(self, self.save))
        self.saved = widgets.HTML(
            text_html(
                "not saved yet" if store is not None else "no store given: AttributionViewer(..., store=store) saves"
            )
        )
        rows = widgets.VBox(
            # rows keep their height (flex 0 0 auto): past REVIEW_HEIGHT the list scrolls, rows are never squashed
            [
                widgets.HBox([self.toggles[k], self.review[k]], layout=widgets.Layout(flex="0 0 auto"))
                for k in self.toggles
            ],
            layout=widgets.Layout(max_height=REVIEW_HEIGHT, overflow="auto"),
        )
        review_box = widgets.VBox([self.summary, rows, widgets.HBox([self.author, self.save_button]), self.saved])
        self.clip_info.layout = widgets.Layout(max_height=SCROLL_HEIGHT, overflow="auto")

        def scrolled(value: str) -> widgets.HTML:
            return widgets.HTML(value, layout=widgets.Layout(max_height=SCROLL_HEIGHT, overflow="auto"))

        self.tabs = widgets.Tab(
            [
                review_box,
                self.clip_info,
                scrolled(table_html(getattr(analysis, "functions", None), max_rows=40)),
                scrolled(table_html(getattr(analysis, "implicated_factors", None))),
            ],
            titles=("review parameters", "clip tags and factors", "neuron functions", "implicated factors"),
        )
        wrap = widgets.Layout(flex_flow="row wrap", align_items="flex-start")
        super().__init__(
            [
                widgets.HBox(
                    [
                        widgets.HTML(
                            text_html(
                                f"model {analysis.model_version}: {n} clips, "
                                f"{int(np.sum(~np.asarray(analysis.correct, bool)))} predicted wrong",
                                tag="b",
                            )
                        ),
                        self.clip,
                    ],
                    layout=wrap,
                ),
                widgets.HBox([self.overlay, self.frame_bars], layout=wrap),
                self.tabs,
                self.output,
            ]
        )
        self.show_review()
        if n:
            self.show_clip()

    def show_clip(self, change: dict | None = None) -> None:
        """Draw the selected clip's heatmap overlay (with a colorbar), its frame attribution, tags and factors.

        Example:
            >>> viewer.clip.value = 3  # calls show_clip  # doctest: +SKIP
        """
        i, a = self.clip.value, self.analysis
        show_png(self.overlay, figure_png(overlay_figure(a.frames[i], a.gradcam[i], max_frames=self.max_frames)))
        fig, ax = new_figure(FRAME_BARS_SIZE)
        plot_frame_attribution(np.asarray(a.frame_profile[i]), ax=ax)
        show_png(self.frame_bars, figure_png(fig))
        sid = a.scoring_ids[i]
        tags = (
            a.tags[a.tags["scoring_id"] == sid].drop(columns="scoring_id")
            if "scoring_id" in a.tags
            else a.tags.iloc[:0]
        )
        factors = (
            a.factors[a.factors["scoring_id"] == sid].drop(columns="scoring_id").T
            if "scoring_id" in a.factors
            else None
        )
        self.clip_info.value = (
            '<div style="display:flex;flex-flow:row wrap;gap:0 2em;align-items:flex-start">'
            f"<div><b>tags</b>{table_html(tags)}</div>"
            f"<div><b>factors</b>{table_html(factors)}</div></div>"
        )

    def show_review(self, change: dict | None = None) -> None:
        """Redraw every parameter's row (rejected ones struck through) and the count of decisions.

        Example:
            >>> viewer.toggles["blur"].value = False  # calls show_review  # doctest: +SKIP
        """
        for name, toggle in self.toggles.items():
            self.review[name].value = review_row_html(
                self._described.loc[name], accepted=bool(toggle.value), candidate=self._candidates[name]
            )
        accepted, rejected = self.accepted(), self.rejected()
        self.summary.value = f"<b>{len(accepted)} of {len(self.toggles)} parameters accepted</b>" + (
            f"; rejected: {html.escape(', '.join(rejected))}" if rejected else ""
        )

    def accepted(self) -> list[str]:
        """Names of the parameters currently accepted.

        Example:
            >>> viewer.toggles["blur"].value = False; viewer.accepted()  # doctest: +SKIP
            ['brightness', 'class_weights']
        """
        return [name for name, toggle in self.toggles.items() if toggle.value]

    def rejected(self) -> list[str]:
        """Names of the parameters currently rejected.

        Example:
            >>> viewer.rejected()  # doctest: +SKIP
            ['blur']
        """
        return [name for name, toggle in self.toggles.items() if not toggle.value]

    def accepted_params(self) -> TransformationParams:
        """The parameters as reviewed: rejected ones reset to "no change", accepted candidates applied.

        See :func:`~dlabel_lab.explain.review.review_params`.

        Example:
            >>> viewer.accepted_params().is_empty()  # doctest: +SKIP
            False
        """
        return review_params(self.params, self.accepted())

    def save(self) -> str:
        """Save the review (reviewer, time, accepted and rejected names) as a params version; its id.

        Raises:
            ConfigError: The viewer has no store, or no reviewer name.

        Example:
            >>> viewer.save()  # doctest: +SKIP
            'shapes-v1-reviewed-v1'
        """
        if self.store is None:
            raise ConfigError(
                "this viewer has no store to save in: build it with AttributionViewer(analysis, params, store=store)"
            )
        version = str(self.analysis.model_version)
        self.params_version = save_reviewed_params(
            self.store, self.params, accepted=self.accepted(), author=self.author.value.strip(), model_version=version
        )
        done = params_review(self.store, self.params_version)
        self.saved.value = text_html(
            f"saved as {self.params_version} by {done['author']} at {done['reviewed_at']:%Y-%m-%d %H:%M:%S} UTC "
            f"({len(done['accepted'])} accepted, {len(done['rejected'])} rejected); "
            f"retrain with retrain(store, {version!r}, params={self.params_version!r})"
        )
        return self.params_version
