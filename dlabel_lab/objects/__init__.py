"""Objects in video: annotated clip frames as a dataset, evaluation of detections against COCO boxes, tracks, tiling.

Names load on first use (see :mod:`dlabel_lab.lazy`).
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "evaluate_detections": ".evaluation",
    "DetectionReport": ".evaluation",
    "frames_dataset": ".frames",
    "FrameDataset": ".frames",
    "collate_detections": ".frames",
    "track_detections": ".tracking",
    "detect_and_track": ".tracking",
    "evaluate_tracks": ".tracking",
    "ObjectTracks": ".tracking",
    "tile_grid": ".tiling",
    "detect_tiled": ".tiling",
    "merge_detections": ".tiling",
    "MERGES": ".tiling",
}

_SUBMODULES = ("evaluation", "frames", "tracking", "tiling")

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, submodules=_SUBMODULES)

__all__ = sorted(_EXPORTS)
