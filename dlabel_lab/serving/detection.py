"""The model endpoint for object detectors: clips in, objects with boxes over time and tracks logged.

A :class:`DetectionEndpoint` is what :func:`~dlabel_lab.deploy` is for clip
classifiers, for an :class:`~dlabel_lab.ObjectDetector` version: a clip (path
or bytes, with an optional user score) is staged into the store (bounded,
hashed), decoded at native resolution, detected frame by frame (optionally on
overlapping tiles plus the full frame, duplicates merged), tracked with
norfair, and logged under one scoring id:

- the raw payload (the native clip), as the ingest endpoint logs it;
- the transformed payload: the record says what the detector saw (every native
  frame, its size, the tiling's tile size, overlap and merge, the score
  threshold, the tracker and its options), the digest of the decoded frames,
  and a summary of the identified objects (tracks per class);
- a clip-level prediction (the class with most tracks, confidence the mean
  score of its boxes; ``"no_objects"`` with confidence 0 when nothing was found; the
  "probabilities" are each class's share of the tracks), so detector events
  appear in :meth:`~dlabel_lab.PayloadStore.matched`;
- the objects themselves, one row per box (frame index, timestamp, box,
  class, score, track id) in the store's ``objects`` table, read back with
  :meth:`~dlabel_lab.PayloadStore.objects`.

Nothing is logged for a clip until its detection has succeeded.

Example:
    >>> version, _ = dl.register_detector(store, detector, name="objects")  # doctest: +SKIP
    >>> endpoint = dl.deploy_detector(store, version, score_threshold=0.5, tile=(60, 80))  # doctest: +SKIP
    >>> result = endpoint.score("clips/objects/objects_0000.mp4")  # doctest: +SKIP
    >>> store.objects(model_version=version, min_confidence=0.8).df()  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from ..errors import ConfigError, MediaError
from ..media.video import ClipSpec, read_checked_file
from ..models.registry import load_detector
from .endpoints import _stage_source, check_labels
from .results import ScoringResult
from .threads import check_num_threads, default_num_threads, torch_threads

if TYPE_CHECKING:
    from ..media.video import Clip

__all__ = ["DetectionEndpoint", "deploy_detector", "NO_OBJECTS"]

NO_OBJECTS = "no_objects"
MAX_DETECTION_FRAMES = 3_000  # frames decoded per clip at native size (a 100 s clip at 30 fps)


def _probe_spec(max_file_bytes: int) -> ClipSpec:
    return ClipSpec(frames=1, size=16, max_file_bytes=max_file_bytes)


def _native_spec(height: int, width: int, max_file_bytes: int, max_frames: int) -> ClipSpec:
    return ClipSpec(frames=None, size=(height, width), max_file_bytes=max_file_bytes, max_frames=max_frames)


def frames_digest(frames: np.ndarray) -> str:
    """sha256 of decoded frames (shape, dtype and bytes): the digest of what a detector saw.

    Example:
        >>> len(frames_digest(np.zeros((2, 4, 4, 3), np.uint8)))
        64
    """
    digest = hashlib.sha256()
    digest.update(f"{tuple(frames.shape)}|{frames.dtype}".encode())
    digest.update(np.ascontiguousarray(frames).tobytes())
    return digest.hexdigest()


class DetectionEndpoint:
    """Score clips with an object detector version and log what it identified, with tracks.

    Args:
        detector: An :class:`~dlabel_lab.ObjectDetector`.
        store: The :class:`~dlabel_lab.PayloadStore`.
        model_version: The detector's registered version.
        score_threshold: Boxes scoring below it are dropped before tracking and logging.
        tile: ``(height, width)`` of tiles for small objects (:func:`~dlabel_lab.detect_tiled`),
            or ``None`` (default) to detect on whole frames only.
        overlap: Least overlap of neighbouring tiles.
        merge: How tile duplicates merge: ``"nms"`` or ``"greedy"``.
        tracker: ``"norfair"``.
        tracker_options: Options over norfair's defaults (see :func:`~dlabel_lab.track_detections`).
        batch_size: Frames (or tiles) per forward pass.
        max_frames: Most native frames decoded per clip; a longer clip is refused.
        max_file_bytes: Largest clip file accepted (checked before it is read).
        num_threads: Torch CPU threads while detecting (default: the endpoints' rule).

    Raises:
        ConfigError: A bad argument.

    Example:
        >>> endpoint = DetectionEndpoint(detector, store, model_version="objects-v1")  # doctest: +SKIP
    """

    def __init__(
        self,
        detector,
        store,
        *,
        model_version: str,
        score_threshold: float = 0.5,
        tile: tuple[int, int] | None = None,
        overlap: float = 0.2,
        merge: str = "nms",
        tracker: str = "norfair",
        tracker_options: dict | None = None,
        batch_size: int = 16,
        max_frames: int = MAX_DETECTION_FRAMES,
        max_file_bytes: int = 2 << 30,
        num_threads: int | None = None,
    ) -> None:
        from ..objects.tiling import MERGES
        from ..objects.tracking import TRACKERS

        if not (isinstance(score_threshold, (int, float)) and not isinstance(score_threshold, bool)
                and 0 <= score_threshold <= 1):  # fmt: skip
            raise ConfigError(f"score_threshold must be a number in [0, 1], got {score_threshold!r}")
        if tile is not None:
            if (not isinstance(tile, Sequence) or len(tile) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 8 for v in tile)):  # fmt: skip
                raise ConfigError(f"tile must be (height, width) ints >= 8 or None, got {tile!r}")
            tile = (int(tile[0]), int(tile[1]))
        if not (isinstance(overlap, (int, float)) and 0 <= overlap < 1):
            raise ConfigError(f"overlap must be a number in [0, 1), got {overlap!r}")
        if merge not in MERGES:
            raise ConfigError(f"merge must be one of {', '.join(MERGES)}, got {merge!r}")
        if tracker not in TRACKERS:
            raise ConfigError(f"tracker must be one of {', '.join(TRACKERS)}, got {tracker!r}")
        for name, v in (("batch_size", batch_size), ("max_frames", max_frames), ("max_file_bytes", max_file_bytes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
        if not hasattr(detector, "detect") or not hasattr(detector, "classes"):
            raise ConfigError(f"detector must be an ObjectDetector, got {type(detector).__name__}")
        self.detector = detector.eval()
        self.store = store
        self.model_version = str(model_version)
        self.classes = [str(c) for c in detector.classes]
        self.score_threshold = float(score_threshold)
        self.tile = tile
        self.overlap = float(overlap)
        self.merge = merge
        self.tracker = tracker
        self.tracker_options = dict(tracker_options or {})
        self.batch_size = batch_size
        self.max_frames = max_frames
        self.max_file_bytes = max_file_bytes
        self.num_threads = check_num_threads(num_threads)

    # --- one clip -----------------------------------------------------------------------
    def _decode(self, path, name: str, suffix: str = "") -> Clip:
        probe = read_checked_file(path, _probe_spec(self.max_file_bytes), name=name, suffix=suffix)
        if probe.frame_count and probe.frame_count > self.max_frames:
            raise MediaError(f"{name} has {probe.frame_count} frames; the detection endpoint decodes at most "
                             f"{self.max_frames} native frames per clip. Cut the clip or raise max_frames")
        spec = _native_spec(probe.height, probe.width, self.max_file_bytes, self.max_frames)
        return read_checked_file(path, spec, name=name, suffix=suffix)

    def _detect(self, clip: Clip) -> tuple[list[dict], dict]:
        """Detections per frame (score-filtered) and the tracked rows, plus the record."""
        from ..objects.tiling import detect_tiled
        from ..objects.tracking import _NORFAIR_DEFAULTS, track_detections

        frames = np.asarray(clip.frames)
        record: dict[str, Any] = {
            "kind": "detection", "indices": [int(i) for i in clip.indices], "size": [clip.height, clip.width],
            "frame_count": clip.frame_count, "fps": clip.fps, "score_threshold": self.score_threshold,
            "tile": None, "tracker": self.tracker, "tracker_options": {**_NORFAIR_DEFAULTS, **self.tracker_options},
        }  # fmt: skip
        if self.tile is not None:
            dets, tiling = detect_tiled(self.detector, frames, tile=self.tile, overlap=self.overlap, merge=self.merge,
                                        batch_size=self.batch_size)  # fmt: skip
            record.update(tile=list(tiling["tile"]), overlap=tiling["overlap"], merge=tiling["merge"],
                          n_tiles=tiling["n_tiles"], full_frame=tiling["full_frame"], iou=tiling["iou"])  # fmt: skip
        else:
            dets = self.detector.detect(frames, batch_size=self.batch_size)
        kept = []
        for d in dets:
            boxes = d["boxes"].detach().cpu().numpy().reshape(-1, 4)
            labels = d["labels"].detach().cpu().numpy()
            scores = d["scores"].detach().cpu().numpy()
            keep = (scores >= self.score_threshold) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            kept.append({"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]})
        fps = clip.fps if clip.fps and math.isfinite(clip.fps) and clip.fps > 0 else None
        per_frame = track_detections(kept, tracker=self.tracker, fps=fps, frame_indices=record["indices"],
                                     **self.tracker_options)  # fmt: skip
        rows = []
        for frame in per_frame:
            for r in frame:
                label = int(r["label"])
                if not 1 <= label <= len(self.classes):
                    raise ConfigError(f"the detector returned label {label}, outside its {len(self.classes)} classes")
                x1, y1, x2, y2 = (float(v) for v in r["box"])
                rows.append({
                    "frame_index": int(r["frame_index"]), "timestamp": r["timestamp"],
                    "box": [max(0.0, x1), max(0.0, y1), min(float(clip.width), x2), min(float(clip.height), y2)],
                    "label": self.classes[label - 1], "score": min(1.0, max(0.0, float(r["score"]))),
                    "track_id": int(r["track_id"]),
                })  # fmt: skip
        record["frames_digest"] = frames_digest(frames)
        return rows, record

    @staticmethod
    def _summary(rows: list[dict]) -> tuple[list[dict], str, float]:
        """Tracks per class (the transformed payload's objects) and the clip-level prediction."""
        tracks: dict[int, str] = {}
        scores: dict[str, list[float]] = {}
        for r in rows:
            tracks[r["track_id"]] = r["label"]
            scores.setdefault(r["label"], []).append(r["score"])
        per_class = Counter(tracks.values())
        summary = [{"label": c, "tracks": n, "boxes": len(scores[c]), "score": float(np.mean(scores[c]))}
                   for c, n in sorted(per_class.items(), key=lambda kv: (-kv[1], -np.mean(scores[kv[0]]), kv[0]))]
        if not summary:
            return [], NO_OBJECTS, 0.0
        return summary, summary[0]["label"], summary[0]["score"]

    def _log(self, scoring_id: str, rows: list[dict], record: dict, latency_ms: float, label: str | None,
             log_score: bool, sha256: str = "") -> ScoringResult:
        summary, predicted, confidence = self._summary(rows)
        tracks = {c: 0 for c in self.classes}
        for s in summary:
            tracks[s["label"]] = s["tracks"]
        total = sum(tracks.values())
        shares = [tracks[c] / total if total else 0.0 for c in self.classes]
        self.store.log_transformed(scoring_id, model_version=self.model_version, record=record,
                                   tensor_digest=record["frames_digest"], embedding=[], objects=summary)
        self.store.log_prediction(scoring_id, model_version=self.model_version, label=predicted,
                                  probabilities=shares, confidence=confidence, latency_ms=latency_ms)
        self.store.log_objects(scoring_id, model_version=self.model_version, rows=rows)
        if log_score and label is not None:
            self.store.log_score(scoring_id, label, source="human")
        return ScoringResult(scoring_id=scoring_id, model_version=self.model_version, label=label,
                             predicted_label=predicted, confidence=confidence, latency_ms=latency_ms,
                             sha256=sha256, objects=summary)

    # --- public ---------------------------------------------------------------------------
    def score(self, source, label: str | None = None) -> ScoringResult:
        """Ingest one clip (a path or bytes), detect, track and log; see :meth:`score_many`.

        Example:
            >>> endpoint.score("clips/objects/objects_0000.mp4").objects  # doctest: +SKIP
            [{'label': 'circle', 'tracks': 2, 'boxes': 31, 'score': 0.81}]
        """
        return self.score_many([source], None if label is None else [label], progress=False)[0]

    def score_many(self, sources: Sequence, labels: Sequence[str | None] | None = None, *,
                   on_error: str = "raise", failures: list | None = None,
                   progress: bool = True) -> list[ScoringResult]:
        """Ingest clips one by one: stage, decode at native size, detect, track, then log everything.

        Args:
            sources: Clip paths or bytes.
            labels: An optional clip-level user score per clip (a class name or ``None``).
            on_error: ``"raise"`` stops at a clip that cannot be read (earlier clips stay
                logged, that clip logs nothing); ``"skip"`` leaves it out and goes on.
            failures: With ``"skip"``, ``(index, error)`` of each clip left out is appended here.
            progress: Show a progress bar.

        Raises:
            UnknownLabel: A label is not a class (before anything is logged).
            MediaError: A clip cannot be read (with ``on_error="raise"``).

        Example:
            >>> results = endpoint.score_many(paths, on_error="skip")  # doctest: +SKIP
        """
        sources = list(sources)
        labels = [None] * len(sources) if labels is None else list(labels)
        if len(labels) != len(sources):
            raise ConfigError(f"{len(labels)} labels for {len(sources)} clips; pass one label (or None) per clip")
        if on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        check_labels(labels, self.classes, what="detector")
        spec = _probe_spec(self.max_file_bytes)
        results = []
        with torch_threads(self.num_threads or default_num_threads()):
            for i, (source, label) in enumerate(tqdm(list(zip(sources, labels, strict=True)), unit="clip",
                                                     desc=f"detecting with {self.model_version}",
                                                     disable=not progress)):  # fmt: skip
                staged = None
                try:
                    staged, name, suffix = _stage_source(self.store, source, spec)
                    t0 = time.perf_counter()
                    clip = self._decode(staged.path, repr(name), suffix)
                    rows, record = self._detect(clip)
                    latency = 1000 * (time.perf_counter() - t0)
                except MediaError as error:
                    if staged is not None:
                        self.store.discard_staged(staged)
                    if on_error == "raise":
                        raise
                    if failures is not None:
                        failures.append((i, error))
                    continue
                except BaseException:
                    if staged is not None:
                        self.store.discard_staged(staged)
                    raise
                sid = self.store.new_scoring_id()
                meta = {"fps": clip.fps, "frame_count": clip.frame_count, "width": clip.width,
                        "height": clip.height, "codec": clip.codec, "container": clip.container}  # fmt: skip
                (sha,) = self.store.log_raw_many([{"scoring_id": sid, "staged": staged, "source_name": name,
                                                   "metadata": meta}])  # fmt: skip
                results.append(self._log(sid, rows, record, latency, label, log_score=True, sha256=sha))
        return results

    def detect_stored(self, scoring_ids: Sequence[str], *, progress: bool = True) -> list[ScoringResult]:
        """Run this detector version on clips already in the store (no new raw rows, no new scores).

        Clips this version has already scored are left as they are (idempotent), so a labelling
        pipeline can run its pre-labelling step again. Each clip is read from its stored file,
        checked against its digest.

        Returns:
            One result per clip newly scored, in the order given.

        Example:
            >>> endpoint.detect_stored(store.matched_df()["scoring_id"].unique())  # doctest: +SKIP
        """
        ids = [str(s) for s in scoring_ids]
        done = set()
        if ids:
            done = set(self.store.matched(scoring_ids=ids, model_version=self.model_version).df()["scoring_id"])
        results = []
        with torch_threads(self.num_threads or default_num_threads()):
            for sid in tqdm([s for s in dict.fromkeys(ids) if s not in done], unit="clip",
                            desc=f"detecting with {self.model_version}", disable=not progress):  # fmt: skip
                t0 = time.perf_counter()
                clip = self._decode(self.store.verified_raw_path(sid), f"clip {sid}")
                rows, record = self._detect(clip)
                results.append(self._log(sid, rows, record, 1000 * (time.perf_counter() - t0), None,
                                         log_score=False))  # fmt: skip
        return results


def deploy_detector(store, model_version: str, **options) -> DetectionEndpoint:
    """Deploy a registered detector version (see :func:`~dlabel_lab.register_detector`) behind a
    :class:`DetectionEndpoint`.

    Args:
        store: The payload store.
        model_version: The detector version.
        **options: :class:`DetectionEndpoint` options (``score_threshold``, ``tile``, ...).

    Example:
        >>> endpoint = deploy_detector(store, "objects-v1", tile=(60, 80), score_threshold=0.4)  # doctest: +SKIP
    """
    detector = load_detector(store, model_version)
    return DetectionEndpoint(detector, store, model_version=model_version, **options)
