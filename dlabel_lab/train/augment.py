"""The torchvision ``transforms.v2`` steps that augmentation pipelines are built from.

Every step works on a whole clip wrapped as ``tv_tensors.Video`` ``(T, C, H, W)``
so that one set of random parameters applies to every frame. Steps live at
module level so that pipelines pickle (DataLoader workers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..errors import ConfigError


class _ClipCompose(v2.Compose):
    """``v2.Compose`` on a ``(C, T, H, W)`` tensor, optionally seeded, keeping dtype."""

    def __init__(self, transforms: Sequence[Callable], *, seed: int | None = None) -> None:
        super().__init__(list(transforms))
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] not in (1, 3) or not x.is_floating_point():
            raise ConfigError(
                "the augmentation pipeline takes one normalised float clip shaped (C, T, H, W) with C = 1 or 3, "
                f"got {tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}. Augment clips one "
                "at a time (in the Dataset), not batches."
            )
        if self._generator is None:
            out = super().forward(x)
        else:
            # Parameters are drawn from the CPU generator; noise from the clip's device.
            step_seed = int(torch.randint(0, 2**62, (1,), generator=self._generator))
            devices = [x.device] if x.is_cuda else []
            with torch.random.fork_rng(devices=devices):
                torch.default_generator.manual_seed(step_seed)
                if x.is_cuda:
                    with torch.cuda.device(x.device):
                        torch.cuda.manual_seed(step_seed)
                out = super().forward(x)
        return out.to(x.dtype)


class _ToVideo(torch.nn.Module):
    """``(C, T, H, W)`` float tensor → ``tv_tensors.Video`` ``(T, C, H, W)`` in float32."""

    def forward(self, x: torch.Tensor) -> tv_tensors.Video:
        return tv_tensors.Video(x.float().permute(1, 0, 2, 3))


class _FromVideo(torch.nn.Module):
    """``tv_tensors.Video`` ``(T, C, H, W)`` → plain contiguous ``(C, T, H, W)`` tensor."""

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return video.as_subclass(torch.Tensor).permute(1, 0, 2, 3).contiguous()


class _Clamp01(torch.nn.Module):
    """Clamp to the 0..1 range, keeping the tv_tensor type."""

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return tv_tensors.wrap(video.as_subclass(torch.Tensor).clamp(0.0, 1.0), like=video)


class _BackgroundAffine(v2.RandomAffine):
    """``RandomAffine`` that fills exposed borders with the clip's own background.

    A fixed fill (e.g. the normalisation mean) paints a frame around every
    zoomed-out clip that operational clips never have, and a model learns that
    frame instead of the smaller object. The fill here is the per-channel
    median of the clip's border pixels, one value for all frames of a clip.
    """

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        t = inpt.as_subclass(torch.Tensor)
        border = torch.cat([t[..., 0, :], t[..., -1, :], t[..., :, 0], t[..., :, -1]], dim=-1)
        channels = border.transpose(0, -2).reshape(t.shape[-3], -1) if t.ndim == 4 else border.reshape(t.shape[-3], -1)
        fill = [float(v) for v in channels.median(dim=1).values]
        return self._call_kernel(F.affine, inpt, **params, interpolation=self.interpolation, fill=fill,
                                 center=self.center)


class _ClipBlur(v2.GaussianBlur):
    """``GaussianBlur`` whose kernel follows the sampled sigma (``2*ceil(3*sigma)+1``, capped to the frame)."""

    def __init__(self, *, sigma: tuple[float, float]) -> None:
        k = 2 * math.ceil(3 * sigma[1]) + 1
        super().__init__(kernel_size=k, sigma=sigma)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        sigma = params["sigma"][0]
        h, w = inpt.shape[-2:]
        k = min(2 * math.ceil(3 * sigma) + 1, 2 * ((min(h, w) - 1) // 2) + 1)
        return self._call_kernel(F.gaussian_blur, inpt, [k, k], sigma=params["sigma"])


class _RangeNoise(v2.GaussianNoise):
    """``GaussianNoise`` whose std is sampled uniformly from a range, once per clip."""

    def __init__(self, *, sigma: tuple[float, float]) -> None:
        super().__init__(mean=0.0, sigma=sigma[1], clip=True)
        self.sigma_range = tuple(sigma)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        lo, hi = self.sigma_range
        return {"sigma": float(torch.empty(1).uniform_(lo, hi).item())}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.gaussian_noise, inpt, mean=self.mean, sigma=params["sigma"], clip=self.clip)


class _Chain(torch.nn.Module):
    """Apply clip augmentations one after the other (each a callable on a normalised ``(C, T, H, W)`` clip)."""

    def __init__(self, steps: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> None:
        super().__init__()
        self.steps = list(steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = step(x)
        return x


def chain_augments(*steps: Callable[[torch.Tensor], torch.Tensor] | None) -> Callable | None:
    """One augmentation applying the given ones in order (``None`` entries skipped; ``None`` if all are).

    Example:
        >>> chain_augments(None, None) is None
        True
    """
    kept = [s for s in steps if s is not None]
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else _Chain(kept)


#: The generic augmentation variants :func:`generic_augment` builds.
GENERIC_VARIANTS = ("affine", "crop")


def generic_augment(
    *,
    size: tuple[int, int],
    mean: Sequence[float] = (0.45, 0.45, 0.45),
    std: Sequence[float] = (0.225, 0.225, 0.225),
    variant: str = "affine",
    seed: int | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The augmentation a practitioner tries first, with the same draw on every frame of a clip.

    ``"affine"``: ``RandomAffine`` (±10°, 10 % shift, zoom 0.7-1.2, background
    fill); ``"crop"``: ``RandomResizedCrop`` (area 0.5-1, back to ``size``);
    then, for both, ``ColorJitter`` (brightness, contrast, saturation 0.4, hue
    0.05), ``GaussianBlur`` (sigma 0.1-1.5, p 0.5) and Gaussian noise (std
    0-0.05, p 0.5). It is the baseline a derived augmentation must beat, so it
    uses no knowledge of the operational data.

    Args:
        size: ``(H, W)`` of the clips (the crop variant resizes back to it).
        mean: Normalisation mean of the clips.
        std: Normalisation std of the clips.
        variant: One of :data:`GENERIC_VARIANTS`.
        seed: Seed of a reproducible sequence of draws (``None``: global RNG).

    Example:
        >>> aug = generic_augment(size=(16, 16), seed=0)
        >>> aug(torch.zeros(3, 4, 16, 16)).shape
        torch.Size([3, 4, 16, 16])
    """
    if variant not in GENERIC_VARIANTS:
        raise ConfigError(f"generic augmentation variant must be one of {GENERIC_VARIANTS}, got {variant!r}")
    mean_t, std_t = [float(m) for m in mean], [float(s) for s in std]
    if len(mean_t) != len(std_t) or min(std_t) <= 0:
        raise ConfigError(f"generic_augment needs as many mean as std values, std > 0; got {mean!r}, {std!r}")
    if variant == "affine":
        geometry = _BackgroundAffine(degrees=10.0, translate=(0.1, 0.1), scale=(0.7, 1.2),
                                     interpolation=v2.InterpolationMode.BILINEAR, fill=mean_t)
    else:
        geometry = v2.RandomResizedCrop(size=list(size), scale=(0.5, 1.0), antialias=True)
    return _ClipCompose(
        [
            _ToVideo(),
            v2.Normalize(mean=[-m / s for m, s in zip(mean_t, std_t, strict=True)], std=[1.0 / s for s in std_t]),
            geometry,
            v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4 if len(mean_t) == 3 else 0.0,
                           hue=0.05 if len(mean_t) == 3 else 0.0),
            v2.RandomApply([_ClipBlur(sigma=(0.1, 1.5))], p=0.5),
            v2.RandomApply([_RangeNoise(sigma=(0.0, 0.05))], p=0.5),
            _Clamp01(),
            v2.Normalize(mean=mean_t, std=std_t),
            _FromVideo(),
        ],
        seed=seed,
    )
