"""Manifests: the ``labels.csv`` files that list clips with their labels and factors.

A manifest has a header with ``path`` and ``label`` and optionally the
generating factors (:data:`FACTORS`); paths are
relative to the manifest's folder. Reading is hostile-input safe: only
regular UTF-8 files (a BOM is accepted) up to a size limit checked before
reading, rows capped in length, clip paths confined to the manifest's folder
(or a root the caller names), and every bad row reported with its file and
line.

Example:
    >>> rows = read_manifest("data/shapes/train/labels.csv")  # doctest: +SKIP
    >>> rows, problems = check_manifest("labels.csv")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import math
import os
import stat
from pathlib import Path

from ..errors import ConfigError, UnsafeSource

__all__ = ["read_manifest", "check_manifest", "FACTORS", "MAX_MANIFEST_BYTES", "MAX_ROW_CHARS"]

#: The generating factors written to every manifest, in column order.
FACTORS = ("brightness", "scale", "speed", "clutter", "noise")

#: Default cap on a manifest's size in bytes (``read_manifest(..., max_bytes=)`` raises it).
MAX_MANIFEST_BYTES = 64 * 2**20
#: Longest manifest row (and so field) in characters; ``csv``'s own process-wide limit is never touched.
MAX_ROW_CHARS = 64 * 1024
_PSEUDO_FS = ("/proc", "/sys", "/dev")


def read_manifest(
    manifest: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    max_bytes: int = MAX_MANIFEST_BYTES,
    skip_bad: bool = False,
) -> list[dict]:
    """Read a ``labels.csv`` manifest; paths are made absolute, factors float.

    The manifest must be a regular UTF-8 file (a BOM is fine) of at most
    ``max_bytes`` bytes with a ``path`` and a ``label`` column. Clip paths are
    relative to the manifest's folder (absolute paths are allowed) and must
    resolve, symlinks followed, inside that folder, or inside ``root`` when
    given. Nothing is read from the clip paths.

    Args:
        manifest: The CSV file, or a folder holding ``labels.csv``.
        root: Folder the clip paths must stay inside (default: the manifest's folder).
        max_bytes: Largest manifest accepted, checked with ``stat`` before reading.
        skip_bad: Leave bad rows out instead of raising; :func:`check_manifest`
            says which rows and why.

    Raises:
        ConfigError: The file is missing, not a regular file, too large, not
            UTF-8, empty, without the columns, or (unless ``skip_bad``) a row is
            bad; the message names the file and the 1-based line.
        UnsafeSource: (unless ``skip_bad``) a clip path points outside the
            allowed folder.

    Example:
        >>> rows = read_manifest("data/shapes/train/labels.csv")  # doctest: +SKIP
        >>> rows[0]["label"]  # doctest: +SKIP
        'circle'
    """
    rows, problems = _scan_manifest(manifest, root=root, max_bytes=max_bytes, stop_at_first=not skip_bad)
    if problems and not skip_bad:
        raise problems[0]["error"]
    if not rows:
        raise ConfigError(f"no good clip rows: {problems[0]['error']} (and {len(problems) - 1} more bad rows; "
                          "check_manifest() lists them)")
    return rows


def check_manifest(
    manifest: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    max_bytes: int = MAX_MANIFEST_BYTES,
    line_numbers: bool = False,
) -> tuple[list[dict], list[dict]]:
    """Read a manifest keeping the good rows and listing the bad ones: ``(rows, problems)``.

    ``rows`` is what ``read_manifest(..., skip_bad=True)`` returns (with
    ``line_numbers=True`` each row also has ``"row"``, its line number); each
    problem is ``{"row": line, "path": text as written, "reason": str}``
    with ``row`` the 1-based line number in the file (the header is line 1)
    where the record starts. Problems with the file as a whole (missing, too
    large, not UTF-8, empty, no header) raise as in :func:`read_manifest`;
    ``rows`` may be empty when every row is bad.

    Example:
        >>> rows, problems = check_manifest("clips/labels.csv")  # doctest: +SKIP
        >>> problems  # doctest: +SKIP
        [{'row': 3, 'path': '../x.mp4', 'reason': "path '../x.mp4' resolves outside ..."}]
    """
    rows, problems = _scan_manifest(manifest, root=root, max_bytes=max_bytes, stop_at_first=False,
                                    line_numbers=line_numbers)
    return rows, [{k: p[k] for k in ("row", "path", "reason")} for p in problems]


def _scan_manifest(manifest, *, root, max_bytes: int, stop_at_first: bool,
                   line_numbers: bool = False) -> tuple[list[dict], list[dict]]:
    path = _manifest_file(manifest)
    base = _allowed_root(path, root)
    text = _manifest_text(path, max_bytes)
    rows: list[dict] = []
    problems: list[dict] = []
    header: list[str] | None = None
    for line, fields, reason in _records(text):
        if header is None:
            if reason is not None:
                raise ConfigError(f"{path} line {line}: the header {reason}; the first line must be the column "
                                  "names (path,label,...)")
            if not fields or not any(f.strip() for f in fields):
                continue
            header = [f.strip() for f in fields]
            if "path" not in header or "label" not in header:
                raise ConfigError(f"{path} needs the columns 'path' and 'label' in its first line, got {header}")
            if len(set(header)) != len(header):
                raise ConfigError(f"{path} repeats column names in its header {header}; name each column once")
            continue
        if fields == []:
            continue  # blank line
        item, kind = None, ConfigError
        if reason is None:
            item, reason, kind = _manifest_row(path, header, fields, base, root)
        if reason is not None:
            given = fields[header.index("path")] if fields and len(fields) > header.index("path") else ""
            error = kind(f"{path} line {line}: {reason}")
            problems.append({"row": line, "path": given, "reason": reason, "error": error})
            if stop_at_first:
                break
            continue
        if line_numbers:
            item["row"] = line
        rows.append(item)
    if header is None:
        raise ConfigError(f"{path} has no header and no rows; a manifest starts with the line "
                          f"'path,label,{','.join(FACTORS)}'")
    if not rows and not problems:
        raise ConfigError(f"{path} has no clip rows, only its header; add one line per clip (path,label,...)")
    return rows, problems


def _manifest_file(manifest) -> Path:
    if not isinstance(manifest, (str, os.PathLike)):
        raise ConfigError(f"a manifest must be a path, got {type(manifest).__name__}")
    text = os.fspath(manifest)
    if not isinstance(text, str):
        raise ConfigError(f"a manifest path must be text, got {type(text).__name__}")
    if "\x00" in text:
        raise ConfigError(f"the manifest path {text!r} contains a NUL character")
    p = Path(text).expanduser()
    try:
        if stat.S_ISDIR(os.stat(p).st_mode):
            p = p / "labels.csv"
        st = os.stat(p)
    except FileNotFoundError:
        raise ConfigError(f"manifest {str(p)!r} does not exist; generate clips with make_shape_clips first") from None
    except OSError as e:
        raise ConfigError(f"manifest {str(p)!r} cannot be read ({e.strerror or e}); check the path and its "
                          "permissions") from None
    resolved = p.resolve()
    pseudo = any(resolved == Path(d) or Path(d) in resolved.parents for d in _PSEUDO_FS)
    if not stat.S_ISREG(st.st_mode) or pseudo:
        raise ConfigError(f"manifest {str(p)!r} is not a regular file (a folder, pipe, device or /proc file); "
                          "pass a labels.csv file on disk")
    return p


def _allowed_root(path: Path, root) -> Path:
    if root is None:
        return path.parent.resolve()
    if not isinstance(root, (str, os.PathLike)) or not Path(root).expanduser().is_dir():
        raise ConfigError(f"root={root!r} is not an existing folder; pass the folder the clip paths must stay in")
    return Path(root).expanduser().resolve()


def _manifest_text(path: Path, max_bytes: int) -> str:
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise ConfigError(f"max_bytes must be a positive int, got {max_bytes!r}")
    limit = f"{max_bytes // 2**20} MiB" if max_bytes % 2**20 == 0 else f"{max_bytes} bytes"
    too_large = (f"manifest {path} is larger than the {limit} limit; split it, or pass max_bytes={{n}} "
                 "(read_manifest/check_manifest) if it is meant to be this large")
    size = path.stat().st_size
    if size > max_bytes:
        raise ConfigError(too_large.format(n=size))
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as e:
        raise ConfigError(f"manifest {path} cannot be read ({e.strerror or e}); pass a labels.csv file on "
                          "disk") from None
    if len(data) > max_bytes:  # it grew after the stat
        raise ConfigError(too_large.format(n=len(data)))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path} is not UTF-8 (line {line}, byte 0x{data[e.start]:02x}); save it as UTF-8 "
                          "(with or without BOM) and read it again") from None


class _Lines:
    """Feeds ``csv.reader`` one physical line at a time, refusing NULs and over-long records."""

    def __init__(self, lines: list[str], pos: int) -> None:
        self.lines, self.pos = lines, pos  # pos: index of the next line to hand out
        self.start, self.chars, self.fresh = pos + 1, 0, True

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.pos >= len(self.lines):
            raise StopIteration
        line = self.lines[self.pos]
        self.pos += 1
        if self.fresh:
            self.start, self.chars, self.fresh = self.pos, 0, False
        self.chars += len(line)
        if "\x00" in line:
            raise _BadLine(f"contains a NUL character (line {self.pos}); remove it")
        if self.chars > MAX_ROW_CHARS:
            raise _BadLine(f"is longer than {MAX_ROW_CHARS} characters (an unclosed quote?); fix the row")
        return line


class _BadLine(Exception):
    pass


def _records(text: str):
    """``(first line number, fields or None, reason or None)`` per CSV record, resuming after a bad line."""
    lines = io.StringIO(text, newline="").readlines()
    pos = 0
    while pos < len(lines):
        feed = _Lines(lines, pos)
        try:
            for fields in csv.reader(feed):
                yield feed.start, fields, None
                feed.fresh = True
            return
        except _BadLine as e:
            yield feed.start, None, str(e)
        except csv.Error as e:
            yield feed.start, None, f"is not valid CSV ({e})"
        pos = feed.pos


def _manifest_row(path: Path, header: list[str], fields: list[str], base: Path, root):
    """``(item, None, None)`` for a good row, ``(None, reason, error type)`` for a bad one."""

    def bad(reason: str, kind: type[Exception] = ConfigError):
        return None, reason, kind

    if len(fields) != len(header):
        return bad(f"has {len(fields)} fields; the header has {len(header)} ({','.join(header)})")
    row = dict(zip(header, fields, strict=True))
    given, label = row["path"], row["label"]
    if not given.strip():
        return bad("has an empty path")
    if not label.strip():
        return bad(f"{given!r} has an empty label")
    try:
        resolved = (path.parent / given).resolve()
    except (OSError, ValueError, RuntimeError) as e:
        return bad(f"path {given!r} cannot be resolved ({e})")
    if resolved != base and base not in resolved.parents:
        where = "the manifest's folder" if root is None else "root"
        return bad(f"path {given!r} resolves outside {where} {str(base)!r}; move the clip there or pass "
                   "root=<a folder holding every clip> (read_manifest/check_manifest)", UnsafeSource)
    item: dict = {"path": str(resolved), "label": label}
    for k in FACTORS:
        value = row.get(k)
        if value in (None, ""):
            continue
        try:
            number = float(value)
        except ValueError:
            return bad(f"{k} {value!r} is not a number")
        if not math.isfinite(number):
            return bad(f"{k} {value!r} is not a finite number")
        item[k] = number
    return item, None, None
