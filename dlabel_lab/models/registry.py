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

from ..errors import CheckpointError, ConfigError
from ..media.video import ClipSpec
from .checkpoint import file_sha256
from .classifier import ClipClassifier

__all__ = ["register_version", "load_version", "verify_checkpoint", "register_detector", "load_detector",
           "is_detector", "is_onnx", "newest_trainable"]

DETECTOR_KIND = "detector"
#: The spec's ``format`` of a converted (ONNX) version.
ONNX_FORMAT = "onnx"


def store_model_file(store, *, name: str, suffix: str, write) -> Path:
    """Write a model file into ``<store>/models/`` under a temporary name, then rename it to its digest.

    ``write(tmp_path)`` writes the file and returns its sha256; the file ends as
    ``<name>-<digest[:16]><suffix>``, so a crash never leaves a half-written file
    under a name a version could be registered with. An error removes the temp
    file at once; a killed process leaves it to the sweep of the next writable
    open (``store.io.clean_temp_checkpoints``).

    Example:
        >>> path = store_model_file(store, name="shapes", suffix=".onnx", write=save)  # doctest: +SKIP
    """
    folder = Path(store.path) / "models"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}-{os.getpid()}-{time.time_ns()}{suffix}"
    try:
        digest = write(tmp)
        final = folder / f"{name}-{digest[:16]}{suffix}"
        os.replace(tmp, final)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    return final


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
    final = store_model_file(store, name=name, suffix=".safetensors", write=model.save_checkpoint)
    version = store.register_model(name=name, checkpoint_path=str(final), classes=list(model.classes),
                                   spec=model.spec.to_dict(), parent=parent, dataset_version=dataset_version,
                                   params=params, metrics=metrics)
    model.model_version_ = version
    return version, str(final)


def verify_checkpoint(store, model_version: str, info: dict | None = None) -> Path:
    """The checkpoint file of a registered version, after checking its sha256 against the recorded one.

    The file is hashed in 1 MiB blocks. ``info`` is ``store.get_model(model_version)``
    when the caller has it already.

    Raises:
        CheckpointError: The file is missing or its sha256 differs from the
            one recorded at registration (it was overwritten or damaged).

    Example:
        >>> verify_checkpoint(store, "shapes-v1").suffix  # doctest: +SKIP
        '.safetensors'
    """
    info = info if info is not None else store.get_model(model_version)
    path = Path(info["checkpoint_path"])
    expected = str(info["checkpoint_sha256"])
    recover = (f"Restore the file registered for {model_version} (from a backup, or the store folder it was copied "
               f"from), or re-register the model (register_version) and use the new version.")
    try:
        found = file_sha256(path)
    except FileNotFoundError:
        raise CheckpointError(f"the checkpoint {path} of model version {model_version} is missing "
                              f"(recorded sha256 {expected}). {recover}") from None
    except OSError as error:
        raise CheckpointError(f"the checkpoint {path} of model version {model_version} cannot be read: "
                              f"{error}. {recover}") from None
    if found != expected:
        raise CheckpointError(
            f"the checkpoint {path} of model version {model_version} does not match its registration: sha256 "
            f"{found} on disk, {expected} recorded. The file was overwritten or damaged; it is not loaded. {recover}"
        )
    return path


def load_version(store, model_version: str) -> ClipClassifier:
    """Load a registered model version from its checkpoint (safetensors only), checked against its sha256.

    Raises:
        CheckpointError: The checkpoint is missing, or its sha256 differs from
            the one recorded when the version was registered.
        UnknownRecord: The version is not registered.
        ConfigError: The version is a detector or a converted (ONNX) version.
    """
    info = store.get_model(model_version)
    if is_detector(info):
        raise ConfigError(f"model version {model_version} is an object detector; load it with "
                          "dl.load_detector(store, version) and serve it with dl.deploy_detector")
    if is_onnx(info):
        raise ConfigError(f"model version {model_version} is a converted ONNX version (parent {info.get('parent')}); "
                          "it runs on ONNX Runtime, not as a PyTorch module. Load it with "
                          "dl.load_converted(store, version), serve it with dl.deploy_version(store, version), or "
                          f"load the PyTorch parent with dl.load_version(store, {info.get('parent')!r})")
    path = verify_checkpoint(store, model_version, info)
    model = ClipClassifier.load_checkpoint(path)
    spec = info.get("spec")
    if spec:
        model.spec = ClipSpec.from_dict(json.loads(spec) if isinstance(spec, str) else spec)
    model.model_version_ = model_version
    return model


def _spec_dict(info: dict) -> dict:
    spec = info.get("spec")
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            return {}
    return spec if isinstance(spec, dict) else {}


def is_detector(info: dict) -> bool:
    """Whether a ``store.get_model(...)`` row is an object detector (its spec says ``kind: detector``).

    Example:
        >>> is_detector({"spec": '{"kind": "detector", "arch": "tiny_fcos"}'})
        True
    """
    return _spec_dict(info).get("kind") == DETECTOR_KIND


def is_onnx(info: dict) -> bool:
    """Whether a ``store.get_model(...)`` row is a converted ONNX version (its spec says ``format: onnx``).

    Example:
        >>> is_onnx({"spec": {"frames": 4, "size": 32, "format": "onnx"}})
        True
    """
    return _spec_dict(info).get("format") == ONNX_FORMAT


def newest_trainable(store) -> str:
    """The newest registered version that is a PyTorch clip classifier (no detector, no converted ONNX version).

    What ``retrain`` and ``run_loop`` start from when no version is named.

    Raises:
        ConfigError: The store has no such version.

    Example:
        >>> newest_trainable(store)  # doctest: +SKIP
        'shapes-v3'
    """
    versions = store.model_versions()
    for row in reversed(versions.to_dict("records")):
        if not is_detector(row) and not is_onnx(row):
            return str(row["model_version"])
    raise ConfigError("the store has no clip classifier version to retrain (converted ONNX versions and detectors "
                      "are not retrained); train one with train_initial first")


def register_detector(store, detector, *, name: str, parent: str | None = None, dataset_version: str | None = None,
                      params: dict | None = None, metrics: dict | None = None) -> tuple[str, str]:
    """Save an :class:`~dlabel_lab.ObjectDetector`'s checkpoint into ``<store>/models/`` and register it.

    The version's spec records ``kind: detector``, the architecture and the frame size, so
    :func:`load_version` refuses it with a pointer here and :func:`load_detector` loads it.

    Returns:
        ``(version, checkpoint path)``.

    Example:
        >>> version, path = register_detector(store, detector, name="objects")  # doctest: +SKIP
        >>> version  # doctest: +SKIP
        'objects-v1'
    """
    from .detection import ObjectDetector

    if not isinstance(detector, ObjectDetector):
        raise ConfigError(f"register_detector takes an ObjectDetector, got {type(detector).__name__}; "
                          "register clip classifiers with register_version")
    final = store_model_file(store, name=name, suffix=".safetensors", write=detector.save_checkpoint)
    spec = {"kind": DETECTOR_KIND, "arch": detector.arch, "frame_size": list(detector.frame_size)}
    version = store.register_model(name=name, checkpoint_path=str(final), classes=list(detector.classes), spec=spec,
                                   parent=parent, dataset_version=dataset_version, params=params, metrics=metrics)
    detector.version = version
    return version, str(final)


def load_detector(store, model_version: str):
    """Load a registered detector version (safetensors only), checked against its recorded sha256.

    Raises:
        ConfigError: The version is a clip classifier (load it with :func:`load_version`).
        CheckpointError: The checkpoint is missing or altered.
        UnknownRecord: The version is not registered.

    Example:
        >>> detector = load_detector(store, "objects-v1")  # doctest: +SKIP
    """
    from .detection import ObjectDetector

    info = store.get_model(model_version)
    if not is_detector(info):
        raise ConfigError(f"model version {model_version} is a clip classifier, not an object detector; load it "
                          "with dl.load_version")
    path = verify_checkpoint(store, model_version, info)
    detector = ObjectDetector.load_checkpoint(path)
    detector.version = model_version
    return detector
