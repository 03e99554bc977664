"""Test-time augmentation views of model inputs, for the TTA-agreement pseudo-oracle.

A prediction that survives a mirror, a small shift and a brightness change
is likelier right than one that flips. The views are deterministic
torchvision ``transforms.v2`` functionals (``horizontal_flip``, ``affine``,
``adjust_brightness``) applied to the clip in pixel space: the normalised
tensor is mapped back with the preprocessing record's mean and std,
transformed frame by frame as one video, and normalised again.

Example:
    >>> import torch
    >>> views = tta_views(torch.zeros(1, 3, 2, 8, 8), mean=(0.45,) * 3, std=(0.225,) * 3)
    >>> sorted(views) == sorted(TTA_VIEWS), views["hflip"].shape
    (True, torch.Size([1, 3, 2, 8, 8]))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from ..errors import ConfigError

__all__ = ["TTA_VIEWS", "tta_predictions", "tta_views"]

#: The views, in the order :func:`tta_predictions` returns them.
TTA_VIEWS = ("hflip", "shift", "brighter", "darker")
_SHIFT = 0.1  # share of the width
_BRIGHTNESS = {"brighter": 1.25, "darker": 0.75}


def tta_views(x: torch.Tensor, *, mean: Sequence[float], std: Sequence[float]) -> dict[str, torch.Tensor]:
    """The deterministic TTA views of normalised clips ``(N, C, T, H, W)``, normalised the same way.

    Args:
        x: Normalised clips, as the model saw them.
        mean: Per-channel mean of the normalisation (the preprocessing record's).
        std: Per-channel standard deviation.

    Returns:
        View name (:data:`TTA_VIEWS`) -> tensor shaped like ``x``.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 5 or not x.is_floating_point():
        raise ConfigError(f"tta_views takes float clips shaped (N, C, T, H, W), got "
                          f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1, 1)
    video = (x * s + m).clamp(0, 1).permute(0, 2, 1, 3, 4)  # (N, T, C, H, W) in [0, 1]
    shift = max(1, round(_SHIFT * x.shape[-1]))
    views = {
        "hflip": F.horizontal_flip(video),
        "shift": F.affine(video, angle=0.0, translate=[shift, 0], scale=1.0, shear=[0.0, 0.0]),
        **{name: F.adjust_brightness(video, factor) for name, factor in _BRIGHTNESS.items()},
    }
    return {name: (v.permute(0, 2, 1, 3, 4) - m) / s for name, v in views.items()}


@torch.no_grad()
def tta_predictions(model: torch.nn.Module, x: torch.Tensor, *, mean: Sequence[float], std: Sequence[float],
                    batch_size: int = 16) -> np.ndarray:
    """Predicted class of every TTA view of every clip; ``(len(TTA_VIEWS), N)`` ints.

    The model runs in evaluation mode (restored afterwards).

    Example:
        >>> tta_predictions(model, x, mean=rec["mean"], std=rec["std"]).shape  # doctest: +SKIP
        (4, 16)
    """
    device = next(model.parameters(), torch.empty(0)).device
    views = tta_views(x.to(device), mean=mean, std=std)
    was = model.training
    model.eval()
    try:
        out = []
        for name in TTA_VIEWS:
            v = views[name]
            logits = [model(v[i : i + batch_size]) for i in range(0, len(v), batch_size)]
            out.append(torch.cat(logits).argmax(dim=1).cpu().numpy())
    finally:
        model.train(was)
    return np.stack(out)
