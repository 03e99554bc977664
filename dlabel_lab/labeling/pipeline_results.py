"""What a labelling pipeline's objects become: routed model boxes, people's answers applied, training sets.

:func:`pipeline_objects` reads the detect step's boxes of some clips and routes their tracks by
confidence (:func:`route_tracks`, a pure function). :func:`resolved_objects` applies the latest
answer of every micro-task: trusted boxes are kept unreviewed, uncertain boxes count once a
person accepted, relabelled or fixed them (box-level ``fix_box`` answers over track-level
``verify_track`` ones), rejected ones go, and the boxes people marked missed join.
:func:`missed_objects` is the missed-objects training set, :func:`export_coco` writes any of these
as a COCO ``annotations.json`` that :func:`~dlabel_lab.read_object_annotations` and
:func:`~dlabel_lab.frames_dataset` read, so the detector can be retrained on it. pandas does the
grouping; the format is the one :func:`~dlabel_lab.make_object_clips` writes.

Example:
    >>> final = resolved_objects(store, "boxes-p1")  # doctest: +SKIP
    >>> export_coco(store, final, "exports/boxes", classes=["circle", "square", "triangle"])  # doctest: +SKIP
    PosixPath('exports/boxes/annotations.json')
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..store import io

__all__ = ["route_tracks", "pipeline_objects", "clip_facts", "resolved_objects", "missed_objects", "export_coco",
           "RESOLVED_COLUMNS", "MISSED_COLUMNS"]

#: Columns of :func:`resolved_objects`.
RESOLVED_COLUMNS = ("scoring_id", "frame_index", "x1", "y1", "x2", "y2", "label", "score", "track_id", "ref",
                    "status", "reviewed", "task_id")
#: Columns of :func:`missed_objects`.
MISSED_COLUMNS = ("scoring_id", "frame_index", "timestamp", "x1", "y1", "x2", "y2", "label", "author", "task_id",
                  "pipeline_id", "labelled_at", "media_path", "width", "height")
_DUPLICATE_IOU = 0.5


# --- routing (pure) -------------------------------------------------------------------------------
#: The routes of :func:`route_tracks`; people see ``trusted`` and ``uncertain`` boxes, review the uncertain ones.
ROUTES = ("trusted", "uncertain", "dropped", "duplicate")


def route_tracks(objects: pd.DataFrame, *, low: float, high: float, duplicate_iou: float | None = None) -> pd.Series:
    """The route of each object's track: ``"trusted"`` (mean score ``>= high``), ``"uncertain"``, ``"dropped"``.

    A box without ``track_id`` is a track of its own; a track with a box without a score is uncertain.
    With ``duplicate_iou``, a track whose boxes overlap a better-scored kept track of the same clip
    (whatever the classes) with median IoU ``>= duplicate_iou`` on at least half of its frames is
    routed ``"duplicate"`` and goes like a dropped one: a weak detector's second and third tracks on
    one object are not asked about, one by one.

    Example:
        >>> objs = pd.DataFrame({"scoring_id": ["a"] * 3, "object_n": [0, 1, 2], "track_id": [1, 1, None],
        ...                      "score": [0.9, 0.7, 0.2]})
        >>> route_tracks(objs, low=0.3, high=0.7).tolist()
        ['trusted', 'trusted', 'dropped']
    """
    if objects.empty:
        return pd.Series([], dtype=object, index=objects.index)
    keys = _track_keys(objects)
    scores = objects["score"].astype(float)
    mean = scores.groupby(keys).transform("mean")
    unscored = scores.isna().groupby(keys).transform("any")
    route = np.where(mean >= high, "trusted", np.where(mean >= low, "uncertain", "dropped"))
    out = pd.Series(np.where(unscored, "uncertain", route), index=objects.index, dtype=object)
    if duplicate_iou is not None:
        dup = _duplicates(objects, keys, mean.where(~unscored, -1.0), out != "dropped", duplicate_iou)
        out[keys.isin(dup)] = "duplicate"
    return out


def _duplicates(objects: pd.DataFrame, keys: pd.Series, rank: pd.Series, kept: pd.Series, iou: float) -> set[str]:
    """Tracks that repeat a better-ranked kept track of their clip (greedy, best first, like NMS on tracks)."""
    boxes = objects[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)
    tracks: dict[str, dict[int, np.ndarray]] = {}
    for k, f, b in zip(keys[kept], objects["frame_index"][kept], boxes[kept.to_numpy()], strict=True):
        tracks.setdefault(k, {})[int(f)] = b
    best = rank.groupby(keys).first()
    clip = objects["scoring_id"].groupby(keys).first()
    order = sorted(tracks, key=lambda k: (clip[k], -best[k], k))
    found: set[str] = set()
    held: dict[str, list[str]] = {}
    for k in order:
        mine = tracks[k]
        for other in held.get(clip[k], []):
            shared = sorted(set(mine) & set(tracks[other]))
            if 2 * len(shared) >= len(mine) and shared:
                a = np.stack([mine[f] for f in shared])
                b = np.stack([tracks[other][f] for f in shared])
                if float(np.median(_pair_iou(a, b))) >= iou:
                    found.add(k)
                    break
        else:
            held.setdefault(clip[k], []).append(k)
    return found


def _pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of the boxes ``a[i]`` and ``b[i]``, row by row."""
    w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = w * h
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _track_keys(objects: pd.DataFrame) -> pd.Series:
    tracks = objects["track_id"]
    return pd.Series(
        [f"{s}/t{int(t)}" if t is not None and not pd.isna(t) else f"{s}/o{int(n)}"
         for s, t, n in zip(objects["scoring_id"], tracks, objects["object_n"], strict=True)],
        index=objects.index,
    )  # fmt: skip


# --- the clips and their routed objects ----------------------------------------------------------
def clip_facts(store, scoring_ids: Sequence[str]) -> dict[str, dict]:
    """Per clip: ``path``, ``width``, ``height``, ``frame_count``, ``fps`` (probed where the store lacks them).

    Example:
        >>> clip_facts(store, [sid])[sid]["width"]  # doctest: +SKIP
        96
    """
    facts = store.clip_facts(list(scoring_ids))
    out = {}
    for row in facts.to_dict("records"):
        sid = row["scoring_id"]
        known = all(row[k] is not None and not pd.isna(row[k]) for k in ("width", "height", "frame_count", "fps"))
        if not known:
            from ..media.video import ClipSpec, read_clip

            clip = read_clip(store.verified_raw_path(sid), ClipSpec(frames=1, size=16))
            row.update(width=clip.width, height=clip.height, frame_count=clip.frame_count, fps=clip.fps)
        out[sid] = {"path": row["media_path"], "width": int(row["width"]), "height": int(row["height"]),
                    "frame_count": int(row["frame_count"]), "fps": float(row["fps"])}  # fmt: skip
    return out


def pipeline_objects(store, spec: list[dict], scoring_ids: Sequence[str]) -> pd.DataFrame:
    """The detect step's objects of these clips above its threshold, with ``ref`` and ``route`` columns.

    Example:
        >>> pipeline_objects(store, store.pipeline(pid)["spec"], [sid]).route.value_counts()  # doctest: +SKIP
    """
    detect = spec[0]
    version = detect["detector"] or detect["objects_from"]
    frame = store.objects(model_version=version, scoring_ids=list(scoring_ids)).df()
    frame = frame[frame["score"].isna() | (frame["score"] >= detect["score_threshold"])].reset_index(drop=True)
    frame["ref"] = [f"{v}#{int(n)}" for v, n in zip(frame["model_version"], frame["object_n"], strict=True)]
    route = next((s for s in spec if s["kind"] == "route"), None)
    frame["route"] = "trusted" if route is None else route_tracks(frame, low=route["low"], high=route["high"],
                                                                  duplicate_iou=route.get("duplicate_iou"))
    frame["track"] = _track_keys(frame) if len(frame) else pd.Series([], dtype=object)
    return frame




def pipeline_clips(store, pipeline_id: str) -> list[str]:
    """The clips a pipeline ran on (its finished runs in the execution log), in the order first run.

    Example:
        >>> len(pipeline_clips(store, "boxes-p1"))  # doctest: +SKIP
        3
    """
    store.pipeline(pipeline_id)
    runs = store.runs("pipeline")
    sids: dict[str, None] = {}
    for params, status in zip(runs["params"], runs["status"], strict=True):
        p = json.loads(params)
        if status == "ok" and p.get("pipeline_id") == pipeline_id:
            sids.update(dict.fromkeys(p.get("scoring_ids", [])))
    return list(sids)


def _sids(store, pipeline_id: str, scoring_ids: Sequence[str] | None) -> list[str]:
    if scoring_ids is None:
        return pipeline_clips(store, pipeline_id)
    if isinstance(scoring_ids, str) or not isinstance(scoring_ids, Sequence):
        raise ConfigError(f"scoring_ids must be a list of scoring ids (or None for every clip), got {scoring_ids!r}")
    return list(dict.fromkeys(io.check_scoring_id(s) for s in scoring_ids))


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _latest(store, pipeline_id: str | None, sids: Sequence[str] | None) -> tuple[pd.DataFrame, dict, dict]:
    """The latest non-skip answer per task, and each task's kind and payload."""
    tasks = store.tasks(pipeline_id=pipeline_id, scoring_ids=None if sids is None else list(sids))
    answers = store.task_answers(pipeline_id=pipeline_id, latest=True)
    answers = answers[answers["task_id"].isin(set(tasks["task_id"]))]
    kinds = dict(zip(tasks["task_id"], tasks["kind"], strict=True))
    payloads = dict(zip(tasks["task_id"], tasks["payload"], strict=True))
    return answers, kinds, payloads


def resolved_objects(store, pipeline_id: str, scoring_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The final boxes per clip and frame after people's answers (the latest answer of each task wins).

    Model boxes of trusted tracks stay (``reviewed=False``, status ``"trusted"``); boxes of
    uncertain tracks stay once a person accepted (``"verified"``), relabelled (``"relabelled"``)
    or fixed (``"fixed"``) them, and go when rejected or not yet answered; dropped tracks go.
    A ``fix_box`` answer about a box overrides a ``verify_track`` answer about its track. Boxes
    people marked missed join with status ``"missed"``; one marked again in an overlapping tile
    (same frame and class, IoU >= 0.5) counts once.

    Args:
        store: The :class:`~dlabel_lab.PayloadStore`.
        pipeline_id: The pipeline.
        scoring_ids: Only these clips (default: every clip the pipeline ran on).

    Returns:
        A DataFrame with :data:`RESOLVED_COLUMNS`, ordered by clip, frame and box.

    Example:
        >>> final = resolved_objects(store, "boxes-p1")  # doctest: +SKIP
        >>> final.status.value_counts()  # doctest: +SKIP
    """
    spec = store.pipeline(pipeline_id)["spec"]
    sids = _sids(store, pipeline_id, scoring_ids)
    objects = pipeline_objects(store, spec, sids)
    state: dict[str, dict] = {}
    for r in objects[objects["route"].isin(("trusted", "uncertain"))].to_dict("records"):
        state[(r["scoring_id"], r["ref"])] = {
            "scoring_id": r["scoring_id"], "frame_index": int(r["frame_index"]),
            "box": [r["x1"], r["y1"], r["x2"], r["y2"]], "label": r["label"], "score": r["score"],
            "track_id": None if pd.isna(r["track_id"]) else int(r["track_id"]), "ref": r["ref"],
            "status": r["route"], "reviewed": False, "task_id": None,
        }  # fmt: skip
    answers, kinds, payloads = _latest(store, pipeline_id, sids)
    missed = []
    for kind in ("verify_track", "fix_box", "mark_missed"):
        for a in answers[answers["task_id"].map(kinds) == kind].to_dict("records"):
            p, ans = payloads[a["task_id"]], a["answer"]
            if kind == "mark_missed":
                missed += [{"scoring_id": a["scoring_id"], "frame_index": p["frame_indices"][0], "box": b["box"],
                            "label": b["label"], "task_id": a["task_id"]} for b in ans["boxes"]]  # fmt: skip
                continue
            for m in p["members"] if kind == "verify_track" else p["boxes"]:
                s = state.get((a["scoring_id"], m["ref"]))
                if s is None:
                    continue
                verdict = ans["verdict"]
                s.update(reviewed=True, task_id=a["task_id"], box=list(m["box"]), label=p["label"],
                         status={"accept": "verified", "reject": "rejected", "relabel": "relabelled",
                                 "fix": "fixed"}[verdict])  # fmt: skip
                if verdict in ("relabel", "fix"):
                    s["label"] = ans["label"]
                if verdict == "fix":
                    s["box"] = list(ans["box"])
    rows = [s for s in state.values() if s["status"] not in ("uncertain", "rejected")]
    kept: dict[tuple, list] = {}
    for m in missed:
        same = kept.setdefault((m["scoring_id"], m["frame_index"], m["label"]), [])
        if any(_iou(m["box"], b) >= _DUPLICATE_IOU for b in same):
            continue
        same.append(m["box"])
        rows.append({**m, "score": None, "track_id": None, "ref": None, "status": "missed", "reviewed": True})
    out = pd.DataFrame(
        [{**{k: r[k] for k in RESOLVED_COLUMNS if k in r}, **dict(zip(("x1", "y1", "x2", "y2"), r["box"], strict=True))}
         for r in rows],
        columns=list(RESOLVED_COLUMNS),
    )  # fmt: skip
    out["track_id"] = out["track_id"].astype("Int64")
    out["score"] = out["score"].astype(float)
    out["reviewed"] = out["reviewed"].astype(bool)
    for k in ("ref", "task_id"):
        out[k] = out[k].astype(object).where(out[k].notna(), None)
    order = {s: i for i, s in enumerate(sids)}
    out["_o"] = out["scoring_id"].map(order)
    return out.sort_values(["_o", "frame_index", "x1", "y1"], kind="stable").drop(columns="_o").reset_index(drop=True)


def missed_objects(store, *, pipeline_id: str | None = None) -> pd.DataFrame:
    """The missed-objects training set: the boxes people marked as missed by the model, with their clips.

    From pipelines: the boxes of the latest answer of each ``mark_missed`` task (of
    ``pipeline_id``, or of every pipeline); without ``pipeline_id`` also the ``"missed"`` rows
    of ``store.object_labels`` logged outside any task. Joined with the clip's path, size and
    the frame's timestamp, ready for :func:`export_coco`.

    Returns:
        A DataFrame with :data:`MISSED_COLUMNS`, ordered by clip and frame.

    Example:
        >>> missed = missed_objects(store, pipeline_id="boxes-p1")  # doctest: +SKIP
        >>> export_coco(store, missed, "exports/missed", classes=classes)  # doctest: +SKIP
    """
    if pipeline_id is not None:
        store.pipeline(pipeline_id)
    answers, kinds, payloads = _latest(store, pipeline_id, None)
    rows = []
    for a in answers[answers["task_id"].map(kinds) == "mark_missed"].to_dict("records"):
        frame = payloads[a["task_id"]]["frame_indices"][0]
        for b in a["answer"]["boxes"]:
            rows.append({"scoring_id": a["scoring_id"], "frame_index": frame, "label": b["label"],
                         **dict(zip(("x1", "y1", "x2", "y2"), b["box"], strict=True)), "author": a["author"],
                         "task_id": a["task_id"], "pipeline_id": a["task_id"].split("/", 1)[0],
                         "labelled_at": a["answered_at"]})  # fmt: skip
    if pipeline_id is None:
        labels = store.object_labels(kind="missed")
        known = set(store.tasks()["task_id"]) if labels["task_id"].notna().any() else set()
        for r in labels[~labels["task_id"].isin(known)].to_dict("records"):
            rows.append({k: r[k] for k in ("scoring_id", "frame_index", "x1", "y1", "x2", "y2", "label", "author",
                                           "task_id", "labelled_at")} | {"pipeline_id": None})  # fmt: skip
    out = pd.DataFrame(rows, columns=[c for c in MISSED_COLUMNS if c not in ("timestamp", "media_path", "width",
                                                                                "height")])  # fmt: skip
    facts = clip_facts(store, list(dict.fromkeys(out["scoring_id"])))
    out["frame_index"] = out["frame_index"].astype(int)
    out["timestamp"] = [f / facts[s]["fps"] if facts[s]["fps"] > 0 else math.nan
                        for s, f in zip(out["scoring_id"], out["frame_index"], strict=True)]  # fmt: skip
    for k, src in (("media_path", "path"), ("width", "width"), ("height", "height")):
        out[k] = [facts[s][src] for s in out["scoring_id"]]
    return out[list(MISSED_COLUMNS)].sort_values(["scoring_id", "frame_index", "labelled_at"]).reset_index(drop=True)


def export_coco(
    store,
    frame_rows: pd.DataFrame,
    out_path: str | os.PathLike,
    *,
    classes: Sequence[str],
    frames: Mapping[str, Sequence[int]] | None = None,
) -> Path:
    """Write boxes of stored clips as a COCO ``annotations.json`` (the format of :func:`~dlabel_lab.make_object_clips`).

    Images are the clip frames that hold a box (plus ``frames``: frames labelled empty, e.g. every
    frame a pipeline asked about), ``file_name`` the clip's absolute path in the store, with
    ``frame_index``, ``timestamp``, ``width``, ``height`` and ``video_id``; annotations have
    ``bbox`` ``[x, y, w, h]``, ``area``, ``category_id`` (``classes`` numbered from 1) and
    ``track_id`` where known. Read it back with
    ``dl.read_object_annotations(path, root=store.path)`` (the clips lie in the store, not beside
    the file), e.g. for :func:`~dlabel_lab.frames_dataset`.

    Args:
        store: The :class:`~dlabel_lab.PayloadStore` holding the clips.
        frame_rows: Boxes with ``scoring_id``, ``frame_index``, ``x1``, ``y1``, ``x2``, ``y2``,
            ``label`` (and optionally ``track_id``): :func:`resolved_objects`,
            :func:`missed_objects` or ``store.object_labels(...)``.
        out_path: A ``.json`` file, or a folder to write ``annotations.json`` into (created).
        classes: Class names; every label must be one of them.
        frames: Per scoring id, more frame indices to include as images (with or without boxes).

    Returns:
        The path written (atomically: a reader never sees half a file).

    Raises:
        ConfigError: Missing columns, a label not in ``classes``, a frame outside its clip or a bad box.
        UnknownRecord: A clip is not in the store.

    Example:
        >>> path = export_coco(store, missed_objects(store), "exports/missed", classes=classes)  # doctest: +SKIP
        >>> dl.frames_dataset(dl.read_object_annotations(path, root=store.path))  # doctest: +SKIP
    """
    if not isinstance(frame_rows, pd.DataFrame):
        raise ConfigError(f"frame_rows must be a DataFrame of boxes, got {type(frame_rows).__name__}")
    need = ["scoring_id", "frame_index", "x1", "y1", "x2", "y2", "label"]
    missing = [c for c in need if c not in frame_rows.columns]
    if missing:
        raise ConfigError(f"frame_rows lacks columns {missing}; pass resolved_objects(), missed_objects() or "
                          "store.object_labels() rows")
    if isinstance(classes, str) or not classes or len(set(classes)) != len(classes):
        raise ConfigError(f"classes must be distinct class names, got {classes!r}")
    cat = {str(c): k + 1 for k, c in enumerate(classes)}
    rows = frame_rows[frame_rows["x1"].notna()] if len(frame_rows) else frame_rows
    bad = sorted(set(rows["label"]) - set(cat))
    if bad:
        raise ConfigError(f"labels {bad} are not in classes {list(classes)}; add them or filter the rows")
    wanted: dict[str, set[int]] = {}
    for s, f in zip(rows["scoring_id"], rows["frame_index"], strict=True):
        wanted.setdefault(io.check_scoring_id(s), set()).add(int(f))
    for s, fs in (frames or {}).items():
        wanted.setdefault(io.check_scoring_id(s), set()).update(int(f) for f in fs)
    facts = clip_facts(store, list(wanted))
    images, image_of, videos = [], {}, []
    for v, (sid, fs) in enumerate(sorted(wanted.items()), start=1):
        f_ = facts[sid]
        videos.append({"id": v, "file_name": f_["path"], "scoring_id": sid, "width": f_["width"],
                       "height": f_["height"], "frames": f_["frame_count"], "fps": f_["fps"]})  # fmt: skip
        for f in sorted(fs):
            if not 0 <= f < f_["frame_count"]:
                raise ConfigError(f"frame {f} of {sid} is outside its {f_['frame_count']} frames")
            image_of[(sid, f)] = len(images) + 1
            images.append({"id": len(images) + 1, "file_name": f_["path"], "video_id": v, "scoring_id": sid,
                           "frame_index": f, "timestamp": round(f / f_["fps"], 6) if f_["fps"] > 0 else None,
                           "width": f_["width"], "height": f_["height"]})  # fmt: skip
    annotations = []
    tracks = rows["track_id"] if "track_id" in rows.columns else [None] * len(rows)
    for r, track in zip(rows[need].itertuples(index=False), tracks, strict=True):
        sid, f, x1, y1, x2, y2, label = r
        values = [float(x1), float(y1), float(x2), float(y2)]
        if not all(math.isfinite(v) for v in values) or x2 < x1 or y2 < y1:
            raise ConfigError(f"box {values} of {sid} frame {f} is not [x1, y1, x2, y2] with x1 <= x2, y1 <= y2")
        w, h = values[2] - values[0], values[3] - values[1]
        ann = {"id": len(annotations) + 1, "image_id": image_of[(sid, int(f))], "category_id": cat[label],
               "bbox": [values[0], values[1], w, h], "area": w * h, "iscrowd": 0}  # fmt: skip
        if track is not None and not pd.isna(track):
            ann["track_id"] = int(track)
        annotations.append(ann)
    coco = {
        "info": {"description": "dlabel_lab.labeling.export_coco", "store": str(store.path)},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k, "name": c, "supercategory": "object"} for c, k in cat.items()],
        "videos": videos,
    }
    out = Path(out_path).expanduser()
    if out.suffix.lower() != ".json":
        out = out / "annotations.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(coco, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
