"""The model version registry: checkpoints saved into the store and loaded back.

A model version is a safetensors checkpoint under ``<store>/models/`` plus a
row in the store's ``model_versions`` table (classes, clip spec, parent,
dataset version, parameters, metrics). Serving and training both go through
here; neither writes checkpoints of its own.

Example:
    >>> version, path = register_version(store, model, name="shapes")  # doctest: +SKIP
    >>> model = load_version(store, version)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..media.video import ClipSpec
from .classifier import ClipClassifier

__all__ = ["register_version", "load_version"]


def register_version(store, model: ClipClassifier, *, name: str, parent: str | None = None,
                     dataset_version: str | None = None, params: dict | None = None,
                     metrics: dict | None = None) -> tuple[str, str]:
    """Save a model's checkpoint into ``<store>/models/`` and register it; return (version, path).

    The checkpoint is written under a temporary name and renamed to its
    content digest, so a crash never leaves a half-written file under a
    registered name.

    Example:
        >>> version, path = register_version(store, model, name="shapes")  # doctest: +SKIP
    """
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


def load_version(store, model_version: str) -> ClipClassifier:
    """Load a registered model version from its checkpoint (safetensors only)."""
    info = store.get_model(model_version)
    model = ClipClassifier.load_checkpoint(info["checkpoint_path"])
    spec = info.get("spec")
    if spec:
        model.spec = ClipSpec.from_dict(json.loads(spec) if isinstance(spec, str) else spec)
    model.model_version_ = model_version
    return model
