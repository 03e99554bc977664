"""Reading clips (PyAV, seeking to the sampled frames), frame sampling, and preprocessing into tensors.

The two public steps are :func:`read_clip` (decode, sample, crop and resize
as ``uint8``) and :func:`to_tensor` (normalise once per clip into a float
``(C, T, H, W)`` tensor plus the preprocessing record that rebuilds it
exactly). :func:`rebuild_tensor` replays a record on the raw clip.

Example:
    >>> import dlabel_lab as dl
    >>> clip = dl.read_clip("clip.mp4", spec=dl.ClipSpec(frames=8, size=112))  # doctest: +SKIP
    >>> x, record = dl.to_tensor(clip)  # doctest: +SKIP
    >>> x.shape  # doctest: +SKIP
    torch.Size([3, 8, 112, 112])
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch

from ..errors import ConfigError, TruncatedMedia, UnsupportedMedia
from .checks import (  # noqa: F401 - container_problem and sniff_container are public here
    MAX_FILE_BYTES,
    _check_head,
    _check_path,
    _check_structure,
    check_container_file,
    check_file_size,
    container_problem,
    sniff_container,
)
from .decoding import decode_frames

__all__ = [
    "check_container_file",
    "image_tensors",
    "check_file_size",
    "read_checked_file",
    "ClipSpec",
    "Clip",
    "ClipStats",
    "read_clip",
    "to_tensor",
    "rebuild_tensor",
    "tensor_digest",
    "clip_stats",
    "sniff_container",
]

RECORD_VERSION = 1
Source = str | os.PathLike | bytes | bytearray | memoryview

_INTERP = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}


@dataclass(frozen=True)
class ClipSpec:
    """How frames are sampled, cropped, resized and normalised.

    Args:
        frames: Number of frames to sample; ``None`` keeps every selected frame.
        size: Output size, an int for square frames or ``(height, width)``.
        sampling: ``"uniform"`` spreads ``frames`` evenly over the window;
            ``"stride"`` takes every ``stride``-th frame from the window start;
            ``"window"`` takes ``frames`` frames ``stride`` apart, centred in
            the window.
        stride: Step between sampled frames for ``"stride"`` and ``"window"``.
        window: Fractions ``(start, end)`` of the clip that sampling may use.
        crop: Optional ``(top, left, height, width)`` fractions of the frame to
            crop before resizing (a zoom).
        indices: Explicit frame indices; override ``sampling`` (used to replay
            a preprocessing record).
        mean: Per-channel mean (RGB, on the 0..1 scale) for normalisation.
        std: Per-channel standard deviation for normalisation.
        max_frame_pixels: Refuse frames larger than this many pixels.
        max_frames: Refuse containers declaring more frames than this.
        max_bytes: Memory budget for the decoded frames kept at native size.
        max_file_bytes: Refuse clip files (or bytes) larger than this, checked
            with ``stat`` before anything is read (default 2 GiB).
        max_padding_bytes: Refuse MP4/AVI files whose padding (top-level
            ``free``/``skip`` boxes, ``JUNK`` chunks) exceeds this; real
            encoders pad by kilobytes, a clip padded by gigabytes is an attack
            on the store's disk (default 64 MiB).
        allow_truncated: Read what decodes when a clip is truncated or damaged
            instead of raising :class:`~dlabel_lab.TruncatedMedia`.
        interpolation: Resize filter: ``"linear"`` (fast, default),
            ``"area"`` (best for strong downscaling, slower) or ``"nearest"``.

    Example:
        >>> ClipSpec(frames=8, size=112).out_size
        (112, 112)
    """

    frames: int | None = 8
    size: int | tuple[int, int] = 112
    sampling: Literal["uniform", "stride", "window"] = "uniform"
    stride: int = 1
    window: tuple[float, float] = (0.0, 1.0)
    crop: tuple[float, float, float, float] | None = None
    indices: tuple[int, ...] | None = None
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)
    max_frame_pixels: int = 4096 * 4096
    max_frames: int = 1_000_000
    max_bytes: int = 1 << 30
    max_file_bytes: int = MAX_FILE_BYTES
    max_padding_bytes: int = 64 << 20
    allow_truncated: bool = False
    interpolation: Literal["linear", "area", "nearest"] = "linear"

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERP:
            raise ConfigError(f"ClipSpec.interpolation must be one of {sorted(_INTERP)}, got {self.interpolation!r}")
        if self.frames is not None and (not isinstance(self.frames, int) or self.frames < 1):
            raise ConfigError(f"ClipSpec.frames must be a positive int or None, got {self.frames!r}")
        h, w = self.out_size
        if h < 1 or w < 1:
            raise ConfigError(f"ClipSpec.size must be positive, got {self.size!r}")
        if self.sampling not in ("uniform", "stride", "window"):
            raise ConfigError(
                f"ClipSpec.sampling must be 'uniform', 'stride' or 'window', got {self.sampling!r}"
            )
        if self.stride < 1:
            raise ConfigError(f"ClipSpec.stride must be >= 1, got {self.stride!r}")
        for limit in ("max_frame_pixels", "max_frames", "max_bytes", "max_file_bytes", "max_padding_bytes"):
            value = getattr(self, limit)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"ClipSpec.{limit} must be a positive int, got {value!r}")
        a, b = self.window
        if not (0.0 <= a < b <= 1.0):
            raise ConfigError(f"ClipSpec.window must satisfy 0 <= start < end <= 1, got {self.window!r}")
        if self.crop is not None:
            t, left, ch, cw = self.crop
            if not (0 <= t < 1 and 0 <= left < 1 and 0 < ch <= 1 and 0 < cw <= 1 and t + ch <= 1.0001
                    and left + cw <= 1.0001):
                raise ConfigError(f"ClipSpec.crop must be fractions inside the frame, got {self.crop!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("ClipSpec.mean and std need three values each, std > 0")

    @property
    def out_size(self) -> tuple[int, int]:
        """Output ``(height, width)``."""
        if isinstance(self.size, int):
            return (self.size, self.size)
        h, w = self.size
        return (int(h), int(w))

    def to_dict(self) -> dict:
        """A JSON-ready dict; :meth:`from_dict` inverts it."""
        d = asdict(self)
        for k in ("size", "window", "crop", "indices", "mean", "std"):
            if isinstance(d[k], tuple):
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ClipSpec:
        """Rebuild a spec written by :meth:`to_dict` (unknown keys are ignored)."""
        names = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("size", "window", "crop", "indices", "mean", "std"):
            if isinstance(kw.get(k), list):
                kw[k] = tuple(kw[k])
        return cls(**kw)


@dataclass(frozen=True)
class Clip:
    """A decoded clip: sampled RGB frames and what the container said.

    Attributes:
        frames: ``uint8`` RGB array shaped ``(T, H, W, 3)`` at the spec's size.
        fps: Frames per second declared by the container.
        frame_count: Frames the container declares.
        width: Native frame width in pixels.
        height: Native frame height in pixels.
        codec: The stream's codec tag (FourCC, e.g. ``"avc1"``, ``"mp4v"``, ``"MJPG"``).
        indices: The sampled frame indices, one per row of ``frames``.
        spec: The spec that produced the clip.
        container: The container format sniffed from the bytes.
        source_name: The path (or ``"<bytes>"``) it came from.
    """

    frames: np.ndarray
    fps: float
    frame_count: int
    width: int
    height: int
    codec: str
    indices: tuple[int, ...]
    spec: ClipSpec = field(default_factory=ClipSpec)
    container: str = ""
    source_name: str = ""

    @property
    def duration(self) -> float:
        """Duration in seconds from the declared frame count and fps."""
        return self.frame_count / self.fps if self.fps > 0 else 0.0


@dataclass(frozen=True)
class ClipStats:
    """Measurable clip factors used to explain neurons and derive parameters.

    Attributes:
        brightness: Mean grey level on 0..1.
        contrast: Standard deviation of the grey level on 0..1.
        motion: Mean absolute difference between consecutive frames on 0..1.
        blur: ``1 / (1 + laplacian_variance / 100)``; 1 is flat, near 0 is sharp.
        noise: Standard deviation on 0..1 of the grey level minus its 3x3
            median (a robust estimate of sensor noise).
        object_scale: Square root of the fraction of pixels that differ from
            the clip's temporal median (the moving foreground over a static
            background, as from a fixed camera); 0 for a static clip.
    """

    brightness: float
    contrast: float
    motion: float
    blur: float
    noise: float = 0.0
    object_scale: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The factors as a plain dict."""
        return asdict(self)


# --- sampling ------------------------------------------------------------------
def _sample_indices(n: int, spec: ClipSpec) -> list[int]:
    """Frame indices for a clip of ``n`` frames (``n >= 1``)."""
    if spec.indices is not None:
        bad = [i for i in spec.indices if not 0 <= i < n]
        if bad:
            raise ConfigError(f"frame indices {bad[:5]} are outside the clip's {n} frames")
        return list(spec.indices)
    lo = min(int(np.floor(spec.window[0] * n)), n - 1)
    hi = max(int(np.ceil(spec.window[1] * n)), lo + 1)  # exclusive
    span = hi - lo
    if spec.sampling == "uniform":
        if spec.frames is None:
            return list(range(lo, hi))
        return np.linspace(lo, hi - 1, spec.frames).round().astype(int).tolist()
    if spec.sampling == "stride":
        idx = list(range(lo, hi, spec.stride))
        if spec.frames is None:
            return idx
        return [idx[min(i, len(idx) - 1)] for i in range(spec.frames)]
    # window: frames consecutive (stride apart), centred in [lo, hi)
    t = spec.frames if spec.frames is not None else max(1, span // spec.stride)
    length = (t - 1) * spec.stride + 1
    start = lo + max(0, (span - length) // 2)
    return [min(start + i * spec.stride, hi - 1) for i in range(t)]


def _crop_box(h: int, w: int, crop) -> tuple[int, int, int, int] | None:
    if crop is None:
        return None
    t, left, ch, cw = crop
    y0, x0 = int(round(t * h)), int(round(left * w))
    y1, x1 = min(h, y0 + max(1, int(round(ch * h)))), min(w, x0 + max(1, int(round(cw * w))))
    return y0, y1, x0, x1


# --- decoding ------------------------------------------------------------------
def read_clip(source: Source, spec: ClipSpec | None = None) -> Clip:
    """Decode a clip, sample its frames and resize them as ``uint8`` RGB.

    Only the groups of pictures that hold sampled frames are decoded (see
    :mod:`dlabel_lab.media.decoding`): 8 frames of a 2,500-frame clip cost a
    few GOPs, not 2,500 frames, and the frames are exactly those a full
    decode gives at the same indices.

    Args:
        source: A local path or the clip's bytes (read from memory, never
            copied to disk). URLs, stream schemes and playlists are refused.
        spec: Sampling, size and limits; defaults to ``ClipSpec()``.

    Returns:
        The :class:`Clip` with frames shaped ``(T, H, W, 3)``.

    Raises:
        MissingMedia: The path does not exist.
        UnsafeSource: A URL, stream scheme or playlist.
        UnsupportedMedia: Not a video container that can be decoded.
        EmptyMedia: No frames decode.
        TruncatedMedia: Fewer frames are present (or decode) than the container declares, or the
            decoder reports damage in the frames read.
        MediaTooLarge: The decoded frames would exceed the spec's budget.

    Example:
        >>> clip = read_clip("data/shapes/train/clip_0000.mp4", ClipSpec(frames=4, size=32))  # doctest: +SKIP
        >>> clip.frames.shape  # doctest: +SKIP
        (4, 32, 32, 3)
    """
    spec = spec or ClipSpec()
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = source if isinstance(source, bytes) else bytes(source)
        check_file_size(len(data), spec, "the given bytes")
        container = _check_head(data[:512], "the given bytes", "")
        _check_structure(data, container, "the given bytes", spec)
        return _decode(data, spec, container, "<bytes>")
    if not isinstance(source, (str, os.PathLike)):
        raise UnsupportedMedia(
            f"read_clip needs a path or bytes, got {type(source).__name__}. Pass a file path or the clip's bytes."
        )
    path = _check_path(source)
    return read_checked_file(path, spec, name=repr(os.fspath(source)), suffix=path.suffix)


def read_checked_file(path: Path, spec: ClipSpec, *, name: str, suffix: str = "") -> Clip:
    """Decode a local file whose source already passed :func:`read_clip`'s source checks.

    The size limit, container sniffing and structure checks still apply; the
    structure is walked through an ``mmap``, so only box headers are read.
    The ingest endpoint uses this on its staged copy inside the store, with
    ``name`` and ``suffix`` of the file the user gave.

    Example:
        >>> clip = read_checked_file(Path("clip.mp4"), ClipSpec(frames=4), name="'clip.mp4'")  # doctest: +SKIP
    """
    container = check_container_file(path, spec, name=name, suffix=suffix)
    return _decode(path, spec, container, name)


def _decode(source: Path | bytes, spec: ClipSpec, container: str, name: str) -> Clip:
    d = decode_frames(
        source, container=container, name=name, sample=lambda n: _sample_indices(n, spec),
        prep=lambda rgb: _prep_frame(rgb, spec), max_frame_pixels=spec.max_frame_pixels,
        max_frames=spec.max_frames, max_bytes=spec.max_bytes, allow_truncated=spec.allow_truncated,
    )
    if d.errors and not spec.allow_truncated:
        raise TruncatedMedia(
            f"{name}: the decoder reported {len(d.errors)} error(s) (first: {d.errors[0]!r}); the clip is damaged "
            "and some frames are wrong. Re-export the clip, or pass ClipSpec(allow_truncated=True) to accept it."
        )
    wanted = d.indices
    arr = d.array if wanted else np.zeros((0, *spec.out_size, 3), np.uint8)
    return Clip(
        frames=arr,
        fps=d.fps,
        frame_count=d.frame_count,
        width=d.width,
        height=d.height,
        codec=d.codec,
        indices=tuple(int(i) for i in wanted),
        spec=spec,
        container=container,
        source_name=name,
    )


def _prep_frame(rgb: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """Crop and resize one RGB frame (channel-wise, so the same as doing it in BGR and converting)."""
    box = _crop_box(rgb.shape[0], rgb.shape[1], spec.crop)
    if box is not None:
        y0, y1, x0, x1 = box
        rgb = rgb[y0:y1, x0:x1]
    h, w = spec.out_size
    if rgb.shape[0] != h or rgb.shape[1] != w:
        rgb = cv2.resize(rgb, (w, h), interpolation=_INTERP[spec.interpolation])
    return np.ascontiguousarray(rgb)


# --- tensors -------------------------------------------------------------------
def image_tensors(frames) -> list[torch.Tensor]:
    """Frames as float ``(3, H, W)`` tensors in ``[0, 1]``, the input of the object detectors.

    Args:
        frames: One frame or several: uint8 RGB arrays ``(H, W, 3)`` (a stack
            ``(N, H, W, 3)`` too), or float tensors ``(3, H, W)`` in ``[0, 1]``
            (passed through).

    Raises:
        ConfigError: A frame is neither.

    Example:
        >>> image_tensors(np.zeros((2, 4, 6, 3), np.uint8))[1].shape
        torch.Size([3, 4, 6])
    """
    if isinstance(frames, (np.ndarray, torch.Tensor)):
        frames = [frames] if frames.ndim == 3 else list(frames)
    if not isinstance(frames, (list, tuple)):
        raise ConfigError(f"frames must be arrays or tensors (or a list of them), got {type(frames).__name__}")
    images = []
    for f in frames:
        if isinstance(f, np.ndarray):
            if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
                raise ConfigError(f"numpy frames must be uint8 RGB (H, W, 3), got {f.dtype} {f.shape}")
            f = torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1).float().div_(255)
        elif not (isinstance(f, torch.Tensor) and f.ndim == 3 and f.shape[0] == 3 and f.is_floating_point()):
            raise ConfigError("tensor frames must be float (3, H, W) in [0, 1]; numpy frames uint8 (H, W, 3)")
        images.append(f)
    return images


def to_tensor(clip: Clip, spec: ClipSpec | None = None) -> tuple[torch.Tensor, dict]:
    """Normalise a clip once into a float tensor ``(C, T, H, W)``.

    Frames were already resized as ``uint8`` by :func:`read_clip`; this
    converts and normalises the whole clip in one vectorised step.

    Args:
        clip: A clip from :func:`read_clip`.
        spec: Normalisation to use; defaults to the clip's own spec.

    Returns:
        ``(tensor, record)``: the record (frame indices, size, crop, mean,
        std, version) rebuilds the tensor exactly with :func:`rebuild_tensor`.

    Example:
        >>> x, rec = to_tensor(clip)  # doctest: +SKIP
        >>> rec["indices"]  # doctest: +SKIP
        [0, 2, 4, 6, 9, 11, 13, 15]
    """
    spec = spec or clip.spec
    frames = clip.frames
    # One lookup table per channel maps uint8 straight to the normalised
    # float and writes contiguous (C, T, H, W) planes in a single pass
    # (OpenCV's LUT: 5x faster than np.take, which widens the indices first).
    levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
    t, h, w = frames.shape[:3]
    out = np.empty((3, t, h, w), np.float32)
    for c in range(3):
        lut = (levels - np.float32(spec.mean[c])) / np.float32(spec.std[c])
        if frames.size:
            plane = np.ascontiguousarray(frames[..., c]).reshape(t * h, w)
            cv2.LUT(plane, lut, dst=out[c].reshape(t * h, w))
    x = torch.from_numpy(out)
    record = {
        "version": RECORD_VERSION,
        "indices": list(clip.indices),
        "size": list(spec.out_size),
        "crop": list(spec.crop) if spec.crop is not None else None,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "frame_count": clip.frame_count,
        "allow_truncated": spec.allow_truncated,
        "interpolation": spec.interpolation,
    }
    return x, record


def spec_from_record(record: dict) -> ClipSpec:
    """The :class:`ClipSpec` that replays a preprocessing record exactly."""
    if record.get("version") != RECORD_VERSION:
        raise ConfigError(
            f"preprocessing record version {record.get('version')!r} is not supported "
            f"(this dlabel_lab writes version {RECORD_VERSION})"
        )
    return ClipSpec(
        frames=len(record["indices"]),
        size=tuple(record["size"]),
        indices=tuple(record["indices"]),
        crop=tuple(record["crop"]) if record.get("crop") else None,
        mean=tuple(record["mean"]),
        std=tuple(record["std"]),
        allow_truncated=bool(record.get("allow_truncated", False)),
        interpolation=record.get("interpolation", "linear"),
    )


def rebuild_tensor(source: Source, record: dict) -> torch.Tensor:
    """Rebuild the exact tensor a preprocessing record describes from the raw clip.

    Example:
        >>> x2 = rebuild_tensor("clip.mp4", rec)  # doctest: +SKIP
        >>> tensor_digest(x2) == tensor_digest(x)  # doctest: +SKIP
        True
    """
    spec = spec_from_record(record)
    x, _ = to_tensor(read_clip(source, spec), spec)
    return x


def tensor_digest(x: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes (hex)."""
    t = x.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.numpy().tobytes())
    return h.hexdigest()


# --- statistics ------------------------------------------------------------------
def clip_stats(clip: Clip | np.ndarray) -> ClipStats:
    """Brightness, contrast, motion energy and blur of a clip.

    Args:
        clip: A :class:`Clip` or a ``uint8`` array ``(T, H, W, 3)``.

    Example:
        >>> import numpy as np
        >>> clip_stats(np.full((2, 8, 8, 3), 255, np.uint8)).brightness
        1.0
    """
    frames = clip.frames if isinstance(clip, Clip) else np.asarray(clip)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ConfigError(f"clip_stats needs frames shaped (T, H, W, 3) with T >= 1, got {frames.shape}")
    grey = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
    motion = float(np.abs(np.diff(grey, axis=0)).mean()) if grey.shape[0] > 1 else 0.0
    lap = np.mean([cv2.Laplacian(g * 255.0, cv2.CV_32F).var() for g in grey])
    grey8 = np.clip(grey * 255.0 + 0.5, 0, 255).astype(np.uint8)
    noise = np.mean([np.std(g.astype(np.float32) - cv2.medianBlur(g, 3)) for g in grey8]) / 255.0
    diff = np.abs(grey - np.median(grey, axis=0))
    threshold = max(0.04, 4.0 * float(np.median(diff)) / 0.6745)
    object_scale = float(np.sqrt((diff > threshold).mean())) if grey.shape[0] > 1 else 0.0
    return ClipStats(
        brightness=float(grey.mean()),
        contrast=float(grey.std()),
        motion=motion,
        blur=float(1.0 / (1.0 + lap / 100.0)),
        noise=float(noise),
        object_scale=object_scale,
    )
