"""``AttributionViewer``: what the model looked at, what its neurons do, and which parameters follow.

It shows an :class:`~dlabel_lab.derive.Analysis` (from ``analyse``): per clip
the LayerGradCam heatmaps over the frames the model saw and the per-frame
attribution, the clip's tags and factors; for the model the neuron functions
and the implicated factors; and the derived
:class:`~dlabel_lab.transforms.TransformationParams` with their evidence, each
with an accept/reject toggle. :meth:`AttributionViewer.accepted_params` returns
the parameters a person accepted.

Example:
    >>> viewer = AttributionViewer(analysis, params)  # doctest: +SKIP
    >>> viewer.toggles["brightness"].value = False  # doctest: +SKIP
    >>> viewer.accepted_params().brightness is None  # doctest: +SKIP
    True
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import numpy as np

from ..plots import plot_attribution_overlay, plot_frame_attribution
from ..train.transforms import TransformationParams
from ._common import chart_image, figure_png, handler, new_figure, show_png, table_html, text_html

__all__ = ["AttributionViewer", "reject_params"]

FRAME_BARS_SIZE = (4.0, 2.6)  # inches: 360 x 234 px at the widgets' 90 dpi


def reject_params(params: TransformationParams, rejected: list[str], *, note: str = "rejected by a person") -> (
        TransformationParams):
    """``params`` with the ``rejected`` parameters reset (see :meth:`TransformationParams.reject`).

    Example:
        >>> p = reject_params(TransformationParams(blur=(0.5, 1.0), noise=(0.0, 0.1)), ["blur"])
        >>> p.blur, p.noise
        (None, (0.0, 0.1))
    """
    return params.reject(rejected, note=note)


def _clip_label(i: int, analysis: Any) -> str:
    mark = "right" if bool(analysis.correct[i]) else "WRONG"
    return f"{i}: {str(analysis.scoring_ids[i])[:8]}… {analysis.labels[i]} → {analysis.predicted[i]} ({mark})"


class AttributionViewer(widgets.VBox):
    """Heatmaps, frame attributions, neuron functions and derived parameters, with accept/reject.

    Args:
        analysis: An ``Analysis`` (from ``dlabel_lab.derive.analyse``) or any
            object with its fields (``scoring_ids``, ``labels``, ``predicted``,
            ``correct``, ``frames``, ``gradcam``, ``frame_profile``,
            ``functions``, ``tags``, ``factors``, ``implicated_factors``).
        params: The derived transformation parameters.

    Attributes:
        clip: The clip selector (value: row index into the analysis).
        toggles: Parameter name -> ``ToggleButtons`` (True accept, False reject),
            one per parameter that has a value.
        errors: Errors raised by the widget's own controls (also shown in ``output``).

    Example:
        >>> viewer = AttributionViewer(analysis, params)  # doctest: +SKIP
        >>> viewer.accepted_params().describe()  # doctest: +SKIP
    """

    def __init__(self, analysis: Any, params: TransformationParams, *, max_frames: int = 8) -> None:
        self.analysis = analysis
        self.params = params
        self.max_frames = max_frames
        self.errors: list[Exception] = []
        self.output = widgets.Output()
        n = len(analysis.scoring_ids)
        wrong_first = sorted(range(n), key=lambda i: (bool(analysis.correct[i]), i))
        self.clip = widgets.Dropdown(options=[(_clip_label(i, analysis), i) for i in wrong_first],
                                     description="clip", layout=widgets.Layout(width="36em"))
        self.overlay = chart_image()
        self.frame_bars = chart_image()  # sized to its PNG: the tables beside it cannot stretch it
        self.clip_info = widgets.HTML()
        self.clip.observe(handler(self, self.show_clip), names="value")
        described = params.describe()
        self.toggles = {
            name: widgets.ToggleButtons(options=[("accept", True), ("reject", False)], value=True,
                                        description=name, style={"description_width": "8em"})
            for name, value in zip(described["parameter"], described["value"], strict=True) if value is not None
        }
        self.params_table = widgets.HTML(table_html(described))
        model_tabs = widgets.Tab([
            widgets.HTML(table_html(getattr(analysis, "functions", None), max_rows=40)),
            widgets.HTML(table_html(getattr(analysis, "implicated_factors", None))),
            widgets.VBox([self.params_table, *self.toggles.values()]),
        ], titles=("neuron functions", "implicated factors", "transformation parameters"))
        super().__init__([
            widgets.HTML(text_html(f"model {analysis.model_version}: {n} clips, "
                                   f"{int(np.sum(~np.asarray(analysis.correct, bool)))} predicted wrong", tag="b")),
            self.clip, self.overlay, widgets.HBox([self.frame_bars, self.clip_info]), model_tabs, self.output,
        ])
        if n:
            self.show_clip()

    def show_clip(self, change: dict | None = None) -> None:
        """Draw the selected clip's heatmap overlay, its frame attribution, tags and factors.

        Example:
            >>> viewer.clip.value = 3  # calls show_clip  # doctest: +SKIP
        """
        i, a = self.clip.value, self.analysis
        frames = np.asarray(a.frames[i])
        shown = min(self.max_frames, frames.shape[0])
        fig, axes = new_figure((1.7 * shown, 2.0), ncols=shown)
        plot_attribution_overlay(frames, a.gradcam[i], max_frames=self.max_frames, axes=axes)
        show_png(self.overlay, figure_png(fig))
        fig, ax = new_figure(FRAME_BARS_SIZE)
        plot_frame_attribution(np.asarray(a.frame_profile[i]), ax=ax)
        show_png(self.frame_bars, figure_png(fig))
        sid = a.scoring_ids[i]
        tags = a.tags[a.tags["scoring_id"] == sid] if "scoring_id" in a.tags else a.tags.iloc[:0]
        factors = a.factors[a.factors["scoring_id"] == sid].drop(columns="scoring_id").T if "scoring_id" in a.factors \
            else None
        self.clip_info.value = "<b>tags</b>" + table_html(tags) + "<b>factors</b>" + table_html(factors)

    def accepted(self) -> list[str]:
        """Names of the parameters currently accepted.

        Example:
            >>> viewer.toggles["blur"].value = False; viewer.accepted()  # doctest: +SKIP
            ['brightness', 'class_weights']
        """
        return [name for name, toggle in self.toggles.items() if toggle.value]

    def accepted_params(self) -> TransformationParams:
        """The parameters with every rejected one reset to "no change" (see :func:`reject_params`).

        Example:
            >>> viewer.accepted_params().is_empty()  # doctest: +SKIP
            False
        """
        return reject_params(self.params, [name for name, toggle in self.toggles.items() if not toggle.value])
