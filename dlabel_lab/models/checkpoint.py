"""Safe checkpoint files: safetensors with JSON metadata, weights-only state dicts.

A checkpoint is one ``.safetensors`` file: the state dict plus a JSON
document under the metadata key ``"dlabel_lab"`` (classes, clip spec,
backbone, hyper-parameters, format version). Nothing here unpickles
arbitrary objects: ``.pth``/``.pt`` files are read with
``torch.load(weights_only=True)`` and URLs are refused.

Example:
    >>> sha = write_checkpoint("m.safetensors", {"w": torch.zeros(2)}, {"format_version": 1})  # doctest: +SKIP
    >>> read_checkpoint("m.safetensors")[1]["format_version"]  # doctest: +SKIP
    1
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import re
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import safetensors.torch
import torch

from ..errors import CheckpointError, ConfigError

__all__ = [
    "file_sha256",
    "write_checkpoint",
    "read_checkpoint",
    "read_checkpoint_metadata",
    "load_state_dict_file",
    "MAX_CHECKPOINT_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_JSON_DEPTH",
]

METADATA_KEY = "dlabel_lab"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")
#: Largest checkpoint file read by default (``max_bytes=`` raises it); checked with ``stat`` before reading.
MAX_CHECKPOINT_BYTES = 8 * 2**30
#: Largest safetensors JSON header (tensor table + metadata); checked from the 8-byte length prefix.
MAX_HEADER_BYTES = 32 * 2**20
#: Deepest JSON nesting accepted in a header or its metadata (checked before ``json.loads``).
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_MAX_HEADER = MAX_HEADER_BYTES


def is_url(text: str) -> bool:
    """Whether ``text`` looks like a URL or stream address rather than a local path."""
    return bool(_SCHEME.match(text)) or "://" in text or text.startswith("//")


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes.

    Example:
        >>> file_sha256("model.safetensors")  # doctest: +SKIP
        '3f1c...'
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_checkpoint(path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor], metadata: dict) -> str:
    """Write a state dict and JSON metadata as one safetensors file, atomically.

    Args:
        path: Destination; must end in ``.safetensors``.
        state_dict: Tensors to store (copied to CPU, contiguous).
        metadata: JSON-serialisable dict stored in the file header.

    Returns:
        The sha256 (hex) of the written file.

    Example:
        >>> write_checkpoint("m.safetensors", {"w": torch.ones(1)}, {})  # doctest: +SKIP
        'a1b2...'
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"checkpoints are safetensors files; name it '{path.stem}.safetensors' (got {path.name!r})")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    data = safetensors.torch.save(tensors, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return hashlib.sha256(data).hexdigest()


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint: ``(state_dict, metadata)``.

    Accepts safetensors files written by :func:`write_checkpoint`, and
    weights-only torch files holding ``{"state_dict": ..., "metadata": ...}``.

    Raises:
        CheckpointError: A URL, a missing file, a pickle or any other file
            that is not such a checkpoint, or missing metadata.

    Example:
        >>> state, meta = read_checkpoint("model.safetensors")  # doctest: +SKIP
    """
    p = _check_local(path)
    if _looks_like_safetensors(p):
        data = p.read_bytes()
        meta = _safetensors_metadata(data[: 8 + int.from_bytes(data[:8], "little")], p)
        try:
            state = safetensors.torch.load(data)
        except Exception as e:
            raise CheckpointError(f"{p} is a damaged safetensors file ({e}); write it again") from None
        return state, meta
    obj = _torch_load(p)
    if not isinstance(obj, Mapping):
        raise CheckpointError(_not_a_checkpoint(p))
    if not isinstance(obj.get("state_dict"), Mapping):
        obj = {"state_dict": obj}  # a plain state dict: refused below for its missing metadata
    meta = obj.get("metadata")
    if isinstance(meta, str):
        meta = json.loads(meta)
    if not isinstance(meta, Mapping):
        raise CheckpointError(
            f"{p} holds a state dict without dlabel_lab metadata (classes, spec, backbone); save the model with "
            "model.save_checkpoint('model.safetensors') instead"
        )
    return _as_tensors(obj["state_dict"], p), dict(meta)


def read_checkpoint_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of a safetensors checkpoint, reading only its header.

    Example:
        >>> read_checkpoint_metadata("model.safetensors")["classes"]  # doctest: +SKIP
        ['circle', 'square']
    """
    p = _check_local(path)
    if not _looks_like_safetensors(p):
        return read_checkpoint(p)[1]
    with open(p, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = fh.read(n)
    return _safetensors_metadata(n.to_bytes(8, "little") + header, p)


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a plain state dict from ``.safetensors`` or a weights-only ``.pth``/``.pt`` file.

    A ``{"state_dict": ...}`` wrapper and a DDP ``module.`` prefix are unwrapped.

    Raises:
        CheckpointError: A URL, a missing file, a pickle with objects other
            than tensors, or no tensors inside.

    Example:
        >>> sd = load_state_dict_file("r3d_18-b3b3357e.pth")  # doctest: +SKIP
    """
    p = _check_local(path)
    if _looks_like_safetensors(p):
        try:
            return safetensors.torch.load(p.read_bytes())
        except Exception as e:
            raise CheckpointError(f"{p} is a damaged safetensors file ({e})") from None
    obj = _torch_load(p)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(_not_a_checkpoint(p))
    state = _as_tensors(obj, p)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


# --- helpers ------------------------------------------------------------------------
def _check_local(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"a checkpoint path must be a str or path, got {type(path).__name__}")
    text = os.fspath(path)
    if is_url(text):
        raise CheckpointError(
            f"{text!r} is a URL; checkpoints are loaded from local files only (no downloads). Download it, verify "
            "its sha256 and pass the local path."
        )
    p = Path(text).expanduser()
    if not p.exists():
        raise CheckpointError(f"checkpoint {text!r} does not exist; check the path (relative to {os.getcwd()})")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {text!r} is not a regular file; pass the .safetensors file itself")
    return p


def _looks_like_safetensors(p: Path) -> bool:
    with open(p, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= min(_MAX_HEADER, p.stat().st_size - 8) and head[8:9] == b"{"


def _safetensors_metadata(header_bytes: bytes, p: Path) -> dict:
    try:
        header = json.loads(header_bytes[8:].decode("utf-8"))
        meta = json.loads((header.get("__metadata__") or {})[METADATA_KEY])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CheckpointError(
            f"{p} is a safetensors file without dlabel_lab metadata; it holds weights only. Pass it as "
            "ClipClassifier(..., weights=path) or save with model.save_checkpoint()."
        ) from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{p} has malformed dlabel_lab metadata; save the model again")
    return meta


def _torch_load(p: Path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol notices; the refusal below says what matters
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        unpickling = isinstance(e, pickle.UnpicklingError) or "weights only" in str(e).lower()
        reason = "it holds objects other than tensors" if unpickling else f"{type(e).__name__}"
        raise CheckpointError(f"{_not_a_checkpoint(p)} ({reason})") from None


def _not_a_checkpoint(p: Path) -> str:
    return (
        f"{p} is not a checkpoint dlabel_lab can load: it loads only safetensors or weights-only torch state "
        "dicts (never arbitrary pickles). Re-save a model with model.save_checkpoint('model.safetensors'), backbone "
        "weights with safetensors.torch.save_file(state_dict, path) or torch.save(state_dict, path)."
    )


def _as_tensors(obj: Mapping, p: Path) -> dict[str, torch.Tensor]:
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad or not obj:
        raise CheckpointError(f"{_not_a_checkpoint(p)} (entries that are not named tensors: {bad[:5]})")
    return dict(obj)


def state_dict_mismatch(module: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """Say how ``state`` fails to fit ``module`` (missing, unexpected, wrong-shape keys), or ``None``.

    Example:
        >>> state_dict_mismatch(torch.nn.Linear(2, 1), {"weight": torch.zeros(1, 2)})
        "missing ['bias'], unexpected [], wrong shape []"
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if not (missing or unexpected or wrong):
        return None
    return f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong[:5]}"
