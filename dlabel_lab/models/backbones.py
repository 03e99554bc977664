"""Backbone builders: small in-house CNNs and torchvision's video models.

Every backbone maps a clip batch ``(N, 3, T, H, W)`` to features ``(N, D)``
and names its last spatio-temporal feature map (``last_conv_name``, output
``(N, C, T', H', W')``) so that attribution methods can hook it. Nothing is
downloaded: ``weights=None`` is the default, torchvision weights are taken
from the torch hub cache only, and local state-dict files are loaded safely.

Example:
    >>> net, dim = build_backbone("tiny3d", embed_dim=32)
    >>> net(torch.zeros(1, 3, 4, 32, 32)).shape
    torch.Size([1, 32])
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
import torchvision.models.video as tvv
from torch import nn

from ..errors import CheckpointError, ConfigError, WeightsUnavailable
from ..media.video import ClipSpec
from .checkpoint import is_url, load_state_dict_file, state_dict_mismatch

__all__ = ["BACKBONES", "build_backbone", "backbone_spec"]

#: torchvision video models: name -> (builder, weights enum, feature width, head keys to drop).
_TORCHVISION = {
    "r3d_18": (tvv.r3d_18, tvv.R3D_18_Weights, 512, ("fc.",)),
    "mc3_18": (tvv.mc3_18, tvv.MC3_18_Weights, 512, ("fc.",)),
    "r2plus1d_18": (tvv.r2plus1d_18, tvv.R2Plus1D_18_Weights, 512, ("fc.",)),
    "s3d": (tvv.s3d, tvv.S3D_Weights, 1024, ("classifier.",)),
    "swin3d_t": (tvv.swin3d_t, tvv.Swin3D_T_Weights, 768, ("head.",)),
}
_IN_HOUSE = ("tiny3d", "frame2d")
#: Every name :func:`build_backbone` accepts.
BACKBONES: tuple[str, ...] = (*_IN_HOUSE, *_TORCHVISION)
_PATH_SUFFIXES = {".pth", ".pt", ".safetensors", ".bin"}


# --- in-house backbones -----------------------------------------------------------
def _conv3d_block(cin: int, cout: int, *, stride=1, pool=None) -> nn.Sequential:
    layers = [nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU()]
    if pool is not None:
        layers.append(nn.MaxPool3d(pool, stride=pool, ceil_mode=True))
    return nn.Sequential(*layers)


def _conv2d_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Tiny3d(nn.Module):
    """A small 3D CNN (16-32-``embed_dim``-``embed_dim`` channels) that trains in seconds on a CPU.

    Input ``(N, 3, T, H, W)``: the first block keeps full resolution and
    max-pools H and W by 2, the second pools (2, 2, 2), the third pools H and
    W again, the fourth keeps its size; global average pooling gives
    ``(N, embed_dim)``. Downsampling only after the first convolution keeps
    small objects (a few pixels across at 64 px) separable; a stride-2 first
    convolution reduced drifted, smaller shapes to about one pixel.
    """

    last_conv_name = "blocks.3"

    def __init__(self, embed_dim: int = 64) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            _conv3d_block(3, 16, pool=(1, 2, 2)),
            _conv3d_block(16, 32, pool=(2, 2, 2)),
            _conv3d_block(32, embed_dim, pool=(1, 2, 2)),
            _conv3d_block(embed_dim, embed_dim),
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.flatten = nn.Flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(self.blocks(x)))


class PerFrame(nn.Module):
    """Apply a 2D module to every frame: ``(N, C, T, H, W) -> (N, C', T, H', W')``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        y = self.net(x.transpose(1, 2).reshape(n * t, c, h, w))
        return y.reshape(n, t, *y.shape[1:]).transpose(1, 2)


class Frame2d(nn.Module):
    """A per-frame 2D CNN (16-32-``embed_dim`` channels, stride 2 each) with average pooling over time and space."""

    last_conv_name = "frames"

    def __init__(self, embed_dim: int = 64) -> None:
        super().__init__()
        self.frames = PerFrame(nn.Sequential(_conv2d_block(3, 16), _conv2d_block(16, 32), _conv2d_block(32, embed_dim)))
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.flatten = nn.Flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(self.frames(x)))


# --- torchvision backbones ----------------------------------------------------------
class _ChannelsFirst(nn.Module):
    """``(N, T, H, W, C) -> (N, C, T, H, W)`` (a view), so Swin exposes a conv-like feature map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 4, 1, 2, 3)


class TorchvisionVideo(nn.Module):
    """A torchvision video model without its classifier: clip -> pooled features ``(N, D)``.

    The torchvision model lives under ``net`` with its native parameter names,
    so torchvision state dicts load into it. Its classifier is removed and
    pooling is global average pooling (for S3D this replaces the fixed
    ``(2, 7, 7)`` pool, which lets S3D run on clips smaller than 224 px).
    In-place ReLUs are switched off so that hooks on any layer see their own
    output.
    """

    def __init__(self, name: str, net: nn.Module) -> None:
        super().__init__()
        self.name = name
        self.net = net
        for head in ("fc", "classifier", "head", "avgpool"):
            if hasattr(net, head):
                delattr(net, head)
        for m in net.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False
        if name == "swin3d_t":
            self.channels_first = _ChannelsFirst()
            self.last_conv_name = "channels_first"
        elif name == "s3d":
            self.last_conv_name = "net.features"
        else:
            self.last_conv_name = "net.layer4"
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.flatten = nn.Flatten(1)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last spatio-temporal feature map ``(N, C, T', H', W')``."""
        n = self.net
        if self.name == "s3d":
            return n.features(x)
        if self.name == "swin3d_t":
            return self.channels_first(n.norm(n.features(n.pos_drop(n.patch_embed(x)))))
        return n.layer4(n.layer3(n.layer2(n.layer1(n.stem(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(self.feature_map(x)))


# --- public builders -------------------------------------------------------------------
def build_backbone(
    name: str,
    *,
    weights: str | os.PathLike | torchvision.models.WeightsEnum | None = None,
    embed_dim: int = 64,
) -> tuple[nn.Module, int]:
    """Build a backbone that maps clips ``(N, 3, T, H, W)`` to features ``(N, D)``.

    Backbones: ``tiny3d`` (small 3D CNN), ``frame2d`` (per-frame 2D CNN with
    temporal average pooling), and torchvision's ``r3d_18``, ``mc3_18``,
    ``r2plus1d_18``, ``s3d`` (at least 5 frames of 24 px) and ``swin3d_t``.
    The module has ``last_conv_name`` (the dotted name of its last
    spatio-temporal feature map), ``default_spec`` (the :class:`ClipSpec` it
    expects) and ``weights_source`` (where its initial weights came from).

    Args:
        name: One of :data:`BACKBONES`.
        weights: ``None`` (random init); ``"DEFAULT"`` or a torchvision weights
            member name such as ``"KINETICS400_V1"`` (or the enum member), read
            from the torch hub cache ``torch.hub.get_dir()/checkpoints`` only;
            or a local ``.pth``/``.pt`` (weights-only) or ``.safetensors``
            state-dict file. Torchvision files use torchvision's parameter
            names; their classifier keys are ignored.
        embed_dim: Feature width ``D`` of ``tiny3d`` and ``frame2d``;
            torchvision backbones keep their native width (512, 1024 or 768).

    Returns:
        ``(module, feature_dim)``.

    Raises:
        ConfigError: Unknown name or weights value.
        WeightsUnavailable: Pretrained weights are not cached, or a URL was given.
        CheckpointError: The weights file is missing, unsafe or does not fit.

    Example:
        >>> net, dim = build_backbone("frame2d", embed_dim=16)
        >>> dim
        16
    """
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if not isinstance(embed_dim, int) or isinstance(embed_dim, bool) or embed_dim < 1:
        raise ConfigError(f"embed_dim must be a positive int, got {embed_dim!r}")
    kind, value = _classify_weights(name, weights)
    if name in _IN_HOUSE:
        net: nn.Module = Tiny3d(embed_dim) if name == "tiny3d" else Frame2d(embed_dim)
        dim = embed_dim
        if kind == "file":
            _load_into(net, load_state_dict_file(value), str(value), drop=())
    else:
        builder, _, dim, head_keys = _TORCHVISION[name]
        net = TorchvisionVideo(name, builder(weights=None))
        if kind in ("file", "torchvision"):
            state = load_state_dict_file(value if kind == "file" else _cached_weights_path(value))
            _load_into(net.net, state, str(value), drop=head_keys)
    net.default_spec = backbone_spec(name, weights=value if kind == "torchvision" else None)
    net.weights_source = _describe_weights(kind, value)
    return net, dim


def backbone_spec(name: str, *, weights: str | torchvision.models.WeightsEnum | None = None) -> ClipSpec:
    """The :class:`ClipSpec` a backbone expects by default.

    ``tiny3d``/``frame2d``: 8 frames of 64 px. Torchvision models: 16 frames at
    the crop size and mean/std of their weights' eval transform (Kinetics-400:
    112 px for the ResNets, 224 px for S3D and Swin).

    Example:
        >>> backbone_spec("r3d_18").out_size
        (112, 112)
    """
    if name in _IN_HOUSE:
        return ClipSpec(frames=8, size=64)
    if name not in _TORCHVISION:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    member = _weights_member(name, _TORCHVISION[name][1], weights if weights is not None else "DEFAULT")
    return pretrained_spec(ClipSpec(frames=16), member)


def pretrained_spec(spec: ClipSpec, member: torchvision.models.WeightsEnum) -> ClipSpec:
    """``spec`` with the size and normalisation of a torchvision weights' eval transform."""
    t = member.transforms()
    size = tuple(int(s) for s in t.crop_size)
    return replace(spec, size=size if len(size) == 2 else size[0], mean=tuple(t.mean), std=tuple(t.std))


def weights_member(name: str, weights) -> torchvision.models.WeightsEnum | None:
    """The torchvision weights enum member ``weights`` names for ``name``, or ``None`` if it names none."""
    if name not in _TORCHVISION or weights is None:
        return None
    kind, value = _classify_weights(name, weights)
    return value if kind == "torchvision" else None


# --- helpers ------------------------------------------------------------------------------
def _classify_weights(name: str, weights):
    """``("none"|"torchvision"|"file", value)`` for a backbone; raises for URLs and unknown names."""
    return classify_weights(name, weights, enums={n: v[1] for n, v in _TORCHVISION.items()}, kind="backbone")


def classify_weights(name: str, weights, *, enums, kind: str):
    """What ``weights`` asks for a model ``name``: ``("none"|"torchvision"|"file", value)``.

    Shared by the classifiers' backbones and the detectors. ``enums`` maps each
    name with published torchvision weights to its weights enum; other names
    are in-house (no published weights). ``kind`` names the model family in
    messages. Raises :class:`WeightsUnavailable` for URLs (nothing is ever
    downloaded) and :class:`ConfigError` for names and values that fit nothing.
    """
    if weights is None:
        return "none", None
    enum = enums.get(name)
    if isinstance(weights, torchvision.models.WeightsEnum):
        if enum is None or not isinstance(weights, enum):
            raise ConfigError(f"{weights} are not weights for {kind} {name!r}")
        return "torchvision", weights
    if not isinstance(weights, (str, os.PathLike)):
        raise ConfigError(
            f"weights must be None, 'DEFAULT', a weights name or a file path, got {type(weights).__name__}"
        )
    text = os.fspath(weights)
    if is_url(text):
        raise WeightsUnavailable(
            f"weights {text!r} is a URL; dlabel_lab never downloads (there is no network here). Download the file "
            "elsewhere, check its sha256, copy it here and pass its local path as weights=."
        )
    bare = re.sub(r"^\w+_Weights\.", "", text) if isinstance(weights, str) else None
    if bare is not None and (bare == "DEFAULT" or re.fullmatch(r"[A-Z][A-Z0-9_]*", bare)):
        if enum is None:
            raise ConfigError(
                f"{kind} {name!r} has no published weights ({text!r}); pass weights=None or the path of a local "
                "state-dict file"
            )
        return "torchvision", _weights_member(name, enum, bare)
    path = Path(text).expanduser()
    if isinstance(weights, os.PathLike) or path.suffix.lower() in _PATH_SUFFIXES or os.sep in text or path.exists():
        return "file", path
    raise ConfigError(
        f"weights {text!r} is neither 'DEFAULT', a weights name of {name!r} nor a local .pth/.safetensors file"
    )


def _weights_member(name: str, enum, value) -> torchvision.models.WeightsEnum:
    if isinstance(value, enum):
        return value
    if value == "DEFAULT":
        return enum.DEFAULT
    try:
        return enum[value]
    except KeyError:
        names = ", ".join(["DEFAULT", *(m.name for m in enum)])
        raise ConfigError(f"{value!r} is not a weights name of {name!r}; choose one of {names}") from None


def _cached_weights_path(member: torchvision.models.WeightsEnum) -> Path:
    filename = os.path.basename(urlparse(member.url).path)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not cached.is_file():
        raise WeightsUnavailable(
            f"pretrained weights {type(member).__name__}.{member.name} are not in the torch hub cache ({cached}) and "
            f"dlabel_lab does not download (no network here). Copy {filename} (from {member.url}) to {cached.parent}, "
            "or pass weights='/path/to/state_dict.pth' (or .safetensors)."
        )
    return cached


def _load_into(net: nn.Module, state: dict, source: str, *, drop: tuple[str, ...]) -> None:
    state = {k: v for k, v in state.items() if not k.startswith(drop)}
    mismatch = state_dict_mismatch(net, state)
    if mismatch:
        raise CheckpointError(
            f"weights {source!r} do not fit backbone {type(net).__name__}: {mismatch}. "
            "Pass a state dict saved from the same architecture."
        )
    net.load_state_dict(state, strict=True)


def _describe_weights(kind: str, value) -> str | None:
    if kind == "torchvision":
        return f"torchvision:{type(value).__name__}.{value.name}"
    if kind == "file":
        return f"file:{Path(value).name}"
    return None
