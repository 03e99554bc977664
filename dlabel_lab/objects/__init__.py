"""Objects in video: annotated clip frames as a dataset, and evaluation of detections against COCO boxes.

Names load on first use (see :mod:`dlabel_lab.lazy`).
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "evaluate_detections": ".evaluation",
    "DetectionReport": ".evaluation",
    "frames_dataset": ".frames",
    "FrameDataset": ".frames",
    "collate_detections": ".frames",
}

_SUBMODULES = ("evaluation", "frames")

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, submodules=_SUBMODULES)

__all__ = sorted(_EXPORTS)
