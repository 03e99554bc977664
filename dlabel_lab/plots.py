"""Matplotlib figures for the labelling loop: compute once, draw on an optional axis.

Every ``plot_*`` function takes arrays or data frames (never the store or a
model), draws on ``ax`` when given, otherwise on a new figure, and returns the
axes. :class:`ReliabilityDisplay` follows scikit-learn's Display pattern: it
holds the computed bins and draws them on demand. No backend is forced and
nothing is shown; save with :func:`save_figure`.

Example:
    >>> import numpy as np
    >>> ax = plot_confusion(np.array([[3, 1], [0, 4]]), ["cat", "dog"])
    >>> len(ax.texts)
    4
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .errors import ConfigError

__all__ = [
    "ReliabilityDisplay",
    "plot_confusion",
    "plot_reliability",
    "plot_attribution_overlay",
    "plot_frame_attribution",
    "plot_filmstrip",
    "plot_slices_before_after",
    "plot_learning_curves",
    "plot_neuron_functions",
    "plot_accuracy_sweep",
    "plot_interval",
    "plot_boxes",
    "plot_tracks",
    "save_figure",
]


def _axes(ax: Axes | None, *, figsize: tuple[float, float] = (5.0, 4.0)) -> Axes:
    if ax is not None:
        if not isinstance(ax, Axes):
            raise ConfigError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
        return ax
    import matplotlib.pyplot as plt  # lazily: importing the package selects no backend

    _, new = plt.subplots(figsize=figsize)
    return new


def _columns(df: pd.DataFrame, needed: Sequence[str], what: str) -> pd.DataFrame:
    if isinstance(df, Mapping):
        df = pd.DataFrame(df)
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"{what} needs a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ConfigError(f"{what} needs columns {list(needed)}; missing {missing}. Rename the columns or add them.")
    if df.empty:
        raise ConfigError(f"{what} got an empty table; there is nothing to plot.")
    return df


def _frames(frames: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        raise ConfigError(f"{what} needs frames shaped (T, H, W, 3) with T >= 1, got {arr.shape}")
    return arr


def _pick(t: int, max_frames: int) -> np.ndarray:
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise ConfigError(f"max_frames must be a positive int, got {max_frames!r}")
    if t <= max_frames:
        return np.arange(t)
    return np.unique(np.linspace(0, t - 1, max_frames).round().astype(int))


# --- evaluation ------------------------------------------------------------------
def plot_confusion(
    confusion: np.ndarray,
    classes: Sequence[str],
    *,
    normalize: bool = False,
    cmap: str = "Blues",
    ax: Axes | None = None,
) -> Axes:
    """Confusion matrix with every cell annotated; rows are true labels.

    Args:
        confusion: ``(K, K)`` counts, rows = user label, columns = prediction.
        classes: The K class names.
        normalize: Show each row as fractions of its true class.
        cmap: Colour map name.
        ax: Axes to draw on; a new figure when ``None``.

    Example:
        >>> ax = plot_confusion(np.eye(2, dtype=int), ["a", "b"], normalize=True)
        >>> ax.texts[0].get_text()
        '1.00'
    """
    cm = np.asarray(confusion, dtype=float)
    classes = [str(c) for c in classes]
    k = len(classes)
    if cm.shape != (k, k):
        raise ConfigError(f"confusion must be ({k}, {k}) for {k} classes, got {cm.shape}. Pass the matching classes.")
    if normalize:
        rows = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    ax = _axes(ax, figsize=(1.0 + 0.6 * k, 0.8 + 0.6 * k))
    image = ax.imshow(cm, cmap=cmap, vmin=0, vmax=1 if normalize else max(cm.max(), 1))
    threshold = (image.norm.vmax + image.norm.vmin) / 2
    for i in range(k):
        for j in range(k):
            text = f"{cm[i, j]:.2f}" if normalize else f"{int(round(cm[i, j]))}"
            ax.text(j, i, text, ha="center", va="center", color="white" if cm[i, j] > threshold else "black")
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("user label")
    ax.set_title("confusion (row-normalised)" if normalize else "confusion")
    return ax


@dataclass
class ReliabilityDisplay:
    """Reliability diagram data: per-bin confidence, accuracy and count, and the ECE.

    Build it with :meth:`from_predictions`, draw it with :meth:`plot`.

    Attributes:
        bins: One row per confidence bin: ``lo``, ``hi``, ``count``,
            ``confidence`` (mean), ``accuracy`` (NaN for empty bins).
        ece: Expected calibration error, ``sum(n_b / N * |acc_b - conf_b|)``.

    Example:
        >>> d = ReliabilityDisplay.from_predictions([0.9, 0.6], [True, False], n_bins=2)
        >>> round(d.ece, 2)  # one bin: mean confidence 0.75, accuracy 0.5
        0.25
    """

    bins: pd.DataFrame
    ece: float

    @classmethod
    def from_predictions(
        cls, confidence: Sequence[float], correct: Sequence[bool], *, n_bins: int = 10
    ) -> ReliabilityDisplay:
        """Bin predictions into ``n_bins`` equal-width confidence bins on [0, 1]."""
        conf = np.asarray(confidence, dtype=float).ravel()
        ok = np.asarray(correct).ravel()
        if conf.size == 0 or conf.shape != ok.shape:
            raise ConfigError(
                f"confidence and correct need the same non-zero length, got {conf.size} and {ok.size}"
            )
        if not np.all(np.isfinite(conf)) or conf.min() < 0 or conf.max() > 1:
            raise ConfigError("confidence values must be probabilities in [0, 1]")
        if not np.isin(ok, (0, 1)).all():
            raise ConfigError("correct must hold booleans (or 0/1); drop rows with no user label first")
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise ConfigError(f"n_bins must be a positive int, got {n_bins!r}")
        ok = ok.astype(float)
        idx = np.minimum((conf * n_bins).astype(int), n_bins - 1)
        count = np.bincount(idx, minlength=n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
            accuracy = np.bincount(idx, weights=ok, minlength=n_bins) / count
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        bins = pd.DataFrame(
            {"lo": edges[:-1], "hi": edges[1:], "count": count, "confidence": mean_conf, "accuracy": accuracy}
        )
        filled = count > 0
        ece = float(np.sum(count[filled] / conf.size * np.abs(accuracy[filled] - mean_conf[filled])))
        return cls(bins=bins, ece=ece)

    def plot(self, *, ax: Axes | None = None) -> Axes:
        """Accuracy bars per bin against the diagonal of perfect calibration."""
        ax = _axes(ax, figsize=(4.5, 4.5))
        b = self.bins
        width = (b["hi"] - b["lo"]).to_numpy()
        ax.bar(b["lo"], b["accuracy"].fillna(0.0), width=width, align="edge", edgecolor="black", label="accuracy")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"reliability (ECE = {self.ece:.3f})")
        ax.legend(loc="upper left")
        return ax


def plot_reliability(
    confidence: Sequence[float], correct: Sequence[bool], *, n_bins: int = 10, ax: Axes | None = None
) -> Axes:
    """Reliability diagram with the expected calibration error in the title.

    Example:
        >>> ax = plot_reliability([0.9, 0.8, 0.3], [True, True, False], n_bins=5)
        >>> ax.get_title()
        'reliability (ECE = 0.200)'
    """
    return ReliabilityDisplay.from_predictions(confidence, correct, n_bins=n_bins).plot(ax=ax)


def plot_interval(estimate: float | None, low: float, high: float, *, target: float | None = None,
                  label: str = "precision", ax: Axes | None = None) -> Axes:
    """One proportion with its confidence interval on [0, 1], and the target it must clear.

    Example:
        >>> ax = plot_interval(0.9, 0.7, 0.98, target=0.95, label="auto-label precision")
        >>> ax.get_xlabel()
        'auto-label precision'
    """
    ax = _axes(ax, figsize=(5.0, 1.6))
    if estimate is not None:
        ax.errorbar([estimate], [0], xerr=[[estimate - low], [high - estimate]], fmt="o", capsize=6,
                    label=f"{estimate:.3f} [{low:.3f}, {high:.3f}]")
    if target is not None:
        ax.axvline(target, color="tab:red", ls="--", label=f"target {target:.2f}")
    ax.set_xlim(0, 1.02)
    ax.set_yticks([])
    ax.set_xlabel(label)
    if estimate is not None or target is not None:
        ax.legend(loc="lower left", fontsize="small")
    return ax


def plot_slices_before_after(df: pd.DataFrame, *, metric: str = "accuracy", ax: Axes | None = None) -> Axes:
    """Grouped bars of a metric per slice, before and after retraining.

    Args:
        df: Columns ``slice``, ``before``, ``after`` and optionally ``n``
            (shown under the slice name).
        metric: Label of the y axis.
        ax: Axes to draw on; a new figure when ``None``.

    Example:
        >>> df = pd.DataFrame({"slice": ["dark", "bright"], "before": [0.5, 0.9], "after": [0.8, 0.9]})
        >>> len(plot_slices_before_after(df).patches)
        4
    """
    df = _columns(df, ("slice", "before", "after"), "plot_slices_before_after")
    x = np.arange(len(df))
    ax = _axes(ax, figsize=(max(4.0, 0.9 * len(df) + 1.5), 3.5))
    ax.bar(x - 0.2, df["before"], width=0.4, label="before")
    ax.bar(x + 0.2, df["after"], width=0.4, label="after")
    labels = [f"{s}\n(n={n})" for s, n in zip(df["slice"], df["n"], strict=True)] if "n" in df else df["slice"]
    ax.set_xticks(x, [str(s) for s in labels])
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per slice")
    ax.legend()
    return ax


def plot_accuracy_sweep(df: pd.DataFrame, *, baseline: float | None = None, ax: Axes | None = None) -> Axes:
    """Accuracy along each perturbation axis (the sensitivity check), one line per axis.

    Args:
        df: Columns ``axis`` (e.g. ``"brightness"``), ``value`` (the factor
            applied) and ``accuracy``.
        baseline: Optional unperturbed accuracy, drawn as a dotted line.
        ax: Axes to draw on; a new figure when ``None``.

    Example:
        >>> df = pd.DataFrame({"axis": ["blur"] * 3, "value": [0, 1, 2], "accuracy": [0.9, 0.7, 0.4]})
        >>> len(plot_accuracy_sweep(df).lines)
        1
    """
    df = _columns(df, ("axis", "value", "accuracy"), "plot_accuracy_sweep")
    ax = _axes(ax, figsize=(5.0, 3.5))
    for name, part in df.groupby("axis", sort=False):
        part = part.sort_values("value")
        ax.plot(part["value"], part["accuracy"], marker="o", label=str(name))
    if baseline is not None:
        ax.axhline(baseline, linestyle=":", color="grey", label="baseline")
    ax.set_xlabel("factor value")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy sweep")
    ax.legend()
    return ax


def plot_learning_curves(history: pd.DataFrame | Mapping[str, Sequence[float]], *, ax: Axes | None = None) -> Axes:
    """Loss (left axis) and other metrics (right axis) per epoch.

    Accepts Lightning ``CSVLogger`` ``metrics.csv`` as read by pandas: rows
    carry NaN where a metric was not logged; rows are averaged per ``epoch``
    (the row number when there is no ``epoch`` column). ``step`` is ignored,
    and ``*_step`` columns are dropped when a matching ``*_epoch`` exists.

    Example:
        >>> ax = plot_learning_curves({"epoch": [0, 1], "train_loss": [1.0, 0.5], "val_acc": [0.5, 0.8]})
        >>> [line.get_label() for line in ax.lines]
        ['train_loss']
    """
    df = pd.DataFrame(history) if isinstance(history, Mapping) else history
    df = _columns(df, (), "plot_learning_curves")
    df = df.copy()
    if "epoch" not in df:
        df["epoch"] = np.arange(len(df))
    metrics = [c for c in df.columns if c not in ("epoch", "step") and pd.api.types.is_numeric_dtype(df[c])]
    metrics = [c for c in metrics if not (c.endswith("_step") and f"{c[:-5]}_epoch" in df)]
    if not metrics:
        raise ConfigError("plot_learning_curves found no numeric metric columns (e.g. train_loss, val_acc).")
    per_epoch = df.groupby("epoch")[metrics].mean()
    losses = [c for c in metrics if "loss" in c]
    others = [c for c in metrics if c not in losses]
    ax = _axes(ax, figsize=(5.5, 3.5))
    left, right = (losses, others) if losses else (others, [])
    for i, c in enumerate(left):
        s = per_epoch[c].dropna()
        ax.plot(s.index, s.to_numpy(), marker="o", color=f"C{i}", linestyle="--" if c.startswith("val") else "-",
                label=c)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss" if losses else "metric")
    handles, labels = ax.get_legend_handles_labels()
    if right:
        twin = ax.twinx()
        for i, c in enumerate(right, start=len(left)):  # continue the colour cycle on the twin axis
            s = per_epoch[c].dropna()
            twin.plot(s.index, s.to_numpy(), marker="s", color=f"C{i % 10}",
                      linestyle="--" if c.startswith("val") else "-", label=c)
        twin.set_ylabel("metric")
        h2, l2 = twin.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="best")
    ax.set_title("learning curves")
    return ax


# --- attribution -------------------------------------------------------------------
def plot_neuron_functions(df: pd.DataFrame, *, annotate: bool | None = None, ax: Axes | None = None) -> Axes:
    """Heatmap of neuron × factor correlations (what each neuron responds to).

    Args:
        df: Columns ``neuron``, ``factor``, ``corr`` (duplicates are averaged).
            Neurons keep their order of first appearance.
        annotate: Write the values in the cells; by default when the map has
            at most 200 cells.
        ax: Axes to draw on; a new figure when ``None``.

    Example:
        >>> df = pd.DataFrame({"neuron": ["fc:0", "fc:1"], "factor": ["scale", "scale"], "corr": [0.8, -0.2]})
        >>> plot_neuron_functions(df).images[0].get_array().shape
        (2, 1)
    """
    df = _columns(df, ("neuron", "factor", "corr"), "plot_neuron_functions")
    table = df.pivot_table(index="neuron", columns="factor", values="corr", aggfunc="mean", sort=False)
    neurons, factors = list(table.index), list(table.columns)
    values = table.to_numpy(dtype=float)
    ax = _axes(ax, figsize=(1.5 + 0.8 * len(factors), 1.0 + 0.35 * len(neurons)))
    image = ax.imshow(values, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.figure.colorbar(image, ax=ax, label="correlation")
    if annotate is None:
        annotate = values.size <= 200
    if annotate:
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if abs(v) > 0.6 else "k")
    ax.set_xticks(range(len(factors)), [str(f) for f in factors], rotation=45, ha="right")
    ax.set_yticks(range(len(neurons)), [str(n) for n in neurons])
    ax.set_title("neuron functions")
    return ax


def plot_frame_attribution(
    values: Sequence[float], *, frame_indices: Sequence[int] | None = None, ax: Axes | None = None
) -> Axes:
    """Bar chart of attribution per frame (positive red, negative blue).

    Example:
        >>> len(plot_frame_attribution([0.1, -0.2, 0.5]).patches)
        3
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise ConfigError(f"plot_frame_attribution needs one value per frame, shape (T,), got {v.shape}")
    x = np.arange(v.size) if frame_indices is None else np.asarray(frame_indices)
    if x.shape != v.shape:
        raise ConfigError(f"frame_indices needs {v.size} entries, got {x.size}")
    ax = _axes(ax, figsize=(max(4.0, 0.4 * v.size + 1.0), 3.0))
    ax.bar(np.arange(v.size), v, color=np.where(v >= 0, "tab:red", "tab:blue"))
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(v.size), [str(i) for i in x])
    ax.set_xlabel("frame")
    ax.set_ylabel("attribution")
    ax.set_title("attribution per frame")
    return ax


def plot_filmstrip(
    frames: np.ndarray, *, max_frames: int = 8, title: str | None = None, ax: Axes | None = None
) -> Axes:
    """Frames side by side in one image (evenly spaced when there are more than ``max_frames``).

    Example:
        >>> ax = plot_filmstrip(np.zeros((3, 4, 5, 3), np.uint8))
        >>> ax.images[0].get_array().shape
        (4, 15, 3)
    """
    arr = _frames(frames, "plot_filmstrip")
    keep = _pick(arr.shape[0], max_frames)
    strip = np.concatenate(list(arr[keep]), axis=1)
    w = arr.shape[2]
    ax = _axes(ax, figsize=(min(16.0, 1.6 * len(keep)), 2.0))
    ax.imshow(strip)
    ax.set_xticks(w * np.arange(len(keep)) + w / 2, [f"t={i}" for i in keep])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def plot_attribution_overlay(
    frames: np.ndarray,
    heatmap: np.ndarray | torch.Tensor,
    *,
    alpha: float = 0.5,
    max_frames: int = 8,
    cmap: str = "jet",
    axes: Sequence[Axes] | None = None,
) -> np.ndarray:
    """A filmstrip of frames with their attribution heatmaps overlaid.

    Heatmaps are resized bilinearly to the frame size and share one colour
    scale across the shown frames, so frames compare.

    Args:
        frames: ``(T, H, W, 3)`` ``uint8`` RGB (or floats in 0..1).
        heatmap: ``(T, h, w)`` per frame or ``(h, w)`` for all frames.
        alpha: Opacity of the heatmap.
        max_frames: Show at most this many frames, evenly spaced.
        cmap: Colour map of the heatmap.
        axes: One axes per shown frame; a new figure when ``None``.

    Returns:
        The array of axes, one per shown frame.

    Example:
        >>> axes = plot_attribution_overlay(np.zeros((10, 8, 8, 3), np.uint8), np.ones((2, 2)), max_frames=4)
        >>> len(axes)
        4
    """
    arr = _frames(frames, "plot_attribution_overlay")
    t, h, w, _ = arr.shape
    if torch.is_tensor(heatmap):
        heatmap = heatmap.detach().cpu().numpy()
    heat = torch.as_tensor(np.asarray(heatmap, dtype=np.float32))
    if heat.ndim == 2:
        heat = heat.expand(t, *heat.shape)
    if heat.ndim != 3 or heat.shape[0] != t:
        raise ConfigError(f"heatmap must be (h, w) or ({t}, h, w) for {t} frames, got {tuple(heat.shape)}")
    if not 0 <= alpha <= 1:
        raise ConfigError(f"alpha is an opacity in [0, 1], got {alpha!r}")
    keep = _pick(t, max_frames)
    resized = torch.nn.functional.interpolate(
        heat[torch.as_tensor(keep)].unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False
    ).squeeze(1).numpy()
    finite = resized[np.isfinite(resized)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, len(keep), figsize=(1.8 * len(keep), 2.0), squeeze=False)
    axes = np.asarray(axes, dtype=object).ravel()
    if axes.size < len(keep):
        raise ConfigError(f"plot_attribution_overlay shows {len(keep)} frames but got {axes.size} axes")
    axes = axes[: len(keep)]
    for a, i, hm in zip(axes, keep, resized, strict=True):
        a.imshow(arr[i])
        a.imshow(hm, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1e-12)
        a.set_title(f"t={i}", fontsize=9)
        a.axis("off")
    return axes


# --- saving ---------------------------------------------------------------------
def plot_boxes(
    frame: np.ndarray,
    boxes,
    *,
    labels: Sequence[str] | None = None,
    scores: Sequence[float] | None = None,
    truth=None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """A frame with boxes: predictions solid (with label and score), ground truth dashed.

    Args:
        frame: ``uint8`` RGB ``(H, W, 3)``.
        boxes: ``(n, 4)`` xyxy pixel boxes (array, tensor or list).
        labels: A name per box.
        scores: A score per box.
        truth: Optional ``(m, 4)`` ground-truth boxes, drawn dashed.
        title: Axes title.
        ax: Draw here.

    Example:
        >>> ax = plot_boxes(np.zeros((20, 30, 3), np.uint8), [[2, 3, 10, 12]], labels=["circle"], scores=[0.9])
        >>> len(ax.patches), ax.texts[0].get_text()
        (1, 'circle 0.90')
    """
    from matplotlib.patches import Rectangle

    img = np.asarray(frame)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ConfigError(f"plot_boxes needs one (H, W, 3) frame, got shape {img.shape}")

    def as_boxes(b, what: str) -> np.ndarray:
        arr = np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, dtype=float).reshape(-1, 4) \
            if len(b) else np.zeros((0, 4))
        if not np.isfinite(arr).all():
            raise ConfigError(f"plot_boxes: {what} must be finite xyxy boxes")
        return arr

    pred = as_boxes(boxes, "boxes")
    for name, values in (("labels", labels), ("scores", scores)):
        if values is not None and len(values) != len(pred):
            raise ConfigError(f"plot_boxes: {len(values)} {name} for {len(pred)} boxes")
    ax = _axes(ax, figsize=(5.0, 5.0 * img.shape[0] / max(img.shape[1], 1)))
    ax.imshow(img)
    for x1, y1, x2, y2 in as_boxes(truth, "truth") if truth is not None else []:
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="white", ls="--", lw=1))
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    names = sorted({str(v) for v in labels}) if labels is not None else []
    for k, (x1, y1, x2, y2) in enumerate(pred):
        colour = colours[names.index(str(labels[k])) % len(colours)] if labels is not None else colours[0]
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=colour, lw=1.5))
        text = " ".join(t for t in ((str(labels[k]) if labels is not None else ""),
                                    (f"{float(scores[k]):.2f}" if scores is not None else "")) if t)  # fmt: skip
        if text:
            ax.text(x1, max(y1 - 1, 0), text, color=colour, fontsize=7, va="bottom")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def plot_tracks(objects: pd.DataFrame, *, max_tracks: int = 30, ax: Axes | None = None) -> Axes:
    """Track timelines: one row per track, a mark on every frame where it has a box, coloured by class.

    Args:
        objects: Rows with ``track_id``, ``frame_index`` and ``label`` (``store.objects(...).df()``
            or ``ObjectTracks.table()`` with ``class`` as ``label``).
        max_tracks: Show the tracks with most boxes, at most this many (the title says how many
            were left out).
        ax: Draw here.

    Example:
        >>> df = pd.DataFrame({"track_id": [1, 1, 2], "frame_index": [0, 1, 1], "label": ["a", "a", "b"]})
        >>> len(plot_tracks(df).collections)
        2
    """
    df = _columns(objects, ["track_id", "frame_index", "label"], "plot_tracks")
    df = df.dropna(subset=["track_id"])
    if isinstance(max_tracks, bool) or not isinstance(max_tracks, int) or max_tracks < 1:
        raise ConfigError(f"max_tracks must be an int >= 1, got {max_tracks!r}")
    sizes = df["track_id"].value_counts(sort=False)
    keep = sorted(sizes.index, key=lambda t: (-sizes[t], t))[:max_tracks]
    left_out = len(sizes) - len(keep)
    df = df[df["track_id"].isin(keep)]
    ax = _axes(ax, figsize=(6.0, 0.6 + 0.25 * max(df["track_id"].nunique(), 1)))
    if left_out:
        ax.set_title(f"{len(keep)} longest tracks of {len(keep) + left_out}", fontsize=9)
    order = {t: k for k, t in enumerate(sorted(df["track_id"].unique()))}
    for label, part in df.groupby("label", sort=True):
        ax.scatter(part["frame_index"], [order[t] for t in part["track_id"]], s=12, marker="s", label=str(label))
    ax.set_yticks(range(len(order)), [str(int(t)) for t in order])
    ax.set_xlabel("frame")
    ax.set_ylabel("track")
    if len(order):
        ax.legend(fontsize=7, loc="upper right")
    return ax


def save_figure(fig: Figure | Axes, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Save a figure (or the figure of an axes), creating parent folders.

    The format follows the suffix (``.png``, ``.svg``, ``.pdf``).

    Example:
        >>> save_figure(plot_frame_attribution([1.0, 2.0]), "figures/frames.png")  # doctest: +SKIP
        PosixPath('figures/frames.png')
    """
    if isinstance(fig, Axes):
        fig = fig.figure
    if isinstance(fig, np.ndarray) and fig.size and isinstance(fig.flat[0], Axes):
        fig = fig.flat[0].figure
    if not isinstance(fig, Figure):
        raise ConfigError(f"save_figure needs a matplotlib Figure or Axes, got {type(fig).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
