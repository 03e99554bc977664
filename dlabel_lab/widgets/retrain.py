"""``RetrainPanel``: retrain a model version from the store, watching it learn.

The Retrain button calls :func:`~dlabel_lab.loop.retrain` with the epochs,
learning rate and transformation parameters of the panel and a
:class:`LiveTrainingCallback`, a Lightning callback that moves a progress bar
and redraws the learning curves after every epoch (legend beside the plot,
whole-epoch ticks). Afterwards the panel shows the new version against its
parent on the same held-out clips and its lineage from the store, and keeps
"from version" on whichever of the two did better there (the new version only
when it beats its parent, :attr:`~dlabel_lab.loop.ModelVersion.improved`); the
menu still offers both.

The "params" menu picks the transformation parameters: those given to the
panel ("derived now"), none (plain fine-tuning), or any params version saved
in the store (``store.list_params()``, newest first: a review saved by the
``AttributionViewer``, a loop's derivation), which ``retrain`` then takes by
id. Their table, with the evidence, folds out under a one-line summary; the
learning curves and the comparison sit side by side, so the panel stays about
a screen tall.

Example:
    >>> panel = RetrainPanel(store, "shapes-v1", params=viewer.accepted_params())  # doctest: +SKIP
    >>> panel.epochs.value = 3; panel.retrain_button.click()  # doctest: +SKIP
    >>> panel.last_version.comparison  # doctest: +SKIP
"""

from __future__ import annotations

import html
import numbers

import ipywidgets as widgets
import pandas as pd
import pytorch_lightning as pl
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..explain.review import load_params
from ..loop import ModelVersion, retrain
from ..plots import plot_learning_curves
from ..train.transforms import TransformationParams
from ._common import chart_image, figure_png, handler, new_figure, show_png, table_html, text_html

__all__ = [
    "GIVEN_PARAMS",
    "NO_PARAMS",
    "LiveTrainingCallback",
    "RetrainPanel",
    "comparison_html",
    "draw_learning_curves",
    "lineage_html",
    "params_html",
    "params_options",
]

CURVES_SIZE = (5.0, 2.8)  # inches: 450 x 252 px at the widgets' 90 dpi, the comparison beside it
NO_PARAMS = ""  #: the params menu's "none": plain fine-tuning
GIVEN_PARAMS = "<given>"  #: the params menu's "derived now": the parameters given to the panel (never a version id)


def draw_learning_curves(history: pd.DataFrame) -> Figure:
    """The learning curves (``plot_learning_curves``) with whole-epoch ticks and the legend outside the data.

    Example:
        >>> fig = draw_learning_curves(pd.DataFrame({"epoch": [0, 1], "train_loss": [1.0, 0.5]}))
        >>> len(fig.legends), fig.axes[0].get_legend() is None
        (1, True)
    """
    fig, ax = new_figure(CURVES_SIZE)
    plot_learning_curves(history, ax=ax)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    epochs = sorted(set(history["epoch"])) if "epoch" in history else []
    if len(epochs) == 1:  # one point: one tick, not fractions of an epoch around it
        ax.set_xticks(epochs)
        ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
    if ax.get_legend() is not None:  # move it beside the axes (the loss axis and its twin), off the curves
        ax.get_legend().remove()
        handles, labels = [], []
        for a in fig.axes:
            h, lab = a.get_legend_handles_labels()
            handles, labels = handles + h, labels + lab
        fig.legend(handles, labels, loc="outside right upper", frameon=True, fontsize="small")
    return fig


class LiveTrainingCallback(pl.Callback):
    """A Lightning callback that shows training progress in widgets, epoch by epoch.

    Args:
        progress: An ``IntProgress`` set to ``max_epochs`` and advanced per epoch.
        plot: An ``Image`` that gets the learning curves (``plot_learning_curves``)
            after every epoch; ``None`` for none.

    Attributes:
        history: One dict per finished epoch: ``epoch`` and the logged metrics.

    Example:
        >>> import ipywidgets
        >>> callback = LiveTrainingCallback(ipywidgets.IntProgress(), ipywidgets.Image())
        >>> retrain(store, "shapes-v1", epochs=2, callbacks=[callback])  # doctest: +SKIP
    """

    def __init__(self, progress: widgets.IntProgress, plot: widgets.Image | None = None) -> None:
        self.progress = progress
        self.plot = plot
        self.history: list[dict] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.history = []
        self.progress.max = int(trainer.max_epochs or 1)
        self.progress.value = 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if isinstance(v, numbers.Number) or getattr(v, "numel", lambda: 0)() == 1
        }
        self.history.append({"epoch": trainer.current_epoch, **metrics})
        self.progress.value = trainer.current_epoch + 1
        if self.plot is not None:
            show_png(self.plot, figure_png(draw_learning_curves(pd.DataFrame(self.history))))


def comparison_html(version: ModelVersion, keep: str) -> str:
    """Parent against new version on the same held-out clips, the verdict, and which one is kept selected.

    Example:
        >>> comparison_html(v2, "shapes-v1")  # doctest: +SKIP
    """
    n = len(version.holdout_ids)
    if version.parent_evaluation is None or version.evaluation is None:
        verdict = f"{version.version}: no comparison with its parent"
    else:
        before, after = version.parent_evaluation.accuracy, version.evaluation.accuracy
        word = "better than" if version.improved else ("as good as" if after == before else "worse than")
        verdict = (
            f"{version.version} ({after:.3f}) is {word} its parent {version.parent} ({before:.3f}) "
            f"on the same {n} held-out clips"
        )
    kept = (
        f'"from version" moves to {keep}'
        if keep == version.version
        else f'"from version" stays on {keep}; pick {version.version} in the menu to continue from it anyway'
    )
    table = version.comparison
    if table is not None:
        table = table.rename(columns={"before": f"{version.parent} (parent)", "after": f"{version.version} (new)"})
    return text_html(verdict, tag="b") + text_html(kept) + table_html(table)


def lineage_html(lineage: dict) -> str:
    """A short HTML summary of ``store.lineage(version)``: chain, data set, parameters, evaluations.

    Example:
        >>> "m-v2 ← m-v1" in lineage_html({"chain": ["m-v2", "m-v1"], "dataset": None, "evaluations": []})
        True
    """
    parts = [f"<p><b>chain</b>: {html.escape(' ← '.join(lineage['chain']))}</p>"]
    ds = lineage.get("dataset")
    if ds:
        parts.append(
            text_html(
                f"data set {ds['version']} ({ds['name']}): {ds['n_members']} clips, labels "
                f"{ds['label_counts']}, content hash {str(ds['content_hash'])[:12]}"
            )
        )
    params = (lineage.get("params") or {}).get("transformation_params")
    described = TransformationParams.from_dict(params).describe() if params else None
    applied = [f"{r.parameter}={r.value}" for r in described.itertuples() if r.value is not None] if params else []
    parts.append(text_html(f"transformation parameters: {', '.join(applied) or 'none'}"))
    evaluations = pd.DataFrame(
        [
            {
                "split": e["split"],
                "n": e["metrics"].get("n"),
                "accuracy": e["metrics"].get("accuracy"),
                "macro_f1": e["metrics"].get("macro_f1"),
                "logged_at": e["logged_at"],
            }
            for e in lineage.get("evaluations", [])
        ]
    )
    parts.append("<b>evaluations</b>" + table_html(evaluations))
    return "".join(parts)


def params_options(saved: pd.DataFrame, *, given: bool = False) -> list[tuple[str, str]]:
    """The params menu: "derived now" (when parameters were given), "none", then every saved version.

    Args:
        saved: ``store.list_params()`` (newest first).
        given: Whether the panel was given parameters (a ``TransformationParams``).

    Example:
        >>> saved = pd.DataFrame({"params_version": ["m-v1-reviewed-v1"], "author": ["ana"], "n_params": [2],
        ...                       "created_at": [pd.Timestamp("2024-05-01 10:00")]})
        >>> params_options(saved)
        [('none: plain fine-tuning', ''), ('m-v1-reviewed-v1 (by ana, 2 set, 2024-05-01 10:00)', 'm-v1-reviewed-v1')]
    """
    options = [("derived now (given to the panel)", GIVEN_PARAMS)] if given else []
    options.append(("none: plain fine-tuning", NO_PARAMS))
    for row in saved.itertuples():
        by = f"by {row.author}, " if isinstance(row.author, str) and row.author else ""
        options.append(
            (f"{row.params_version} ({by}{row.n_params} set, {row.created_at:%Y-%m-%d %H:%M})", str(row.params_version))
        )
    return options


def params_html(params: TransformationParams | None, title: str = "transformation parameters") -> str:
    """One line with what the parameters set, and their whole table (with evidence) folded under it.

    Example:
        >>> "blur=(0.5, 1.0)" in params_html(TransformationParams(blur=(0.5, 1.0)))
        True
    """
    described = params.describe() if params is not None else None
    if described is None or not len(described):
        return text_html("no transformation parameters: plain fine-tuning on the labelled clips")
    applied = [f"{r.parameter}={r.value}" for r in described.itertuples() if r.value is not None]
    unset = len(described) - len(applied)
    line = f"{title}: {', '.join(applied) or 'none set'}" + (f"; {unset} more listed without a value" if unset else "")
    return (
        text_html(line, tag="b") + "<details><summary>every parameter with its evidence</summary>"
        f'<div style="max-height:320px;overflow:auto">{table_html(described)}</div></details>'
    )


class RetrainPanel(widgets.VBox):
    """Epochs, learning rate, the accepted parameters and a Retrain button with live curves.

    Args:
        store: The payload store.
        from_version: Version to fine-tune; default the newest.
        params: Transformation parameters to retrain with (e.g.
            ``AttributionViewer.accepted_params()``, "derived now" in the
            menu), or the id of a saved params version (e.g.
            ``AttributionViewer.params_version``, a saved review); ``None``
            for plain fine-tuning. The params menu can change it.
        epochs: Initial value of the epochs input.
        lr: Initial value of the learning-rate input.
        seed: Seed of the split, the shuffling and the weights.

    Attributes:
        last_version: The :class:`~dlabel_lab.loop.ModelVersion` of the last retraining.
        version: The "from version" menu: after a retraining, the better of the
            new version and its parent on their shared held-out clips.
        params_menu: The params menu: :data:`GIVEN_PARAMS` ("derived now", when
            parameters were given), :data:`NO_PARAMS` (none) or a saved params version id.
        params: What the next retraining uses: the given parameters, ``None``
            or the chosen version's id (follows ``params_menu``).
        params_reload: Reloads the params menu (versions saved after the panel was built).
        lineage: ``store.lineage`` of the last version.
        callback: The :class:`LiveTrainingCallback` passed to Lightning.
        errors: Errors raised by the widget's own controls (also shown in ``output``).

    Example:
        >>> panel = RetrainPanel(store, params=params)  # doctest: +SKIP
        >>> panel.retrain_button.click(); panel.last_version.version  # doctest: +SKIP
        'shapes-v2'
    """

    def __init__(
        self,
        store,
        from_version: str | None = None,
        params: TransformationParams | str | None = None,
        *,
        epochs: int = 3,
        lr: float = 1e-3,
        seed: int = 0,
    ) -> None:
        self.store = store
        self.params = params
        self.seed = seed
        self.last_version: ModelVersion | None = None
        self.lineage: dict | None = None
        self.errors: list[Exception] = []
        self.output = widgets.Output()
        style = {"description_width": "initial"}
        versions = [str(v) for v in store.model_versions()["model_version"]]
        self.version = widgets.Dropdown(
            options=versions,
            value=from_version or (versions[-1] if versions else None),
            description="from version",
            style=style,
        )
        self.epochs = widgets.BoundedIntText(value=epochs, min=1, max=1000, description="epochs", style=style)
        self.lr = widgets.BoundedFloatText(
            value=lr, min=1e-6, max=1.0, step=1e-4, description="learning rate", style=style
        )
        self.given = None if isinstance(params, str) else params
        self.params_menu = widgets.Dropdown(description="params", style=style, layout=widgets.Layout(width="34em"))
        self.params_reload = widgets.Button(
            icon="refresh", tooltip="params versions saved since", layout=widgets.Layout(width="3em")
        )
        self.params_reload.on_click(handler(self, self.update_params_options))
        self.params_view = widgets.HTML()
        if isinstance(params, str):
            load_params(store, params)  # UnknownRecord for an id the store does not have
        self.update_params_options()
        self.params_menu.value = (
            params if isinstance(params, str) else (GIVEN_PARAMS if params is not None else NO_PARAMS)
        )
        self.choose_params()
        self.params_menu.observe(handler(self, self.choose_params), names="value")
        self.retrain_button = widgets.Button(description="Retrain", button_style="success", icon="play")
        self.retrain_button.on_click(handler(self, self.run))
        self.progress = widgets.IntProgress(min=0, max=epochs, description="epoch")
        self.plot = chart_image()
        self.callback = LiveTrainingCallback(self.progress, self.plot)
        self.comparison = widgets.HTML()
        self.lineage_view = widgets.HTML()
        self.results = widgets.Tab(
            [self.comparison, self.lineage_view],
            titles=("new vs parent", "lineage"),
            layout=widgets.Layout(flex="1 1 24em", min_width="22em", display="none"),
        )
        wrap = widgets.Layout(flex_flow="row wrap", align_items="flex-start")
        self.epochs.layout.width, self.lr.layout.width, self.version.layout.width = "10em", "14em", "18em"
        super().__init__(
            [
                widgets.HBox([self.version, self.params_menu, self.params_reload, self.epochs, self.lr], layout=wrap),
                self.params_view,
                widgets.HBox([self.retrain_button, self.progress]),
                widgets.HBox([self.plot, self.results], layout=wrap),
                self.output,
            ]
        )

    def update_params_options(self) -> None:
        """Reload the params menu from ``store.list_params()`` (newest first), keeping the choice.

        Example:
            >>> panel.update_params_options(); panel.params_menu.options  # doctest: +SKIP
        """
        keep = self.params_menu.value
        options = params_options(self.store.list_params(), given=self.given is not None)
        self.params_menu.options = options
        values = [v for _, v in options]
        if keep in values:
            self.params_menu.value = keep

    def choose_params(self, change: dict | None = None) -> None:
        """Use the parameters the params menu names for the next retraining; show them.

        Raises:
            UnknownRecord: The chosen params version is not in the store.

        Example:
            >>> panel.params_menu.value = "shapes-v1-reviewed-v1"  # calls choose_params  # doctest: +SKIP
        """
        value = self.params_menu.value
        self.params = self.given if value == GIVEN_PARAMS else (value or None)
        if isinstance(self.params, str):
            self.params_view.value = params_html(
                load_params(self.store, self.params), f"transformation parameters {self.params}"
            )
        else:
            self.params_view.value = params_html(self.params)

    def run(self) -> ModelVersion | None:
        """Retrain with the panel's settings; show the comparison and the lineage.

        Example:
            >>> panel.run().version  # what a click on Retrain does  # doctest: +SKIP
            'shapes-v2'
        """
        self.retrain_button.disabled = True
        try:
            self.last_version = retrain(
                self.store,
                self.version.value,
                epochs=self.epochs.value,
                lr=self.lr.value,
                params=self.params,
                seed=self.seed,
                progress=False,
                callbacks=[self.callback],
            )
        finally:
            self.retrain_button.disabled = False
        self.show(self.last_version)
        return self.last_version

    def show(self, version: ModelVersion) -> None:
        """Show a version against its parent and its lineage; continue from the better of the two next time.

        Example:
            >>> panel.show(retrain(store, "shapes-v1", epochs=1))  # doctest: +SKIP
        """
        keep = version.version if version.improved or version.parent is None else version.parent
        self.results.layout.display = None
        self.comparison.value = comparison_html(version, keep)
        self.lineage = self.store.lineage(version.version)
        self.lineage_view.value = lineage_html(self.lineage)
        self.version.options = [str(v) for v in self.store.model_versions()["model_version"]]
        self.version.value = keep
        self.update_params_options()
