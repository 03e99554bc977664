"""Writing clips with PyAV: H.264 (with B-frames and a chosen keyframe interval), MPEG-4 part 2 and MJPEG.

Real cameras produce long H.264 clips with a keyframe every second or two
and B-frames; benchmarks and tests of the seeking decoder need such clips,
and PyAV's wheel ships the encoders, so nothing else is installed.

Example:
    >>> import numpy as np
    >>> frames = np.zeros((50, 64, 64, 3), np.uint8)
    >>> write_clip("clip.mp4", frames, fps=25, codec="h264", gop=25)  # doctest: +SKIP
    PosixPath('clip.mp4')
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import ConfigError

__all__ = ["write_clip", "CODECS"]

#: codec name -> (FFmpeg encoder, containers it is written in)
CODECS = {"h264": ("libx264", (".mp4", ".mkv", ".ts")), "mpeg4": ("mpeg4", (".mp4", ".avi", ".mkv")),
          "mjpeg": ("mjpeg", (".avi", ".mkv"))}


def write_clip(path: str | os.PathLike, frames: Iterable[np.ndarray], *, fps: float = 25.0, codec: str = "h264",
               gop: int = 50, bframes: int = 2, crf: int = 23, quality: int = 3, preset: str = "veryfast") -> Path:
    """Encode RGB frames into a video file.

    Args:
        path: Output file; the suffix picks the container (``.mp4``, ``.mkv``, ``.ts``, ``.avi``).
        frames: ``uint8`` RGB arrays ``(H, W, 3)``, all the same even size (an iterable, so a long
            clip need not be held in memory).
        fps: Frame rate (constant).
        codec: ``"h264"`` (libx264), ``"mpeg4"`` (MPEG-4 part 2, as OpenCV's ``mp4v``) or ``"mjpeg"``.
        gop: Keyframe interval in frames (closed GOPs, no scene-cut keyframes).
        bframes: B-frames between references (H.264 and MPEG-4; 0 for none).
        crf: H.264 constant rate factor (lower is better quality).
        quality: MPEG-4 / MJPEG quantiser scale (1 best .. 31).
        preset: x264 speed preset.

    Returns:
        The path written.

    Raises:
        ConfigError: Unknown codec, a container the codec cannot go in, odd or mismatched frame sizes,
            or no frames.

    Example:
        >>> write_clip("long.mp4", (np.zeros((240, 320, 3), np.uint8) for _ in range(2500)), gop=50)  # doctest: +SKIP
    """
    if codec not in CODECS:
        raise ConfigError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    encoder, suffixes = CODECS[codec]
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"{codec} clips are written as {', '.join(suffixes)}, not {path.suffix or 'no suffix'!r}")
    if gop < 1 or bframes < 0 or fps <= 0:
        raise ConfigError(f"need gop >= 1, bframes >= 0 and fps > 0, got gop={gop}, bframes={bframes}, fps={fps}")
    rate = Fraction(fps).limit_denominator(1001)
    tmp = path.with_name(f".{path.name}.partial")
    count = 0
    try:
        with av.open(str(tmp), "w", format={".mp4": "mp4", ".mkv": "matroska", ".ts": "mpegts",
                                              ".avi": "avi"}[path.suffix.lower()]) as box:
            stream = box.add_stream(encoder, rate=rate)
            stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
            if codec == "h264":
                stream.codec_context.options = {
                    "preset": preset, "crf": str(crf), "bf": str(bframes),
                    "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0",
                }
            else:
                stream.codec_context.gop_size = gop
                stream.codec_context.max_b_frames = bframes if codec == "mpeg4" else 0
                stream.codec_context.qmin = stream.codec_context.qmax = quality
            for frame in frames:
                arr = np.asarray(frame)
                if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
                    raise ConfigError(f"frames must be uint8 RGB (H, W, 3), got {arr.dtype} {arr.shape}")
                if count == 0:
                    h, w = arr.shape[:2]
                    if h % 2 or w % 2:
                        raise ConfigError(f"frame size must be even for {codec}, got {w}x{h}")
                    stream.width, stream.height = w, h
                elif arr.shape[:2] != (stream.height, stream.width):
                    raise ConfigError(f"frame {count} is {arr.shape[1]}x{arr.shape[0]}, the clip is "
                                      f"{stream.width}x{stream.height}")
                for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                    box.mux(packet)
                count += 1
            if count == 0:
                raise ConfigError("no frames to write")
            for packet in stream.encode():
                box.mux(packet)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
