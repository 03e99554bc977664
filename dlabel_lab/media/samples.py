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
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError
from .manifest import FACTORS, check_manifest, read_manifest  # noqa: F401 - re-exported here as before

__all__ = [
    "Drift",
    "FACTORS",
    "make_shape_clips",
    "load_digit_clips",
    "read_manifest",
    "check_manifest",
    "write_sample_data",
    "make_tutorial_clips",
]



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


#: Clip counts of :func:`make_tutorial_clips`: full size, and the quick size the tests run.
TUTORIAL_SIZES = {"full": {"train": 96, "lab_test": 48, "operational": 96},
                  "fast": {"train": 24, "lab_test": 12, "operational": 24}}  # fmt: skip


def make_tutorial_clips(out_dir: str | os.PathLike, *, fast: bool = False, seed: int = 0) -> dict[str, Path]:
    """Write the three clip sets the tutorials use; return their ``labels.csv`` paths.

    - ``train``: clean lab clips, to train the first model on;
    - ``lab_test``: more clean lab clips, never trained on, to check that the
      model has learned the lab data;
    - ``operational``: clips drifted as in operation (the ``"operational``
      preset: darker, smaller, more clutter and noise), scored and labelled
      through the endpoints.

    Full size is 96 / 48 / 96 clips (a model a researcher would believe:
    trained on enough clips to generalise in the lab); ``fast=True`` writes
    24 / 12 / 24 for quick test runs. Same arguments, same files.

    Args:
        out_dir: Folder to write into (``train/``, ``lab_test/``, ``operational/``).
        fast: The quick size.
        seed: Seed of the three sets (they use ``seed``, ``seed + 1``, ``seed + 2``).

    Example:
        >>> sets = make_tutorial_clips("runs/tutorial_data", fast=True)  # doctest: +SKIP
        >>> sorted(sets)  # doctest: +SKIP
        ['lab_test', 'operational', 'train']
    """
    n = TUTORIAL_SIZES["fast" if fast else "full"]
    out = Path(out_dir)
    return {
        "train": make_shape_clips(out / "train", n["train"], seed=seed),
        "lab_test": make_shape_clips(out / "lab_test", n["lab_test"], seed=seed + 1),
        "operational": make_shape_clips(out / "operational", n["operational"], seed=seed + 2, drift="operational"),
    }


if __name__ == "__main__":  # python -m dlabel_lab.samples [ROOT]
    import sys

    for k, v in write_sample_data(sys.argv[1] if len(sys.argv) > 1 else "data").items():
        print(f"{k}: {v}")
