"""Retraining and comparing model versions on matched store data, and the loop over them.

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

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
from torch.utils.data import ConcatDataset

from .errors import ConfigError
from .evaluation import Evaluation, compare, evaluate
from .models.checkpoint import file_sha256
from .models.classifier import ClipClassifier
from .models.registry import load_version, newest_trainable, register_version
from .serving.endpoints import deploy, deploy_version
from .train.augment import GENERIC_VARIANTS, chain_augments, generic_augment
from .train.datasets import ClipDataset, lineage_training_rows, split_ids
from .train.training import (  # noqa: F401 - re-exported: the loop's public face
    ModelVersion,
    fine_tune_copy,
    recalibrate_batchnorm,
    train_initial,
    train_model,
)
from .train.transforms import TransformationParams

__all__ = [
    "ModelVersion", "LoopIteration", "LoopReport", "train_model", "train_initial", "retrain", "evaluate_version",
    "fine_tune_copy", "run_loop", "ensure_scored", "recalibrate_batchnorm", "pick_candidate", "CANDIDATES",
]


def ensure_scored(store, model_version: str, scoring_ids: Sequence[str] | None = None, *,
                  model: ClipClassifier | None = None, progress: bool = False) -> int:
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
        endpoint = (deploy(model, store, model_version=model_version) if model is not None
                    else deploy_version(store, model_version))  # a converted (ONNX) version runs on ONNX Runtime
        endpoint.shadow_score(todo, progress=progress)
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
    ensure_scored(store, model_version, ids, model=model, progress=progress)
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
    params: TransformationParams | str | None = None,
    dataset_version: str | None = None,
    slices: Sequence[str] | None = None,
    include_lab_data: bool = True,
    progress: bool = True,
    callbacks: Sequence[pl.Callback] = (),
    generic: bool | str = False,
    patience: int | None = None,
    schedule: str = "cosine",
    select_best: bool = True,
    candidate: str | None = None,
    split_seed: int | None = None,
    source_weights: Mapping[str, float] | None = None,
    **matched_filters,
) -> ModelVersion:
    """Retrain a model version on the labelled clips of the store.

    The recipe (see :func:`~dlabel_lab.train.training.train_model`): a
    deterministic content-grouped split (sha256 of the clip, salted by
    ``seed``) into training and held-out ids; the held-out ids are the
    labelled validation split the best epoch is selected on (precise BN,
    accuracy then cross-entropy) and the parent comparison runs on; a cosine
    learning-rate schedule; optional early stopping. The same store, seed and
    options give the same model.

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
            clip spec, which the child's endpoint then uses) and class weights;
            or the id of a params version in the store (``store.save_params``,
            e.g. a review saved by the ``AttributionViewer``), recorded as ``params_version``.
        dataset_version: Train on this snapshot instead of a new one.
        slices: Columns to evaluate per slice as well.
        include_lab_data: Also train on the lab clips the lineage's root was
            trained on (recorded by :func:`train_initial`), so that the model
            keeps what it knew; held-out ids always come from the store only.
        progress: Show progress bars.
        callbacks: Extra Lightning callbacks (e.g. a live plot).
        generic: Also apply the generic augmentation (see
            :func:`~dlabel_lab.train.augment.generic_augment`; ``True`` or
            ``"affine"``, or ``"crop"``) to every training clip, after ``params``'.
        patience: Early stopping after this many epochs without a better
            validation score (``None``: all ``epochs``; the best epoch is kept either way).
        schedule: Learning-rate schedule, ``"cosine"`` or ``"constant"``.
        select_best: Keep the best validation epoch (else the last).
        candidate: A name recorded with the version (e.g. ``"derived"``).
        source_weights: Loss weight per label source, e.g.
            ``{"estimation-sample": 3.0}`` to weigh the mispredictions an
            accuracy estimate's sample found (sources not named, and the lab
            clips, weigh 1). Recorded with the version.
        split_seed: Salt of the split when it should differ from ``seed``
            (e.g. to measure training noise alone on a fixed split).
        **matched_filters: Filters of ``store.matched()`` that select the clips.

    Returns:
        The new :class:`ModelVersion`, with its comparison against the parent.

    Example:
        >>> v2 = retrain(store, "shapes-v1", epochs=5)  # doctest: +SKIP
    """
    if from_version is None:
        from_version = newest_trainable(store)
    params_version = params if isinstance(params, str) else None
    if params_version is not None:
        params = TransformationParams.from_dict(store.get_params(params_version))
    run_params = {
        "from_version": from_version, "epochs": epochs, "lr": lr, "batch_size": batch_size, "holdout": holdout,
        "seed": seed, "include_lab_data": include_lab_data, "params": None if params is None else params.to_dict(),
        "filters": {k: str(v) for k, v in matched_filters.items()}, "generic": generic, "patience": patience,
        "schedule": schedule, "select_best": select_best, "candidate": candidate,
        "split_seed": seed if split_seed is None else split_seed,
        "source_weights": _check_source_weights(source_weights), "params_version": params_version,
    }
    generic_variant = ("affine" if generic else None) if isinstance(generic, bool) else generic
    if generic_variant is not None and generic_variant not in GENERIC_VARIANTS:
        raise ConfigError(f"generic must be False, True or one of {GENERIC_VARIANTS}, got {generic!r}")
    with store.run("retrain", run_params, model_version=from_version):
        parent = load_version(store, from_version)
        name = name or str(store.get_model(from_version).get("name") or "model")
        if dataset_version is None:
            dataset_version = store.snapshot_dataset(f"{name}-labelled", **matched_filters)
        rows = store.dataset_members(dataset_version)
        rows = rows.rename(columns={"user_label": "label"}) if "label" not in rows else rows
        rows = rows.drop_duplicates("scoring_id")
        # Byte-identical clips share a side, so no copy of a held-out clip is trained on.
        train_ids, holdout_ids = split_ids(rows["scoring_id"].tolist(), holdout=holdout,
                                           seed=seed if split_seed is None else split_seed,
                                           groups=rows["sha256"].tolist())
        by_id = rows.set_index("scoring_id")
        spec = params.apply_to_spec(parent.spec) if params is not None else parent.spec
        augment = ops_augment = None
        ops_dropped: dict[str, str] = {}
        class_weights = None
        if params is not None and not params.is_empty():
            augment = params.build_augment(mean=spec.mean, std=spec.std)
            ops_params, ops_dropped = params.for_operational()
            ops_augment = ops_params.build_augment(mean=spec.mean, std=spec.std)
            class_weights = dict(params.class_weights) or None
        generic_aug = None
        if generic_variant is not None:
            generic_aug = generic_augment(size=spec.out_size, mean=spec.mean, std=spec.std, variant=generic_variant)
        child = fine_tune_copy(parent, lr=lr, class_weights=class_weights, spec=spec)
        train_frame = by_id.loc[train_ids].reset_index()
        train_rows = train_frame[["scoring_id", "media_path", "label"]].to_dict("records")
        weights = lab_weights = None
        if source_weights:
            sources = train_frame["label_source"] if "label_source" in train_frame else [None] * len(train_frame)
            weights = [float(source_weights.get(str(s), 1.0)) for s in sources]
        lab_rows = lineage_training_rows(store, from_version) if include_lab_data else []
        lab_rows = [{"media_path": r["path"], "label": r["label"]} for r in lab_rows if r["label"] in parent.classes]
        lab_rows = _without_held_out_copies(lab_rows, set(by_id.loc[holdout_ids, "sha256"]))
        # The derived ranges map the reference (lab) clips into the operational
        # regime they were measured against; operational clips already are there,
        # so they get only the two-sided (invariance) part (see for_operational).
        ops_aug = ops_augment if lab_rows else augment
        speed = params.speed if params is not None else None
        ops_speed = (ops_params.speed if lab_rows else speed) if augment is not None else None
        p_speed = params.p if params is not None else 1.0
        if source_weights and lab_rows:
            lab_weights = [1.0] * len(lab_rows)  # every part yields (x, y, w) so that batches collate
        parts = [ClipDataset(train_rows, classes=child.classes, spec=spec, speed=ops_speed, speed_p=p_speed,
                             augment=chain_augments(ops_aug, generic_aug), weights=weights)]
        if lab_rows:
            parts.append(ClipDataset(lab_rows, classes=child.classes, spec=spec, speed=speed, speed_p=p_speed,
                                     augment=chain_augments(augment, generic_aug), weights=lab_weights))
        train = ConcatDataset(parts)
        val = ClipDataset(by_id.loc[holdout_ids].reset_index(), classes=child.classes, spec=spec)
        selection: dict = {}
        child, history, log_dir = train_model(child, train, val=val, epochs=epochs, batch_size=batch_size, seed=seed,
                                              root_dir=Path(store.path) / "training", progress=progress,
                                              callbacks=callbacks, schedule=schedule, select_best=select_best,
                                              patience=patience, selection=selection)
        child_params = {"training": {k: v for k, v in run_params.items() if k != "params"},
                        "transformation_params": None if params is None else params.to_dict(),
                        "train_ids": train_ids, "holdout_ids": holdout_ids, "n_lab_clips": len(lab_rows),
                        "selection": selection, "not_applied_to_operational_clips": ops_dropped if lab_rows else {}}
        version, ckpt = register_version(store, child, name=name, parent=from_version,
                                           dataset_version=dataset_version, params=child_params, metrics=None)
        after = evaluate_version(store, version, holdout_ids, model=child, slices=slices)
        before = evaluate_version(store, from_version, holdout_ids, model=parent, slices=slices)
        store.log_metrics(version, after.to_dict(), split="holdout", scoring_ids=holdout_ids)
        store.log_metrics(from_version, before.to_dict(), split=f"holdout-of-{version}", scoring_ids=holdout_ids)
    return ModelVersion(
        version=version, parent=from_version, dataset_version=dataset_version, checkpoint_path=ckpt,
        evaluation=after, parent_evaluation=before, comparison=compare(before, after), train_ids=train_ids,
        holdout_ids=holdout_ids, params=params, history=history, log_dir=log_dir, selection=selection,
        candidate=candidate,
    )


def _check_source_weights(source_weights) -> dict[str, float] | None:
    if source_weights is None:
        return None
    if not isinstance(source_weights, Mapping):
        raise ConfigError(f"source_weights must map label sources to weights, got {type(source_weights).__name__}")
    out = {}
    for source, weight in source_weights.items():
        if not isinstance(source, str) or isinstance(weight, bool) or not isinstance(weight, (int, float)) \
                or not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"source_weights needs source name -> finite weight >= 0, got {source!r}: {weight!r}")
        out[source] = float(weight)
    return out


def _without_held_out_copies(lab_rows: list[dict], held_out_sha256: set[str]) -> list[dict]:
    """Lab clips minus byte-identical copies of held-out clips (they would leak the holdout into training)."""
    if not lab_rows or not held_out_sha256:
        return lab_rows
    return [r for r in lab_rows if file_sha256(r["media_path"]) not in held_out_sha256]


@dataclass
class LoopIteration:
    """One iteration of :func:`run_loop`."""

    iteration: int
    parent: str
    child: ModelVersion
    params: TransformationParams
    deployed: bool
    params_version: str | None = None
    candidates: dict[str, ModelVersion] = field(default_factory=dict)
    chosen: str = "derived"
    verdict: str = ""

    def candidate_table(self) -> pd.DataFrame:
        """One row per candidate: version, validation accuracy and loss, best epoch, chosen."""
        rows = []
        for name, mv in self.candidates.items():
            sel = mv.selection or {}
            rows.append({"candidate": name, "version": mv.version,
                         "val_accuracy": None if mv.evaluation is None else round(mv.evaluation.accuracy, 4),
                         "val_loss": sel.get("val_loss"), "best_epoch": sel.get("best_epoch"),
                         "epochs_run": sel.get("epochs_run"), "chosen": name == self.chosen})
        return pd.DataFrame(rows)

    def row(self) -> dict:
        ev, pe = self.child.evaluation, self.child.parent_evaluation
        return {
            "iteration": self.iteration, "parent": self.parent, "child": self.child.version,
            "n_holdout": len(self.child.holdout_ids),
            "parent_accuracy": None if pe is None else round(pe.accuracy, 4),
            "child_accuracy": None if ev is None else round(ev.accuracy, 4),
            "delta": None if ev is None or pe is None else round(ev.accuracy - pe.accuracy, 4),
            "deployed": self.deployed,
            "chosen": self.chosen,
            "candidates": ", ".join(f"{n} {mv.evaluation.accuracy:.3f}" for n, mv in self.candidates.items()
                                    if mv.evaluation is not None),
            "params": ", ".join(k for k in ("brightness", "contrast", "saturation", "hue", "scale", "blur", "noise",
                                            "crop", "frame_window", "frame_stride", "class_weights")
                                if getattr(self.params, k) not in (None, {}, (), 1)) or "none",
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
        from .serving.endpoints import deploy_version

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
    candidates: Sequence[str] = ("derived", "generic"),
    patience: int | None = None,
    generic_variant: str = "affine",
) -> LoopReport:
    """Evaluate → attribute → derive → retrain candidates → pick → deploy when better, ``iterations`` times.

    Each iteration derives transformation parameters and retrains, on the
    same content-grouped split and seed, one child per candidate:
    ``"derived"`` (the derived parameters), ``"generic"`` (the generic
    augmentation a practitioner tries first, see
    :func:`~dlabel_lab.train.augment.generic_augment`), ``"plain"`` (no
    augmentation) and ``"derived+generic"``. The candidate with the best
    score on the labelled validation split (the held-out ids: accuracy, then
    cross-entropy; ties go to the earlier candidate in ``candidates``) is the
    iteration's child. It becomes the next parent only when it beats its
    parent on the same held-out ids (model selection uses those ids, so
    that comparison is optimistic; an outside test set judges the loop, see
    ``bench/drift_recovery.py``). Each iteration is a run in the execution
    log (kind ``"loop-iteration"``) whose result records every candidate, the
    choice and whether the derived parameters beat the generic augmentation.
    ``store.lineage(report.newest)`` shows the chain.

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
        candidates: Candidates to train (see above); the first is the tie-break winner.
        patience: Early-stopping patience of each candidate's training.
        generic_variant: ``"affine"`` or ``"crop"`` for the generic candidates.

    Example:
        >>> report = run_loop(store, from_version="shapes-v1", iterations=2)  # doctest: +SKIP
        >>> report.table()  # doctest: +SKIP
    """
    from .explain.derive import analyse, derive_transformation_params

    if iterations < 1:
        raise ConfigError(f"iterations must be >= 1, got {iterations!r}")
    candidates = list(dict.fromkeys(candidates))
    unknown = sorted(set(candidates) - set(CANDIDATES))
    if not candidates or unknown:
        raise ConfigError(f"candidates must be a non-empty selection of {CANDIDATES}, got {candidates!r}")
    if from_version is None:
        from_version = newest_trainable(store)
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
            trained = {}
            for name in candidates:
                uses_params, uses_generic = "derived" in name, generic_variant if "generic" in name else False
                trained[name] = retrain(store, current, epochs=epochs, lr=lr, seed=seed, holdout=holdout,
                                        params=params if uses_params else None, generic=uses_generic,
                                        patience=patience, candidate=name, progress=progress)
            chosen = pick_candidate(trained)
            child = trained[chosen]
            deployed = bool(child.improved)
            it = LoopIteration(iteration=i, parent=current, child=child, params=params, deployed=deployed,
                               params_version=params_version, candidates=trained, chosen=chosen,
                               verdict=_verdict(trained, params))
            report.iterations.append(it)
            if plots_dir is not None:
                _iteration_plots(Path(plots_dir), analysis, child)
            if deployed:
                current = child.version
                report.newest = current
            store.finish_run(run_id, status="ok", result={
                **it.row(), "params_version": params_version, "verdict": it.verdict,
                "candidate_table": it.candidate_table().to_dict("records"),
                "evidence": {k: ev.to_dict() for k, ev in params.evidence.items()}})
        except BaseException as e:
            store.finish_run(run_id, status="failed", error=e)
            raise
    return report


#: Candidates :func:`run_loop` can train in each iteration.
CANDIDATES = ("derived", "generic", "plain", "derived+generic")


def pick_candidate(trained: dict[str, ModelVersion]) -> str:
    """The candidate with the best validation score: accuracy, then lower cross-entropy, then order.

    Only the labelled validation split (the held-out ids) is used, never a test set.

    Example:
        >>> pick_candidate({"derived": v_derived, "generic": v_generic})  # doctest: +SKIP
        'generic'
    """
    if not trained:
        raise ConfigError("no candidates to pick from")

    def key(item):
        order, (_, mv) = item
        acc = mv.evaluation.accuracy if mv.evaluation is not None else float("-inf")
        loss = (mv.selection or {}).get("val_loss")
        return (acc, -(loss if loss is not None else float("inf")), -order)

    return max(enumerate(trained.items()), key=key)[1][0]


def _verdict(trained: dict[str, ModelVersion], params: TransformationParams) -> str:
    """Whether the derived parameters beat the generic augmentation on the validation split, in words."""
    if params.is_empty():
        return "no parameter was derived: the derived candidate is plain retraining"
    if "derived" not in trained or "generic" not in trained:
        return "derived and generic were not both trained: no verdict"
    d, g = trained["derived"], trained["generic"]
    da, ga = d.evaluation.accuracy, g.evaluation.accuracy
    names = ", ".join(params._set_names())
    dl_, gl = d.selection.get("val_loss"), g.selection.get("val_loss")
    won = (da, -(dl_ or 0.0)) > (ga, -(gl or 0.0))
    figures = f"{da:.3f} vs {ga:.3f}"
    if da == ga and dl_ is not None and gl is not None:  # the tie is broken by cross-entropy: say so
        figures += f" (tied; cross-entropy {dl_:.3f} vs {gl:.3f})"
    return (f"derived parameters ({names}) {'beat' if won else 'did not beat'} the generic augmentation on "
            f"validation: {figures}")


def _iteration_plots(plots: Path, analysis, child: ModelVersion) -> None:
    import matplotlib.pyplot as plt

    from .explain.neurons import neuron_functions_long
    from .plots import plot_confusion, plot_learning_curves, plot_neuron_functions, save_figure

    for name, ax in (
        (f"{child.version}_learning_curves.png", plot_learning_curves(child.history)),
        (f"{child.version}_confusion.png", plot_confusion(child.evaluation.confusion, child.evaluation.classes)),
        (f"{analysis.model_version}_neuron_functions.png",
         plot_neuron_functions(neuron_functions_long(analysis.functions))),
    ):
        save_figure(ax, plots / name)
        plt.close(ax.figure)
