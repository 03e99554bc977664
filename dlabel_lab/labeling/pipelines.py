"""Labelling pipelines: machine steps pre-label and route, people answer narrow micro-tasks.

A pipeline is a declarative list of steps, each with a unique ``name``, a ``kind`` and, except for
the first, ``after`` (the step whose output it takes):

- ``detect`` (machine, exactly one, first): pre-label the clips with a registered detector version
  (``"detector": "objects-v1"``, run through :func:`~dlabel_lab.deploy_detector` with
  ``score_threshold``, ``tile`` and ``overlap``; tracked and logged once per clip), or use the
  objects a version already logged (``"objects_from": "<model_version>"``: pre-labels imported
  from elsewhere; ``classes`` is needed when that version is not registered).
- ``route`` (machine, at most one, after ``detect``): by confidence. A track (a box without a
  track id is its own track) scores the mean of its boxes' scores: ``>= high`` is trusted,
  ``[low, high)`` uncertain (goes to people), ``< low`` dropped. A box without a score is uncertain.
  ``duplicate_iou`` (default 0.5, ``None`` turns it off) also drops a track that repeats a
  better-scored one (median IoU at least that on half its frames, whatever the classes): a weak
  detector's extra tracks on one object are not asked about one by one (on ``bench/pipeline_effort.py``
  they were most of its false positives, and most of the verdicts).
- ``verify_track`` (after ``route``): one task per uncertain track, "Is every box on this track a
  square?", shown on up to ``max_frames`` (8) frames.
- ``fix_box`` (after ``route``): one task per box of an uncertain track, lowest score first, at
  most ``max_per_clip`` per clip.
- ``mark_missed`` (after ``detect`` or ``route``): one task per tile
  (:func:`~dlabel_lab.objects.tile_grid` with ``tile`` and ``overlap``; default the whole frame) of
  every ``frame_stride``-th frame, with the kept boxes drawn: "draw what has no box".

:func:`run_pipeline` runs the machine steps on clips already in the store and writes the tasks
(idempotent: task ids are derived from pipeline, step, clip and track/box/tile, so a re-run adds
nothing); :mod:`~dlabel_lab.labeling.microtasks` hands them out and records answers;
:mod:`~dlabel_lab.labeling.pipeline_results` turns answers into final boxes and training sets.
norfair tracks (through the detection endpoint), torchvision's NMS merges tiles, PyAV decodes;
this module is the glue.

Example:
    >>> pid = define_pipeline(store, name="boxes", steps=[
    ...     {"name": "prelabel", "kind": "detect", "detector": "objects-v1", "score_threshold": 0.3},
    ...     {"name": "route", "kind": "route", "after": "prelabel", "low": 0.3, "high": 0.7},
    ...     {"name": "verify", "kind": "verify_track", "after": "route"},
    ...     {"name": "missed", "kind": "mark_missed", "after": "route", "frame_stride": 4}])  # doctest: +SKIP
    >>> run_pipeline(store, pid, scoring_ids).created  # doctest: +SKIP
    {'verify': 7, 'missed': 24}
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..errors import ConfigError, UnknownRecord
from ..store import io
from .microtasks import TASK_KINDS, Task, answer_task, check_answer, next_task, task_frames
from .pipeline_results import (
    ROUTES,
    clip_facts,
    export_coco,
    missed_objects,
    pipeline_objects,
    resolved_objects,
    route_tracks,
)

__all__ = ["TASK_KINDS", "MACHINE_KINDS", "Task", "PipelineRun", "define_pipeline", "run_pipeline", "next_task",
           "answer_task", "task_frames", "check_answer", "pipeline_status", "check_steps", "route_tracks",
           "resolved_objects", "missed_objects", "export_coco"]

#: The machine step kinds: pre-label with a detector, route by confidence.
MACHINE_KINDS = ("detect", "route")
_OPTIONS = {
    "detect": {"detector": None, "objects_from": None, "score_threshold": 0.3, "tile": None, "overlap": 0.2,
               "classes": None},
    "route": {"low": 0.3, "high": 0.7, "duplicate_iou": 0.5},
    "verify_track": {"max_frames": 8, "max_per_clip": None, "instruction": None},
    "fix_box": {"max_per_clip": None, "instruction": None},
    "mark_missed": {"tile": None, "overlap": 0.1, "frame_stride": 1, "instruction": None},
}  # fmt: skip
_AFTER = {"route": ("detect",), "verify_track": ("route",), "fix_box": ("route",),
          "mark_missed": ("detect", "route")}  # fmt: skip
_MAX_TRACK_FRAMES = 32


@dataclass(frozen=True)
class PipelineRun:
    """What :func:`run_pipeline` did.

    Attributes:
        pipeline_id: The pipeline.
        scoring_ids: The clips, in the order given.
        run_id: The execution-log run (``store.runs("pipeline")``).
        objects: Model boxes read after the detect step's score threshold.
        routed: Tracks per route: ``trusted``, ``uncertain``, ``dropped``, ``duplicate``.
        created: New tasks per human step (0 on a re-run).
        tasks: Tasks per human step for these clips, new and earlier.
    """

    pipeline_id: str
    scoring_ids: list[str]
    run_id: str
    objects: int
    routed: dict[str, int] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)


# --- the spec -----------------------------------------------------------------------------------
def _number(v: object, what: str, lo: float, hi: float, *, hi_open: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{what} must be a number, got {v!r}")
    if not lo <= v <= hi or (hi_open and v >= hi):
        raise ConfigError(f"{what} must lie in [{lo}, {hi}{')' if hi_open else ']'}, got {v!r}")
    return float(v)


def _count(v: object, what: str, *, optional: bool = False, most: int | None = None) -> int | None:
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 or (most is not None and v > most):
        raise ConfigError(f"{what} must be an int from 1{f' to {most}' if most else ''}, got {v!r}")
    return int(v)


def _tile(v: object, what: str, least: int = 1) -> list[int] | None:
    if v is None:
        return None
    if (isinstance(v, (str, bytes)) or not isinstance(v, Sequence) or len(v) != 2
            or not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= least for x in v)):
        raise ConfigError(f"{what} must be [height, width], ints >= {least} pixels (or None for the whole frame), "
                          f"got {v!r}")
    return [int(x) for x in v]


def check_steps(store, steps: object) -> list[dict]:
    """Validate a pipeline's steps; the steps with every option filled in.

    Raises:
        ConfigError: What is wrong and how to fix it (the first problem found).
        UnknownRecord: A ``detector`` version is not registered.

    Example:
        >>> check_steps(store, [{"name": "pre", "kind": "detect", "objects_from": "imp-v1",
        ...                      "classes": ["a"]}])[0]["score_threshold"]  # doctest: +SKIP
        0.3
    """
    if isinstance(steps, (str, bytes, Mapping)) or not isinstance(steps, Sequence) or not steps:
        raise ConfigError("steps must be a non-empty list of step dicts, e.g. [{'name': 'prelabel', 'kind': "
                          "'detect', 'detector': 'objects-v1'}, ...]")
    out: list[dict] = []
    kinds: dict[str, str] = {}
    for i, step in enumerate(steps):
        if not isinstance(step, Mapping):
            raise ConfigError(f"step {i} must be a dict, got {type(step).__name__}")
        name = io.check_name(step.get("name"), what=f"step {i}'s name")
        if name in kinds:
            raise ConfigError(f"two steps are named {name!r}; give every step a unique name")
        kind = step.get("kind")
        if kind not in _OPTIONS:
            raise ConfigError(f"step {name!r} has kind {kind!r}; choose one of {', '.join(MACHINE_KINDS + TASK_KINDS)}")
        extra = sorted(set(step) - {"name", "kind", "after"} - set(_OPTIONS[kind]))
        if extra:
            raise ConfigError(f"step {name!r} ({kind}) does not take {extra}; it takes {sorted(_OPTIONS[kind])}")
        after = step.get("after")
        if kind == "detect":
            if after is not None or kinds:
                raise ConfigError(f"the detect step {name!r} must be the first step and have no 'after'")
        else:
            if after not in kinds:
                raise ConfigError(f"step {name!r} needs after=<an earlier step's name>, got {after!r}; list steps in "
                                  f"the order they run (earlier: {list(kinds)})")
            if kinds[after] not in _AFTER[kind]:
                raise ConfigError(f"a {kind} step runs after a {' or '.join(_AFTER[kind])} step; {name!r} runs after "
                                  f"{after!r} ({kinds[after]})")
        if kind == "route" and "route" in kinds.values():
            raise ConfigError("a pipeline has at most one route step; define another pipeline for other thresholds")
        full = {"name": name, "kind": kind, "after": after, **_OPTIONS[kind],
                **{k: v for k, v in step.items() if k in _OPTIONS[kind]}}  # fmt: skip
        out.append(_check_options(store, full))
        kinds[name] = kind
    if kinds[out[0]["name"]] != "detect":
        raise ConfigError("the first step must be a detect step (a detector version or objects_from)")
    return out


def _check_options(store, s: dict) -> dict:
    name, kind = s["name"], s["kind"]
    if kind == "detect":
        if (s["detector"] is None) == (s["objects_from"] is None):
            raise ConfigError(f"detect step {name!r} needs exactly one of detector=<registered detector version> "
                              "or objects_from=<model version whose objects are logged>")
        s["score_threshold"] = _number(s["score_threshold"], f"{name}: score_threshold", 0, 1)
        s["overlap"] = _number(s["overlap"], f"{name}: overlap", 0, 1, hi_open=True)
        s["tile"] = _tile(s["tile"], f"{name}: tile", least=8)
        if s["detector"] is not None:
            from ..models.registry import is_detector

            if s["classes"] is not None:
                raise ConfigError(f"{name}: classes come from the detector version; leave classes out")
            info = store.get_model(io.check_name(s["detector"], what=f"{name}: detector"))
            if not is_detector(info):
                raise ConfigError(f"{name}: model version {s['detector']} is a clip classifier, not a detector; "
                                  "register an ObjectDetector with dl.register_detector")
            s["classes"] = list(info["classes"])
        else:
            version = io.check_name(s["objects_from"], what=f"{name}: objects_from")
            if s["tile"] is not None:
                raise ConfigError(f"{name}: tile applies to running a detector, not to objects_from")
            if s["classes"] is None:
                try:
                    s["classes"] = list(store.get_model(version)["classes"])
                except UnknownRecord:
                    raise ConfigError(f"{name}: {version} is not a registered model version, so give "
                                      "classes=[...] (the class names its objects use)") from None
        classes = s["classes"]
        if isinstance(classes, str) or not isinstance(classes, Sequence) or not classes \
                or not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes):
            raise ConfigError(f"{name}: classes must be distinct non-empty names, got {classes!r}")
        s["classes"] = list(classes)
    elif kind == "route":
        s["low"] = _number(s["low"], f"{name}: low", 0, 1)
        s["high"] = _number(s["high"], f"{name}: high", 0, 1)
        if s["low"] > s["high"]:
            raise ConfigError(f"{name}: low {s['low']} is above high {s['high']}; uncertain is [low, high)")
        if s["duplicate_iou"] is not None:
            s["duplicate_iou"] = _number(s["duplicate_iou"], f"{name}: duplicate_iou", 0, 1)
    else:
        if "max_frames" in s:
            s["max_frames"] = _count(s["max_frames"], f"{name}: max_frames", most=_MAX_TRACK_FRAMES)
        if "max_per_clip" in s:
            s["max_per_clip"] = _count(s["max_per_clip"], f"{name}: max_per_clip", optional=True)
        if kind == "mark_missed":
            s["tile"] = _tile(s["tile"], f"{name}: tile")
            s["overlap"] = _number(s["overlap"], f"{name}: overlap", 0, 1, hi_open=True)
            s["frame_stride"] = _count(s["frame_stride"], f"{name}: frame_stride")
        if s["instruction"] is not None and (not isinstance(s["instruction"], str) or not s["instruction"].strip()):
            raise ConfigError(f"{name}: instruction must be one sentence (use {{label}} for the class), got "
                              f"{s['instruction']!r}")
    return s


def define_pipeline(store, *, name: str, steps: list[dict]) -> str:
    """Validate and store a pipeline; its id ``f"{name}-p{n}"`` (the same steps again give the same id).

    Args:
        store: The :class:`~dlabel_lab.PayloadStore`.
        name: The pipeline's name.
        steps: The steps (see the module docstring).

    Raises:
        ConfigError: A bad step, option or order; the message says what to change.
        UnknownRecord: A ``detector`` version is not registered.

    Example:
        >>> define_pipeline(store, name="boxes", steps=[
        ...     {"name": "prelabel", "kind": "detect", "detector": "objects-v1"},
        ...     {"name": "missed", "kind": "mark_missed", "after": "prelabel", "tile": [60, 80]}])  # doctest: +SKIP
        'boxes-p1'
    """
    return store.log_pipeline(name, check_steps(store, steps))


# --- running ---------------------------------------------------------------------------------------
def run_pipeline(store, pipeline_id: str, scoring_ids: Sequence[str], *, progress: bool = True) -> PipelineRun:
    """Run the pipeline's machine steps on stored clips and write its human micro-tasks.

    A ``detector`` step runs the version through the detection endpoint
    (:func:`~dlabel_lab.deploy_detector`), which logs each clip's objects once; an
    ``objects_from`` step reads the objects already logged. Then tasks are created per human step
    and clip. Task ids come from pipeline, step, clip and track/box/tile, so a re-run writes no
    duplicates; the run is recorded in the execution log (kind ``"pipeline"``).

    Args:
        store: The :class:`~dlabel_lab.PayloadStore`.
        pipeline_id: From :func:`define_pipeline`.
        scoring_ids: Clips already in the store.
        progress: Show progress bars.

    Raises:
        ConfigError: No clips.
        UnknownRecord: An unknown pipeline or a clip not in the store.

    Example:
        >>> run = run_pipeline(store, "boxes-p1", store.matched().df().scoring_id.tolist())  # doctest: +SKIP
        >>> run.created  # doctest: +SKIP
        {'verify': 7, 'missed': 24}
    """
    spec = store.pipeline(pipeline_id)["spec"]
    if isinstance(scoring_ids, str) or not isinstance(scoring_ids, Sequence) or not scoring_ids:
        raise ConfigError("run_pipeline needs a non-empty list of scoring ids of clips in the store")
    sids = list(dict.fromkeys(io.check_scoring_id(s) for s in scoring_ids))
    facts = clip_facts(store, sids)
    detect = spec[0]
    with store.run("pipeline", {"pipeline_id": pipeline_id, "scoring_ids": sids}) as run_id:
        if detect["detector"] is not None:
            from ..serving.detection import deploy_detector

            endpoint = deploy_detector(store, detect["detector"], score_threshold=detect["score_threshold"],
                                       tile=None if detect["tile"] is None else tuple(detect["tile"]),
                                       overlap=detect["overlap"])  # fmt: skip
            endpoint.detect_stored(sids, progress=progress)
        objects = pipeline_objects(store, spec, sids)
        per_clip = {sid: g for sid, g in objects.groupby("scoring_id", sort=False)}
        empty = objects.iloc[0:0]
        rows, totals = [], {}
        for step in (s for s in spec if s["kind"] in TASK_KINDS):
            before = len(rows)
            for sid in tqdm(sids, desc=f"{pipeline_id} {step['name']}", unit="clip", disable=not progress):
                rows += _make_tasks(pipeline_id, step, sid, per_clip.get(sid, empty), facts[sid], detect["classes"])
            totals[step["name"]] = len(rows) - before
        written = set(store.log_tasks(rows))  # every step's tasks in one insert: all or none
        new = Counter(r["step"] for r in rows if r["task_id"] in written)
        created = {step: new.get(step, 0) for step in totals}
    routed = objects.drop_duplicates("track")["route"].value_counts() if len(objects) else pd.Series(dtype=int)
    return PipelineRun(pipeline_id=pipeline_id, scoring_ids=sids, run_id=run_id, objects=len(objects),
                       routed={k: int(routed.get(k, 0)) for k in ROUTES},
                       created=created, tasks=totals)  # fmt: skip


def _box_dict(r: Mapping[str, Any]) -> dict:
    score, track = r["score"], r["track_id"]
    return {"ref": r["ref"], "frame_index": int(r["frame_index"]),
            "box": [float(r["x1"]), float(r["y1"]), float(r["x2"]), float(r["y2"])], "label": r["label"],
            "score": None if pd.isna(score) else float(score),
            "track_id": None if pd.isna(track) else int(track)}  # fmt: skip


def _region(boxes: Sequence[Sequence[float]], size: tuple[int, int], margin: float) -> list[int]:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height, width = size
    x0, y0 = max(0, math.floor(b[:, 0].min() - margin)), max(0, math.floor(b[:, 1].min() - margin))
    x1, y1 = min(width, math.ceil(b[:, 2].max() + margin)), min(height, math.ceil(b[:, 3].max() + margin))
    return [x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)]


def _margin(boxes: Sequence[Sequence[float]]) -> float:
    """Half the median box side, at least 8 px: enough context to judge a box, not a whole frame."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return max(8.0, 0.5 * float(np.median(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]))))


def _say(step: dict, default: str, label: str) -> str:
    return (step["instruction"] or default).replace("{label}", label)


def _class_list(classes: Sequence[str]) -> str:
    if len(classes) == 1:
        return classes[0]
    if len(classes) > 5:
        return "object of the listed classes"
    return f"{', '.join(classes[:-1])} or {classes[-1]}"


def _make_tasks(pid: str, step: dict, sid: str, objects: pd.DataFrame, facts: dict, classes: list[str]) -> list:
    """The task rows of one human step on one clip (a pure function of the clip's routed objects)."""
    size = (facts["height"], facts["width"])
    base = {"pipeline_id": pid, "step": step["name"], "kind": step["kind"], "scoring_id": sid}
    payload = {"classes": classes, "frame_size": list(size)}
    kept = objects[objects["route"].isin(("trusted", "uncertain"))]
    rows = []
    if step["kind"] == "mark_missed":
        from ..objects.tiling import tile_grid

        tiles = ([(0, 0, size[1], size[0])] if step["tile"] is None
                 else tile_grid(size[0], size[1], tile=tuple(step["tile"]), overlap=step["overlap"]))  # fmt: skip
        by_frame = {int(f): g for f, g in kept.groupby("frame_index")}
        say = _say(step, f"Draw a box around every {_class_list(classes)} in this tile that has no box yet.", "")
        for f in range(0, facts["frame_count"], step["frame_stride"]):
            here = by_frame.get(f, kept.iloc[0:0])
            for k, (x0, y0, x1, y1) in enumerate(tiles):
                inside = here[(here.x1 < x1) & (here.x2 > x0) & (here.y1 < y1) & (here.y2 > y0)]
                rows.append({**base, "task_id": f"{pid}/{step['name']}/{sid}/f{f:07d}-tile{k:04d}", "instruction": say,
                             "payload": {**payload, "frame_indices": [f], "region": [x0, y0, x1, y1],
                                         "boxes": [_box_dict(r) for r in inside.to_dict("records")]}})  # fmt: skip
        return rows
    uncertain = objects[objects["route"] == "uncertain"]
    if step["kind"] == "fix_box":
        order = uncertain.assign(_s=uncertain["score"].fillna(-1.0)).sort_values(["_s", "object_n"])
        if step["max_per_clip"] is not None:
            order = order.head(step["max_per_clip"])
        for r in order.sort_values("object_n").to_dict("records"):
            box = _box_dict(r)
            region = _region([box["box"]], size, _margin([box["box"]]))
            rows.append({**base, "task_id": f"{pid}/{step['name']}/{sid}/object{int(r['object_n']):09d}",
                         "instruction": _say(step, "Is this box tight around one {label}?", r["label"]),
                         "payload": {**payload, "frame_indices": [box["frame_index"]], "boxes": [box],
                                     "label": r["label"], "region": region}})  # fmt: skip
        return rows
    groups = list(uncertain.groupby("track", sort=False))
    if step["max_per_clip"] is not None:
        groups = sorted(groups, key=lambda kv: (kv[1]["score"].fillna(-1.0).mean(), kv[0]))[: step["max_per_clip"]]
    for _, g in sorted(groups, key=lambda kv: (int(kv[1]["frame_index"].min()), kv[0])):
        members = [_box_dict(r) for r in g.sort_values(["frame_index", "object_n"]).to_dict("records")]
        frames = sorted({m["frame_index"] for m in members})
        if len(frames) > step["max_frames"]:
            frames = sorted({frames[int(round(i))] for i in np.linspace(0, len(frames) - 1, step["max_frames"])})
        label = Counter(m["label"] for m in members).most_common(1)[0][0]
        boxes = [m for m in members if m["frame_index"] in frames]
        all_boxes = [m["box"] for m in members]
        t = members[0]["track_id"]
        tail = f"track{t:010d}" if t is not None else f"object{int(g['object_n'].iloc[0]):09d}"
        rows.append({**base, "task_id": f"{pid}/{step['name']}/{sid}/{tail}",
                     "instruction": _say(step, "Is every box on this track a {label}?", label),
                     "payload": {**payload, "frame_indices": frames, "boxes": boxes, "members": members, "label": label,
                                 "region": _region(all_boxes, size, _margin(all_boxes))}})  # fmt: skip
    return rows


def pipeline_status(store, pipeline_id: str) -> pd.DataFrame:
    """Per human step: ``tasks``, ``answered`` (a non-skip answer), ``skipped`` (only skips), ``open`` (no answer).

    Skipped tasks are still handed to people other than those who skipped them.

    Example:
        >>> pipeline_status(store, "boxes-p1")  # doctest: +SKIP
             step          kind  tasks  answered  skipped  open
        0  verify  verify_track      7         5        1     1
    """
    spec = store.pipeline(pipeline_id)["spec"]
    tasks = store.tasks(pipeline_id=pipeline_id)
    answers = store.task_answers(pipeline_id=pipeline_id)
    skip = answers["answer"].map(lambda a: a == {"verdict": "skip"})
    done = set(answers.loc[~skip, "task_id"])
    touched = set(answers["task_id"])
    rows = []
    for s in (s for s in spec if s["kind"] in TASK_KINDS):
        ids = set(tasks.loc[tasks["step"] == s["name"], "task_id"])
        rows.append({"step": s["name"], "kind": s["kind"], "tasks": len(ids), "answered": len(ids & done),
                     "skipped": len((ids & touched) - done), "open": len(ids - touched)})  # fmt: skip
    return pd.DataFrame(rows, columns=["step", "kind", "tasks", "answered", "skipped", "open"])
