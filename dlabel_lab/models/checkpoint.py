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
import os
import pickle
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import safetensors.torch
import torch

from ..errors import CheckpointError, ConfigError
from ..store.io import sha256_file

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
# a JSON string, or an unterminated one running to the end: linear, never backtracking across quotes
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def is_url(text: str) -> bool:
    """Whether ``text`` looks like a URL or stream address rather than a local path."""
    return bool(_SCHEME.match(text)) or "://" in text or text.startswith("//")


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks (the store's own digest).

    Example:
        >>> file_sha256("model.safetensors")  # doctest: +SKIP
        '3f1c...'
    """
    return sha256_file(Path(path))


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


def read_checkpoint(
    path: str | os.PathLike,
    *,
    max_bytes: int = MAX_CHECKPOINT_BYTES,
    validate: Callable[[dict], None] | None = None,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint: ``(state_dict, metadata)``.

    Accepts safetensors files written by :func:`write_checkpoint`, and
    weights-only torch files holding ``{"state_dict": ..., "metadata": ...}``.
    The file size (``max_bytes``, checked with ``stat``), the safetensors
    header length (:data:`MAX_HEADER_BYTES`, from its 8-byte prefix) and the
    JSON nesting (:data:`MAX_JSON_DEPTH`) are checked before anything is read
    in full or parsed. ``validate(metadata)``, when given, runs on the
    metadata before the tensors of a safetensors file are read (it raises to
    refuse the file).

    Raises:
        CheckpointError: A URL, a missing file, a file over a limit, a pickle
            or any other file that is not such a checkpoint, or missing metadata.

    Example:
        >>> state, meta = read_checkpoint("model.safetensors")  # doctest: +SKIP
    """
    p = _check_local(path, max_bytes)
    n = _safetensors_header_length(p)
    if n is not None:
        meta = _safetensors_metadata(_read_header(p, n), p)
        if validate is not None:
            validate(meta)
        with open(p, "rb") as fh:
            data = fh.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise CheckpointError(_too_large(p, len(data), max_bytes))
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
        _check_depth(meta.encode("utf-8", "replace"), p, "dlabel_lab metadata")
        try:
            meta = json.loads(meta)
        except ValueError:
            meta = None
    if not isinstance(meta, Mapping):
        raise CheckpointError(
            f"{p} holds a state dict without dlabel_lab metadata (classes, spec, backbone); save the model with "
            "model.save_checkpoint('model.safetensors') instead"
        )
    if validate is not None:
        validate(dict(meta))
    return _as_tensors(obj["state_dict"], p), dict(meta)


def read_checkpoint_metadata(path: str | os.PathLike, *, max_bytes: int = MAX_CHECKPOINT_BYTES) -> dict:
    """The JSON metadata of a safetensors checkpoint, reading only its header.

    Example:
        >>> read_checkpoint_metadata("model.safetensors")["classes"]  # doctest: +SKIP
        ['circle', 'square']
    """
    p = _check_local(path, max_bytes)
    n = _safetensors_header_length(p)
    if n is None:
        return read_checkpoint(p, max_bytes=max_bytes)[1]
    return _safetensors_metadata(_read_header(p, n), p)


def load_state_dict_file(path: str | os.PathLike, *, max_bytes: int = MAX_CHECKPOINT_BYTES) -> dict[str, torch.Tensor]:
    """Load a plain state dict from ``.safetensors`` or a weights-only ``.pth``/``.pt`` file.

    A ``{"state_dict": ...}`` wrapper and a DDP ``module.`` prefix are unwrapped.

    Raises:
        CheckpointError: A URL, a missing file, a pickle with objects other
            than tensors, or no tensors inside.

    Example:
        >>> sd = load_state_dict_file("r3d_18-b3b3357e.pth")  # doctest: +SKIP
    """
    p = _check_local(path, max_bytes)
    if _safetensors_header_length(p) is not None:
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
def _limit_text(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def _too_large(p: Path, size: int, max_bytes: int) -> str:
    return (
        f"checkpoint {str(p)!r} is {size} bytes, more than the {_limit_text(max_bytes)} limit; if you trust this "
        f"file, pass max_bytes={size} (read_checkpoint / ClipClassifier.load_checkpoint)"
    )


def _check_local(path, max_bytes: int = MAX_CHECKPOINT_BYTES) -> Path:
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
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise ConfigError(f"max_bytes must be a positive int, got {max_bytes!r}")
    size = p.stat().st_size
    if size > max_bytes:
        raise CheckpointError(_too_large(p, size, max_bytes))
    return p


def _safetensors_header_length(p: Path) -> int | None:
    """The header length of a safetensors file, ``None`` for other files; refuses an impossible prefix."""
    with open(p, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return None
    n = int.from_bytes(head[:8], "little")
    size = p.stat().st_size
    if n < 2:
        return None
    if n > size - 8:
        raise CheckpointError(
            f"{p} claims a safetensors header of {n} bytes, larger than the file ({size} bytes); it is truncated "
            "or not a safetensors file. Write it again."
        )
    if n > MAX_HEADER_BYTES:
        raise CheckpointError(
            f"{p} has a safetensors header of {n} bytes, more than the {_limit_text(MAX_HEADER_BYTES)} limit on "
            "its tensor table and metadata (dlabel_lab.models.checkpoint.MAX_HEADER_BYTES); a model with that "
            "much metadata (class names) is not supported. Re-save it with fewer or shorter class names."
        )
    return n


def _read_header(p: Path, n: int) -> bytes:
    with open(p, "rb") as fh:
        fh.seek(8)
        header = fh.read(n)
    if len(header) != n:
        raise CheckpointError(f"{p} ended inside its safetensors header; it is truncated. Write it again.")
    return header


def _check_depth(text: bytes, p: Path, where: str) -> None:
    """Refuse JSON nested deeper than :data:`MAX_JSON_DEPTH`, scanning brackets outside strings (no parsing)."""
    brackets = _JSON_STRING.sub(b"", text).translate(None, _NOT_BRACKETS)
    depth = 0
    for start in range(0, len(brackets), 1 << 20):
        chunk = np.frombuffer(brackets, np.uint8, count=min(1 << 20, len(brackets) - start), offset=start)
        levels = np.cumsum(np.where((chunk == ord("[")) | (chunk == ord("{")), 1, -1), dtype=np.int64) + depth
        if levels.max() > MAX_JSON_DEPTH:
            raise CheckpointError(
                f"{p} has JSON nested deeper than {MAX_JSON_DEPTH} levels in its {where} "
                "(dlabel_lab.models.checkpoint.MAX_JSON_DEPTH); dlabel_lab metadata needs a few levels, so the file "
                "is damaged or crafted. Save the model again with model.save_checkpoint()."
            )
        depth = int(levels[-1])


def _safetensors_metadata(header_bytes: bytes, p: Path) -> dict:
    _check_depth(header_bytes, p, "safetensors header")
    try:
        header = json.loads(header_bytes.decode("utf-8"))
        text = (header.get("__metadata__") or {})[METADATA_KEY]
        _check_depth(text.encode("utf-8"), p, "dlabel_lab metadata")
        meta = json.loads(text)
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
