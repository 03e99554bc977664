"""Human micro-tasks of a labelling pipeline: hand one out, check and record the answer, show its frames.

A micro-task asks one narrow question about one clip (see :mod:`dlabel_lab.labeling.pipelines`
for how pipelines create them):

- ``verify_track``: "Is every box on this track a square?" on up to 8 frames of the track;
  ``{"verdict": "accept"}``, ``{"verdict": "reject"}`` or ``{"verdict": "relabel", "label": c}``.
- ``mark_missed``: one tile of one frame with the model's boxes drawn; the person draws what has
  no box: ``{"boxes": [{"box": [x1, y1, x2, y2], "label": c}, ...]}`` (an empty list: nothing
  missed).
- ``fix_box``: one model box and its neighbourhood; ``{"verdict": "accept"}``,
  ``{"verdict": "reject"}`` or ``{"verdict": "fix", "box": [...], "label": c}``.

``{"verdict": "skip"}`` is allowed for every kind: it is recorded and the task stays open for
others. Boxes are in pixels of the native frame. :func:`answer_task` validates the whole answer
first, then appends the answer and its ``object_labels`` rows in one transaction (kinds
``verified``, ``rejected``, ``relabelled``, ``fixed``, ``missed``; ``refers_to`` the model object);
a later answer to the same task supersedes the earlier one, nothing is updated in place.
:func:`task_frames` decodes only the task's frames of the stored clip (PyAV seeking through
:func:`~dlabel_lab.read_clip`) and keeps only the crops.

Example:
    >>> task = next_task(store, "boxes-p1", author="ana")  # doctest: +SKIP
    >>> crops = task_frames(store, task)  # doctest: +SKIP
    >>> answer_task(store, task.task_id, {"verdict": "accept"}, author="ana")  # doctest: +SKIP
    0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["TASK_KINDS", "Task", "next_task", "answer_task", "task_frames", "check_answer"]

#: The human micro-task kinds a pipeline step may have.
TASK_KINDS = ("verify_track", "mark_missed", "fix_box")
_VERDICTS = {
    "verify_track": ("accept", "reject", "relabel", "skip"),
    "fix_box": ("accept", "reject", "fix", "skip"),
    "mark_missed": ("skip",),
}
_SKIP = {"verdict": "skip"}


@dataclass(frozen=True)
class Task:
    """One micro-task, as a person (or a widget) sees it.

    Attributes:
        task_id: The task's id.
        pipeline_id: The pipeline that created it.
        step: The pipeline step that created it.
        kind: One of :data:`TASK_KINDS`.
        scoring_id: The clip.
        instruction: One narrow sentence, e.g. ``"Is every box on this track a square?"``.
        frame_indices: Native frames shown: one for ``mark_missed`` and ``fix_box``, up to 8 of
            the track for ``verify_track``.
        region: ``(x0, y0, x1, y1)`` in native pixels (``x1``, ``y1`` exclusive): the tile
            (``mark_missed``), the box's neighbourhood (``fix_box``), the track's union box with a
            margin (``verify_track``).
        boxes: Model boxes shown: ``{"ref": "<model_version>#<object_n>", "frame_index",
            "box": [x1, y1, x2, y2], "label", "score", "track_id"}``.
        classes: The class names an answer may use.
    """

    task_id: str
    pipeline_id: str
    step: str
    kind: str
    scoring_id: str
    instruction: str
    frame_indices: list[int]
    region: tuple[int, int, int, int]
    boxes: list[dict]
    classes: list[str]


def task_from_row(row: Mapping[str, Any]) -> Task:
    """A :class:`Task` from a ``store.tasks()`` row (payload parsed).

    Example:
        >>> task_from_row(store.task(task_id)).kind  # doctest: +SKIP
        'fix_box'
    """
    p = row["payload"]
    return Task(
        task_id=str(row["task_id"]),
        pipeline_id=str(row["pipeline_id"]),
        step=str(row["step"]),
        kind=str(row["kind"]),
        scoring_id=str(row["scoring_id"]),
        instruction=str(row["instruction"]),
        frame_indices=[int(f) for f in p["frame_indices"]],
        region=tuple(int(v) for v in p["region"]),  # type: ignore[arg-type]
        boxes=[dict(b) for b in p["boxes"]],
        classes=[str(c) for c in p["classes"]],
    )


def _author(author: object) -> str:
    if not isinstance(author, str) or not author.strip():
        raise ConfigError(f"give author=<who answers> (a non-empty name), got {author!r}")
    return author.strip()


def next_task(store, pipeline_id: str, *, author: str, step: str | None = None, lease_s: float = 600.0) -> Task | None:
    """The next micro-task for ``author``, recorded as assigned to them; ``None`` when none is open.

    A task already assigned to ``author`` and still unanswered comes first; then the oldest
    unanswered task (in the order of the pipeline's steps), leaving out tasks ``author`` skipped
    and tasks handed to someone else less than ``lease_s`` seconds ago.

    Args:
        store: The :class:`~dlabel_lab.PayloadStore`.
        pipeline_id: The pipeline.
        author: Who will answer.
        step: Only tasks of this human step.
        lease_s: How long an assignment keeps a task from other people.

    Raises:
        ConfigError: No author, or ``step`` is not a human step of the pipeline.
        UnknownRecord: The pipeline is not stored.

    Example:
        >>> task = next_task(store, "boxes-p1", author="ana", step="verify")  # doctest: +SKIP
        >>> task.instruction  # doctest: +SKIP
        'Is every box on this track a square?'
    """
    who = _author(author)
    spec = store.pipeline(pipeline_id)["spec"]
    human = [s["name"] for s in spec if s["kind"] in TASK_KINDS]
    if step is not None and step not in human:
        raise ConfigError(f"step {step!r} is not a human step of {pipeline_id}; choose one of {human} or None")
    task_id = store.claim_task(pipeline_id, author=who, step=step, lease_s=lease_s, order=[s["name"] for s in spec])
    return None if task_id is None else task_from_row(store.task(task_id))


def answer_task(store, task_id: str, answer: Mapping[str, Any], *, author: str) -> int:
    """Record ``author``'s answer to a micro-task and the object labels it implies; the ``answer_id``.

    The answer is validated as a whole before anything is written (see the module docstring for
    the answers of each kind); the answer row and its ``object_labels`` rows (``source``
    ``"pipeline"``, ``task_id`` set) are appended in one transaction. A later answer to the
    same task, by anyone, supersedes this one.

    Raises:
        ConfigError: A bad verdict, a box outside the frame or the task's region, an unknown
            class, or extra keys (nothing is written).
        UnknownRecord: No task has this id.

    Example:
        >>> answer_task(store, task.task_id, {"verdict": "relabel", "label": "circle"}, author="ana")  # doctest: +SKIP
        3
    """
    who = _author(author)
    row = store.task(task_id)
    answer, labels = check_answer(row, answer)
    return store.log_task_answer(row["task_id"], answer, author=who, source="human", object_labels=labels)


def check_answer(row: Mapping[str, Any], answer: object) -> tuple[dict, list[dict]]:
    """Validate an answer to the task ``row``; ``(normalised answer, object label rows)``.

    A pure function of the task and the answer: nothing is read or written.

    Raises:
        ConfigError: The answer does not fit the task's kind, frame, region or classes.

    Example:
        >>> row = {"kind": "fix_box", "scoring_id": sid, "payload": payload}  # doctest: +SKIP
        >>> check_answer(row, {"verdict": "reject"})[1][0]["kind"]  # doctest: +SKIP
        'rejected'
    """
    kind, p = row["kind"], row["payload"]
    if not isinstance(answer, Mapping):
        raise ConfigError(f"an answer is a dict, got {type(answer).__name__}")
    answer = dict(answer)
    if answer.get("verdict") == "skip":
        _keys(answer, {"verdict"}, "a skip")
        return dict(_SKIP), []
    if kind == "mark_missed":
        return _missed(row, p, answer)
    verdicts = _VERDICTS[kind]
    verdict = answer.get("verdict")
    if verdict not in verdicts:
        raise ConfigError(f"a {kind} answer needs verdict one of {', '.join(map(repr, verdicts))}, got {verdict!r}")
    shown = p["members"] if kind == "verify_track" else p["boxes"]
    base = {"scoring_id": row["scoring_id"]}
    if verdict in ("accept", "reject"):
        _keys(answer, {"verdict"}, f"a {verdict!r} answer")
        out = {"kind": "verified" if verdict == "accept" else "rejected"}
        return {"verdict": verdict}, [
            {**base, **out, "frame_index": b["frame_index"], "box": b["box"], "label": p["label"],
             "track_id": b["track_id"], "refers_to": b["ref"]} for b in shown
        ]  # fmt: skip
    if verdict == "relabel":
        _keys(answer, {"verdict", "label"}, "a 'relabel' answer")
        label = _label(answer.get("label"), p["classes"])
        return {"verdict": verdict, "label": label}, [
            {**base, "kind": "relabelled", "frame_index": b["frame_index"], "box": b["box"], "label": label,
             "track_id": b["track_id"], "refers_to": b["ref"]} for b in shown
        ]  # fmt: skip
    _keys(answer, {"verdict", "box", "label"}, "a 'fix' answer")
    box = _box(answer.get("box"), p, "the fixed box")
    label = _label(answer.get("label"), p["classes"])
    b = shown[0]
    return {"verdict": verdict, "box": box, "label": label}, [
        {**base, "kind": "fixed", "frame_index": b["frame_index"], "box": box, "label": label,
         "track_id": b["track_id"], "refers_to": b["ref"]}
    ]  # fmt: skip


def _missed(row: Mapping[str, Any], p: Mapping[str, Any], answer: dict) -> tuple[dict, list[dict]]:
    _keys(answer, {"boxes"}, "a mark_missed answer")
    boxes = answer.get("boxes")
    if isinstance(boxes, (str, bytes, Mapping)) or not isinstance(boxes, Sequence):
        raise ConfigError('a mark_missed answer is {"boxes": [{"box": [x1, y1, x2, y2], "label": <class>}, ...]} '
                          '(an empty list when nothing was missed), or {"verdict": "skip"}')
    out, labels = [], []
    for i, item in enumerate(boxes):
        if not isinstance(item, Mapping):
            raise ConfigError(f"missed box {i} must be a dict with 'box' and 'label', got {type(item).__name__}")
        _keys(dict(item), {"box", "label"}, f"missed box {i}")
        box = _box(item.get("box"), p, f"missed box {i}")
        label = _label(item.get("label"), p["classes"])
        out.append({"box": box, "label": label})
        labels.append({"scoring_id": row["scoring_id"], "kind": "missed", "frame_index": p["frame_indices"][0],
                       "box": box, "label": label})  # fmt: skip
    return {"boxes": out}, labels


def _keys(answer: dict, allowed: set[str], what: str) -> None:
    missing = sorted(allowed - set(answer))
    extra = sorted(set(answer) - allowed)
    if missing or extra:
        raise ConfigError(f"{what} has keys {sorted(answer)}; it needs exactly {sorted(allowed)}")


def _label(label: object, classes: Sequence[str]) -> str:
    if not isinstance(label, str) or label not in classes:
        raise ConfigError(f"label {label!r} is not one of the task's classes {list(classes)}; pick one of them")
    return label


def _box(box: object, p: Mapping[str, Any], what: str) -> list[float]:
    """Four finite numbers ``x1 < x2``, ``y1 < y2`` inside the frame, overlapping the task's region."""
    try:
        values = [float(v) for v in box]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be four numbers [x1, y1, x2, y2] in native pixels, got {box!r}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{what} must be four finite numbers [x1, y1, x2, y2], got {box!r}")
    height, width = p["frame_size"]
    x1, y1, x2, y2 = values
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise ConfigError(f"{what} {values} is not inside the {width}x{height} frame with x1 < x2 and y1 < y2; "
                          "give native pixels of the whole frame (add the region's corner to crop coordinates)")
    rx0, ry0, rx1, ry1 = p["region"]
    if min(x2, rx1) <= max(x1, rx0) or min(y2, ry1) <= max(y1, ry0):
        raise ConfigError(f"{what} {values} lies outside the task's region {list(p['region'])}; "
                          "draw boxes on what the task shows")
    return values


def task_frames(store, task: Task | str, *, max_bytes: int = 256 << 20) -> list[np.ndarray]:
    """The task's frames cropped to its region: uint8 RGB ``(y1 - y0, x1 - x0, 3)``, one per frame index.

    Only those frames of the stored clip are decoded (seeking to their groups of pictures), the
    clip is checked against its sha256 first, and only the crops are kept in memory.

    Args:
        store: The :class:`~dlabel_lab.PayloadStore`.
        task: A :class:`Task` or a task id.
        max_bytes: Budget for the task's frames at native size (as ``ClipSpec.max_bytes``); only
            their crops are kept.

    Raises:
        UnknownRecord: No task has this id.
        StoreCorrupt: The clip file is missing or changed.
        MediaTooLarge: The task's frames would exceed ``max_bytes``.

    Example:
        >>> [c.shape for c in task_frames(store, task)]  # doctest: +SKIP
        [(40, 52, 3)]
    """
    from ..media.video import ClipSpec, read_clip

    row = store.task(task.task_id if isinstance(task, Task) else task)
    p = row["payload"]
    height, width = (int(v) for v in p["frame_size"])
    x0, y0, x1, y1 = (int(v) for v in p["region"])
    crop = (y0 / height, x0 / width, (y1 - y0) / height, (x1 - x0) / width)
    whole = crop == (0.0, 0.0, 1.0, 1.0)
    spec = ClipSpec(frames=None, size=(y1 - y0, x1 - x0), indices=tuple(int(f) for f in p["frame_indices"]),
                    crop=None if whole else crop, max_bytes=max_bytes)  # fmt: skip
    clip = read_clip(store.verified_raw_path(row["scoring_id"]), spec)
    return [np.ascontiguousarray(f) for f in clip.frames]
