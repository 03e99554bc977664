"""Evaluate a registered model version on a labelled manifest, logging nothing to the store.

A held-out set of lab clips answers "has v1 learned the lab data?" without
mixing those clips into the store's operational record (scoring them through
the ingest endpoint would make them matched rows that analysis and retraining
then use). The clips are decoded with the version's own clip spec, exactly as
its ingest endpoint would.

Example:
    >>> ev = evaluate_manifest(store, "shapes-v1", "clips/lab_test/labels.csv")  # doctest: +SKIP
    >>> round(ev.accuracy, 2)  # doctest: +SKIP
    0.9
"""

from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..evaluation import Evaluation, evaluate
from ..media.samples import read_manifest
from ..models.registry import load_version
from .datasets import ClipDataset

__all__ = ["evaluate_manifest"]


def evaluate_manifest(
    store,
    model_version: str,
    manifest: str | os.PathLike,
    *,
    batch_size: int = 16,
    progress: bool = False,
) -> Evaluation:
    """Accuracy, per-class recall and calibration of ``model_version`` on the clips of ``manifest``.

    Nothing is logged: the store is only read for the version's checkpoint
    (checked against its recorded sha256) and clip spec.

    Args:
        store: The payload store holding the version.
        model_version: A registered model version.
        manifest: A ``labels.csv`` (or its folder) whose labels are the
            version's class names.
        batch_size: Clips per forward pass.
        progress: Show a progress bar.

    Returns:
        The :class:`~dlabel_lab.evaluation.Evaluation` over every clip.

    Raises:
        ConfigError: A label of the manifest is not one of the version's classes.
        UnknownRecord: The version is not registered.

    Example:
        >>> evaluate_manifest(store, "shapes-v1", "clips/lab_test").accuracy  # doctest: +SKIP
        0.896
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    rows = read_manifest(manifest)
    model = load_version(store, model_version)
    classes = list(model.classes)
    unknown = sorted({r["label"] for r in rows} - set(classes))
    if unknown:
        raise ConfigError(
            f"labels {unknown} of {manifest} are not classes of {model_version} ({classes}); "
            "evaluate a manifest labelled with the model's class names"
        )
    data = DataLoader(ClipDataset(rows, classes=classes, spec=model.spec, cache=False), batch_size=batch_size)
    probs: list[torch.Tensor] = []
    for x, _ in tqdm(data, desc=f"evaluating {model_version}", unit="batch", disable=not progress):
        probs.append(model.predict_proba(x))
    p = torch.cat(probs) if probs else torch.empty(0, len(classes))
    records = [
        {
            "user_label": r["label"],
            "predicted_label": classes[int(row.argmax())],
            "confidence": float(row.max()),
            "probabilities": row.tolist(),
        }
        for r, row in zip(rows, p, strict=True)
    ]
    return evaluate(records, classes=classes)
