"""Model quality: one report per model version, measured on this machine and stored with the version.

:func:`model_report` answers "how good, how fast, how big, how robust is this
version?" on held-out labelled clips of the store:

- accuracy with its exact (Clopper–Pearson) interval, per-class precision,
  recall, F1 and support, and calibration (expected calibration error over
  15 bins, a reliability diagram), all from :func:`dlabel_lab.evaluate`
  (scikit-learn, torchmetrics) on probabilities computed here from the raw
  clips;
- inference latency at batch 1 and batch N and throughput (clips/s), the
  median of repeated timed forward passes of the model in eval mode;
- training cost from the execution log (the run that trained the version:
  wall seconds, epochs where recorded);
- size: parameters and checkpoint bytes;
- robustness: a suite of corruptions (brightness, contrast, Gaussian noise,
  Gaussian blur, JPEG compression, frame drops, temporal jitter), each at 5
  severities, applied to the decoded frames before the model's normalisation;
  accuracy per (corruption, severity), the mean corruption accuracy and its
  ratio to the clean accuracy.

The :class:`ModelReport` holds tables (pandas), draws figures (matplotlib),
writes a self-contained HTML page and a JSON-ready dict; it is logged with the
version (``store.log_metrics(..., split="model-report")``) and read back with
:func:`load_model_report`. :func:`compare_reports` puts two reports side by side.

Severities follow ImageNet-C (Hendrycks and Dietterich, 2019) where a frame
corruption has a counterpart there: the same brightness shifts, contrast
factors, noise levels and JPEG qualities, and blur sigmas scaled from 224
pixels to the model's frame size. Frame drops and temporal jitter act on the
frame indices the model's clip spec samples: a dropped frame shows the last
frame delivered before it; jitter moves each sampled frame by up to a
fraction of the gap between sampled frames. Every random draw is seeded by
``(seed, scoring id, corruption, severity)``, so a report is reproducible and
does not depend on the order of the clips.

Example:
    >>> report = model_report(store, "shapes-v2")  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
    >>> report.to_html("shapes-v2.html")  # doctest: +SKIP
    >>> compare_reports(load_model_report(store, "shapes-v1"), report)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import os
import platform
import statistics
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..errors import ConfigError, MediaError, StoreError, UnknownRecord
from ..evaluation import _clean, evaluate
from ..labeling.autolabel import exact_interval
from ..media.video import ClipSpec, read_checked_file, to_tensor
from ..models.checkpoint import file_sha256
from ..models.onnx_model import load_onnx_version
from ..models.registry import is_onnx, load_version
from ..plots import ReliabilityDisplay
from ..serving.threads import check_num_threads, default_num_threads, torch_threads
from ..train.datasets import lineage_training_rows

__all__ = [
    "CORRUPTIONS",
    "DEFAULT_SUITE",
    "REPORT_SPLIT",
    "Corruption",
    "ModelReport",
    "compare_html",
    "compare_reports",
    "corrupt_frames",
    "corrupt_indices",
    "load_model_report",
    "model_report",
]

FORMAT_VERSION = 1
#: The ``split`` under which :func:`model_report` logs its result with the version.
REPORT_SPLIT = "model-report"
N_BINS = 15
_TRAIN_KINDS = ("train", "train_initial", "retrain")
_HOLDOUT_KEYS = ("holdout_ids", "validation_ids", "val_ids", "heldout_ids")


# --- corruptions -------------------------------------------------------------------------
@dataclass(frozen=True)
class Corruption:
    """A corruption of decoded clips with one parameter per severity.

    Attributes:
        name: Its name in tables and plots.
        levels: The parameter at severity 1, 2, ...; severity 0 is always the
            clean clip.
        temporal: ``False``: ``apply(frames, level, rng)`` changes the uint8
            RGB frames ``(T, H, W, 3)`` the clip spec decoded. ``True``:
            ``apply(indices, frame_count, level, rng)`` returns the frame
            indices to show instead of the sampled ones.
        apply: The function.
        description: What the parameter means.

    Example:
        >>> CORRUPTIONS["jpeg"].levels
        (25, 18, 15, 10, 7)
    """

    name: str
    levels: tuple[float, ...]
    temporal: bool
    apply: Callable[..., Any] = field(repr=False, compare=False)
    description: str = ""

    def to_dict(self) -> dict:
        """Name, levels, kind and description (the function is not stored)."""
        return {"name": self.name, "levels": list(self.levels), "temporal": self.temporal,
                "description": self.description}


def _video(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> uint8 ``(T, 3, H, W)`` (torchvision's video layout)."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)


def _frames(video: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(video.permute(0, 2, 3, 1).numpy())


def _brightness(frames: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """ImageNet-C brightness: add ``level`` to the HSV value channel (0..1 scale)."""
    out = np.empty_like(frames)
    for t, frame in enumerate(frames):
        hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV_FULL)
        hsv[..., 2] = cv2.add(hsv[..., 2], int(round(level * 255)))  # saturating
        out[t] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)
    return out


def _contrast(frames: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Blend each frame with its mean grey level (torchvision ``adjust_contrast``, factor ``level``)."""
    from torchvision.transforms.v2 import functional as F

    return _frames(F.adjust_contrast(_video(frames), float(level)))


def _gaussian_noise(frames: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise of standard deviation ``level`` on the 0..1 scale, drawn from ``rng``."""
    noisy = frames.astype(np.float32) / 255.0 + rng.standard_normal(frames.shape, dtype=np.float32) * level
    return (np.clip(noisy, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _gaussian_blur(frames: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur of sigma ``level`` pixels at 224 px, scaled to the frame (torchvision ``gaussian_blur``)."""
    from torchvision.transforms.v2 import functional as F

    h, w = frames.shape[1:3]
    sigma = float(level) * min(h, w) / 224.0
    k = min(2 * math.ceil(3 * sigma) + 1, 2 * ((min(h, w) - 1) // 2) + 1)
    if k < 3:
        return frames.copy()
    return _frames(F.gaussian_blur(_video(frames), [k, k], [sigma, sigma]))


def _jpeg(frames: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """JPEG compression of every frame at quality ``level`` (OpenCV's libjpeg encoder and decoder)."""
    out = np.empty_like(frames)
    for t, frame in enumerate(frames):
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(level)])
        if not ok:
            raise ConfigError(f"OpenCV could not JPEG-encode a {frame.shape} frame at quality {level}")
        out[t] = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out


def _frame_drop(indices: np.ndarray, frame_count: int, level: float, rng: np.random.Generator) -> np.ndarray:
    """Each frame of the stream is lost with probability ``level``; a lost frame shows the last one delivered."""
    kept = rng.random(frame_count) >= level
    kept[0] = True
    last = np.maximum.accumulate(np.where(kept, np.arange(frame_count), 0))
    return last[indices]


def _temporal_jitter(indices: np.ndarray, frame_count: int, level: float, rng: np.random.Generator) -> np.ndarray:
    """Move each sampled frame by a uniform whole number of frames up to ``level`` x the sampling gap."""
    gap = frame_count / max(len(indices), 1)
    reach = max(1, int(round(level * gap)))
    shifted = indices + rng.integers(-reach, reach + 1, size=len(indices))
    return np.clip(shifted, 0, frame_count - 1)


#: The built-in corruptions by name (severity ``s`` uses ``levels[s - 1]``).
CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in (
    Corruption("brightness", (0.1, 0.2, 0.3, 0.4, 0.5), False, _brightness,
               "added to the HSV value (0..1), as ImageNet-C"),
    Corruption("contrast", (0.4, 0.3, 0.2, 0.1, 0.05), False, _contrast,
               "contrast factor (1 = unchanged), as ImageNet-C"),
    Corruption("gaussian_noise", (0.08, 0.12, 0.18, 0.26, 0.38), False, _gaussian_noise,
               "noise standard deviation on the 0..1 scale, as ImageNet-C"),
    Corruption("gaussian_blur", (1.0, 2.0, 3.0, 4.0, 6.0), False, _gaussian_blur,
               "blur sigma in pixels at 224 px (scaled to the frame size), as ImageNet-C"),
    Corruption("jpeg", (25, 18, 15, 10, 7), False, _jpeg, "JPEG quality of each frame, as ImageNet-C"),
    Corruption("frame_drop", (0.2, 0.4, 0.6, 0.8, 0.9), True, _frame_drop,
               "probability that a frame of the stream is lost (the last delivered frame shows instead)"),
    Corruption("temporal_jitter", (0.25, 0.5, 0.75, 1.0, 1.5), True, _temporal_jitter,
               "largest shift of a sampled frame, as a fraction of the gap between sampled frames"),
)}
#: The names :func:`model_report` applies by default: every built-in corruption.
DEFAULT_SUITE: tuple[str, ...] = tuple(CORRUPTIONS)


def _corruption(value: str | Corruption) -> Corruption:
    if isinstance(value, Corruption):
        return value
    if isinstance(value, str) and value in CORRUPTIONS:
        return CORRUPTIONS[value]
    raise ConfigError(f"unknown corruption {value!r}; use one of {sorted(CORRUPTIONS)} or a Corruption")


def _rng(seed: int, key: str, name: str, severity: int) -> np.random.Generator:
    """One generator per (seed, clip, corruption, severity): independent of the order clips come in."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode()), zlib.crc32(name.encode()), int(severity)])


def _check_severity(c: Corruption, severity: int) -> None:
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) \
            or not 0 <= severity <= len(c.levels):
        raise ConfigError(f"severity of {c.name} must be an int from 0 (clean) to {len(c.levels)}, got {severity!r}")


def corrupt_frames(frames: np.ndarray, corruption: str | Corruption, severity: int, *, seed: int = 0,
                   key: str = "") -> np.ndarray:
    """Apply a frame corruption to decoded uint8 RGB frames ``(T, H, W, 3)``; severity 0 returns them unchanged.

    Args:
        frames: The frames (as :func:`~dlabel_lab.read_clip` returns them).
        corruption: A name of :data:`CORRUPTIONS` (not a temporal one) or a :class:`Corruption`.
        severity: 0 (clean) to 5.
        seed: Seed of the random draws (Gaussian noise).
        key: Mixed into the seed (the report uses the scoring id).

    Raises:
        ConfigError: Unknown or temporal corruption, severity out of range, frames not uint8 ``(T, H, W, 3)``.

    Example:
        >>> clean = np.full((2, 8, 8, 3), 100, np.uint8)
        >>> bool((corrupt_frames(clean, "brightness", 5) > clean).all())
        True
        >>> corrupt_frames(clean, "gaussian_noise", 0) is clean
        True
    """
    c = _corruption(corruption)
    if c.temporal:
        raise ConfigError(f"{c.name} changes which frames are shown; apply it with corrupt_indices")
    _check_severity(c, severity)
    arr = np.asarray(frames)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ConfigError(f"frames must be uint8 RGB shaped (T, H, W, 3), got {arr.dtype} {arr.shape}")
    if severity == 0:
        return frames
    out = np.asarray(c.apply(arr, c.levels[severity - 1], _rng(seed, key, c.name, severity)))
    if out.shape != arr.shape or out.dtype != np.uint8:
        raise ConfigError(f"corruption {c.name} returned {out.dtype} {out.shape}, not uint8 {arr.shape}")
    return out


def corrupt_indices(indices: Sequence[int], frame_count: int, corruption: str | Corruption, severity: int, *,
                    seed: int = 0, key: str = "") -> list[int]:
    """Apply a temporal corruption to sampled frame indices; severity 0 returns them unchanged.

    Args:
        indices: The frame indices the clip spec sampled.
        frame_count: Frames in the clip.
        corruption: ``"frame_drop"``, ``"temporal_jitter"`` or a temporal :class:`Corruption`.
        severity: 0 (clean) to 5.
        seed: Seed of the random draws.
        key: Mixed into the seed (the report uses the scoring id).

    Example:
        >>> corrupt_indices([0, 5, 10, 15], 16, "frame_drop", 0)
        [0, 5, 10, 15]
        >>> all(0 <= i <= 15 for i in corrupt_indices([0, 5, 10, 15], 16, "temporal_jitter", 5))
        True
    """
    c = _corruption(corruption)
    if not c.temporal:
        raise ConfigError(f"{c.name} changes the frames' pixels; apply it with corrupt_frames")
    _check_severity(c, severity)
    idx = np.asarray(list(indices), dtype=np.int64)
    if frame_count < 1 or (idx.size and (idx.min() < 0 or idx.max() >= frame_count)):
        raise ConfigError(f"indices must lie in the clip's {frame_count} frames, got {idx.tolist()}")
    if severity == 0:
        return idx.tolist()
    out = np.asarray(c.apply(idx, int(frame_count), c.levels[severity - 1], _rng(seed, key, c.name, severity)))
    out = np.clip(out.astype(np.int64), 0, frame_count - 1)
    if out.shape != idx.shape:
        raise ConfigError(f"corruption {c.name} returned {out.shape} indices for {idx.shape}")
    return out.tolist()


# --- the report ----------------------------------------------------------------------------
@dataclass
class ModelReport:
    """The quality of one model version, as :func:`model_report` measured it.

    Attributes:
        model_version: The version.
        classes: Its class names.
        metrics: Headline numbers: ``n``, ``n_labelled``, ``accuracy``,
            ``accuracy_low``/``accuracy_high`` (the exact interval at
            ``confidence_level``), ``macro_f1``, ``ece``, ``latency_ms_batch1``,
            ``latency_ms_batchN``, ``throughput_batch1``/``throughput_batchN``
            (clips/s), ``batch_size``, ``preprocess_ms`` (decode and normalise
            one clip, median), ``parameters``, ``checkpoint_bytes``,
            ``train_wall_s``, ``train_epochs``, ``clean_accuracy`` (of the
            robustness pass), ``mean_corruption_accuracy``, ``relative_robustness``.
        tables: ``summary``, ``per_class``, ``confusion``, ``reliability``,
            ``latency``, ``training``, ``size``, ``robustness`` (one row per
            corruption and severity), ``robustness_summary`` (one per
            corruption), ``corruptions`` (the suite) and ``predictions`` (one
            row per clip, with ``probabilities``).
        held_out: ``source`` (where the clips came from, in words),
            ``scoring_ids`` and ``notes`` (clips left out and why).
        environment: Where it was measured (torch version, threads, CPU).
        settings: The arguments that shaped it (suite, severities, seed, batch, repeats).
        created_at: UTC time of the report (ISO 8601).

    Example:
        >>> report = model_report(store, "shapes-v1")  # doctest: +SKIP
        >>> report.tables["robustness_summary"]  # doctest: +SKIP
    """

    model_version: str
    classes: list[str]
    metrics: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    held_out: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""

    # --- numbers -------------------------------------------------------------------------
    @property
    def accuracy(self) -> float:
        """Accuracy on the labelled held-out clips."""
        return float(self.metrics["accuracy"])

    @property
    def interval(self) -> tuple[float, float]:
        """The exact (Clopper–Pearson) interval of the accuracy."""
        return float(self.metrics["accuracy_low"]), float(self.metrics["accuracy_high"])

    @property
    def ece(self) -> float | None:
        """Expected calibration error (top-label, ``N_BINS`` equal-width bins)."""
        return self.metrics.get("ece")

    @property
    def mean_corruption_accuracy(self) -> float | None:
        """Accuracy averaged over every corruption and severity > 0 (``None`` without a suite)."""
        return self.metrics.get("mean_corruption_accuracy")

    @property
    def relative_robustness(self) -> float | None:
        """Mean corruption accuracy / clean accuracy (``None`` when either is missing or clean is 0)."""
        return self.metrics.get("relative_robustness")

    def summary(self) -> str:
        """A few lines of text with the headline numbers.

        Example:
            >>> print(report.summary())  # doctest: +SKIP
            Model report of shapes-v2: 12 clips (held-out ids recorded at registration (holdout_ids))
            accuracy 0.833 [0.516, 0.979] (95% exact), macro F1 0.829, ECE 0.142 (15 bins)
            ...
        """
        m = self.metrics
        lines = [f"Model report of {self.model_version}: {m['n']} clips ({self.held_out.get('source', '?')})"]
        level = int(round(100 * m.get("confidence_level", 0.95)))
        lines.append(f"accuracy {_f(m['accuracy'])} [{_f(m['accuracy_low'])}, {_f(m['accuracy_high'])}] "
                     f"({level}% exact, {m['n_labelled']} labelled), macro F1 {_f(m.get('macro_f1'))}, "
                     f"ECE {_f(m.get('ece'))} ({m.get('n_bins', N_BINS)} bins)")
        if m.get("latency_ms_batch1") is not None:
            lines.append(
                f"latency: batch 1 {_f(m['latency_ms_batch1'], 2)} ms ({_f(m['throughput_batch1'], 1)} clips/s), "
                f"batch {m['batch_size']} {_f(m['latency_ms_batchN'], 2)} ms ({_f(m['throughput_batchN'], 1)} "
                f"clips/s); decode+preprocess {_f(m.get('preprocess_ms'), 2)} ms/clip; "
                f"{self.environment.get('threads', '?')} thread(s) on {self.environment.get('device', 'cpu')}")
        size = f"{m['parameters']:,} parameters" if m.get("parameters") is not None else "parameters unknown"
        ckpt = f", {m['checkpoint_bytes']:,} bytes on disk" if m.get("checkpoint_bytes") is not None else ""
        lines.append(f"size: {size}{ckpt}")
        if m.get("train_wall_s") is not None:
            lines.append(f"training: {_f(m['train_wall_s'], 1)} s wall, {m.get('train_epochs')} epochs "
                         f"({m.get('train_source')})")
        else:
            lines.append(f"training: {m.get('train_source', 'not recorded')}")
        if m.get("mean_corruption_accuracy") is not None:
            rs = self.tables.get("robustness_summary")
            worst = ""
            if rs is not None and len(rs):
                row = rs.sort_values("mean_accuracy", kind="stable").iloc[0]
                worst = f"; worst {row['corruption']} ({_f(row['mean_accuracy'])})"
            lines.append(f"robustness: mean corruption accuracy {_f(m['mean_corruption_accuracy'])} vs clean "
                         f"{_f(m.get('clean_accuracy'))} (relative {_f(m.get('relative_robustness'))}) over "
                         f"{m.get('n_corruptions')} corruptions x {m.get('n_severities')} severities on "
                         f"{m.get('n_robustness_clips', m['n'])} clips{worst}")
        for note in self.held_out.get("notes", []):
            lines.append(f"note: {note}")
        return "\n".join(lines)

    # --- figures -------------------------------------------------------------------------
    def figures(self) -> dict[str, Any]:
        """Matplotlib figures drawn from the tables: ``reliability``, ``per_class`` and ``robustness``.

        Figures are built with the object-oriented API (no pyplot state), so
        nothing stays open; Jupyter shows them when returned from a cell.

        Example:
            >>> figs = report.figures()  # doctest: +SKIP
            >>> figs["robustness"].savefig("robustness.png")  # doctest: +SKIP
        """
        from matplotlib.figure import Figure

        figs: dict[str, Any] = {}
        rel = self.tables.get("reliability")
        if rel is not None and len(rel):
            fig = Figure(figsize=(4.5, 4.5), layout="constrained")
            ReliabilityDisplay(bins=rel, ece=float(self.metrics.get("ece") or 0.0)).plot(ax=fig.add_subplot())
            figs["reliability"] = fig
        pc = self.tables.get("per_class")
        if pc is not None and len(pc):
            fig = Figure(figsize=(max(4.5, 0.9 * len(pc) + 2), 3.8), layout="constrained")
            ax = fig.add_subplot()
            x = np.arange(len(pc))
            for k, metric in enumerate(("precision", "recall", "f1")):
                ax.bar(x + (k - 1) * 0.27, pc[metric].astype(float), width=0.27, label=metric)
            ax.set_xticks(x, [_plain(c) for c in pc["class"]], rotation=30 if len(pc) > 4 else 0, ha="right"
                          if len(pc) > 4 else "center")
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("score")
            ax.set_title(_plain(f"per class ({self.model_version})"))
            ax.legend(loc="lower right", fontsize="small")
            figs["per_class"] = fig
        rb = self.tables.get("robustness")
        if rb is not None and len(rb):
            grid = rb.pivot(index="corruption", columns="severity", values="accuracy")
            grid = grid.reindex([c for c in dict.fromkeys(rb["corruption"])])
            fig = Figure(figsize=(1.0 * grid.shape[1] + 3.2, 0.45 * grid.shape[0] + 1.6), layout="constrained")
            ax = fig.add_subplot()
            im = ax.imshow(grid.to_numpy(dtype=float), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
            ax.set_xticks(range(grid.shape[1]), [str(s) for s in grid.columns])
            ax.set_yticks(range(grid.shape[0]), [_plain(c) for c in grid.index])
            ax.set_xlabel("severity")
            for i in range(grid.shape[0]):
                for j in range(grid.shape[1]):
                    v = grid.iat[i, j]
                    if np.isfinite(v):
                        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                                color="black" if v > 0.6 else "white")
            fig.colorbar(im, ax=ax, label="accuracy")
            ax.set_title(f"accuracy under corruption (clean {_f(self.metrics.get('clean_accuracy'))}, "
                         f"mean {_f(self.metrics.get('mean_corruption_accuracy'))})", fontsize="medium")
            figs["robustness"] = fig
        return figs

    # --- output --------------------------------------------------------------------------
    def _html_body(self, *, heading: int = 1) -> str:
        h, h2 = f"h{heading}", f"h{heading + 1}"
        e = html.escape
        figs = {name: _png(fig) for name, fig in self.figures().items()}
        parts = [f"<{h}>Model report: {e(self.model_version)}</{h}>", f"<pre>{e(self.summary())}</pre>"]

        def table(name: str, title: str, *, index: bool = False) -> None:
            df = self.tables.get(name)
            if df is not None and len(df):
                parts.append(f"<{h2}>{e(title)}</{h2}>")
                parts.append(_html_table(df, index=index))

        def image(name: str, alt: str) -> None:
            if name in figs:
                parts.append(f'<img alt="{e(alt)}" src="data:image/png;base64,{figs[name]}">')

        table("summary", "Summary")
        table("per_class", "Per class")
        image("per_class", "per-class precision, recall and F1")
        table("confusion", "Confusion (rows: user labels, columns: predictions)", index=True)
        parts.append(f"<{h2}>Calibration</{h2}>")
        image("reliability", "reliability diagram")
        table("reliability", "Reliability bins")
        table("latency", "Latency and throughput")
        table("training", "Training cost")
        table("size", "Size")
        table("robustness_summary", "Robustness")
        image("robustness", "accuracy under corruption")
        table("robustness", "Accuracy per corruption and severity")
        table("corruptions", "Corruption suite")
        pred = self.tables.get("predictions")
        if pred is not None and len(pred):
            shown = pred.drop(columns=["probabilities"], errors="ignore")
            parts.append(f"<details><summary>{len(pred)} clips: {e(self.held_out.get('source', ''))}</summary>"
                         f"{_html_table(shown)}</details>")
        env = pd.DataFrame({"item": list(self.environment), "value": [str(v) for v in self.environment.values()]})
        parts.append(f"<{h2}>Measured on</{h2}>{_html_table(env)}")
        return "\n".join(parts)

    def to_html(self, path: str | os.PathLike | None = None) -> str:
        """A self-contained HTML page: tables, and plots as base64 PNGs (no external asset, no script).

        Every text that comes from the store (class names, labels, ids,
        notes) is HTML-escaped, and the page's content security policy
        forbids scripts and any outside resource.

        Args:
            path: Also write the page here (UTF-8).

        Returns:
            The HTML text.

        Example:
            >>> page = report.to_html("shapes-v2.html")  # doctest: +SKIP
        """
        return _page(f"Model report: {self.model_version}", self._html_body(), path)

    def _repr_html_(self) -> str:  # Jupyter
        return self._html_body(heading=3)

    def to_dict(self) -> dict:
        """A JSON-ready dict (NaN as ``None``) that :meth:`from_dict` reads back.

        Example:
            >>> ModelReport.from_dict(report.to_dict()).accuracy == report.accuracy  # doctest: +SKIP
            True
        """
        return _clean({
            "format": "dlabel-model-report", "version": FORMAT_VERSION, "model_version": self.model_version,
            "classes": list(self.classes), "metrics": dict(self.metrics), "held_out": dict(self.held_out),
            "environment": dict(self.environment), "settings": dict(self.settings), "created_at": self.created_at,
            "tables": {name: _table_dict(df) for name, df in self.tables.items()},
        })

    @classmethod
    def from_dict(cls, d: dict) -> ModelReport:
        """Rebuild a report written by :meth:`to_dict`.

        Raises:
            ConfigError: Not a model report, or of another format version.
        """
        if not isinstance(d, dict) or d.get("format") != "dlabel-model-report":
            raise ConfigError("not a model report dict (written by ModelReport.to_dict)")
        if d.get("version") != FORMAT_VERSION:
            raise ConfigError(f"model report format version {d.get('version')!r} is not {FORMAT_VERSION}")
        return cls(model_version=str(d["model_version"]), classes=[str(c) for c in d["classes"]],
                   metrics=dict(d["metrics"]), tables={k: _table_from(v) for k, v in d["tables"].items()},
                   held_out=dict(d.get("held_out") or {}), environment=dict(d.get("environment") or {}),
                   settings=dict(d.get("settings") or {}), created_at=str(d.get("created_at", "")))


# --- helpers of the report's output -------------------------------------------------------
def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def _plain(text: Any, limit: int = 40) -> str:
    """Text for a matplotlib label: no mathtext (``$`` escaped), no newlines, at most ``limit`` characters."""
    s = " ".join(str(text).split())
    s = s if len(s) <= limit else s[: limit - 1] + "…"
    return s.replace("\\", "\\\\").replace("$", r"\$")


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _html_table(df: pd.DataFrame, *, index: bool = False) -> str:
    return df.to_html(index=index, escape=True, border=0, classes="table", float_format=lambda v: f"{v:.4g}",
                      na_rep="")


_STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1100px}"
          "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;"
          "text-align:right}th{background:#f3f3f3}pre{background:#f7f7f7;padding:.6em;white-space:pre-wrap}"
          "img{max-width:100%;margin:.4em 0}.pair{display:grid;grid-template-columns:1fr 1fr;gap:1.5em}")


def _page(title: str, body: str, path: str | os.PathLike | None) -> str:
    page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
            'style-src \'unsafe-inline\'">'
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")
    if path is not None:
        Path(path).write_text(page, encoding="utf-8")
    return page


def _table_dict(df: pd.DataFrame) -> dict:
    plain = isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].astype(str)
    split = out.to_dict(orient="split")
    return {"columns": [str(c) for c in split["columns"]], "data": split["data"],
            "index": None if plain else split["index"], "index_name": out.index.name}


def _table_from(d: dict) -> pd.DataFrame:
    df = pd.DataFrame(d["data"], columns=d["columns"], dtype=object).infer_objects()
    if d.get("index") is not None:
        df.index = pd.Index(d["index"], name=d.get("index_name"))
    return df


# --- measuring -----------------------------------------------------------------------------
def _probabilities(model: Any, x: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities from the endpoint interface: ``logits_and_embedding``, else logits from a call."""
    with torch.inference_mode():
        out = model.logits_and_embedding(x)[0] if hasattr(model, "logits_and_embedding") else model(x)
        logits = out if isinstance(out, torch.Tensor) else torch.as_tensor(np.asarray(out))
        return torch.softmax(logits.float(), dim=-1).cpu()


def _time_forward(model: Any, x: torch.Tensor, repeats: int) -> float:
    """Median seconds of ``repeats`` forward passes after one warm-up."""
    _probabilities(model, x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _probabilities(model, x)
        times.append(time.perf_counter() - t0)
    return float(statistics.median(times))


def _n_parameters(model: Any) -> tuple[int | None, int | None]:
    if isinstance(model, torch.nn.Module):
        params = list(model.parameters())
        return int(sum(p.numel() for p in params)), int(sum(p.numel() * p.element_size() for p in params))
    count = getattr(model, "parameter_count", None)  # an ONNX version counts its graph's weights
    n = count() if callable(count) else getattr(model, "n_parameters", None)
    return (int(n) if n is not None else None), None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _json(value: Any) -> dict:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        try:
            out = json.loads(value)
        except ValueError:
            return {}
        return out if isinstance(out, dict) else {}
    return {}


def _held_out_ids(params: dict) -> tuple[list[str] | None, str | None]:
    for where in (params, params.get("training") if isinstance(params.get("training"), dict) else {}):
        for key in _HOLDOUT_KEYS:
            ids = where.get(key)
            if isinstance(ids, list) and ids:
                return [str(i) for i in ids], key
    return None, None


def _latest_labels(store, ids: list[str]) -> pd.DataFrame:
    """scoring_id -> latest user label and its source (``None`` when unlabelled)."""
    found: dict[str, tuple[Any, Any]] = {}
    if ids:
        m = store.matched_df(scoring_ids=ids)
        for sid, label, source in zip(m["scoring_id"], m["user_label"], m["label_source"], strict=True):
            found.setdefault(str(sid), (label, source))
    for sid in ids:
        if sid not in found:
            hist = store.score_history(sid)
            latest = hist[hist["is_latest"]] if len(hist) else hist
            found[sid] = (latest["label"].iloc[-1], latest["source"].iloc[-1]) if len(latest) else (None, None)
    return pd.DataFrame({"scoring_id": ids, "user_label": [found[s][0] for s in ids],
                         "label_source": [found[s][1] for s in ids]})


def _lab_digests(store, version: str) -> set[str]:
    """sha256 of the lab clips the version's lineage was trained on (empty when unknown or gone)."""
    digests = set()
    for row in lineage_training_rows(store, version):
        try:
            digests.add(file_sha256(row["path"]))
        except OSError:
            continue
    return digests


def _select_clips(store, version: str, info: dict, scoring_ids: Sequence[str] | None,
                  labelled_only: bool) -> tuple[pd.DataFrame, str, list[str]]:
    """The clips to report on with their labels, where they came from, and notes."""
    notes: list[str] = []
    params = info.get("params") or {}
    if scoring_ids is not None:
        ids = list(dict.fromkeys(str(s) for s in scoring_ids))
        source = "the scoring ids given"
    elif is_onnx(info) and info.get("parent"):
        # a converted version is judged on the clips its PyTorch ancestor is judged on, so the two compare
        root = str(info["parent"])
        while is_onnx(store.get_model(root)) and store.get_model(root).get("parent"):
            root = str(store.get_model(root)["parent"])
        rows, source, notes = _select_clips(store, root, store.get_model(root), None, labelled_only)
        return rows, f"{source}, of {root} (the version it was converted from)", notes
    else:
        ids, key = _held_out_ids(params)
        if ids is not None:
            source = f"held-out ids recorded at registration ({key})"
        else:
            scored = store.matched_df(model_version=version).drop_duplicates("scoring_id")
            train = set(map(str, params.get("train_ids") or []))
            lab = _lab_digests(store, version)
            seen = [s not in train and h not in lab for s, h in zip(scored["scoring_id"].astype(str),
                                                                       scored["sha256"], strict=True)]
            ids = scored.loc[seen, "scoring_id"].astype(str).tolist()
            if len(ids) < len(scored):
                notes.append(f"{len(scored) - len(ids)} scored clip(s) it was trained on (by id or identical bytes) "
                             "left out")
            source = f"clips {version} scored (it records no held-out ids)"
    if not ids:
        raise ConfigError(f"no clips to report on for {version}: pass scoring_ids, or score labelled clips with it "
                          "(dl.deploy_version(store, version).score_many(paths, labels))")
    rows = _latest_labels(store, ids)
    auto = rows["label_source"].eq("auto") & rows["user_label"].notna()
    if auto.any():
        notes.append(f"{int(auto.sum())} clip(s) whose latest label is an auto-label (a model's, not a person's) "
                     "count as unlabelled")
        rows.loc[auto, "user_label"] = None
    unlabelled = rows["user_label"].isna()
    if labelled_only and unlabelled.any():
        notes.append(f"{int(unlabelled.sum())} unlabelled clip(s) left out (labelled_only=True)")
        rows = rows[~unlabelled]
    if not rows["user_label"].notna().any():
        raise ConfigError(f"none of the {len(ids)} clips ({source}) has a user label; label some of them first "
                          "(store.log_score) or pass labelled scoring_ids")
    unknown = sorted(set(rows["user_label"].dropna()) - set(info["classes"]))
    if unknown:
        notes.append(f"labels that are not classes of {version} count as errors: {unknown[:5]}")
    return rows.reset_index(drop=True), source, notes


def _training_cost(store, version: str, info: dict) -> tuple[pd.DataFrame, dict]:
    """The run of the execution log that trained ``version``, and what its registration records."""
    params = info.get("params") or {}
    training = params.get("training") if isinstance(params.get("training"), dict) else {}
    selection = params.get("selection") if isinstance(params.get("selection"), dict) else {}
    runs = store.runs()
    created = pd.Timestamp(info["created_at"]).tz_localize(None)
    run, how = None, ""
    if len(runs):
        names_it = [_json(r).get("model_version") == version or _json(r).get("version") == version
                    for r in runs["result"]]
        mine = runs[pd.Series(names_it, index=runs.index) & runs["kind"].isin(_TRAIN_KINDS)]
        if len(mine):
            run, how = mine.iloc[-1], "its result names the version"
        elif info.get("parent") is not None:
            cand = runs[(runs["kind"] == "retrain") & (runs["model_version"] == info["parent"])]
            inside = cand[(cand["started_at"] <= created) & (cand["finished_at"].isna()
                                                              | (cand["finished_at"] >= created))]
            if len(inside):
                run, how = inside.iloc[-1], "retrain of the parent that registered it"
        if run is None:
            own = runs[runs["kind"].isin(_TRAIN_KINDS) & (runs["model_version"] == version)
                       & (runs["started_at"] <= created)]
            if len(own):
                run, how = own.iloc[-1], "run of the version"
    epochs = training.get("epochs")
    n_train = None
    if isinstance(params.get("train_ids"), list):
        n_train = len(params["train_ids"]) + int(params.get("n_lab_clips") or 0)
    elif training.get("n_clips") is not None:
        n_train = int(training["n_clips"])
    facts: dict[str, Any] = {"epochs": epochs, "epochs_run": selection.get("epochs_run"),
                             "best_epoch": selection.get("best_epoch"), "n_train_clips": n_train}
    if run is not None:
        wall = None
        if pd.notna(run["finished_at"]):
            wall = float((pd.Timestamp(run["finished_at"]) - pd.Timestamp(run["started_at"])).total_seconds())
        source = f"execution log: {run['kind']} run {run['run_id']} ({how})"
        facts.update({"run_id": str(run["run_id"]), "kind": str(run["kind"]), "status": str(run["status"]),
                      "started_at": str(run["started_at"]), "finished_at": str(run["finished_at"]),
                      "wall_s": wall})
    else:
        source = "not in the execution log (the version was registered without a training run)"
        facts.update({"wall_s": None})
    facts["source"] = source
    table = pd.DataFrame({"item": list(facts), "value": ["not recorded" if v is None else str(v)
                                                         for v in facts.values()]})
    return table, facts


def model_report(
    store,
    model_version: str,
    *,
    model: Any = None,
    scoring_ids: Sequence[str] | None = None,
    labelled_only: bool = True,
    corruptions: Sequence[str | Corruption] = DEFAULT_SUITE,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    robustness_clips: int | None = None,
    latency_batch: int = 16,
    repeats: int = 5,
    num_threads: int | None = None,
    confidence: float = 0.95,
    seed: int = 0,
    progress: bool = True,
    store_result: bool = True,
) -> ModelReport:
    """Measure a model version's quality on held-out clips of the store, and log the report with the version.

    The clips: ``scoring_ids`` when given; else the held-out ids the version
    recorded at registration (``retrain`` records ``holdout_ids``); else the
    clips the version scored, less its training ids (the report says which).
    Labels are each clip's latest user score; an auto-label counts as no
    label. Every clip is decoded from the store (checked against its sha256)
    with the model's clip spec, so the probabilities are the model's own on
    this machine, also for a clip it never scored.

    Args:
        store: The payload store.
        model_version: A registered clip-classifier version.
        model: The model to measure instead of the registered checkpoint
            (e.g. a converted ONNX version): anything with the endpoint
            interface, ``classes``, ``spec`` and ``logits_and_embedding(x)``
            (or a call returning logits) on float ``(N, 3, T, H, W)``
            tensors. Its classes must be the version's.
        scoring_ids: The clips to measure on.
        labelled_only: Leave out clips without a user label. With ``False``
            they stay for latency and for ``agreement`` (the share of
            corrupted predictions equal to the clean one); accuracy and
            calibration always use the labelled ones.
        corruptions: Names of :data:`CORRUPTIONS` or :class:`Corruption`
            objects; empty skips the robustness pass.
        severities: Severities to apply (0 is the clean clip).
        robustness_clips: Run the corruptions on at most this many clips (a
            seeded draw, labelled ones first; the others are scored clean
            only); ``None`` takes every clip. The suite costs
            ``1 + len(corruptions) * len(severities)`` forward passes per clip.
        latency_batch: The batch size N of the batched latency.
        repeats: Timed forward passes per batch size (the median is reported).
        num_threads: Torch threads for the forward passes; ``None`` takes the
            endpoints' rule (one core fewer than usable, see
            :func:`~dlabel_lab.serving.threads.default_num_threads`).
        confidence: Level of the accuracy interval.
        seed: Seed of the corruptions' random draws.
        progress: Show a progress bar over the clips.
        store_result: Log the report with the version (``store.log_metrics``,
            split ``"model-report"``, with the clips' ids) inside a
            ``"model-report"`` run of the execution log.

    Returns:
        The :class:`ModelReport`.

    Raises:
        ConfigError: Bad arguments, no clips, no labelled clip, classes that
            differ from the version's, or ``store_result`` on a read-only store.
        UnknownRecord: The version is not registered.
        CheckpointError: The checkpoint is missing or altered.

    Example:
        >>> report = model_report(store, "shapes-v2", severities=(1, 3, 5))  # doctest: +SKIP
        >>> report.accuracy, report.interval, report.relative_robustness  # doctest: +SKIP
        (0.917, (0.615, 0.998), 0.78)
        >>> print(report.summary())  # doctest: +SKIP
    """
    suite = [_corruption(c) for c in corruptions]
    if len({c.name for c in suite}) != len(suite):
        raise ConfigError(f"corruption names must be distinct, got {[c.name for c in suite]}")
    sev = list(dict.fromkeys(severities))
    for c in suite:
        for s in sev:
            _check_severity(c, s)
    for name, value in (("latency_batch", latency_batch), ("repeats", repeats),
                        ("robustness_clips", 1 if robustness_clips is None else robustness_clips)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive int, got {value!r}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    threads = check_num_threads(num_threads) or default_num_threads()
    if store_result and getattr(store, "read_only", False):
        raise ConfigError("the store is open read-only; pass store_result=False or open it writable")
    info = store.get_model(model_version)
    classes = list(info["classes"])
    given = model
    if model is None:  # a converted version runs on ONNX Runtime, checked against its sha256 first
        info = store.get_model(model_version)
        model = load_onnx_version(store, model_version) if is_onnx(info) else load_version(store, model_version)
    if list(getattr(model, "classes", classes)) != classes:
        raise ConfigError(f"the model's classes {list(model.classes)} differ from {model_version}'s {classes}")
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ClipSpec):
        spec = ClipSpec.from_dict(info["spec"] or {})
    if hasattr(model, "eval"):
        model.eval()
    rows, source, notes = _select_clips(store, model_version, info, scoring_ids, labelled_only)
    settings = {"corruptions": [c.to_dict() for c in suite], "severities": sev, "seed": seed,
                "robustness_clips": robustness_clips, "latency_batch": latency_batch, "repeats": repeats,
                "labelled_only": labelled_only,
                "confidence": confidence, "scoring_ids_given": scoring_ids is not None,
                "model": "registered checkpoint" if given is None else type(given).__name__}

    def compute() -> ModelReport:
        with torch_threads(threads):
            return _measure(store, model_version, info, model, spec, classes, rows, source, notes, suite, sev,
                            latency_batch, repeats, threads, confidence, seed, progress, settings)

    if not store_result:
        return compute()
    run_params = {k: v for k, v in settings.items() if k != "corruptions"}
    run_params["corruptions"] = [c.name for c in suite]
    with store.run("model-report", run_params, model_version=model_version):
        report = compute()
        store.log_metrics(model_version, report.to_dict(), split=REPORT_SPLIT,
                          scoring_ids=report.held_out["scoring_ids"])
    return report


def _measure(store, version, info, model, spec, classes, rows, source, notes, suite, sev, latency_batch, repeats,
             threads, confidence, seed, progress, settings) -> ModelReport:
    # --- decode, corrupt and score, one clip at a time (one batch of all its variants) ---
    variants = [("clean", 0, None)] + [(c.name, s, c) for c in suite for s in sev]
    probs: dict[tuple[str, int], list[np.ndarray]] = {(n, s): [] for n, s, _ in variants}
    kept: list[int] = []
    limit = settings.get("robustness_clips")
    draw = sorted(range(len(rows)), key=lambda j: (pd.isna(rows["user_label"].iat[j]),
                                                    zlib.crc32(f"{seed}:{rows['scoring_id'].iat[j]}".encode())))
    chosen = set(draw[:limit] if limit is not None else draw)
    in_suite: list[bool] = []
    lat_inputs: list[torch.Tensor] = []
    prep_times: list[float] = []
    failed: list[str] = []
    temporal = [c for c in suite if c.temporal]
    for i, sid in enumerate(tqdm(rows["scoring_id"], desc=f"model report {version}", unit="clip",
                                 disable=not progress)):
        try:
            path = store.verified_raw_path(sid)
            t0 = time.perf_counter()
            clip = read_checked_file(path, spec, name=f"clip {sid}")
            x_clean, _ = to_tensor(clip, spec)
            prep_times.append(time.perf_counter() - t0)
            frames_at = {int(k): clip.frames[j] for j, k in enumerate(clip.indices)}
            wanted = {(c.name, s): corrupt_indices(clip.indices, clip.frame_count, c, s, seed=seed, key=sid)
                      for c in temporal for s in sev}
            extra = sorted({k for idx in wanted.values() for k in idx} - set(frames_at))
            if extra:
                more = read_checked_file(path, dataclasses.replace(spec, indices=tuple(extra), frames=len(extra)),
                                         name=f"clip {sid}")
                frames_at.update({int(k): more.frames[j] for j, k in enumerate(more.indices)})
        except (MediaError, StoreError, ConfigError) as error:
            failed.append(f"{sid}: {type(error).__name__}: {error}")
            continue
        mine = variants if i in chosen else variants[:1]
        tensors = [x_clean]
        for name, s, c in mine[1:]:
            if c.temporal:
                idx = wanted[(name, s)]
                frames = np.stack([frames_at[k] for k in idx])
                corrupted = dataclasses.replace(clip, frames=frames, indices=tuple(idx))
            else:
                corrupted = dataclasses.replace(clip, frames=corrupt_frames(clip.frames, c, s, seed=seed, key=sid))
            tensors.append(to_tensor(corrupted, spec)[0])
        out = torch.cat([_probabilities(model, torch.stack(tensors[j:j + latency_batch]))
                         for j in range(0, len(tensors), latency_batch)]).numpy().astype(np.float64)
        for (name, s, _), p in zip(mine, out, strict=True):
            probs[(name, s)].append(p)
        kept.append(i)
        in_suite.append(i in chosen)
        if len(lat_inputs) < latency_batch:
            lat_inputs.append(x_clean)
    if failed:
        notes.append(f"{len(failed)} clip(s) could not be read and are left out (first: {failed[0]})")
    if not kept:
        raise ConfigError(f"none of the {len(rows)} clips of {version} could be read: {failed[0]}")
    rows = rows.iloc[kept].reset_index(drop=True)
    labelled = rows["user_label"].notna().to_numpy()
    clean = np.stack(probs[("clean", 0)])
    pred_idx = clean.argmax(axis=1)
    predictions = pd.DataFrame({
        "scoring_id": rows["scoring_id"], "user_label": rows["user_label"],
        "predicted_label": [classes[k] for k in pred_idx], "confidence": clean.max(axis=1),
        "correct": [None if not lab else bool(p == u) for lab, p, u in
                    zip(labelled, [classes[k] for k in pred_idx], rows["user_label"], strict=True)],
        "probabilities": [p.tolist() for p in clean],
    })
    # --- accuracy, per class, calibration --------------------------------------------------
    ev = evaluate(predictions[labelled], classes=classes, n_bins=N_BINS)
    lab = predictions[labelled]
    low, high = exact_interval(int(lab["correct"].astype(bool).sum()), ev.n, confidence=confidence)
    rel = ReliabilityDisplay.from_predictions(lab["confidence"].to_numpy(), lab["correct"].astype(bool).to_numpy(),
                                              n_bins=N_BINS)
    per_class = ev.per_class.reset_index()
    confusion = pd.DataFrame(ev.confusion, index=pd.Index(ev.classes, name="user label"), columns=ev.classes)
    # --- latency ---------------------------------------------------------------------------
    one = lat_inputs[0].unsqueeze(0)
    batch = torch.stack([lat_inputs[j % len(lat_inputs)] for j in range(latency_batch)])
    t1 = _time_forward(model, one, repeats)
    tn = _time_forward(model, batch, repeats)
    prep_ms = 1000.0 * statistics.median(prep_times)
    latency = pd.DataFrame({
        "batch_size": [1, latency_batch], "latency_ms": [1000.0 * t1, 1000.0 * tn],
        "ms_per_clip": [1000.0 * t1, 1000.0 * tn / latency_batch], "throughput_clips_s": [1.0 / t1, latency_batch / tn],
        "repeats": [repeats, repeats], "threads": [threads, threads],
    })
    # --- training cost and size ---------------------------------------------------------------
    training, facts = _training_cost(store, version, info)
    n_params, param_bytes = _n_parameters(model)
    ckpt = Path(info["checkpoint_path"])
    ckpt_bytes = ckpt.stat().st_size if ckpt.is_file() else None
    size_rows = {"parameters": n_params, "parameter_bytes": param_bytes, "checkpoint_bytes": ckpt_bytes,
                 "checkpoint_file": ckpt.name}
    model_file = getattr(model, "path", None)
    if isinstance(model_file, (str, os.PathLike)) and Path(model_file).is_file():
        size_rows.update({"model_file": Path(model_file).name, "model_file_bytes": Path(model_file).stat().st_size})
    size = pd.DataFrame({"item": list(size_rows), "value": ["unknown" if v is None else str(v)
                                                            for v in size_rows.values()]})
    # --- robustness ---------------------------------------------------------------------------
    names = np.array(classes, dtype=object)
    suite_rows = np.array(in_suite, dtype=bool)
    y, lab_s = rows["user_label"].to_numpy()[suite_rows], labelled[suite_rows]
    clean_s = pred_idx[suite_rows]
    clean_acc = float(np.mean(names[clean_s][lab_s] == y[lab_s])) if lab_s.any() else math.nan
    rob_rows = []
    for name, s, _ in variants[1:]:
        p = np.stack(probs[(name, s)])
        k = p.argmax(axis=1)
        acc = float(np.mean(names[k][lab_s] == y[lab_s])) if lab_s.any() else math.nan
        rob_rows.append({"corruption": name, "severity": s, "accuracy": acc,
                         "relative": acc / clean_acc if clean_acc > 0 else None,
                         "agreement": float(np.mean(k == clean_s)), "mean_confidence": float(p.max(axis=1).mean())})
    robustness = pd.DataFrame(rob_rows, columns=["corruption", "severity", "accuracy", "relative", "agreement",
                                                 "mean_confidence"])
    scored = robustness[robustness["severity"] > 0]
    mca = float(scored["accuracy"].mean()) if len(scored) and lab_s.any() else None
    rel_rob = mca / clean_acc if mca is not None and clean_acc > 0 else None
    if len(scored):
        g = scored.groupby("corruption", sort=False)
        rsum = pd.DataFrame({"mean_accuracy": g["accuracy"].mean(), "worst_accuracy": g["accuracy"].min(),
                             "mean_agreement": g["agreement"].mean()}).reset_index()
        rsum["relative"] = rsum["mean_accuracy"] / clean_acc if clean_acc > 0 else None
    else:
        rsum = pd.DataFrame(columns=["corruption", "mean_accuracy", "worst_accuracy", "mean_agreement", "relative"])
    suite_table = pd.DataFrame([{"corruption": c.name, "kind": "temporal" if c.temporal else "frames",
                                 **{f"severity_{j + 1}": v for j, v in enumerate(c.levels)},
                                 "parameter": c.description} for c in suite])
    metrics = {
        "n": int(len(rows)), "n_labelled": int(ev.n), "accuracy": ev.accuracy, "accuracy_low": low,
        "accuracy_high": high, "confidence_level": confidence, "macro_f1": ev.macro_f1, "ece": ev.ece,
        "n_bins": N_BINS, "latency_ms_batch1": 1000.0 * t1, "latency_ms_batchN": 1000.0 * tn,
        "throughput_batch1": 1.0 / t1, "throughput_batchN": latency_batch / tn, "batch_size": latency_batch,
        "preprocess_ms": prep_ms, "parameters": n_params, "checkpoint_bytes": ckpt_bytes,
        "train_wall_s": facts.get("wall_s"), "train_epochs": facts.get("epochs_run") or facts.get("epochs"),
        "train_source": facts["source"], "clean_accuracy": clean_acc, "mean_corruption_accuracy": mca,
        "relative_robustness": rel_rob, "n_corruptions": len(suite), "n_severities": len([s for s in sev if s > 0]),
        "n_robustness_clips": int(suite_rows.sum()),
    }
    summary = pd.DataFrame({"metric": [k for k in metrics if k != "train_source"],
                            "value": [metrics[k] for k in metrics if k != "train_source"]})
    summary["value"] = summary["value"].astype(float)
    environment = {"torch": torch.__version__, "threads": threads, "device": "cpu", "cpu": _cpu_name(),
                   "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                   "python": platform.python_version(), "platform": platform.platform()}
    return ModelReport(
        model_version=version, classes=classes, metrics=metrics,
        tables={"summary": summary, "per_class": per_class, "confusion": confusion, "reliability": rel.bins,
                "latency": latency, "training": training, "size": size, "robustness": robustness,
                "robustness_summary": rsum, "corruptions": suite_table, "predictions": predictions},
        held_out={"source": source, "scoring_ids": rows["scoring_id"].tolist(), "notes": notes},
        environment=environment, settings=settings,
        created_at=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    )


# --- stored reports and comparison ------------------------------------------------------------
def load_model_report(store, model_version: str) -> ModelReport:
    """The latest report :func:`model_report` logged with a version, tables and all (figures redraw from them).

    Raises:
        UnknownRecord: The version is not registered, or has no stored report.

    Example:
        >>> load_model_report(store, "shapes-v2").tables["robustness_summary"]  # doctest: +SKIP
    """
    found = [e for e in store.lineage(model_version)["evaluations"] if e["split"] == REPORT_SPLIT]
    if not found:
        raise UnknownRecord(f"model version {model_version!r} has no stored model report; run "
                            f"model_report(store, {model_version!r}) first")
    return ModelReport.from_dict(found[-1]["metrics"])


_COMPARED = (
    ("n", "clips"), ("n_labelled", "labelled clips"), ("accuracy", "accuracy"),
    ("accuracy_low", "accuracy interval low"), ("accuracy_high", "accuracy interval high"), ("macro_f1", "macro F1"),
    ("ece", "ECE"), ("latency_ms_batch1", "latency ms, batch 1"), ("latency_ms_batchN", "latency ms, batch N"),
    ("throughput_batchN", "throughput clips/s, batch N"), ("parameters", "parameters"),
    ("checkpoint_bytes", "checkpoint bytes"), ("train_wall_s", "training wall s"),
    ("clean_accuracy", "clean accuracy (robustness pass)"), ("mean_corruption_accuracy", "mean corruption accuracy"),
    ("relative_robustness", "relative robustness"),
)


def compare_reports(a: ModelReport, b: ModelReport) -> pd.DataFrame:
    """Two reports side by side: one row per headline metric, a column per version and ``delta`` (b - a).

    ``attrs["same_clips"]`` says whether both were measured on the same clips
    (only then are accuracy differences a paired comparison), and
    ``attrs["notes"]`` lists what differs in how they were measured.

    Example:
        >>> table = compare_reports(load_model_report(store, "shapes-v1"), load_model_report(store, "shapes-v2"))
        ...  # doctest: +SKIP
        >>> table.loc["accuracy"]  # doctest: +SKIP
    """
    if not (isinstance(a, ModelReport) and isinstance(b, ModelReport)):
        raise ConfigError("compare_reports needs two ModelReport objects (model_report or load_model_report)")
    ca, cb = a.model_version, b.model_version
    if ca == cb:
        ca, cb = f"{ca} (a)", f"{cb} (b)"

    def num(report: ModelReport, key: str) -> float:
        v = report.metrics.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan

    out = pd.DataFrame({ca: [num(a, k) for k, _ in _COMPARED], cb: [num(b, k) for k, _ in _COMPARED]},
                       index=pd.Index([label for _, label in _COMPARED], name="metric"))
    out["delta"] = out[cb] - out[ca]
    same = sorted(a.held_out.get("scoring_ids") or []) == sorted(b.held_out.get("scoring_ids") or [])
    notes = []
    if not same:
        notes.append("measured on different clips: accuracy differences are not paired")
    if a.environment.get("cpu") != b.environment.get("cpu") or a.environment.get("threads") != \
            b.environment.get("threads"):
        notes.append("latency measured on different machines or thread counts")
    sa = [c.get("name") for c in a.settings.get("corruptions", [])], a.settings.get("severities")
    sb = [c.get("name") for c in b.settings.get("corruptions", [])], b.settings.get("severities")
    if sa != sb:
        notes.append("different corruption suites or severities: robustness is not comparable")
    out.attrs["same_clips"] = same
    out.attrs["notes"] = notes
    return out


def compare_html(a: ModelReport, b: ModelReport, path: str | os.PathLike | None = None) -> str:
    """One self-contained HTML page: the comparison table, then both reports side by side.

    Example:
        >>> compare_html(report_v1, report_v2, "v1-vs-v2.html")  # doctest: +SKIP
    """
    table = compare_reports(a, b)
    e = html.escape
    notes = "".join(f"<li>{e(n)}</li>" for n in table.attrs["notes"])
    body = (f"<h1>{e(a.model_version)} vs {e(b.model_version)}</h1>{_html_table(table, index=True)}"
            + (f"<ul>{notes}</ul>" if notes else "")
            + f'<div class="pair"><div>{a._html_body(heading=2)}</div><div>{b._html_body(heading=2)}</div></div>')
    return _page(f"Model reports: {a.model_version} vs {b.model_version}", body, path)
