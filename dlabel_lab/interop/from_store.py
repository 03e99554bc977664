"""Build a :class:`~dlabel_lab.interop.labelset.LabelSet` from a store, and place its clips in an export folder."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, StoreCorrupt
from ..store import io
from .labelset import Box, ClipLabels, LabelSet, inside

__all__ = ["collect", "place_media", "BOX_KINDS", "MEDIA_MODES"]

BOX_KINDS = ("box", "missed", "fixed")  # people's object labels that hold a box
MEDIA_MODES = ("copy", "link")


def _missing(v: object) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def _int_or_none(v: object) -> int | None:
    return None if _missing(v) else int(v)  # type: ignore[call-overload]


def _float_or_none(v: object) -> float | None:
    return None if _missing(v) else float(v)  # type: ignore[arg-type]


def _text_or_none(v: object) -> str | None:
    return None if _missing(v) else str(v)


def collect(
    store,
    *,
    model_version: str | None = None,
    scoring_ids: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
) -> LabelSet:
    """Everything the store knows about some clips, as a label set (media paths absolute, in the store).

    Per clip: the latest user score with its source and author; people's boxes (object labels of
    kind ``box``, ``missed`` or ``fixed``; for a track on one frame the latest wins) with track
    ids, sources and authors; with ``model_version``, that model's clip prediction and its boxes
    (scores, tracks).

    Args:
        store: The :class:`~dlabel_lab.PayloadStore`.
        model_version: Also collect this model's predictions.
        scoring_ids: The clips; default every clip with a user score, a person's box, or (with
            ``model_version``) that model's objects.
        classes: Class order; default the model's classes, then any other label seen, sorted.

    Raises:
        UnknownRecord: A scoring id or the model version is not in the store.
        ConfigError: ``classes`` misses a label that occurs.

    Example:
        >>> ls = collect(store, model_version="shapes-v1")  # doctest: +SKIP
        >>> ls.summary()  # doctest: +SKIP
        '24 clips (24 labelled), 0 boxes in 0 tracks, 0 predicted boxes; classes circle, square, triangle'
    """
    model = store.get_model(model_version) if model_version is not None else None
    history = store.score_history()
    latest = {}
    for row in history.itertuples(index=False):  # oldest first: the last one per clip wins
        latest[row.scoring_id] = row
    labels = store.object_labels(kind=list(BOX_KINDS))
    objects = store.objects_df(model_version=model_version) if model_version is not None else None
    if scoring_ids is None:
        ids = list(dict.fromkeys([*latest, *labels["scoring_id"],
                                  *([] if objects is None else objects["scoring_id"])]))
    else:
        ids = list(dict.fromkeys(io.check_scoring_id(s) for s in scoring_ids))
    ids.sort()
    facts = store.clip_facts(ids).set_index("scoring_id") if ids else None
    predicted = {}
    if model_version is not None and ids:
        m = store.matched_df(model_version=model_version, scoring_ids=ids)
        predicted = {s: (lab, float(c)) for s, lab, c in zip(m["scoring_id"], m["predicted_label"], m["confidence"],
                                                              strict=True)}
    wanted = set(ids)
    people: dict[str, dict[tuple, Box]] = {s: {} for s in ids}
    for n, r in enumerate(labels.itertuples(index=False)):
        if r.scoring_id not in wanted:
            continue
        track = _int_or_none(r.track_id)
        key = (int(r.frame_index), track) if track is not None else (int(r.frame_index), None, n)
        people[r.scoring_id][key] = Box(frame_index=int(r.frame_index), x1=float(r.x1), y1=float(r.y1),
                                        x2=float(r.x2), y2=float(r.y2), label=str(r.label), track_id=track,
                                        source=str(r.source), author=_text_or_none(r.author))
    machine: dict[str, list[Box]] = {s: [] for s in ids}
    if objects is not None:
        for r in objects.itertuples(index=False):
            if r.scoring_id in wanted:
                machine[r.scoring_id].append(Box(
                    frame_index=int(r.frame_index), x1=float(r.x1), y1=float(r.y1), x2=float(r.x2), y2=float(r.y2),
                    label=str(r.label), track_id=_int_or_none(r.track_id), score=float(r.score)))
    clips = []
    for sid in ids:
        f = facts.loc[sid]
        score = latest.get(sid)
        pred = predicted.get(sid)
        clips.append(ClipLabels(
            media=str(f["media_path"]), width=_int_or_none(f["width"]), height=_int_or_none(f["height"]),
            fps=_float_or_none(f["fps"]), frame_count=_int_or_none(f["frame_count"]), scoring_id=sid,
            label=None if score is None else str(score.label),
            label_source=None if score is None else str(score.source),
            label_author=None if score is None else _text_or_none(score.author),
            boxes=list(people[sid].values()), predictions=machine[sid],
            predicted_label=None if pred is None else str(pred[0]),
            predicted_confidence=None if pred is None else pred[1]))
    seen = {b.label for c in clips for b in (*c.boxes, *c.predictions)}
    seen |= {lab for c in clips for lab in (c.label, c.predicted_label) if lab is not None}
    if classes is None:
        order = list(model["classes"]) if model is not None else []
        order += sorted(seen - set(order))
    else:
        order = [str(c) for c in classes]
        missing = sorted(seen - set(order))
        if missing:
            raise ConfigError(f"labels {missing} occur but are not in classes {order}; add them or leave classes out")
    return LabelSet(clips=clips, classes=order, model_version=model_version)


def place_media(ls: LabelSet, out_dir: str | os.PathLike, *, media: str = "copy", folder: str = "media") -> LabelSet:
    """Copy (or hard-link) each clip's file into ``out_dir/folder``; the label set with relative paths.

    Files are named ``<scoring id><suffix>`` (or ``clip<n><suffix>`` without one), never after a
    clip's original name, so a hostile name cannot place a file outside ``out_dir``.

    Args:
        ls: A label set whose media are absolute paths (from :func:`collect`).
        out_dir: The export folder (created).
        media: ``"copy"`` or ``"link"`` (a hard link: no extra space; needs the same file system).
        folder: Sub-folder for the clips.

    Raises:
        ConfigError: Unknown ``media`` mode, or a hard link across file systems.
        StoreCorrupt: A clip file is missing.

    Example:
        >>> rel = place_media(collect(store), "exports/coco", media="link")  # doctest: +SKIP
    """
    if media not in MEDIA_MODES:
        raise ConfigError(f"media must be one of {MEDIA_MODES}, got {media!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rels = []
    for n, c in enumerate(ls.clips):
        src = Path(c.media)
        stem = c.scoring_id if c.scoring_id is not None else f"clip{n:05d}"
        suffix = src.suffix if src.suffix.replace(".", "").isalnum() else ""
        rel = f"{folder}/{io.check_scoring_id(stem) if c.scoring_id else stem}{suffix.lower()}"
        dst = inside(out, rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not src.is_file():
            raise StoreCorrupt(f"the clip file {src} is missing; run store.verify() and restore media/")
        if dst.exists():
            dst.unlink()
        if media == "copy":
            shutil.copyfile(src, dst)
        else:
            try:
                os.link(src, dst)
            except OSError as e:
                raise ConfigError(f"cannot hard-link {src} into {out} ({e.strerror}); the export folder must be on "
                                  "the store's file system for media='link', or use media='copy'") from None
        rels.append(rel)
    return ls.with_media(rels)
