"""A simulated person for labelling pipelines: answers micro-tasks from ground-truth boxes.

Benchmarks (``bench/pipeline_effort.py``) and tutorials need someone to answer
micro-tasks the way a careful person would. :class:`TruthAnnotator` does it
from a COCO annotations file of the same clips (as
:func:`~dlabel_lab.make_object_clips` writes it), matching boxes by IoU:

- ``verify_track``: accept when most of the track's boxes overlap a true
  object (IoU >= ``iou``) of the track's class; relabel to the class most of
  them overlap; reject when at most half overlap anything;
- ``fix_box``: accept a box that already matches a true object of its class;
  otherwise fix it to the true object it overlaps most that no other kept box
  covers, or reject it;
- ``mark_missed``: draw every true object whose centre lies in the task's
  region and that no kept box of its class covers.

Example:
    >>> person = TruthAnnotator(store, "clips/objects/annotations.json")  # doctest: +SKIP
    >>> person.answer(task)  # doctest: +SKIP
    {'verdict': 'relabel', 'label': 'square'}
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..media.objects import ObjectAnnotations, read_object_annotations

__all__ = ["TruthAnnotator", "iou_matrix", "verify_verdict", "fix_verdict", "missed_boxes", "kept_boxes"]

Truth = list[tuple[list[float], str]]


def iou_matrix(a, b) -> np.ndarray:
    """IoU of every box of ``a`` (n, 4) with every box of ``b`` (m, 4), xyxy.

    Example:
        >>> iou_matrix([[0, 0, 2, 2]], [[1, 0, 3, 2], [5, 5, 6, 6]]).round(3).tolist()
        [[0.333, 0.0]]
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def verify_verdict(members: Sequence[dict], truth_of, label: str, *, iou: float = 0.5) -> dict:
    """The answer to a ``verify_track`` task; ``truth_of(frame)`` gives ``[(box, class), ...]``.

    Example:
        >>> verify_verdict([{"frame_index": 0, "box": [0, 0, 4, 4]}], lambda f: [([0, 0, 4, 4], "b")], "a")
        {'verdict': 'relabel', 'label': 'b'}
    """
    matched = []
    for m in members:
        truth = truth_of(m["frame_index"])
        if truth:
            ious = iou_matrix([m["box"]], [t[0] for t in truth])[0]
            j = int(ious.argmax())
            if ious[j] >= iou:
                matched.append(truth[j][1])
    if 2 * len(matched) <= len(members):
        return {"verdict": "reject"}
    best = Counter(matched).most_common(1)[0][0]
    return {"verdict": "accept"} if best == label else {"verdict": "relabel", "label": best}


def fix_verdict(box: Sequence[float], label: str, truth: Truth, claimed: Sequence[Sequence[float]], *,
                iou: float = 0.5) -> dict:
    """The answer to a ``fix_box`` task: accept, fix to the unclaimed true box it overlaps most, or reject.

    Example:
        >>> fix_verdict([0, 0, 4, 4], "a", [([2, 0, 6, 4], "a")], [])
        {'verdict': 'fix', 'box': [2.0, 0.0, 6.0, 4.0], 'label': 'a'}
    """
    if not truth:
        return {"verdict": "reject"}
    ious = iou_matrix([box], [t[0] for t in truth])[0]
    j = int(ious.argmax())
    if ious[j] >= iou and truth[j][1] == label:
        return {"verdict": "accept"}
    free = [k for k in np.argsort(-ious) if ious[k] > 0
            and not any(iou_matrix([truth[k][0]], [c])[0, 0] >= iou for c in claimed)]  # fmt: skip
    if not free:
        return {"verdict": "reject"}
    k = int(free[0])
    return {"verdict": "fix", "box": [float(v) for v in truth[k][0]], "label": truth[k][1]}


def missed_boxes(truth: Truth, kept: Truth, *, region: Sequence[float] | None = None,
                 iou: float = 0.5) -> list[dict]:
    """True boxes that no kept box of their class covers (IoU >= ``iou``), centre inside ``region`` if given.

    Example:
        >>> missed_boxes([([0, 0, 4, 4], "a"), ([10, 10, 14, 14], "a")], [([0, 0, 4, 4], "a")])
        [{'box': [10.0, 10.0, 14.0, 14.0], 'label': 'a'}]
    """
    out = []
    for box, label in truth:
        if region is not None:
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            if not (region[0] <= cx < region[2] and region[1] <= cy < region[3]):
                continue
        same = [k[0] for k in kept if k[1] == label]
        if not same or iou_matrix([box], same)[0].max() < iou:
            out.append({"box": [float(v) for v in box], "label": label})
    return out


def kept_boxes(frame_rows, task) -> Truth:
    """The boxes of ``frame_rows`` (e.g. :func:`~dlabel_lab.resolved_objects`) on the task's clip and first frame.

    Example:
        >>> import pandas as pd
        >>> from types import SimpleNamespace
        >>> rows = pd.DataFrame({"scoring_id": ["a", "a"], "frame_index": [0, 1], "x1": [1.0, 2.0],
        ...                      "y1": [1.0, 2.0], "x2": [5.0, 6.0], "y2": [5.0, 6.0], "label": ["c", "d"]})
        >>> kept_boxes(rows, SimpleNamespace(scoring_id="a", frame_indices=[1]))
        [([2.0, 2.0, 6.0, 6.0], 'd')]
    """
    here = frame_rows[(frame_rows["scoring_id"] == task.scoring_id)
                      & (frame_rows["frame_index"] == task.frame_indices[0])]  # fmt: skip
    return [([float(r.x1), float(r.y1), float(r.x2), float(r.y2)], str(r.label)) for r in here.itertuples()]


class TruthAnnotator:
    """Answers a pipeline's micro-tasks from the true boxes of the clips, as a careful person would.

    Args:
        store: The payload store holding the clips (their raw ``source_name`` is the clip's path
            or file name, as the ingest and detection endpoints log it).
        annotations: The clips' COCO ``annotations.json`` (or the read annotations).
        iou: Overlap at which a box counts as the true object.

    Raises:
        ConfigError: No clip of the annotations is in the store.

    Example:
        >>> person = TruthAnnotator(store, "clips/objects/annotations.json")  # doctest: +SKIP
        >>> dl.answer_task(store, task.task_id, person.answer(task), author="oracle")  # doctest: +SKIP
    """

    def __init__(self, store, annotations: str | os.PathLike | ObjectAnnotations, *, iou: float = 0.5) -> None:
        ann = annotations if isinstance(annotations, ObjectAnnotations) else read_object_annotations(annotations)
        raw = store._df("SELECT scoring_id, source_name FROM raw_payloads")
        by_name: dict[str, list[str]] = defaultdict(list)
        for sid, name in zip(raw["scoring_id"], raw["source_name"], strict=True):
            by_name[str(name)].append(str(sid))
            by_name[Path(str(name)).name].append(str(sid))
        self.truth: dict[tuple[str, int], Truth] = {}
        for im in ann.images:
            sids = by_name.get(str(im["path"])) or by_name.get(Path(im["path"]).name) or []
            boxes = [([float(v) for v in b], ann.classes[int(k) - 1])
                     for b, k in zip(ann.boxes[im["id"]], ann.labels[im["id"]], strict=True)]  # fmt: skip
            for sid in dict.fromkeys(sids):
                self.truth[(sid, int(im["frame_index"]))] = boxes
        if not self.truth:
            raise ConfigError(f"none of the clips of {ann.path} is in the store (matched by path or file name); "
                              "score them into the store first")
        self.store = store
        self.iou = float(iou)

    def truth_of(self, scoring_id: str, frame_index: int) -> Truth:
        """The true ``[(box, class), ...]`` of a frame (empty when it is not annotated)."""
        return self.truth.get((scoring_id, int(frame_index)), [])

    def answer(self, task, *, kept: Truth | None = None) -> dict:
        """The answer to one task (see the module doc).

        Args:
            task: A :class:`~dlabel_lab.labeling.microtasks.Task`.
            kept: For ``fix_box`` and ``mark_missed``, the boxes kept so far on the task's frame
                (default: the task's own model boxes).
        """
        frame = task.frame_indices[0]
        truth = self.truth_of(task.scoring_id, frame)
        shown = [([float(v) for v in b["box"]], str(b["label"])) for b in task.boxes if b["frame_index"] == frame]
        if task.kind == "verify_track":
            label = Counter(str(b["label"]) for b in task.boxes).most_common(1)[0][0] if task.boxes else ""
            return verify_verdict(task.boxes, lambda f: self.truth_of(task.scoring_id, f), label, iou=self.iou)
        if task.kind == "fix_box":
            b = task.boxes[0]
            others = [k[0] for k in (kept if kept is not None else shown) if k[0] != list(b["box"])]
            return fix_verdict(b["box"], b["label"], truth, others, iou=self.iou)
        if task.kind == "mark_missed":
            return {"boxes": missed_boxes(truth, kept if kept is not None else shown, region=task.region,
                                          iou=self.iou)}  # fmt: skip
        raise ConfigError(f"unknown task kind {task.kind!r}")
