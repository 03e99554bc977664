"""The crop a micro-task shows and its boxes: scaled for the screen, mapped between shown and native pixels.

A task's crop is enlarged by a whole factor (each native pixel a square of
screen pixels, OpenCV's nearest-neighbour resize) or shrunk to fit; a
``BBoxWidget`` box (``x, y, width, height`` in the shown crop's pixels) maps to
``[x1, y1, x2, y2]`` in native pixels of the whole frame and back. Pure
functions on numbers and arrays; :mod:`~dlabel_lab.widgets.microtask` is the view.

Example:
    >>> region, scale = (8, 8, 40, 40), (8.0, 8.0)
    >>> to_native(to_display([12, 10, 20.5, 14], region, scale), region, scale)
    [12.0, 10.0, 20.5, 14.0]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from ..errors import ConfigError

__all__ = [
    "DISPLAY_WIDTH",
    "MAX_DISPLAY_HEIGHT",
    "display_zoom",
    "scaled_crop",
    "to_display",
    "to_native",
    "shown_label",
]

DISPLAY_WIDTH = 480
"""About how wide a task's crop is shown, in screen pixels (small tiles are scaled up by a whole factor)."""
MAX_DISPLAY_HEIGHT = 640
"""The tallest a crop is shown, in screen pixels."""
_DECIMALS = 2  # native pixel coordinates of an answer are rounded to 0.01 px


def display_zoom(
    width: int, height: int, *, target: int = DISPLAY_WIDTH, max_height: int = MAX_DISPLAY_HEIGHT
) -> float:
    """How much a ``width`` x ``height`` crop is scaled for display: a whole factor up to about ``target`` px wide.

    A crop smaller than ``target`` (and ``max_height``) grows by the largest whole
    factor that fits, so each native pixel is a square of screen pixels; a
    larger one shrinks to fit.

    Example:
        >>> display_zoom(64, 48), display_zoom(480, 100), display_zoom(960, 100)
        (7.0, 1.0, 0.5)
    """
    if width <= 0 or height <= 0:
        raise ConfigError(f"a task's crop must have pixels, got {width} x {height}")
    fit = min(target / width, max_height / height)
    return float(max(1, math.floor(fit))) if fit >= 1 else fit


def scaled_crop(frame: np.ndarray, zoom: float) -> np.ndarray:
    """``frame`` scaled by ``zoom``: enlarged pixel by pixel (nearest), shrunk by area averaging.

    Example:
        >>> scaled_crop(np.zeros((3, 5, 3), np.uint8), 4.0).shape
        (12, 20, 3)
    """
    h, w = frame.shape[:2]
    size = (max(1, round(w * zoom)), max(1, round(h * zoom)))
    if size == (w, h):
        return frame
    interpolation = cv2.INTER_NEAREST if zoom >= 1 else cv2.INTER_AREA  # crisp native pixels when enlarged
    return cv2.resize(np.ascontiguousarray(frame), size, interpolation=interpolation)


def to_display(box: Sequence[float], region: Sequence[float], scale: tuple[float, float]) -> dict[str, float]:
    """A native box ``[x1, y1, x2, y2]`` as a BBoxWidget box (``x, y, width, height`` in the shown crop's pixels).

    Example:
        >>> to_display([12, 10, 20, 14], (8, 8, 40, 40), (8.0, 8.0))
        {'x': 32.0, 'y': 16.0, 'width': 64.0, 'height': 32.0}
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    sx, sy = scale
    return {"x": (x1 - region[0]) * sx, "y": (y1 - region[1]) * sy, "width": (x2 - x1) * sx, "height": (y2 - y1) * sy}


def to_native(bbox: Mapping[str, Any], region: Sequence[float], scale: tuple[float, float]) -> list[float]:
    """A BBoxWidget box back in native pixels ``[x1, y1, x2, y2]``: rounded to 0.01 px, clipped to ``region``.

    A box drawn from right to left (negative width or height) is turned round.

    Example:
        >>> to_native({"x": 32, "y": 16, "width": 64, "height": 32}, (8, 8, 40, 40), (8.0, 8.0))
        [12.0, 10.0, 20.0, 14.0]
        >>> to_native({"x": -16, "y": 16, "width": 512, "height": -8}, (8, 8, 40, 40), (8.0, 8.0))
        [8.0, 9.0, 40.0, 10.0]
    """
    try:
        x, y, w, h = (float(bbox[k]) for k in ("x", "y", "width", "height"))
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"a drawn box needs numbers x, y, width and height, got {dict(bbox)!r}") from None
    sx, sy = scale
    xs = sorted((region[0] + x / sx, region[0] + (x + w) / sx))
    ys = sorted((region[1] + y / sy, region[1] + (y + h) / sy))
    x1, x2 = (min(max(v, region[0]), region[2]) for v in xs)
    y1, y2 = (min(max(v, region[1]), region[3]) for v in ys)
    return [round(v, _DECIMALS) + 0.0 for v in (x1, y1, x2, y2)]


def shown_label(box: Mapping[str, Any]) -> str:
    """The label a model box shows: its class and score.

    Example:
        >>> shown_label({"label": "circle", "score": 0.913}), shown_label({"label": "square", "score": None})
        ('circle 0.91', 'square')
    """
    score = box.get("score")
    return f"{box['label']} {score:.2f}" if score is not None else str(box["label"])
