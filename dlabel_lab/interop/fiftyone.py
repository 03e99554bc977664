"""FiftyOne's ``FiftyOneVideoLabelsDataset`` layout (ETA video labels), written and read without FiftyOne.

An export folder holds ``manifest.json``, an ETA ``LabeledVideoDataset`` index::

    {"type": "eta.core.datasets.LabeledVideoDataset", "description": "...",
     "index": [{"data": "media/<clip>.mp4", "labels": "labels/000000.json"}, ...],
     "dlabel_lab": {"classes": [...], "model_version": "..."}}

and one ``eta.core.video.VideoLabels`` JSON per clip in ``labels/``. Load it with
``fo.Dataset.from_dir(folder, fo.types.FiftyOneVideoLabelsDataset)``; ``data`` paths are
relative to the folder (FiftyOne joins them to it, wherever they lie).

A clip's labels file holds:

* ``metadata``: ``frame_size`` ``[width, height]``, ``frame_rate`` and ``total_frame_count``
  (``eta.core.video.VideoMetadata``). Boxes are relative, so a clip with boxes needs its size.
* ``attrs``: video-level ``eta.core.data.CategoricalAttribute``\\ s, which FiftyOne loads as
  sample-level classifications: ``ground_truth`` (the clip label), ``predictions`` (the model's
  clip label, with ``confidence``), and ``label_source``, ``label_author``, ``scoring_id``.
* ``frames``: keyed by frame number **from 1** (frame index + 1); each frame's
  ``objects.objects`` are ``eta.core.objects.DetectedObject``\\ s with ``label``,
  ``bounding_box`` (``top_left``/``bottom_right`` ``{"x", "y"}`` relative to the frame, in
  [0, 1] for boxes inside it), ``confidence`` (the score, where known), ``index`` (the track
  id; left out for an untracked box), ``frame_number`` and ``attrs`` ``source`` / ``author``.

People's boxes and a model's boxes are told apart by the object's ``name``, which FiftyOne
uses as the frame field: ``"ground_truth"`` for people's boxes, ``"predictions"`` for the
model's (any other name, or none, reads as a person's box). Coordinates are written with full
float precision (``repr``), so a round trip keeps boxes within 1e-6 px.

Reading takes exports of FiftyOne (or other ETA tools) too: classes are the manifest's
``dlabel_lab.classes`` or, without them, every label seen, sorted. In a file this package
did not write (no ``dlabel_lab`` key in the manifest), a box or clip label without a
``source`` attribute gets the source ``"fiftyone"``. Video-level objects and events, masks,
keypoints and polylines are ignored.

Example:
    >>> path = write(ls, "exports/fiftyone")  # doctest: +SKIP
    >>> read(path).summary()  # doctest: +SKIP
    '3 clips (2 labelled), 12 boxes in 3 tracks, 4 predicted boxes; classes circle, square'
"""

from __future__ import annotations

import math
import os
from pathlib import Path, PurePosixPath

from ..errors import ConfigError
from .labelset import (
    MAX_LABEL_FILE_BYTES,
    Box,
    ClipLabels,
    LabelSet,
    check_for_writing,
    check_labelset,
    inside,
    is_int,
    is_number,
    json_bytes,
    load_json,
    resolve_media,
    write_atomic,
)

__all__ = ["write", "read", "MANIFEST_FILE", "DATASET_TYPE", "GROUND_TRUTH", "PREDICTIONS", "FORMAT"]

FORMAT = "fiftyone"
MANIFEST_FILE = "manifest.json"
DATASET_TYPE = "eta.core.datasets.LabeledVideoDataset"
GROUND_TRUTH = "ground_truth"  # the object name (FiftyOne frame field) of people's boxes; the clip label's attr
PREDICTIONS = "predictions"  # ... of a model's boxes; the model's clip label's attr
_CATEGORICAL = "eta.core.data.CategoricalAttribute"
_OBJECT = "eta.core.objects.DetectedObject"
_OURS = "dlabel_lab"  # the manifest key of this package's fields
_JSON = "ETA JSON"  # the format's name in messages


# --- writing -----------------------------------------------------------------------------
def write(ls: LabelSet, out_dir: str | os.PathLike, *, indent: int | None = None) -> Path:
    """Write a label set as a FiftyOne video labels dataset: ``manifest.json`` and ``labels/<n>.json``.

    Every clip's ``media`` must be a relative posix path inside ``out_dir`` (the clips are
    already there); nothing is written outside ``out_dir``, each file is replaced atomically,
    and the same label set always gives the same bytes.

    Args:
        ls: The label set.
        out_dir: The export folder.
        indent: JSON indent; ``None`` writes compact JSON.

    Returns:
        The path of ``manifest.json``.

    Raises:
        ConfigError: The label set is invalid; a clip with boxes has no width or height (the
            format's boxes are relative); a clip field has a value the format cannot hold.
        UnsafeSource: A clip's media is a URL, absolute, or leaves ``out_dir``; nothing is written.

    Example:
        >>> write(ls, "exports/fiftyone")  # doctest: +SKIP
        PosixPath('exports/fiftyone/manifest.json')
    """
    out = check_for_writing(ls, out_dir, boxes_need_size="FiftyOne's boxes are relative to the frame, so give "
                                                          "the clip its size")
    width = len(str(max(len(ls.clips) - 1, 0)))
    names = [f"labels/{k:0{max(width, 6)}d}.json" for k in range(len(ls.clips))]
    files = [(inside(out, name), json_bytes(_video_labels(c), indent, _JSON))
             for name, c in zip(names, ls.clips, strict=True)]
    ours: dict = {"classes": list(ls.classes)}
    if ls.model_version is not None:
        ours["model_version"] = ls.model_version
    manifest = {"type": DATASET_TYPE,
                "description": f"dlabel_lab.interop.fiftyone export: {len(ls.clips)} clips",
                "index": [{"data": c.media, "labels": name} for c, name in zip(ls.clips, names, strict=True)],
                _OURS: ours}
    main = inside(out, MANIFEST_FILE)
    for path, data in files:
        write_atomic(path, data)
    return write_atomic(main, json_bytes(manifest, indent, _JSON))


def _attr(name: str, value: str, confidence: float | None = None) -> dict:
    a: dict = {"type": _CATEGORICAL, "name": name, "value": value}
    if confidence is not None:
        a["confidence"] = float(confidence)
    return a


def _relative(v: float, size: int) -> float:
    """``v / size``, nudged by an ulp where that makes ``relative * size == v`` exact again."""
    r = v / size
    if r * size != v:
        for cand in (math.nextafter(r, math.inf), math.nextafter(r, -math.inf)):
            if cand * size == v:
                return cand
    return r


def _object(b: Box, name: str, width: int, height: int) -> dict:
    obj: dict = {"type": _OBJECT, "label": b.label, "bounding_box": {
        "top_left": {"x": _relative(float(b.x1), width), "y": _relative(float(b.y1), height)},
        "bottom_right": {"x": _relative(float(b.x2), width), "y": _relative(float(b.y2), height)}}}
    if b.score is not None:
        obj["confidence"] = float(b.score)
    obj["name"] = name
    if b.track_id is not None:
        obj["index"] = b.track_id
    obj["frame_number"] = b.frame_index + 1
    attrs = [_attr(key, getattr(b, key)) for key in ("source", "author") if getattr(b, key) is not None]
    if attrs:
        obj["attrs"] = {"attrs": attrs}
    return obj


def _video_labels(c: ClipLabels) -> dict:
    doc: dict = {"filename": PurePosixPath(c.media.replace("\\", "/")).name}
    metadata: dict = {}
    if c.width is not None or c.height is not None:
        metadata["frame_size"] = [c.width, c.height]
    if c.fps is not None:
        metadata["frame_rate"] = float(c.fps)
    if c.frame_count is not None:
        metadata["total_frame_count"] = c.frame_count
    if metadata:
        doc["metadata"] = metadata
    attrs = []
    if c.label is not None:
        attrs.append(_attr(GROUND_TRUTH, c.label))
    for key in ("label_source", "label_author"):
        if getattr(c, key) is not None:
            attrs.append(_attr(key, getattr(c, key)))
    if c.predicted_label is not None:
        attrs.append(_attr(PREDICTIONS, c.predicted_label, c.predicted_confidence))
    if c.scoring_id is not None:
        attrs.append(_attr("scoring_id", c.scoring_id))
    if attrs:
        doc["attrs"] = {"attrs": attrs}
    frames: dict[int, list] = {}
    for name, boxes in ((GROUND_TRUTH, c.boxes), (PREDICTIONS, c.predictions)):
        for b in boxes:
            frames.setdefault(b.frame_index, []).append(_object(b, name, c.width, c.height))  # type: ignore[arg-type]
    if frames:
        doc["frames"] = {str(f + 1): {"frame_number": f + 1, "objects": {"objects": frames[f]}} for f in sorted(frames)}
    return doc


# --- reading -----------------------------------------------------------------------------
def read(path: str | os.PathLike, *, max_bytes: int = MAX_LABEL_FILE_BYTES) -> LabelSet:
    """Read a FiftyOne video labels dataset (its ``manifest.json``, or the folder) into a label set.

    Clip and labels paths are resolved against the manifest's folder (clip paths returned
    absolute); the clips are not opened. Each file is read with the size limit.

    Args:
        path: ``manifest.json``, or the dataset folder holding it.
        max_bytes: Largest file accepted (the manifest and each labels file), checked before reading.

    Returns:
        The :class:`~dlabel_lab.interop.labelset.LabelSet`.

    Raises:
        ConfigError: A file is missing, too large, not JSON, or not in the format; the message
            names the first bad entry.
        UnsafeSource: A clip or labels path is a URL, absolute, or leaves the manifest's folder.

    Example:
        >>> read("exports/fiftyone").clips[0].boxes[0].track_id  # doctest: +SKIP
        1
    """
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / MANIFEST_FILE
    return _parse(load_json(p, max_bytes, "FiftyOne manifest"), p, max_bytes)


def _bad(p: Path, where: str, reason: str) -> ConfigError:
    return ConfigError(f"{p}: {where} {reason}; fix the file (FiftyOne video labels, see dlabel_lab.interop.fiftyone)")


def _container(p: Path, d: dict, key: str, inner: str, where: str) -> list:
    """The element list of an ETA container ``d[key] = {inner: [...]}``, ``[]`` where absent."""
    box = d.get(key)
    if box is None:
        return []
    if not isinstance(box, dict) or not isinstance(box.get(inner, []), list):
        raise _bad(p, f"{where}.{key}", f"must be an object with a list {inner!r}")
    return box.get(inner, [])


def _categorical(p: Path, attrs: list, where: str) -> dict[str, tuple[str, float | None]]:
    """The attributes by name: (value, confidence); only string values are kept."""
    out = {}
    for k, a in enumerate(attrs):
        w = f"{where}.attrs[{k}]"
        if not isinstance(a, dict) or not isinstance(a.get("name"), str) or "value" not in a:
            raise _bad(p, w, "needs a str 'name' and a 'value'")
        conf = a.get("confidence")
        if conf is not None and not (is_number(conf) and 0 <= conf <= 1):
            raise _bad(p, w, f"has confidence {conf!r}; it must be a number in [0, 1]")
        if a["name"] in (GROUND_TRUTH, PREDICTIONS, "label_source", "label_author", "scoring_id", "source", "author"):
            if not isinstance(a["value"], str):
                raise _bad(p, w, f"({a['name']!r}) has value {a['value']!r}; it must be a string")
            out[a["name"]] = (a["value"], None if conf is None else float(conf))
    return out


def _parse(manifest: object, p: Path, max_bytes: int) -> LabelSet:
    root = p.parent
    if not isinstance(manifest, dict):
        raise _bad(p, "the top level", "is not an object")
    kind = manifest.get("type")
    if not isinstance(kind, str) or "Video" not in kind:
        raise _bad(p, "'type'", f"is {kind!r}; a video labels dataset has type {DATASET_TYPE!r}")
    index = manifest.get("index")
    if not isinstance(index, list):
        raise _bad(p, "'index'", "is missing or not a list of {'data', 'labels'} records")
    ours = manifest.get(_OURS)
    if ours is not None and not isinstance(ours, dict):
        raise _bad(p, f"{_OURS!r}", "is not an object")
    classes = None if ours is None else ours.get("classes")
    if classes is not None and not (isinstance(classes, list) and classes and all(isinstance(c, str) and c
                                                                                   for c in classes)):
        raise _bad(p, f"{_OURS}.classes", f"is {classes!r}; it must list the class names")
    model_version = None if ours is None else ours.get("model_version")
    if model_version is not None and not isinstance(model_version, str):
        raise _bad(p, f"{_OURS}.model_version", f"is {model_version!r}; it must be a string")
    default = None if ours is not None else FORMAT  # files this package wrote say every source they know
    clips = []
    seen: set[str] = set()
    for k, rec in enumerate(index):
        where = f"index[{k}]"
        if not isinstance(rec, dict) or not isinstance(rec.get("data"), str) or not isinstance(rec.get("labels"), str):
            raise _bad(p, where, "needs a str 'data' (the clip) and a str 'labels' (its labels file)")
        media = resolve_media(root, rec["data"], what=f"{p}: {where} data")
        lp = resolve_media(root, rec["labels"], what=f"{p}: {where} labels")
        clip = _parse_labels(load_json(lp, max_bytes, "FiftyOne labels file"), lp, str(media), default)
        for lab in (clip.label, clip.predicted_label, *(b.label for b in (*clip.boxes, *clip.predictions))):
            if lab is None:
                continue
            if classes is not None and lab not in classes:
                raise _bad(lp, "a label", f"{lab!r} is not among the manifest's classes {classes}")
            seen.add(lab)
        clips.append(clip)
    if classes is None:
        classes = sorted(seen)
        if not classes:
            raise _bad(p, "the dataset", "holds no label at all (no clip label, no box), so it has no classes")
    return check_labelset(LabelSet(clips=clips, classes=list(classes), model_version=model_version), what=str(p))


def _parse_labels(doc: object, lp: Path, media: str, default: str | None) -> ClipLabels:
    if not isinstance(doc, dict):
        raise _bad(lp, "the top level", "is not an object (eta.core.video.VideoLabels)")
    clip = ClipLabels(media=media)
    meta = doc.get("metadata")
    if meta is not None:
        if not isinstance(meta, dict):
            raise _bad(lp, "'metadata'", "is not an object")
        size = meta.get("frame_size")
        if size is not None:
            if not (isinstance(size, list) and len(size) == 2 and all(v is None or (is_int(v) and v > 0)
                                                                      for v in size)):
                raise _bad(lp, "metadata.frame_size", f"is {size!r}; it must be [width, height] in pixels")
            clip.width, clip.height = size
        rate = meta.get("frame_rate")
        if rate is not None and not (is_number(rate) and rate > 0):
            raise _bad(lp, "metadata.frame_rate", f"is {rate!r}; it must be a positive number")
        clip.fps = None if rate is None else float(rate)
        total = meta.get("total_frame_count")
        if total is not None and not (is_int(total) and total >= 0):
            raise _bad(lp, "metadata.total_frame_count", f"is {total!r}; it must be an int >= 0")
        clip.frame_count = total
    attrs = _categorical(lp, _container(lp, doc, "attrs", "attrs", "labels"), "attrs")
    if GROUND_TRUTH in attrs:
        clip.label = attrs[GROUND_TRUTH][0]
    clip.label_source = attrs["label_source"][0] if "label_source" in attrs else (
        default if clip.label is not None else None)
    clip.label_author = attrs["label_author"][0] if "label_author" in attrs else None
    if PREDICTIONS in attrs:
        clip.predicted_label, clip.predicted_confidence = attrs[PREDICTIONS]
    clip.scoring_id = attrs["scoring_id"][0] if "scoring_id" in attrs else None
    frames = doc.get("frames", {})
    if not isinstance(frames, dict):
        raise _bad(lp, "'frames'", "is not an object keyed by frame number")
    for key, frame in frames.items():
        if not (key.isdigit() and int(key) >= 1):
            raise _bad(lp, f"frames[{key!r}]", "is not keyed by a frame number (from 1)")
        if not isinstance(frame, dict):
            raise _bad(lp, f"frames[{key!r}]", "is not an object")
        f = int(key) - 1
        if clip.frame_count is not None and f >= clip.frame_count:
            raise _bad(lp, f"frames[{key!r}]", f"is past the clip's {clip.frame_count} frames")
        where = f"frames[{key!r}].objects"
        for n, obj in enumerate(_container(lp, frame, "objects", "objects", f"frames[{key!r}]")):
            box = _box(lp, obj, f"{where}[{n}]", f, clip, default)
            (clip.predictions if obj.get("name") == PREDICTIONS else clip.boxes).append(box)
    return clip


def _box(lp: Path, obj: object, where: str, f: int, clip: ClipLabels, default: str | None) -> Box:
    if not isinstance(obj, dict) or not isinstance(obj.get("label"), str):
        raise _bad(lp, where, "needs a str 'label'")
    bb = obj.get("bounding_box")
    corners = []
    for corner in ("top_left", "bottom_right"):
        pt = bb.get(corner) if isinstance(bb, dict) else None
        if not (isinstance(pt, dict) and is_number(pt.get("x")) and is_number(pt.get("y"))):
            raise _bad(lp, where, f"needs a bounding_box with {corner} {{'x', 'y'}} (relative numbers)")
        corners.append(pt)
    if clip.width is None or clip.height is None:
        raise _bad(lp, "metadata.frame_size", "is missing; the boxes are relative, so the labels file needs "
                   "\"metadata\": {\"frame_size\": [width, height]}")
    tl, br = corners
    x1, y1 = float(tl["x"]) * clip.width, float(tl["y"]) * clip.height
    x2, y2 = float(br["x"]) * clip.width, float(br["y"]) * clip.height
    if not (x1 < x2 and y1 < y2):
        raise _bad(lp, where, f"has bounding_box {bb!r}; top_left must lie above and left of bottom_right")
    conf = obj.get("confidence")
    if conf is not None and not (is_number(conf) and 0 <= conf <= 1):
        raise _bad(lp, where, f"has confidence {conf!r}; it must be a number in [0, 1]")
    track = obj.get("index")
    if track is not None and not is_int(track):
        raise _bad(lp, where, f"has index {track!r}; the track index must be an int")
    name = obj.get("name")
    if name is not None and not isinstance(name, str):
        raise _bad(lp, where, f"has name {name!r}; it must be a string")
    attrs = _categorical(lp, _container(lp, obj, "attrs", "attrs", where), where)
    source = attrs["source"][0] if "source" in attrs else (default if name != PREDICTIONS else None)
    return Box(frame_index=f, x1=x1, y1=y1, x2=x2, y2=y2, label=obj["label"], track_id=track,
               score=None if conf is None else float(conf), source=source,
               author=attrs["author"][0] if "author" in attrs else None)
