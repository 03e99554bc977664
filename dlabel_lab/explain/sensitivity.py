"""Sensitivity of a model along measurable axes: direct, deterministic sweeps.

A transformation parameter claims the model is fragile along an axis
(brightness, contrast, object scale, noise, blur). ``sensitivity_sweep``
checks the claim: it perturbs clips along one axis at a time and measures
accuracy, so a parameter without support can be reported as such.

Example:
    >>> sweep = sensitivity_sweep(model, x, y, axes={"brightness": [0.5, 1.0]})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torchvision.transforms.v2 import functional as TF

from ..errors import ConfigError
from ..media.video import ClipSpec

__all__ = ["sensitivity_sweep", "AXES", "IDENTITY", "quantile_axes"]

#: The axes a sweep can perturb.
AXES = ("brightness", "contrast", "saturation", "hue", "scale", "noise", "blur")

#: Identity value of every axis (the value that changes nothing).
IDENTITY = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0, "scale": 1.0, "noise": 0.0,
            "blur": 0.0}


def _apply_axis(x01: torch.Tensor, axis: str, value: float, seed: int = 0) -> torch.Tensor:
    """Deterministic transform of a 0..1 clip ``(N, C, T, H, W)`` along one axis."""
    n, c, t, h, w = x01.shape
    frames = x01.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
    if axis == "brightness":
        out = TF.adjust_brightness(frames, value)
    elif axis == "contrast":
        out = TF.adjust_contrast(frames, value)
    elif axis == "saturation":
        out = TF.adjust_saturation(frames, value) if c == 3 else frames
    elif axis == "hue":
        if not -0.5 <= value <= 0.5:
            raise ConfigError(f"a hue shift is a fraction of the colour circle in [-0.5, 0.5], got {value!r}")
        out = TF.adjust_hue(frames, value) if c == 3 else frames
    elif axis == "scale":
        fill = [float(v) for v in frames.mean(dim=(0, 2, 3))]
        out = TF.affine(frames, angle=0.0, translate=[0, 0], scale=value, shear=[0.0, 0.0], fill=fill)
    elif axis == "blur":
        if value <= 0:
            out = frames
        else:
            k = max(3, int(2 * round(3 * value) + 1))
            k = min(k, (min(h, w) // 2) * 2 - 1)
            out = TF.gaussian_blur(frames, kernel_size=[k, k], sigma=[value, value])
    elif axis == "noise":
        g = torch.Generator().manual_seed(seed)
        out = frames + value * torch.randn(frames.shape, generator=g)
    else:
        raise ConfigError(f"unknown sensitivity axis {axis!r}; use one of {AXES}")
    return out.clamp(0, 1).reshape(n, t, c, h, w).permute(0, 2, 1, 3, 4)


def quantile_axes(ranges: dict[str, tuple[float, float]], *, points: int = 5) -> dict[str, list[float]]:
    """Sweep values that follow the ranges to check, not a fixed grid.

    Each axis gets its identity value, both ends of its range and evenly
    spaced values between the identity and each end (``points`` per side in
    all), so an operational brightness 4.4x the reference is swept up to 4.4.

    Example:
        >>> quantile_axes({"brightness": (0.4, 1.0)})["brightness"]
        [0.4, 0.7, 1.0]
    """
    axes = {}
    for axis, (lo, hi) in ranges.items():
        if axis not in IDENTITY:
            raise ConfigError(f"unknown sensitivity axis {axis!r}; use one of {AXES}")
        ident = IDENTITY[axis]
        values = {round(ident, 6)}
        for end in (lo, hi):
            if abs(end - ident) > 1e-9:
                values.update(round(float(v), 6) for v in np.linspace(ident, end, max(2, points // 2 + 1)))
        axes[axis] = sorted(values)
    return axes


def sensitivity_sweep(
    model,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    axes: dict[str, Sequence[float]] | None = None,
    spec: ClipSpec | None = None,
    batch_size: int = 32,
) -> pd.DataFrame:
    """Accuracy of a model as each axis is swept (direct perturbation, one axis at a time).

    Args:
        model: A model returning logits for normalised clips.
        x: Normalised clips ``(N, 3, T, H, W)``.
        y: Class indices ``(N,)``.
        axes: Axis name -> values; default brightness, contrast, scale, noise and blur grids.
        spec: Normalisation of ``x`` (default: ``model.spec``).
        batch_size: Clips per forward pass.

    Returns:
        Columns ``axis, value, accuracy, n``; the identity value of each axis is included.

    Example:
        >>> sweep = sensitivity_sweep(model, x, y, axes={"brightness": [0.5, 1.0]})  # doctest: +SKIP
    """
    spec = spec or model.spec
    axes = axes or {
        "brightness": [0.3, 0.5, 0.75, 1.0, 1.25],
        "contrast": [0.4, 0.7, 1.0, 1.3],
        "scale": [0.5, 0.7, 0.85, 1.0, 1.2],
        "noise": [0.0, 0.02, 0.05, 0.1],
        "blur": [0.0, 0.75, 1.5],
    }
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1, 1)
    x01 = (x * std + mean).clamp(0, 1)
    was_training = model.training
    model.eval()
    rows = []
    try:
        with torch.no_grad():
            for axis, values in axes.items():
                for v in values:
                    xa = (_apply_axis(x01, axis, float(v)) - mean) / std
                    pred = torch.cat([model(xa[i : i + batch_size]).argmax(-1) for i in range(0, len(xa), batch_size)])
                    rows.append({"axis": axis, "value": float(v), "accuracy": float((pred == y).float().mean()),
                                 "n": len(y)})
    finally:
        model.train(was_training)
    return pd.DataFrame(rows)
