"""Tracks of objects over clip frames: link per-frame detections into tracks, and score them.

norfair (BSD-3-Clause) does the tracking: a Kalman filter per object and IoU matching of
detections to the predicted boxes. motmetrics (MIT) computes every tracking metric (MOTA, IDF1, ID
switches: the CLEAR-MOT and identity metrics of the MOT Challenge). This module validates the
inputs, turns detector output into norfair detections and tracks back into rows, gives each track
one class (the majority of its detections' labels) and lines tracks up with the ground truth of
:func:`~dlabel_lab.make_object_clips`.

Example:
    >>> import numpy as np
    >>> boxes = [{"boxes": np.array([[10.0, 10, 30, 30]]) + 2 * t, "labels": np.array([1])} for t in range(3)]
    >>> [row["track_id"] for frame in track_detections(boxes) for row in frame]
    [1, 1, 1]
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..media.objects import MAX_ANNOTATION_BYTES, ObjectAnnotations, read_object_annotations

__all__ = ["track_detections", "detect_and_track", "evaluate_tracks", "ObjectTracks", "TRACKERS"]

#: Trackers :func:`track_detections` accepts.
TRACKERS: tuple[str, ...] = ("norfair",)
#: norfair settings, tuned on 20 clips of :func:`~dlabel_lab.make_object_clips` (seed 900) and kept on 40 others:
#: a new object is reported on its first frame, a track lives through gaps of a few frames, and boxes that overlap
#: the predicted box by IoU > 0.05 may join it (small objects move far relative to their size).
_NORFAIR_DEFAULTS = {"distance_threshold": 0.95, "hit_counter_max": 5, "initialization_delay": 0}
_RATIOS = ("mota", "motp", "idf1", "idp", "idr")
_COLUMNS = [
    "frame_index",
    "timestamp",
    "x1",
    "y1",
    "x2",
    "y2",
    "label",
    "class",
    "score",
    "track_id",
    "detector_version",
]


@dataclass(frozen=True)
class ObjectTracks:
    """Tracked objects of one clip.

    Attributes:
        objects: One row per tracked box, ordered by frame then track: ``frame_index``,
            ``timestamp`` (seconds), ``box`` ``[x1, y1, x2, y2]`` in pixels, ``label`` (the track's
            class, 1-based), ``detected_label`` (this box's own label), ``score`` and ``track_id``.
        clip: The clip the frames came from.
        fps: Its frame rate.
        n_frames: Frames tracked.
        classes: Class names (label ``k`` is ``classes[k - 1]``), if known.
        detector_version: The detector's version, if known.
    """

    objects: list[dict]
    clip: str
    fps: float
    n_frames: int
    classes: list[str] | None = None
    detector_version: str | None = None
    options: dict = field(default_factory=dict, repr=False)

    @property
    def n_tracks(self) -> int:
        """Number of distinct tracks."""
        return len({row["track_id"] for row in self.objects})

    def table(self) -> pd.DataFrame:
        """One row per tracked box: ``frame_index, timestamp, x1, y1, x2, y2, label, class, score, track_id,
        detector_version``.

        Example:
            >>> tracks.table().groupby("track_id")["frame_index"].agg(["min", "max"])  # doctest: +SKIP
        """
        rows = [
            {
                "frame_index": r["frame_index"],
                "timestamp": r["timestamp"],
                **dict(zip(("x1", "y1", "x2", "y2"), r["box"], strict=True)),
                "label": r["label"],
                "class": self._class_name(r["label"]),
                "score": r["score"],
                "track_id": r["track_id"],
                "detector_version": self.detector_version,
            }
            for r in self.objects
        ]
        return pd.DataFrame(rows, columns=_COLUMNS)

    def _class_name(self, label: int) -> str | None:
        return self.classes[label - 1] if self.classes and 1 <= label <= len(self.classes) else None


def track_detections(
    detections_per_frame: Sequence[Mapping],
    *,
    tracker: str = "norfair",
    fps: float | None = None,
    frame_indices: Sequence[int] | None = None,
    **tracker_options,
) -> list[list[dict]]:
    """Link per-frame detections into tracks with norfair's IoU tracker.

    Matching ignores labels, so a detector that flips a box's class does not break its track;
    afterwards every row of a track gets the track's class, the label most of its detections
    carry (ties go to the higher summed score, then the lower label). A track is reported on the
    frames where one of the given boxes joined it (its box and score are that detection's); it
    survives gaps of a few frames (``hit_counter_max``) without being reported in them.

    Args:
        detections_per_frame: One dict per frame, in frame order: ``boxes`` ``(n, 4)`` xyxy in
            pixels, ``labels`` ``(n,)`` and optionally ``scores`` ``(n,)`` (default 1.0);
            arrays or tensors, as :meth:`~dlabel_lab.ObjectDetector.detect` returns them. Filter
            by score before.
        tracker: ``"norfair"`` (see :data:`TRACKERS`).
        fps: Frame rate, for ``timestamp`` (``None``: timestamps are ``None``).
        frame_indices: The clip frame index of each entry (default ``0, 1, ...``), increasing.
        **tracker_options: Passed to ``norfair.Tracker`` over the defaults
            ``distance_threshold=0.95`` (1 - IoU), ``hit_counter_max=5`` and
            ``initialization_delay=0``.

    Returns:
        Per frame, a list of rows ``{frame_index, timestamp, box, label, detected_label, score,
        track_id}``; track ids start at 1.

    Raises:
        ConfigError: Unknown tracker or option, or malformed boxes, labels, scores or indices.

    Example:
        >>> dets = model.detect(dl.read_clip(path, spec).frames)  # doctest: +SKIP
        >>> frames = track_detections([keep_confident(d) for d in dets], fps=12.0)  # doctest: +SKIP
    """
    if tracker not in TRACKERS:
        raise ConfigError(f"unknown tracker {tracker!r}; choose one of {', '.join(TRACKERS)}")
    if isinstance(detections_per_frame, Mapping) or not isinstance(detections_per_frame, Sequence):
        raise ConfigError("detections_per_frame must be a list with one {'boxes', 'labels'} dict per frame")
    frames = [_as_frame(d, k) for k, d in enumerate(detections_per_frame)]
    indices = _check_indices(frame_indices, len(frames))
    if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ConfigError(f"fps must be a positive number or None, got {fps!r}")
    options = {**_NORFAIR_DEFAULTS, **tracker_options}
    per_frame = _run_norfair(frames, options)
    return _rows(frames, per_frame, indices, fps)


def detect_and_track(
    detector,
    clip_path: str | os.PathLike,
    *,
    score_threshold: float = 0.5,
    tracker: str = "norfair",
    batch_size: int = 16,
    detector_version: str | None = None,
    **tracker_options,
) -> ObjectTracks:
    """Detect objects on every frame of a clip, then track them (:func:`track_detections`).

    Frames are decoded at native resolution; ``fps`` and timestamps come from the clip.

    Args:
        detector: An :class:`~dlabel_lab.ObjectDetector` (anything with ``detect(frames)`` and
            ``classes``).
        clip_path: The clip.
        score_threshold: Detections scoring below it are dropped before tracking. MOTA counts every
            false positive, so a weak detector tracks best with a high threshold (a tiny_fcos trained
            for 12 epochs on 64 frames scored MOTA -0.42 at 0.5 and 0.02 at 0.8).
        tracker: See :func:`track_detections`.
        batch_size: Frames per forward pass.
        detector_version: Recorded in the table (default: the detector's ``version`` attribute, if any).
        **tracker_options: See :func:`track_detections`.

    Returns:
        The :class:`ObjectTracks`.

    Raises:
        ConfigError: A bad threshold or option.
        MediaError: The clip cannot be read.

    Example:
        >>> tracks = detect_and_track(model, "clips/objects/objects_0003.mp4")  # doctest: +SKIP
        >>> tracks.table().head()  # doctest: +SKIP
    """
    from ..media.video import ClipSpec, read_clip

    if not (isinstance(score_threshold, (int, float)) and 0 <= score_threshold <= 1):
        raise ConfigError(f"score_threshold must be a number in [0, 1], got {score_threshold!r}")
    path = Path(clip_path)
    probe = read_clip(path, ClipSpec(frames=1, size=16))
    clip = read_clip(path, ClipSpec(frames=None, size=(probe.height, probe.width)))
    dets = []
    for d in detector.detect(clip.frames, batch_size=batch_size):
        boxes, labels, scores = (
            np.asarray(d[k].detach().cpu() if hasattr(d[k], "detach") else d[k]) for k in ("boxes", "labels", "scores")
        )
        boxes = boxes.reshape(-1, 4)
        keep = (scores >= score_threshold) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        dets.append({"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]})
    frames = track_detections(dets, tracker=tracker, fps=clip.fps, frame_indices=clip.indices, **tracker_options)
    version = detector_version if detector_version is not None else getattr(detector, "version", None)
    classes = getattr(detector, "classes", None)
    return ObjectTracks(
        objects=[row for frame in frames for row in frame],
        clip=str(path),
        fps=float(clip.fps),
        n_frames=len(frames),
        classes=list(classes) if classes is not None else None,
        detector_version=None if version is None else str(version),
        options={"tracker": tracker, "score_threshold": score_threshold, **_NORFAIR_DEFAULTS, **tracker_options},
    )


def evaluate_tracks(
    tracks: ObjectTracks | Sequence,
    annotations: str | os.PathLike | ObjectAnnotations,
    clip: str | os.PathLike | None = None,
    *,
    iou_threshold: float = 0.5,
    max_bytes: int = MAX_ANNOTATION_BYTES,
) -> dict:
    """Score tracks of one clip against its annotated tracks with motmetrics.

    A tracked box matches a ground-truth box when their IoU is at least ``iou_threshold``; labels
    are not compared (the MOT Challenge convention). Every annotated frame of the clip counts,
    also frames without tracks.

    Args:
        tracks: :class:`ObjectTracks`, or :func:`track_detections` output (per-frame lists of rows,
            or a flat list of rows).
        annotations: The clip's ``annotations.json`` (or its folder, or the read
            :class:`~dlabel_lab.media.objects.ObjectAnnotations`), with ``track_id`` per box.
        clip: The clip's path or file name as in the annotations (default: ``tracks.clip``).
        iou_threshold: Smallest IoU of a match, in ``(0, 1]``.
        max_bytes: Largest annotations file read.

    Returns:
        ``mota``, ``motp`` (mean 1 - IoU of matches), ``idf1``, ``idp``, ``idr``, ``id_switches``,
        ``fragmentations``, ``false_positives``, ``misses``, ``objects`` (ground-truth boxes),
        ``predictions``, ``frames``, ``gt_tracks``, ``predicted_tracks``, ``mostly_tracked``, and the
        identity counts ``idtp``, ``idfp``, ``idfn`` (to pool IDF1 over clips);
        ratios are ``nan`` where undefined (MOTA without ground truth).

    Raises:
        ConfigError: The clip is not in the annotations, tracks on frames it does not annotate,
            or malformed rows.

    Example:
        >>> evaluate_tracks(tracks, "clips/objects/annotations.json")["mota"]  # doctest: +SKIP
        0.81
    """
    import motmetrics as mm

    if not (isinstance(iou_threshold, (int, float)) and 0 < iou_threshold <= 1):
        raise ConfigError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
    if isinstance(annotations, (str, os.PathLike)):
        annotations = read_object_annotations(annotations, max_bytes=max_bytes)
    if not isinstance(annotations, ObjectAnnotations):
        raise ConfigError("annotations must be an annotations.json path or ObjectAnnotations")
    if clip is None:
        if not isinstance(tracks, ObjectTracks):
            raise ConfigError("pass clip= (the clip's path) with tracks that are not ObjectTracks")
        clip = tracks.clip
    images = _clip_images(annotations, clip)
    rows = _track_rows(tracks)
    by_frame: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        by_frame[row["frame_index"]].append(row)
    extra = sorted(set(by_frame) - {im["frame_index"] for im in images})
    if extra:
        raise ConfigError(
            f"tracks on frames {extra[:5]} that {annotations.path} does not annotate for {clip}; "
            "pass the tracks and annotations of the same clip"
        )
    acc = mm.MOTAccumulator(auto_id=False)
    for im in images:
        truth, ids = annotations.boxes[im["id"]].astype(np.float64), annotations.track_ids[im["id"]]
        hyp = by_frame.get(im["frame_index"], [])
        boxes = np.asarray([r["box"] for r in hyp], np.float64).reshape(-1, 4)
        acc.update(
            list(ids),
            [r["track_id"] for r in hyp],
            _distances(mm, truth, boxes, iou_threshold),
            frameid=im["frame_index"],
        )
    names = {
        "mota": "mota",
        "motp": "motp",
        "idf1": "idf1",
        "idp": "idp",
        "idr": "idr",
        "num_switches": "id_switches",
        "num_fragmentations": "fragmentations",
        "num_false_positives": "false_positives",
        "num_misses": "misses",
        "num_objects": "objects",
        "num_predictions": "predictions",
        "num_frames": "frames",
        "num_unique_objects": "gt_tracks",
        "mostly_tracked": "mostly_tracked",
        "idtp": "idtp",
        "idfp": "idfp",
        "idfn": "idfn",
    }
    summary = mm.metrics.create().compute(acc, metrics=list(names), name="clip").iloc[0]
    out = {new: float(summary[old]) if new in _RATIOS else int(summary[old]) for old, new in names.items()}
    out["predicted_tracks"] = len({r["track_id"] for r in rows})
    return out


# --- private helpers -------------------------------------------------------------------------
def _as_frame(d, k: int) -> dict[str, np.ndarray]:
    where = f"detections_per_frame[{k}]"
    if not isinstance(d, Mapping) or "boxes" not in d or "labels" not in d:
        raise ConfigError(f"{where} must be a dict with 'boxes' (n, 4) xyxy and 'labels' (n,) (and 'scores')")
    try:
        boxes = np.asarray(_numpy(d["boxes"]), np.float64)
        labels = np.asarray(_numpy(d["labels"])).reshape(-1)
        scores = np.ones(len(labels)) if d.get("scores") is None else np.asarray(_numpy(d["scores"]), np.float64)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: boxes, labels and scores must be numeric arrays or tensors ({e})") from None
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ConfigError(
            f"{where}: boxes must be shaped (n, 4) as x1, y1, x2, y2, got {boxes.shape}; "
            "pass one row per box (an empty frame is np.zeros((0, 4)))"
        )
    scores = scores.reshape(-1)
    if len(labels) != len(boxes) or len(scores) != len(boxes):
        raise ConfigError(
            f"{where}: {len(boxes)} boxes with {len(labels)} labels and {len(scores)} scores; "
            "give one label and one score per box"
        )
    if labels.dtype.kind not in "iuf" or (labels.dtype.kind == "f" and not np.all(np.mod(labels, 1) == 0)):
        raise ConfigError(f"{where}: labels must be integers (1-based class indices), got {labels[:3]}")
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise ConfigError(f"{where}: boxes and scores must be finite")
    bad = np.flatnonzero((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))
    if len(bad):
        raise ConfigError(
            f"{where}: box {boxes[bad[0]].tolist()} has no positive width and height; boxes must be "
            "x1, y1, x2, y2 with x2 > x1 and y2 > y1. Convert x, y, w, h boxes with "
            "torchvision.ops.box_convert(boxes, 'xywh', 'xyxy') and drop empty boxes before tracking"
        )
    return {"boxes": boxes, "labels": labels.astype(np.int64), "scores": scores}


def _numpy(v):
    return v.detach().cpu().numpy() if hasattr(v, "detach") else v


def _check_indices(frame_indices, n: int) -> list[int]:
    if frame_indices is None:
        return list(range(n))
    indices = list(frame_indices)
    ok = all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) and i >= 0 for i in indices)
    if not ok or len(indices) != n or any(b <= a for a, b in zip(indices, indices[1:], strict=False)):
        raise ConfigError(f"frame_indices must be {n} increasing ints >= 0, one per frame, got {indices[:5]}...")
    return [int(i) for i in indices]


def _run_norfair(frames: list[dict], options: dict) -> list[list[tuple[int, int]]]:
    """Per frame, ``(detection index, track id)`` of the detections that joined a track on that frame."""
    import norfair

    try:
        tracker = norfair.Tracker(distance_function="iou", **options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad tracker option ({e}); see norfair.Tracker for the options it takes") from None
    out = []
    for f, frame in enumerate(frames):
        dets = [
            norfair.Detection(points=box.reshape(2, 2), scores=np.array([s, s]), data=(f, k))
            for k, (box, s) in enumerate(zip(frame["boxes"], frame["scores"], strict=True))
        ]
        objects = tracker.update(dets)
        out.append(sorted((o.last_detection.data[1], o.id) for o in objects if o.last_detection.data[0] == f))
    return out


def _rows(frames, per_frame, indices, fps) -> list[list[dict]]:
    votes: dict[int, Counter] = defaultdict(Counter)
    weight: dict[int, Counter] = defaultdict(Counter)
    for frame, matched in zip(frames, per_frame, strict=True):
        for k, track in matched:
            votes[track][int(frame["labels"][k])] += 1
            weight[track][int(frame["labels"][k])] += float(frame["scores"][k])
    label_of = {t: max(c, key=lambda lab, t=t: (c[lab], weight[t][lab], -lab)) for t, c in votes.items()}
    out = []
    for frame, matched, index in zip(frames, per_frame, indices, strict=True):
        rows = [
            {
                "frame_index": index,
                "timestamp": None if fps is None else round(index / fps, 6),
                "box": [float(v) for v in frame["boxes"][k]],
                "label": label_of[track],
                "detected_label": int(frame["labels"][k]),
                "score": float(frame["scores"][k]),
                "track_id": int(track),
            }
            for k, track in matched
        ]
        out.append(sorted(rows, key=lambda r: r["track_id"]))
    return out


def _clip_images(annotations: ObjectAnnotations, clip) -> list[dict]:
    target = Path(clip).expanduser()
    resolved = str(target.resolve())
    images = [im for im in annotations.images if im["path"] == resolved]
    if not images:  # a bare file name, as in the annotations' file_name
        images = [im for im in annotations.images if Path(im["path"]).name == target.name and not target.parent.name]
    if not images:
        names = sorted({Path(im["path"]).name for im in annotations.images})
        raise ConfigError(f"clip {str(clip)!r} is not in {annotations.path}; choose one of {names[:5]}...")
    return sorted(images, key=lambda im: im["frame_index"])


def _track_rows(tracks) -> list[dict]:
    if isinstance(tracks, ObjectTracks):
        rows = tracks.objects
    elif isinstance(tracks, Sequence) and not isinstance(tracks, (str, bytes)):
        rows = [r for item in tracks for r in (item if isinstance(item, Sequence) else [item])]
    else:
        raise ConfigError("tracks must be ObjectTracks or the rows track_detections returns")
    for k, r in enumerate(rows):
        if not (isinstance(r, Mapping) and {"frame_index", "box", "track_id"} <= set(r) and len(r["box"]) == 4):
            raise ConfigError(f"track row {k} needs 'frame_index', 'box' [x1, y1, x2, y2] and 'track_id'")
    return list(rows)


def _distances(mm, truth: np.ndarray, boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """1 - IoU between ground truth and tracked boxes (xyxy), ``nan`` below the threshold.

    Uses ``motmetrics.distances.boxiou``: motmetrics 1.4.0's ``iou_matrix`` calls ``np.asfarray``,
    removed in NumPy 2 (py-motmetrics issue #199, fixed after the release).
    """
    if not len(truth) or not len(boxes):
        return np.empty((len(truth), len(boxes)))

    def xywh(b):
        return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)

    dist = 1.0 - mm.distances.boxiou(xywh(truth)[:, None], xywh(boxes)[None, :])
    return np.where(dist > 1.0 - iou_threshold + 1e-12, np.nan, dist)
