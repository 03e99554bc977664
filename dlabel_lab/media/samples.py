"""Sample data: synthetic shape clips and moving handwritten digits.

``make_*`` functions generate data; ``load_*`` functions build clips from
data that ships inside an installed package (scikit-learn's handwritten
digits). Nothing is downloaded. Every function writes real video files and a
``labels.csv`` manifest with columns ``path`` (relative to the manifest),
``label`` and the generating factors, so that operational drift is known by
construction.

Example:
    >>> import dlabel_lab as dl
    >>> manifest = dl.make_shape_clips("clips/train", 12, seed=0)  # doctest: +SKIP
    >>> drifted = dl.make_shape_clips("clips/ops", 12, seed=1, drift="operational")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import math
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError, UnsafeSource

__all__ = [
    "Drift",
    "FACTORS",
    "make_shape_clips",
    "load_digit_clips",
    "read_manifest",
    "check_manifest",
    "write_sample_data",
]

#: The generating factors written to every manifest, in column order.
FACTORS = ("brightness", "scale", "speed", "clutter", "noise")


@dataclass(frozen=True)
class Drift:
    """How operational clips differ from training clips.

    Multipliers (``brightness``, ``scale``, ``speed``) scale the factor drawn
    for the clean distribution; ``clutter`` and ``noise`` are added.

    Example:
        >>> Drift.preset("operational").brightness
        0.45
    """

    brightness: float = 1.0
    scale: float = 1.0
    speed: float = 1.0
    clutter: float = 0.0
    noise: float = 0.0

    @classmethod
    def preset(cls, name: str) -> Drift:
        """Named drifts: ``"operational"`` (darker, smaller, more clutter and
        noise), ``"dark"``, ``"small"``, ``"cluttered"``."""
        presets = {
            "operational": cls(brightness=0.45, scale=0.6, clutter=0.35, noise=0.04),
            "dark": cls(brightness=0.4),
            "small": cls(scale=0.55),
            "cluttered": cls(clutter=0.5, noise=0.05),
        }
        if name not in presets:
            raise ConfigError(f"unknown drift preset {name!r}; choose one of {sorted(presets)} or pass a Drift")
        return presets[name]

    @classmethod
    def coerce(cls, drift: str | dict | Drift | None) -> Drift:
        """Accept a preset name, a dict of fields, a Drift or ``None``."""
        if drift is None:
            return cls()
        if isinstance(drift, Drift):
            return drift
        if isinstance(drift, str):
            return cls.preset(drift)
        if isinstance(drift, dict):
            unknown = set(drift) - set(FACTORS)
            if unknown:
                raise ConfigError(f"unknown drift factors {sorted(unknown)}; use {list(FACTORS)}")
            return cls(**drift)
        raise ConfigError(f"drift must be None, a preset name, a dict or a Drift, got {type(drift).__name__}")


def _draw_factors(rng: np.random.Generator, drift: Drift) -> dict[str, float]:
    return {
        "brightness": float(np.clip(rng.uniform(0.75, 1.0) * drift.brightness, 0.05, 1.0)),
        "scale": float(np.clip(rng.uniform(0.28, 0.42) * drift.scale, 0.06, 0.6)),
        "speed": float(rng.uniform(0.5, 2.0) * drift.speed),
        "clutter": float(np.clip(rng.uniform(0.0, 0.15) + drift.clutter, 0.0, 1.0)),
        "noise": float(np.clip(rng.uniform(0.0, 0.02) + drift.noise, 0.0, 0.5)),
    }


def _shape_mask(label: str, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    if label == "circle":
        cv2.circle(mask, (int(round(cx)), int(round(cy))), max(1, int(round(r))), 255, -1, cv2.LINE_AA)
        return mask
    if label == "square":
        k = 4
        base = np.pi / 4
    elif label == "triangle":
        k = 3
        base = -np.pi / 2
    else:  # any other class: a regular polygon with as many sides as the name is long (>= 5)
        k = max(5, len(label))
        base = 0.0
    t = base + angle + np.arange(k) * 2 * np.pi / k
    pts = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255, cv2.LINE_AA)
    return mask


def _background(rng: np.random.Generator, size: int, f: dict[str, float]) -> np.ndarray:
    level = 40.0 * f["brightness"]
    bg = np.full((size, size, 3), level, np.float32)
    # clutter: static distractor strokes and blobs (never the class shape itself)
    n_items = int(round(f["clutter"] * 14))
    for _ in range(n_items):
        colour = tuple(float(c) for c in rng.uniform(60, 200, 3) * f["brightness"])
        if rng.random() < 0.6:
            p1 = tuple(int(v) for v in rng.integers(0, size, 2))
            p2 = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.line(bg, p1, p2, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
        else:
            c = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.ellipse(bg, c, (int(rng.integers(1, 4)), int(rng.integers(1, 4))), float(rng.uniform(0, 180)),
                        0, 360, colour, -1, cv2.LINE_AA)
    return bg


def _render_clip(
    rng: np.random.Generator,
    f: dict[str, float],
    frames: int,
    size: int,
    stamp: Callable[[int, float, float, float], np.ndarray],
) -> list[np.ndarray]:
    """Render a moving object over a cluttered background; ``stamp`` gives its mask."""
    bg = _background(rng, size, f)
    r = f["scale"] * size / 2
    cx, cy = rng.uniform(r, size - r, 2)
    heading = rng.uniform(0, 2 * np.pi)
    vx, vy = f["speed"] * np.cos(heading), f["speed"] * np.sin(heading)
    colour = rng.uniform(150, 255, 3) * f["brightness"]
    spin = rng.uniform(-0.1, 0.1)
    out = []
    for t in range(frames):
        mask = stamp(t, cx, cy, spin * t).astype(np.float32)[..., None] / 255.0
        img = bg * (1 - mask) + colour[None, None, :] * mask
        if f["noise"] > 0:
            img = img + rng.normal(0, f["noise"] * 255, img.shape)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
        cx, cy = cx + vx, cy + vy
        if not r <= cx <= size - r:
            vx = -vx
            cx = float(np.clip(cx, r, size - r))
        if not r <= cy <= size - r:
            vy = -vy
            cy = float(np.clip(cy, r, size - r))
    return out


def _write_video(path: Path, frames: Sequence[np.ndarray], fps: float) -> None:
    fourcc = "mp4v" if path.suffix == ".mp4" else "MJPG"
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    if not writer.isOpened():
        raise ConfigError(f"OpenCV cannot write {path} with codec {fourcc}")
    try:
        for fr in frames:
            writer.write(cv2.cvtColor(fr, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def _write_manifest(out_dir: Path, rows: list[dict]) -> Path:
    manifest = out_dir / "labels.csv"
    cols = ["path", "label", *FACTORS]
    tmp = manifest.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for row in rows:
            w.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in cols})
    os.replace(tmp, manifest)
    return manifest


def _check_common(n: int, frames: int, size: int, fmt: str) -> None:
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a positive int, got {n!r}")
    if frames < 2:
        raise ConfigError(f"frames must be >= 2, got {frames!r}")
    if size < 16:
        raise ConfigError(f"size must be >= 16 pixels, got {size!r}")
    if fmt not in ("mp4", "avi"):
        raise ConfigError(f"fmt must be 'mp4' (mp4v) or 'avi' (MJPG), got {fmt!r}")


def make_shape_clips(
    out_dir: str | os.PathLike,
    n: int,
    *,
    classes: Sequence[str] = ("circle", "square", "triangle"),
    frames: int = 16,
    size: int = 64,
    seed: int = 0,
    drift: str | dict | Drift | None = None,
    fmt: str = "mp4",
    fps: float = 12.0,
) -> Path:
    """Write ``n`` clips of a moving shape and a ``labels.csv`` manifest.

    Each clip shows one shape (its class) moving and bouncing over a
    background with clutter and noise. The factors (brightness, object scale,
    speed, clutter, noise) are drawn per clip, shifted by ``drift``, and
    written to the manifest. Same arguments, same files.

    Args:
        out_dir: Folder to write into (created).
        n: Number of clips; classes are balanced (``i % len(classes)``).
        classes: Class names; ``circle``, ``square`` and ``triangle`` have
            their shapes, other names get polygons.
        frames: Frames per clip.
        size: Frame width and height in pixels.
        seed: Random seed.
        drift: ``None``, a :class:`Drift`, a dict of its fields or a preset
            name such as ``"operational"``.
        fmt: ``"mp4"`` (mp4v codec) or ``"avi"`` (MJPG codec).
        fps: Declared frame rate.

    Returns:
        The path of ``labels.csv``.

    Example:
        >>> make_shape_clips("clips/train", 6, seed=0)  # doctest: +SKIP
        PosixPath('clips/train/labels.csv')
    """
    _check_common(n, frames, size, fmt)
    classes = [str(c) for c in classes]
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ConfigError(f"classes must be at least two distinct names, got {classes!r}")
    d = Drift.coerce(drift)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        label = classes[i % len(classes)]
        f = _draw_factors(rng, d)
        r = f["scale"] * size / 2

        def stamp(t, cx, cy, angle, label=label, r=r):
            return _shape_mask(label, size, cx, cy, r, angle)

        clip = _render_clip(rng, f, frames, size, stamp)
        name = f"clip_{i:04d}.{fmt}"
        _write_video(out / name, clip, fps)
        rows.append({"path": name, "label": label, **f})
    return _write_manifest(out, rows)


def load_digit_clips(
    out_dir: str | os.PathLike,
    n: int,
    *,
    frames: int = 16,
    size: int = 64,
    seed: int = 0,
    drift: str | dict | Drift | None = None,
    fmt: str = "mp4",
    fps: float = 12.0,
) -> Path:
    """Write ``n`` clips of a real handwritten digit moving over clutter.

    The digits are scikit-learn's bundled 8x8 handwritten digits (1,797 real
    samples from 43 writers; no download), upscaled to the drawn object scale.
    Ten classes, ``"0"`` to ``"9"``; same manifest format as
    :func:`make_shape_clips`.

    Example:
        >>> load_digit_clips("clips/digits", 20, seed=0)  # doctest: +SKIP
        PosixPath('clips/digits/labels.csv')
    """
    from sklearn.datasets import load_digits

    _check_common(n, frames, size, fmt)
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    targets = digits.target
    by_class = {c: np.flatnonzero(targets == c) for c in range(10)}
    d = Drift.coerce(drift)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 10])
        c = i % 10
        img = images[int(rng.choice(by_class[c]))]
        f = _draw_factors(rng, d)
        side = max(4, int(round(f["scale"] * size * 1.4)))
        glyph = cv2.resize(img, (side, side), interpolation=cv2.INTER_CUBIC).clip(0, 1)

        def stamp(t, cx, cy, angle, glyph=glyph, side=side):
            mask = np.zeros((size, size), np.float32)
            x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
            xs, ys = max(0, x0), max(0, y0)
            xe, ye = min(size, x0 + side), min(size, y0 + side)
            mask[ys:ye, xs:xe] = glyph[ys - y0 : ye - y0, xs - x0 : xe - x0]
            return mask * 255.0

        clip = _render_clip(rng, f, frames, size, stamp)
        name = f"digit_{i:04d}.{fmt}"
        _write_video(out / name, clip, fps)
        rows.append({"path": name, "label": str(c), **f})
    return _write_manifest(out, rows)


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


def write_sample_data(root: str | os.PathLike = "data") -> dict[str, Path]:
    """(Re)generate the committed sample under ``root``.

    Writes ``shapes/train`` (24 clean clips), ``shapes/operational`` (24
    drifted clips) and ``digits/train`` (20 digit clips), all 64x64, 16
    frames, mp4v.

    Example:
        >>> write_sample_data("data")  # doctest: +SKIP
    """
    root = Path(root)
    return {
        "shapes/train": make_shape_clips(root / "shapes" / "train", 24, seed=0),
        "shapes/operational": make_shape_clips(root / "shapes" / "operational", 24, seed=1, drift="operational"),
        "digits/train": load_digit_clips(root / "digits" / "train", 20, seed=0),
    }


if __name__ == "__main__":  # python -m dlabel_lab.samples [ROOT]
    import sys

    for k, v in write_sample_data(sys.argv[1] if len(sys.argv) > 1 else "data").items():
        print(f"{k}: {v}")
