"""Training, retraining and comparing model versions on matched store data.

``train_initial`` trains a first version from a labelled manifest (the lab
data). ``retrain`` snapshots the labelled clips of the store as a dataset
version, splits it deterministically by scoring id, fine-tunes the parent on
the training ids with a Lightning Trainer (progress bar, CSV logs), registers
the checkpoint with its parent, dataset version, parameters and metrics, and
compares the new version with its parent on the same held-out ids (the new
version shadow-scores them through its endpoints, so both sit in
``store.matched()``).

Example:
    >>> v1 = train_initial(store, "data/shapes/train/labels.csv", name="shapes", epochs=8)  # doctest: +SKIP
    >>> v2 = retrain(store, from_version=v1.version, epochs=5)  # doctest: +SKIP
    >>> v2.comparison  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import ConcatDataset, DataLoader

from .data import ClipDataset, lineage_training_rows, split_ids
from .endpoints import deploy, load_version
from .errors import ConfigError
from .evaluate import Evaluation, compare, evaluate
from .models import ClipClassifier
from .samples import read_manifest
from .transforms import TransformationParams
from .video import ClipSpec

__all__ = [
    "ModelVersion", "LoopIteration", "LoopReport", "train_model", "train_initial", "retrain", "evaluate_version",
    "fine_tune_copy", "run_loop", "ensure_scored",
]


@dataclass
class ModelVersion:
    """A registered model version and how it scored.

    Attributes:
        version: The version id in the store (e.g. ``"shapes-v2"``).
        parent: The version it was fine-tuned from.
        dataset_version: The snapshot it was trained on.
        checkpoint_path: Its safetensors checkpoint.
        evaluation: Its evaluation on the held-out ids.
        parent_evaluation: The parent's evaluation on the same ids.
        comparison: Before/after table (parent vs this version).
        train_ids: Scoring ids trained on.
        holdout_ids: Scoring ids held out for the comparison.
        params: The transformation parameters it was trained with.
        history: Per-epoch metrics from the CSV logger.
        log_dir: Where Lightning wrote its CSV logs.
    """

    version: str
    parent: str | None = None
    dataset_version: str | None = None
    checkpoint_path: str = ""
    evaluation: Evaluation | None = None
    parent_evaluation: Evaluation | None = None
    comparison: pd.DataFrame | None = None
    train_ids: list[str] = field(default_factory=list)
    holdout_ids: list[str] = field(default_factory=list)
    params: TransformationParams | None = None
    history: pd.DataFrame | None = None
    log_dir: str = ""

    @property
    def accuracy(self) -> float | None:
        """Held-out accuracy of this version."""
        return None if self.evaluation is None else self.evaluation.accuracy

    @property
    def improved(self) -> bool | None:
        """Whether it beats its parent on the held-out ids."""
        if self.evaluation is None or self.parent_evaluation is None:
            return None
        return self.evaluation.accuracy > self.parent_evaluation.accuracy


def _history(log_dir: str) -> pd.DataFrame:
    path = Path(log_dir) / "metrics.csv"
    if not path.exists():
        return pd.DataFrame()
    df = pd.read_csv(path)
    if "epoch" in df:
        df = df.groupby("epoch", as_index=False).mean(numeric_only=True)
    return df.drop(columns=[c for c in ("step",) if c in df])


@contextlib.contextmanager
def _quiet_lightning():
    """Silence Lightning's start-up chatter (accelerator lines, tips); warnings and errors still show."""
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def train_model(
    model: ClipClassifier,
    train: ClipDataset,
    *,
    val: ClipDataset | None = None,
    epochs: int = 5,
    batch_size: int = 8,
    seed: int = 0,
    root_dir: str | os.PathLike | None = None,
    progress: bool = True,
    callbacks: Sequence[pl.Callback] = (),
) -> tuple[ClipClassifier, pd.DataFrame, str]:
    """Fit a model with a Lightning Trainer; return it, its per-epoch history and log dir.

    Example:
        >>> model, history, log_dir = train_model(model, train_set, epochs=3)  # doctest: +SKIP
    """
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs!r}")
    if len(train) == 0:
        raise ConfigError("no training clips; label some clips first")
    pl.seed_everything(seed, workers=True, verbose=False)
    root = Path(root_dir or "lightning_runs")
    logger = CSVLogger(save_dir=str(root), name="logs")
    with _quiet_lightning():
        trainer = pl.Trainer(
            max_epochs=epochs, accelerator="cpu", devices=1, logger=logger, enable_checkpointing=False,
            enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=1,
            num_sanity_val_steps=0, callbacks=list(callbacks), deterministic=False,
        )
    g = torch.Generator().manual_seed(seed)
    train_dl = DataLoader(train, batch_size=batch_size, shuffle=True, generator=g)
    val_dl = DataLoader(val, batch_size=batch_size) if val is not None and len(val) else None
    with warnings.catch_warnings(), _quiet_lightning():
        for message in (".*does not have many workers.*", ".*number of training batches.*",
                        ".*no `val_dataloader`.*", ".*LeafSpec.*"):
            warnings.filterwarnings("ignore", message=message)
        trainer.fit(model, train_dataloaders=train_dl, val_dataloaders=val_dl)
    recalibrate_batchnorm(model, train, batch_size=max(batch_size, 16))
    model.eval()
    return model, _history(logger.log_dir), logger.log_dir


def recalibrate_batchnorm(model: torch.nn.Module, dataset, *, batch_size: int = 16) -> int:
    """Re-estimate BatchNorm running statistics on the un-augmented training clips ("precise BN").

    Running statistics gathered over small, augmented batches can be far from
    what the model meets in eval mode; seen here: 0.93 accuracy with batch
    statistics and chance (one class for every clip) with the running ones.
    One pass without gradients in train mode with cumulative averaging
    replaces them. Returns the number of BatchNorm layers recalibrated.

    Example:
        >>> recalibrate_batchnorm(model, train_set)  # doctest: +SKIP
        4
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or len(dataset) == 0:
        return 0
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    plain = ConcatDataset([d.without_augment() if hasattr(d, "without_augment") else d for d in parts])
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the pass
    model.train()
    try:
        with torch.no_grad():
            for batch in DataLoader(plain, batch_size=batch_size):
                model(batch[0])
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return len(norms)


def fine_tune_copy(parent: ClipClassifier, *, lr: float | None = None, class_weights=None,
                   spec: ClipSpec | None = None) -> ClipClassifier:
    """A fresh module with the parent's weights and new training options."""
    hp = dict(parent.hparams)
    child = ClipClassifier(
        classes=list(parent.classes), backbone=parent.backbone_name, spec=spec or parent.spec,
        lr=lr if lr is not None else hp.get("lr", 1e-3), weight_decay=hp.get("weight_decay", 0.0),
        class_weights=class_weights, embed_dim=hp.get("embed_dim", 64), dropout=hp.get("dropout", 0.0),
    )
    child.load_state_dict(parent.state_dict(), strict=True)
    return child


def _save_and_register(store, model: ClipClassifier, *, name: str, parent: str | None, dataset_version: str | None,
                       params: dict | None, metrics: dict | None) -> tuple[str, str]:
    ckpt_dir = Path(store.path) / "models"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_dir / f".{name}-{os.getpid()}-{time.time_ns()}.safetensors"
    digest = model.save_checkpoint(tmp)
    final = ckpt_dir / f"{name}-{digest[:16]}.safetensors"
    os.replace(tmp, final)
    version = store.register_model(name=name, checkpoint_path=str(final), classes=list(model.classes),
                                   spec=model.spec.to_dict(), parent=parent, dataset_version=dataset_version,
                                   params=params, metrics=metrics)
    model.model_version_ = version
    return version, str(final)


def train_initial(
    store,
    manifest: str | os.PathLike,
    *,
    name: str = "model",
    classes: Sequence[str] | None = None,
    backbone: str = "tiny3d",
    spec: ClipSpec | None = None,
    epochs: int = 8,
    lr: float = 1e-3,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = True,
    **model_options,
) -> ModelVersion:
    """Train a first model version on a labelled manifest (lab data) and register it.

    Args:
        store: The payload store the version is registered in.
        manifest: A ``labels.csv`` manifest (see :func:`~dlabel_lab.make_shape_clips`).
        name: Registry name; the version id is ``f"{name}-v1"`` for a new name.
        classes: Class names; default the sorted labels of the manifest.
        backbone: Backbone of the :class:`~dlabel_lab.ClipClassifier`.
        spec: Clip spec; default 8 frames of 64 px.
        epochs: Training epochs.
        lr: Learning rate.
        batch_size: Batch size.
        seed: Seed of everything.
        progress: Show Lightning's progress bar.

    Example:
        >>> v1 = train_initial(store, "data/shapes/train/labels.csv", name="shapes")  # doctest: +SKIP
    """
    rows = read_manifest(manifest)
    classes = list(classes) if classes is not None else sorted({r["label"] for r in rows})
    spec = spec or ClipSpec(frames=8, size=64)
    torch.manual_seed(seed)
    model = ClipClassifier(classes=classes, backbone=backbone, spec=spec, lr=lr, **model_options)
    train = ClipDataset(rows, classes=classes, spec=spec)
    model, history, log_dir = train_model(model, train, epochs=epochs, batch_size=batch_size, seed=seed,
                                          root_dir=Path(store.path) / "training", progress=progress)
    manifest_path = Path(manifest)
    manifest_file = manifest_path / "labels.csv" if manifest_path.is_dir() else manifest_path
    params = {
        "train_manifest": str(manifest_file.resolve()),
        "manifest_sha256": hashlib.sha256(manifest_file.read_bytes()).hexdigest(),
        "n_clips": len(rows), "epochs": epochs, "lr": lr, "seed": seed, "backbone": backbone,
    }
    final = history.iloc[-1].to_dict() if len(history) else {}
    metrics = {k: float(v) for k, v in final.items() if isinstance(v, (int, float)) and k != "epoch"}
    version, ckpt = _save_and_register(store, model, name=name, parent=None, dataset_version=None,
                                       params={"training": params}, metrics={"train": metrics})
    return ModelVersion(version=version, checkpoint_path=ckpt, history=history, log_dir=log_dir)


def ensure_scored(store, model_version: str, scoring_ids: Sequence[str] | None = None, *,
                  progress: bool = False) -> int:
    """Shadow-score, with a version, the labelled clips it has not scored yet; return how many.

    A deployed child has only scored its held-out ids; analysing it needs
    the whole comprehensive data set.

    Example:
        >>> ensure_scored(store, "shapes-v2")  # doctest: +SKIP
        36
    """
    if scoring_ids is None:
        labelled = store.matched().df()
        scoring_ids = labelled.loc[labelled["user_label"].notna(), "scoring_id"].unique().tolist()
    have = set(store.matched(model_version=model_version, scoring_ids=list(scoring_ids)).df()["scoring_id"])
    todo = [i for i in scoring_ids if i not in have]
    if todo:
        deploy(load_version(store, model_version), store, model_version=model_version).shadow_score(
            todo, progress=progress)
    return len(todo)


def evaluate_version(store, model_version: str, scoring_ids: Sequence[str], *, model: ClipClassifier | None = None,
                     slices: Sequence[str] | None = None, progress: bool = False) -> Evaluation:
    """Evaluate a version on given scoring ids, shadow-scoring the ids it has not seen.

    Example:
        >>> ev = evaluate_version(store, "shapes-v2", holdout_ids)  # doctest: +SKIP
    """
    ids = list(scoring_ids)
    if not ids:
        raise ConfigError("no scoring ids to evaluate on")
    have = set(store.matched(model_version=model_version, scoring_ids=ids).df()["scoring_id"])
    todo = [i for i in ids if i not in have]
    if todo:
        model = model or load_version(store, model_version)
        deploy(model, store, model_version=model_version).shadow_score(todo, progress=progress)
    records = store.matched(model_version=model_version, scoring_ids=ids).df()
    return evaluate(records, classes=None if model is None else list(model.classes), slices=slices)


def retrain(
    store,
    from_version: str | None = None,
    *,
    name: str | None = None,
    epochs: int = 5,
    lr: float | None = None,
    batch_size: int = 8,
    holdout: float = 0.3,
    seed: int = 0,
    params: TransformationParams | None = None,
    dataset_version: str | None = None,
    slices: Sequence[str] | None = None,
    include_lab_data: bool = True,
    progress: bool = True,
    callbacks: Sequence[pl.Callback] = (),
    **matched_filters,
) -> ModelVersion:
    """Retrain a model version on the labelled clips of the store.

    Args:
        store: The payload store.
        from_version: Parent version to fine-tune (default: the newest).
        name: Registry name of the child (default: the parent's name).
        epochs: Training epochs.
        lr: Learning rate (default: the parent's).
        batch_size: Batch size.
        holdout: Fraction of scoring ids held out for the parent comparison.
        seed: Seed of the split, the shuffling and the weights.
        params: Transformation parameters: augmentation (applied to the lab
            clips they were derived against when ``include_lab_data`` finds
            them, else to the store's clips), crop/window/stride (through the
            clip spec, which the child's endpoint then uses) and class weights.
        dataset_version: Train on this snapshot instead of a new one.
        slices: Columns to evaluate per slice as well.
        include_lab_data: Also train on the lab clips the lineage's root was
            trained on (recorded by :func:`train_initial`), so that the model
            keeps what it knew; held-out ids always come from the store only.
        progress: Show progress bars.
        callbacks: Extra Lightning callbacks (e.g. a live plot).
        **matched_filters: Filters of ``store.matched()`` that select the clips.

    Returns:
        The new :class:`ModelVersion`, with its comparison against the parent.

    Example:
        >>> v2 = retrain(store, "shapes-v1", epochs=5)  # doctest: +SKIP
    """
    versions = store.model_versions()
    if from_version is None:
        if versions.empty:
            raise ConfigError("the store has no model version to retrain; train one with train_initial first")
        from_version = str(versions.iloc[-1]["model_version"])
    run_params = {
        "from_version": from_version, "epochs": epochs, "lr": lr, "batch_size": batch_size, "holdout": holdout,
        "seed": seed, "include_lab_data": include_lab_data, "params": None if params is None else params.to_dict(),
        "filters": {k: str(v) for k, v in matched_filters.items()},
    }
    with store.run("retrain", run_params, model_version=from_version):
        parent = load_version(store, from_version)
        name = name or str(store.get_model(from_version).get("name") or "model")
        if dataset_version is None:
            dataset_version = store.snapshot_dataset(f"{name}-train", **matched_filters)
        rows = store.dataset_members(dataset_version)
        rows = rows.rename(columns={"user_label": "label"}) if "label" not in rows else rows
        rows = rows.drop_duplicates("scoring_id")
        train_ids, holdout_ids = split_ids(rows["scoring_id"].tolist(), holdout=holdout, seed=seed)
        by_id = rows.set_index("scoring_id")
        spec = params.apply_to_spec(parent.spec) if params is not None else parent.spec
        augment = None
        class_weights = None
        if params is not None and not params.is_empty():
            augment = params.build_augment(mean=spec.mean, std=spec.std)
            class_weights = dict(params.class_weights) or None
        child = fine_tune_copy(parent, lr=lr, class_weights=class_weights, spec=spec)
        train_rows = by_id.loc[train_ids].reset_index()[["scoring_id", "media_path", "label"]].to_dict("records")
        lab_rows = lineage_training_rows(store, from_version) if include_lab_data else []
        lab_rows = [{"media_path": r["path"], "label": r["label"]} for r in lab_rows if r["label"] in parent.classes]
        # The derived ranges map the reference (lab) clips into the operational
        # regime they were measured against; operational clips already are there.
        parts = [ClipDataset(train_rows, classes=child.classes, spec=spec, augment=None if lab_rows else augment)]
        if lab_rows:
            parts.append(ClipDataset(lab_rows, classes=child.classes, spec=spec, augment=augment))
        train = ConcatDataset(parts)
        val = ClipDataset(by_id.loc[holdout_ids].reset_index(), classes=child.classes, spec=spec)
        child, history, log_dir = train_model(child, train, val=val, epochs=epochs, batch_size=batch_size, seed=seed,
                                              root_dir=Path(store.path) / "training", progress=progress,
                                              callbacks=callbacks)
        child_params = {"training": {k: v for k, v in run_params.items() if k != "params"},
                        "transformation_params": None if params is None else params.to_dict(),
                        "train_ids": train_ids, "holdout_ids": holdout_ids, "n_lab_clips": len(lab_rows)}
        version, ckpt = _save_and_register(store, child, name=name, parent=from_version,
                                           dataset_version=dataset_version, params=child_params, metrics=None)
        after = evaluate_version(store, version, holdout_ids, model=child, slices=slices)
        before = evaluate_version(store, from_version, holdout_ids, model=parent, slices=slices)
        store.log_metrics(version, after.to_dict(), split="holdout", scoring_ids=holdout_ids)
        store.log_metrics(from_version, before.to_dict(), split=f"holdout-of-{version}", scoring_ids=holdout_ids)
    return ModelVersion(
        version=version, parent=from_version, dataset_version=dataset_version, checkpoint_path=ckpt,
        evaluation=after, parent_evaluation=before, comparison=compare(before, after), train_ids=train_ids,
        holdout_ids=holdout_ids, params=params, history=history, log_dir=log_dir,
    )


def _json(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


@dataclass
class LoopIteration:
    """One iteration of :func:`run_loop`."""

    iteration: int
    parent: str
    child: ModelVersion
    params: TransformationParams
    deployed: bool
    params_version: str | None = None

    def row(self) -> dict:
        ev, pe = self.child.evaluation, self.child.parent_evaluation
        return {
            "iteration": self.iteration, "parent": self.parent, "child": self.child.version,
            "n_holdout": len(self.child.holdout_ids),
            "parent_accuracy": None if pe is None else round(pe.accuracy, 4),
            "child_accuracy": None if ev is None else round(ev.accuracy, 4),
            "delta": None if ev is None or pe is None else round(ev.accuracy - pe.accuracy, 4),
            "deployed": self.deployed,
            "params": ", ".join(k for k in ("brightness", "contrast", "scale", "blur", "noise", "crop",
                                            "frame_window", "class_weights")
                                if getattr(self.params, k) not in (None, {}, ())) or "none",
        }


@dataclass
class LoopReport:
    """What :func:`run_loop` did, iteration by iteration.

    Attributes:
        start: The version the loop started from.
        newest: The best version so far (the one deployed).
        iterations: One :class:`LoopIteration` each.
    """

    start: str
    newest: str
    iterations: list[LoopIteration] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """One row per iteration: parent, child, held-out accuracies, delta, deployed, parameters."""
        return pd.DataFrame([it.row() for it in self.iterations])

    def deploy(self, store, **kwargs):
        """An :class:`~dlabel_lab.IngestEndpoint` serving the newest deployed version."""
        from .endpoints import deploy_version

        return deploy_version(store, self.newest, **kwargs)


def run_loop(
    store,
    *,
    from_version: str | None = None,
    iterations: int = 2,
    epochs: int = 5,
    lr: float | None = None,
    seed: int = 0,
    holdout: float = 0.3,
    top_neurons: int = 8,
    n_steps: int = 8,
    sensitivity: bool = True,
    review=None,
    progress: bool = True,
    plots_dir: str | os.PathLike | None = None,
) -> LoopReport:
    """Evaluate → attribute → derive → retrain → compare → deploy when better, ``iterations`` times.

    Each iteration is a run in the execution log (kind ``"loop-iteration"``)
    with the derived parameters and the comparison as its result; the child
    becomes the next parent only when it beats its parent on the same
    held-out ids. ``store.lineage(report.newest)`` shows the chain.

    Args:
        store: The payload store.
        from_version: Version to start from (default: the newest registered).
        iterations: Number of iterations.
        epochs: Training epochs per retrain.
        lr: Learning rate (default: the parent's).
        seed: Seed of splits and training.
        holdout: Held-out fraction of scoring ids.
        top_neurons: Neurons that get full neuron attributions.
        n_steps: Integration steps of the path attributions.
        sensitivity: Run the sensitivity check when deriving.
        review: Optional callable ``TransformationParams -> TransformationParams``
            (a human accepting or rejecting parameters).
        progress: Show progress bars.
        plots_dir: Write per-iteration figures here.

    Example:
        >>> report = run_loop(store, from_version="shapes-v1", iterations=2)  # doctest: +SKIP
        >>> report.table()  # doctest: +SKIP
    """
    from .derive import analyse, derive_transformation_params

    if iterations < 1:
        raise ConfigError(f"iterations must be >= 1, got {iterations!r}")
    versions = store.model_versions()
    if from_version is None:
        if versions.empty:
            raise ConfigError("the store has no model version; train one with train_initial first")
        from_version = str(versions.iloc[-1]["model_version"])
    report = LoopReport(start=from_version, newest=from_version)
    current = from_version
    for i in range(1, iterations + 1):
        run_id = store.start_run("loop-iteration", {"iteration": i, "parent": current, "epochs": epochs,
                                                    "seed": seed}, model_version=current)
        try:
            ensure_scored(store, current, progress=progress)
            analysis = analyse(store, current, top_neurons=top_neurons, n_steps=n_steps, progress=progress)
            params = derive_transformation_params(store, current, analysis=analysis, sensitivity=sensitivity,
                                                  save=False, progress=progress)
            if review is not None:
                params = review(params)
            params_version = store.save_params(params.to_dict(), model_version=current, name=f"{current}-params")
            child = retrain(store, current, epochs=epochs, lr=lr, seed=seed, holdout=holdout, params=params,
                            progress=progress)
            deployed = bool(child.improved)
            it = LoopIteration(iteration=i, parent=current, child=child, params=params, deployed=deployed,
                               params_version=params_version)
            report.iterations.append(it)
            if plots_dir is not None:
                _iteration_plots(Path(plots_dir), analysis, child)
            if deployed:
                current = child.version
                report.newest = current
            store.finish_run(run_id, status="ok", result={**it.row(), "params_version": params_version})
        except BaseException as e:
            store.finish_run(run_id, status="failed", error=e)
            raise
    return report


def _iteration_plots(plots: Path, analysis, child: ModelVersion) -> None:
    import matplotlib.pyplot as plt

    from .neurons import neuron_functions_long
    from .plots import plot_confusion, plot_learning_curves, plot_neuron_functions, save_figure

    for name, ax in (
        (f"{child.version}_learning_curves.png", plot_learning_curves(child.history)),
        (f"{child.version}_confusion.png", plot_confusion(child.evaluation.confusion, child.evaluation.classes)),
        (f"{analysis.model_version}_neuron_functions.png",
         plot_neuron_functions(neuron_functions_long(analysis.functions))),
    ):
        save_figure(ax, plots / name)
        plt.close(ax.figure)
