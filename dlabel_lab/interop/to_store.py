"""Ingest a :class:`~dlabel_lab.interop.labelset.LabelSet` into a store through an endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, MediaError, MissingMedia
from ..serving.endpoints import check_labels
from .labelset import LabelSet, check_labelset

__all__ = ["ImportReport", "ingest_labelset"]


@dataclass
class ImportReport:
    """What an import brought into the store.

    Attributes:
        format: The file format read.
        path: The file (or folder) read.
        scoring_ids: Per clip of the file, in order, its new scoring id (``None`` if it failed).
        labels: User scores logged.
        boxes: People's boxes logged (object labels of kind ``box``).
        tracks: Distinct tracks among them.
        predictions_skipped: Predicted boxes in the file (never imported as labels).
        failures: ``(clip index, media path, error message)`` of clips that could not be read.
        run_id: The import's entry in the execution log.
    """

    format: str
    path: str
    scoring_ids: list[str | None] = field(default_factory=list)
    labels: int = 0
    boxes: int = 0
    tracks: int = 0
    predictions_skipped: int = 0
    failures: list[tuple[int, str, str]] = field(default_factory=list)
    run_id: str | None = None

    def summary(self) -> str:
        ok = sum(s is not None for s in self.scoring_ids)
        text = (f"imported {ok} of {len(self.scoring_ids)} clips from {self.format} ({self.path}): {self.labels} "
                f"clip labels, {self.boxes} boxes in {self.tracks} tracks")
        if self.predictions_skipped:
            text += f"; {self.predictions_skipped} predicted boxes not imported (predictions are not labels)"
        if self.failures:
            text += f"; {len(self.failures)} clips failed (first: {self.failures[0][1]}: {self.failures[0][2]})"
        return text


def ingest_labelset(
    ls: LabelSet,
    endpoint,
    *,
    source: str,
    path: str = "",
    on_error: str = "skip",
    progress: bool = True,
) -> ImportReport:
    """Ingest every clip through ``endpoint``, then log its labels and boxes under the new scoring ids.

    The clips go through the endpoint like any other (new scoring ids, raw payloads, what the
    model saw and predicted). A clip's label becomes a user score and its boxes people's object
    labels (kind ``box``), with the source and author the file gives, or ``source`` (the
    format's name) where it gives none. Predictions in the file are not imported.

    Args:
        ls: The label set; media are absolute paths (as ``read`` functions return them).
        endpoint: An ingest endpoint (:func:`~dlabel_lab.deploy`) or a detection endpoint
            (:func:`~dlabel_lab.deploy_detector`).
        source: Default label source, e.g. ``"coco"``.
        path: The file read, for the report and the execution log.
        on_error: A clip that cannot be read is left out either way and every other clip is
            imported with its labels; ``"skip"`` lists it in :attr:`ImportReport.failures`,
            ``"raise"`` then raises :class:`~dlabel_lab.errors.MediaError`.
        progress: Show a progress bar.

    Raises:
        ConfigError: The label set is invalid, or ``on_error`` is unknown.
        UnknownLabel: A clip label (or, for a detector, a box label) is not one of the
            endpoint's classes; nothing is logged.
        MissingMedia: A clip file is missing; nothing is logged.
        MediaError: With ``on_error="raise"``, when a clip could not be read.

    Example:
        >>> report = ingest_labelset(ls, dl.deploy_version(store, "shapes-v1"), source="coco")  # doctest: +SKIP
    """
    check_labelset(ls)
    if on_error not in ("skip", "raise"):
        raise ConfigError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    if not hasattr(endpoint, "score_many") or not hasattr(endpoint, "store"):
        raise ConfigError(f"endpoint must be an ingest or detection endpoint (dl.deploy...), got "
                          f"{type(endpoint).__name__}")
    classes = list(getattr(endpoint, "classes", []) or [])
    detector = hasattr(endpoint, "detect_stored")
    if classes:
        check_labels([c.label for c in ls.clips], classes, what="endpoint's model")
        if detector:
            check_labels([b.label for c in ls.clips for b in c.boxes], classes, what="detector")
    missing = [c.media for c in ls.clips if not Path(c.media).is_file()]
    if missing:
        raise MissingMedia(f"{len(missing)} clip file(s) named in {path or 'the label file'} do not exist (first: "
                           f"{missing[0]}); nothing was imported. Put the clips beside the file as it names them")
    store = endpoint.store
    report = ImportReport(format=source, path=str(path), predictions_skipped=sum(len(c.predictions) for c in ls.clips))
    run = store.start_run("import", {"format": source, "path": str(path), "clips": len(ls.clips),
                                     "model_version": getattr(endpoint, "model_version", None)})
    failures: list = []
    try:
        results = endpoint.score_many([c.media for c in ls.clips], None, on_error="skip", failures=failures,
                                      progress=progress)
        failed = dict(failures)
        it = iter(results)
        ids: list[str | None] = [None if i in failed else next(it).scoring_id for i in range(len(ls.clips))]
        report.scoring_ids = ids
        report.failures = [(i, ls.clips[i].media, f"{type(e).__name__}: {e}") for i, e in sorted(failed.items())]
        _log_labels(store, ls, ids, source, report)
    except BaseException as error:
        store.finish_run(run, status="failed", error=error)
        raise
    store.finish_run(run, result={"scoring_ids": ids, "labels": report.labels, "boxes": report.boxes,
                                  "tracks": report.tracks, "failures": report.failures})
    report.run_id = run
    if failed and on_error == "raise":
        i, e = min(failed.items())
        raise MediaError(f"{len(failed)} clip(s) of {path or 'the label file'} cannot be read (first: clip {i}, "
                         f"{ls.clips[i].media}: {e}). The other {sum(s is not None for s in ids)} clips were imported "
                         f"with their labels (run {run}); fix the failed clips and import them alone") from e
    return report


def _log_labels(store, ls: LabelSet, ids: Sequence[str | None], source: str, report: ImportReport) -> None:
    scores, boxes, tracks = [], [], set()
    for clip, sid in zip(ls.clips, ids, strict=True):
        if sid is None:
            continue
        if clip.label is not None:
            scores.append({"scoring_id": sid, "label": clip.label, "source": clip.label_source or source,
                           "author": clip.label_author})
        for b in clip.boxes:
            boxes.append({"scoring_id": sid, "frame_index": b.frame_index, "kind": "box",
                          "box": [b.x1, b.y1, b.x2, b.y2], "label": b.label, "track_id": b.track_id,
                          "source": b.source or source, "author": b.author})
            if b.track_id is not None:
                tracks.add((sid, b.track_id))
    if scores:
        store.log_score_many(scores)
    if boxes:
        store.log_object_labels(boxes, source=source)
    report.labels, report.boxes, report.tracks = len(scores), len(boxes), len(tracks)
