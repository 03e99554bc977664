"""Files, ids and values for the payload store.

Atomic writes of content-addressed media and of Parquet exports, UUIDv7 scoring ids, canonical JSON and the checks
every value passes before it reaches DuckDB. Nothing here imports DuckDB; the
lock file that makes one process the owner of a store is in :mod:`.lock`.

Example:
    >>> sid = new_scoring_id()
    >>> check_scoring_id(sid) == sid
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import ConfigError, StoreError

__all__ = [
    "canonical_json",
    "check_name",
    "check_scoring_id",
    "check_text",
    "clean_temp_checkpoints",
    "clean_temp_media",
    "refuse_symlink",
    "float_list",
    "media_extension",
    "new_scoring_id",
    "publish_export",
    "export_temp_dir",
    "utc_naive",
    "utc_now",
    "fsync_path",
]

TEMP_PREFIX = ".tmp-"
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"  # RE2 and re alike
_UUID = re.compile(UUID_PATTERN)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_EXT = re.compile(r"^[a-z0-9]{1,8}$")
_CONTAINER_EXT = {"matroska": "mkv", "quicktime": "mov", "mpeg-ps": "mpg", "mpeg-ts": "ts", "mpeg": "mpg"}

_uuid_lock = threading.Lock()
_uuid_last = [0, 0]  # last millisecond, last counter


# --- ids ---------------------------------------------------------------------
def new_scoring_id() -> str:
    """A new scoring id: a UUIDv7 string, ordered by creation time.

    48 bits of Unix milliseconds, then a 12-bit counter that keeps ids made in
    the same millisecond in order, then 62 random bits (RFC 9562, method 1).

    Example:
        >>> a, b = new_scoring_id(), new_scoring_id()
        >>> a < b and a[14] == "7"
        True
    """
    with _uuid_lock:
        ms = time.time_ns() // 1_000_000
        last_ms, counter = _uuid_last
        if ms <= last_ms:
            ms, counter = last_ms, counter + 1
            if counter > 0xFFF:
                ms, counter = ms + 1, 0
        else:
            counter = int.from_bytes(os.urandom(2), "big") & 0x7FF  # leave room to count up
        _uuid_last[:] = [ms, counter]
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def check_scoring_id(value: object, *, where: str = "scoring_id") -> str:
    """Return ``value`` if it is a canonical (lower-case, hyphenated) UUID string.

    Example:
        >>> check_scoring_id("0190a0b2-7c3d-7e4f-8a5b-1c2d3e4f5a6b")
        '0190a0b2-7c3d-7e4f-8a5b-1c2d3e4f5a6b'
    """
    if isinstance(value, str) and _UUID.fullmatch(value):  # fullmatch: no trailing newline either
        return value
    raise ConfigError(
        f"{where} must be a lower-case UUID string such as store.new_scoring_id() returns, got {value!r}"
    )


def check_name(value: object, *, what: str) -> str:
    """A version name: 1-64 letters, digits, '_', '.', '-', starting with a letter or digit.

    Example:
        >>> check_name("shapes", what="model name")
        'shapes'
    """
    if isinstance(value, str) and _NAME.match(value):
        return value
    raise ConfigError(
        f"{what} must be 1-64 characters of letters, digits, '_', '.' or '-' (starting with a letter or digit), "
        f"got {value!r}"
    )


# --- values ------------------------------------------------------------------
def check_text(value: object, *, what: str, allow_empty: bool = False, optional: bool = False) -> str | None:
    """A string DuckDB can store (valid UTF-8), or ``None`` when ``optional``.

    Example:
        >>> check_text("circle", what="label")
        'circle'
    """
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ConfigError(f"{what} must not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ConfigError(
            f"{what} holds a character that is not valid UTF-8 (a lone surrogate at position {error.start}); "
            "pass text that encodes as UTF-8"
        ) from None
    return value


def _json_default(value: Any) -> Any:  # noqa: ANN401
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, (datetime, Path)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def canonical_json(value: object, *, what: str) -> str:
    """JSON text with sorted keys and no spaces, so equal values give equal text.

    Example:
        >>> canonical_json({"b": 1, "a": [1.5]}, what="record")
        '{"a":[1.5],"b":1}'
    """
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
        )
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{what} must be JSON-serialisable (finite numbers, string keys): {error}") from None
    return check_text(text, what=what, allow_empty=True)  # type: ignore[return-value]


def float_list(value: object, *, what: str) -> list[float]:
    """A flat sequence of numbers as a list of Python floats.

    Example:
        >>> float_list((1, 0.5), what="probabilities")
        [1.0, 0.5]
    """
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"{what} must be a flat sequence of numbers, got {type(value).__name__}")
    try:
        return [float(v) for v in value]  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a flat sequence of numbers; found a non-number in it") from None


def finite_float(value: object, *, what: str, optional: bool = False) -> float | None:
    """A number as a float; ``None`` passes when ``optional``.

    Example:
        >>> finite_float(3, what="latency_ms")
        3.0
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise ConfigError(f"{what} must be a number, got {type(value).__name__}")
    out = float(value)  # type: ignore[arg-type]
    if math.isnan(out):
        raise ConfigError(f"{what} must be a number, got NaN")
    return out


def utc_now() -> datetime:
    """The current UTC time as a naive datetime (how the store keeps times).

    Example:
        >>> utc_now().tzinfo is None
        True
    """
    return datetime.now(timezone.utc).replace(tzinfo=None)


def utc_naive(value: object, *, what: str) -> datetime | None:
    """A datetime as naive UTC (aware ones are converted, naive ones read as UTC); ``None`` passes.

    Example:
        >>> utc_naive(datetime(2024, 1, 1, tzinfo=timezone.utc), what="since")
        datetime.datetime(2024, 1, 1, 0, 0)
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"{what} must be a datetime or ISO 8601 text, got {value!r}") from None
    if not isinstance(value, datetime):
        raise ConfigError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


# --- media -------------------------------------------------------------------
def media_extension(source_name: str, metadata: Mapping[str, Any]) -> str:
    """The file extension a clip keeps: from its source name, else its container, else ``bin``.

    Example:
        >>> media_extension("cam/clip.MP4", {})
        'mp4'
    """
    suffix = Path(source_name).suffix.lower().lstrip(".")
    if _EXT.match(suffix):
        return suffix
    container = str(metadata.get("container") or "").lower()
    container = _CONTAINER_EXT.get(container, container)
    return container if _EXT.match(container) else "bin"


def fsync_path(path: Path) -> None:
    """fsync a file (its bytes and size) or a folder (the names created or renamed in it) to disk.

    Example:
        >>> fsync_path(Path("runs/store/media"))  # doctest: +SKIP
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def already_stored(final: Path, size: int) -> bool:
    """Whether a content-addressed file of this size is already in place (its name is the sha256).

    Example:
        >>> already_stored(Path("/nonexistent"), 3)
        False
    """
    with contextlib.suppress(FileNotFoundError):
        return final.stat().st_size == size
    return False


def clean_temp_media(media_dir: Path) -> int:
    """Remove temp files that a killed writer left in ``media_dir``; the number removed.

    Example:
        >>> clean_temp_media(Path("runs/store/media"))  # doctest: +SKIP
        0
    """
    removed = 0
    if not media_dir.is_dir():
        return 0
    for path in media_dir.glob(f"*/{TEMP_PREFIX}*"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


# temp names of checkpoints written into <store>/models/: ".{name}-{pid}-{ns}.safetensors" (registry.py) and the
# mkstemp name write_checkpoint gives its own temp file, ".{final name}.{random}.tmp"
_TEMP_CHECKPOINT = re.compile(r"^\..*\.(safetensors|onnx)(\.[A-Za-z0-9_]+\.tmp)?$")


def clean_temp_checkpoints(models_dir: Path) -> int:
    """Remove the temp checkpoint files a killed writer left in ``models_dir``; the number removed.

    Registered checkpoints are never hidden files (a model name starts with a
    letter or digit), so every hidden ``*.safetensors`` or ``*.onnx`` (and the
    ``*.tmp`` of a half-written one) is a leftover.

    Example:
        >>> clean_temp_checkpoints(Path("runs/store/models"))  # doctest: +SKIP
        0
    """
    removed = 0
    if not models_dir.is_dir() or models_dir.is_symlink():
        return 0
    for path in models_dir.iterdir():
        if _TEMP_CHECKPOINT.match(path.name) and (path.is_file() or path.is_symlink()):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def refuse_symlink(path: Path, *, what: str) -> None:
    """Raise :class:`StoreError` when ``path`` is a symbolic link (the store never follows links of its own files).

    Example:
        >>> refuse_symlink(Path("runs/store/store.duckdb"), what="database file")  # doctest: +SKIP
    """
    if path.is_symlink():
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        raise StoreError(
            f"the store's {what} {path} is a symbolic link (to {target}); the payload store does not follow links "
            f"of its own files. Remove the link (rm {path}) and open the store again"
            + (" (a fresh lock file is created)." if what == "lock file" else "; put the real file there instead.")
        )


# --- atomic Parquet exports ----------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def export_temp_dir(out: Path) -> Path:
    """A fresh hidden sibling folder of ``out`` to write an export into; stale ones of dead writers go first.

    Example:
        >>> export_temp_dir(Path("exports/matched")).name.startswith(".matched.export-")  # doctest: +SKIP
        True
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out.name}.export-"
    for stale in out.parent.glob(f"{prefix}*"):
        pid = stale.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)) and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f"{prefix}{os.getpid()}-{os.urandom(4).hex()}"
    tmp.mkdir()
    return tmp


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_path(Path(folder))


def publish_export(tmp: Path, out: Path) -> None:
    """Move a finished export from ``tmp`` to ``out``: one rename when ``out`` is new, else partition by partition.

    Into an existing ``out`` every ``key=value/key=value`` partition folder of
    ``tmp`` replaces its namesake whole (the old one is moved into ``tmp``,
    which the caller removes); other partitions and files of ``out`` stay.

    Example:
        >>> publish_export(Path("exports/.matched.export-1-ab"), Path("exports/matched"))  # doctest: +SKIP
    """
    _fsync_tree(tmp)
    if not out.exists():
        os.rename(tmp, out)
        fsync_path(out.parent)
        return
    replaced = tmp / ".replaced"
    replaced.mkdir()
    for n, part in enumerate(sorted(p for p in tmp.glob("*=*/*=*") if p.is_dir())):
        target = out / part.relative_to(tmp)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            os.rename(target, replaced / str(n))
        os.rename(part, target)
        fsync_path(target.parent)


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks.

    Example:
        >>> sha256_file(Path("model.ckpt"))  # doctest: +SKIP
        '9f86d0...'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
