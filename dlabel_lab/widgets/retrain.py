"""``RetrainPanel``: retrain a model version from the store, watching it learn.

The Retrain button calls :func:`~dlabel_lab.loop.retrain` with the epochs,
learning rate and (accepted) transformation parameters of the panel and a
:class:`LiveTrainingCallback`, a Lightning callback that moves a progress bar
and redraws the learning curves after every epoch. Afterwards the panel shows
the new version against its parent on the same held-out clips and its
lineage from the store.

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

from ..loop import ModelVersion, retrain
from ..plots import plot_learning_curves
from ..train.transforms import TransformationParams
from ._common import figure_png, guarded, new_figure, table_html, text_html

__all__ = ["LiveTrainingCallback", "RetrainPanel", "lineage_html"]


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
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if isinstance(v, numbers.Number) or getattr(v, "numel", lambda: 0)() == 1}
        self.history.append({"epoch": trainer.current_epoch, **metrics})
        self.progress.value = trainer.current_epoch + 1
        if self.plot is not None:
            fig, ax = new_figure((5.5, 3.2))
            plot_learning_curves(pd.DataFrame(self.history), ax=ax)
            self.plot.value = figure_png(fig)


def lineage_html(lineage: dict) -> str:
    """A short HTML summary of ``store.lineage(version)``: chain, data set, parameters, evaluations.

    Example:
        >>> "m-v2 ← m-v1" in lineage_html({"chain": ["m-v2", "m-v1"], "dataset": None, "evaluations": []})
        True
    """
    parts = [f"<p><b>chain</b>: {html.escape(' ← '.join(lineage['chain']))}</p>"]
    ds = lineage.get("dataset")
    if ds:
        parts.append(text_html(f"data set {ds['version']} ({ds['name']}): {ds['n_members']} clips, labels "
                               f"{ds['label_counts']}, content hash {str(ds['content_hash'])[:12]}"))
    params = (lineage.get("params") or {}).get("transformation_params")
    described = TransformationParams.from_dict(params).describe() if params else None
    applied = [f"{r.parameter}={r.value}" for r in described.itertuples() if r.value is not None] if params else []
    parts.append(text_html(f"transformation parameters: {', '.join(applied) or 'none'}"))
    evaluations = pd.DataFrame([
        {"split": e["split"], "n": e["metrics"].get("n"), "accuracy": e["metrics"].get("accuracy"),
         "macro_f1": e["metrics"].get("macro_f1"), "logged_at": e["logged_at"]}
        for e in lineage.get("evaluations", [])
    ])
    parts.append("<b>evaluations</b>" + table_html(evaluations))
    return "".join(parts)


class RetrainPanel(widgets.VBox):
    """Epochs, learning rate, the accepted parameters and a Retrain button with live curves.

    Args:
        store: The payload store.
        from_version: Version to fine-tune; default the newest.
        params: Transformation parameters to retrain with (e.g.
            ``AttributionViewer.accepted_params()``); ``None`` for plain fine-tuning.
        epochs: Initial value of the epochs input.
        lr: Initial value of the learning-rate input.
        seed: Seed of the split, the shuffling and the weights.

    Attributes:
        last_version: The :class:`~dlabel_lab.loop.ModelVersion` of the last retraining.
        lineage: ``store.lineage`` of the last version.
        callback: The :class:`LiveTrainingCallback` passed to Lightning.
        errors: Errors raised by callbacks (also printed in ``output``).

    Example:
        >>> panel = RetrainPanel(store, params=params)  # doctest: +SKIP
        >>> panel.retrain_button.click(); panel.last_version.version  # doctest: +SKIP
        'shapes-v2'
    """

    def __init__(self, store, from_version: str | None = None, params: TransformationParams | None = None, *,
                 epochs: int = 3, lr: float = 1e-3, seed: int = 0) -> None:
        self.store = store
        self.params = params
        self.seed = seed
        self.last_version: ModelVersion | None = None
        self.lineage: dict | None = None
        self.errors: list[Exception] = []
        self.output = widgets.Output()
        style = {"description_width": "initial"}
        versions = [str(v) for v in store.model_versions()["model_version"]]
        self.version = widgets.Dropdown(options=versions, value=from_version or (versions[-1] if versions else None),
                                        description="from version", style=style)
        self.epochs = widgets.BoundedIntText(value=epochs, min=1, max=1000, description="epochs", style=style)
        self.lr = widgets.BoundedFloatText(value=lr, min=1e-6, max=1.0, step=1e-4, description="learning rate",
                                           style=style)
        described = params.describe() if params is not None else None
        self.params_view = widgets.HTML(
            "<b>transformation parameters</b>" + table_html(described) if described is not None and len(described)
            else text_html("no transformation parameters: plain fine-tuning on the labelled clips"))
        self.retrain_button = widgets.Button(description="Retrain", button_style="success", icon="play")
        self.retrain_button.on_click(lambda _b: self.run())
        self.progress = widgets.IntProgress(min=0, max=epochs, description="epoch")
        self.plot = widgets.Image(format="png")
        self.callback = LiveTrainingCallback(self.progress, self.plot)
        self.comparison = widgets.HTML()
        self.lineage_view = widgets.HTML()
        super().__init__([
            widgets.HBox([self.version, self.epochs, self.lr]), self.params_view,
            widgets.HBox([self.retrain_button, self.progress]), self.plot,
            widgets.HBox([self.comparison, self.lineage_view]), self.output,
        ])

    @guarded
    def run(self) -> ModelVersion | None:
        """Retrain with the panel's settings; show the comparison and the lineage.

        Example:
            >>> panel.run().version  # what a click on Retrain does  # doctest: +SKIP
            'shapes-v2'
        """
        self.retrain_button.disabled = True
        try:
            self.last_version = retrain(self.store, self.version.value, epochs=self.epochs.value, lr=self.lr.value,
                                        params=self.params, seed=self.seed, progress=False, callbacks=[self.callback])
        finally:
            self.retrain_button.disabled = False
        self.show(self.last_version)
        return self.last_version

    def show(self, version: ModelVersion) -> None:
        """Show a version's comparison with its parent and its lineage; continue from it next time.

        Example:
            >>> panel.show(retrain(store, "shapes-v1", epochs=1))  # doctest: +SKIP
        """
        self.comparison.value = (text_html(f"{version.parent} → {version.version} on {len(version.holdout_ids)} "
                                           "held-out clips", tag="b") + table_html(version.comparison))
        self.lineage = self.store.lineage(version.version)
        self.lineage_view.value = lineage_html(self.lineage)
        self.version.options = [str(v) for v in self.store.model_versions()["model_version"]]
        self.version.value = version.version
