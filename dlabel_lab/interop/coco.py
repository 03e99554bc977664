"""COCO JSON with the COCO-video conventions (TAO, mmtracking's CocoVID): clips, frames, boxes, tracks, predictions.

An export folder holds ``annotations.json`` and, when the label set has a model's boxes,
``predictions.json``:

``annotations.json``
    ``videos``: one per clip, in order: ``id`` (from 1), ``file_name`` (the clip's path relative
    to the folder), ``width``, ``height``, ``fps``, ``frame_count`` where known. COCO has no clip
    classification, so the clip's label travels in extra keys other tools ignore: ``label``,
    ``label_source``, ``label_author``, ``predicted_label``, ``predicted_confidence`` and
    ``scoring_id``.

    ``images``: the frames that hold a box or a predicted box, ordered by clip then frame:
    ``id``, ``file_name`` (the clip's path), ``video_id``, ``frame_id`` and ``frame_index``
    (both 0-based), ``width``, ``height``.

    ``annotations``: people's boxes: ``id``, ``image_id``, ``category_id``, ``bbox``
    ``[x, y, w, h]`` in pixels, ``area``, ``iscrowd`` 0, ``track_id`` (left out for an untracked
    box; ids count per video, as in :func:`~dlabel_lab.labeling.export_coco`) and the extra keys
    ``source`` (``null`` where unknown) and ``author``.

    ``categories``: the classes in order, ids from 1, ``supercategory`` ``"object"``.

    ``info``: ``description``, ``model_version`` (of the predictions) and ``predictions``
    (the name of the predictions file).

``predictions.json``
    The COCO *results* format (``pycocotools.coco.COCO.loadRes``): a list of ``image_id``,
    ``category_id``, ``bbox``, ``score`` (where known) and ``track_id`` (where tracked), on the
    images of ``annotations.json``.

Reading also takes COCO files written by other tools. With ``videos``, every image needs a
``video_id`` of a listed video and a ``frame_index`` or ``frame_id`` (0-based); a video's clip
is its ``file_name`` (or TAO's ``name``). Without ``videos``, each distinct image
``file_name`` is a clip and an image's frame is its ``frame_index`` or ``frame_id``, else 0 (a
file of still images reads as one-frame clips). Tracks are ``track_id`` or mmtracking's
``instance_id``. Where an annotation has no ``source`` key its source is ``"coco"``, as is a
clip label's without ``label_source``; classes are the categories in id order.

Example:
    >>> path = write(ls, "exports/coco")  # doctest: +SKIP
    >>> read(path).summary()  # doctest: +SKIP
    '3 clips (2 labelled), 12 boxes in 3 tracks, 4 predicted boxes; classes circle, square'
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

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

__all__ = ["write", "read", "ANNOTATIONS_FILE", "PREDICTIONS_FILE", "FORMAT"]

FORMAT = "coco"
ANNOTATIONS_FILE = "annotations.json"
PREDICTIONS_FILE = "predictions.json"


# --- writing -----------------------------------------------------------------------------
def write(ls: LabelSet, out_dir: str | os.PathLike, *, indent: int | None = None) -> Path:
    """Write a label set as COCO ``annotations.json`` (and ``predictions.json``) in ``out_dir``.

    Every clip's ``media`` must be a relative posix path inside ``out_dir`` (the clips are
    already there); nothing is written outside ``out_dir``, and each file is replaced
    atomically. The same label set always gives the same bytes.

    Args:
        ls: The label set.
        out_dir: The export folder.
        indent: JSON indent; ``None`` writes compact JSON.

    Returns:
        The path of ``annotations.json``.

    Raises:
        ConfigError: The label set is invalid (:func:`~dlabel_lab.interop.labelset.check_labelset`)
            or a clip field has a value COCO cannot hold (e.g. a non-finite ``fps``).
        UnsafeSource: A clip's media is a URL, absolute, or leaves ``out_dir``; nothing is written.

    Example:
        >>> write(ls, "exports/coco")  # doctest: +SKIP
        PosixPath('exports/coco/annotations.json')
    """
    out = check_for_writing(ls, out_dir)
    category = {name: k + 1 for k, name in enumerate(ls.classes)}
    videos: list[dict] = []
    images: list[dict] = []
    annotations: list[dict] = []
    predictions: list[dict] = []
    for v, c in enumerate(ls.clips, start=1):
        videos.append(_video_entry(v, c))
        image_of = {}
        for f in sorted({b.frame_index for b in (*c.boxes, *c.predictions)}):
            image_of[f] = len(images) + 1
            image = {"id": image_of[f], "file_name": c.media, "video_id": v, "frame_id": f, "frame_index": f}
            if c.width is not None:
                image["width"] = c.width
            if c.height is not None:
                image["height"] = c.height
            images.append(image)
        for b in sorted(c.boxes, key=lambda b: b.frame_index):  # stable: a frame's boxes keep their order
            w, h = _extent(float(b.x1), float(b.x2)), _extent(float(b.y1), float(b.y2))
            ann = {"id": len(annotations) + 1, "image_id": image_of[b.frame_index], "category_id": category[b.label],
                   "bbox": [float(b.x1), float(b.y1), w, h], "area": w * h, "iscrowd": 0}
            if b.track_id is not None:
                ann["track_id"] = b.track_id
            ann["source"] = b.source
            if b.author is not None:
                ann["author"] = b.author
            if b.score is not None:
                ann["score"] = float(b.score)
            annotations.append(ann)
        for b in sorted(c.predictions, key=lambda b: b.frame_index):
            w, h = _extent(float(b.x1), float(b.x2)), _extent(float(b.y1), float(b.y2))
            pred = {"image_id": image_of[b.frame_index], "category_id": category[b.label],
                    "bbox": [float(b.x1), float(b.y1), w, h]}
            if b.score is not None:
                pred["score"] = float(b.score)
            if b.track_id is not None:
                pred["track_id"] = b.track_id
            if b.source is not None:
                pred["source"] = b.source
            if b.author is not None:
                pred["author"] = b.author
            predictions.append(pred)
    info: dict = {"description": "dlabel_lab.interop.coco export: COCO-video annotations"}
    if ls.model_version is not None:
        info["model_version"] = ls.model_version
    if predictions:
        info["predictions"] = PREDICTIONS_FILE
    doc = {"info": info, "licenses": [], "videos": videos, "images": images, "annotations": annotations,
           "categories": [{"id": category[n], "name": n, "supercategory": "object"} for n in ls.classes]}
    main = inside(out, ANNOTATIONS_FILE)
    if predictions:
        write_atomic(inside(out, PREDICTIONS_FILE), json_bytes(predictions, indent, "COCO JSON"))
    return write_atomic(main, json_bytes(doc, indent, "COCO JSON"))


def _video_entry(v: int, c: ClipLabels) -> dict:
    video: dict = {"id": v, "file_name": c.media}
    for key in ("width", "height", "fps", "frame_count", "scoring_id", "label"):
        value = getattr(c, key)
        if value is not None:
            video[key] = float(value) if key == "fps" else value
    if c.label is not None or c.label_source is not None:
        video["label_source"] = c.label_source  # null: the writer did not know; absent: "coco"
    if c.label_author is not None:
        video["label_author"] = c.label_author
    if c.predicted_label is not None:
        video["predicted_label"] = c.predicted_label
    if c.predicted_confidence is not None:
        video["predicted_confidence"] = float(c.predicted_confidence)
    return video


def _extent(lo: float, hi: float) -> float:
    """``hi - lo``, nudged by an ulp where that makes ``lo + extent == hi`` exact again."""
    w = hi - lo
    if lo + w != hi:
        for cand in (math.nextafter(w, math.inf), math.nextafter(w, -math.inf)):
            if lo + cand == hi:
                return cand
    return w


# --- reading -----------------------------------------------------------------------------
def read(path: str | os.PathLike, *, max_bytes: int = MAX_LABEL_FILE_BYTES) -> LabelSet:
    """Read a COCO file (or an export folder holding ``annotations.json``) into a label set.

    Clip paths are resolved against the file's folder and returned absolute; the clips are not
    opened. The predictions file named in ``info.predictions`` is read too (with the same size
    limit). See the module docstring for what is accepted from other tools.

    Args:
        path: ``annotations.json`` (or any COCO JSON file), or the folder holding it.
        max_bytes: Largest file accepted, checked before reading.

    Returns:
        The :class:`~dlabel_lab.interop.labelset.LabelSet`, classes in category-id order.

    Raises:
        ConfigError: The file is missing, too large, not JSON, or not valid COCO; the message
            names the first bad entry.
        UnsafeSource: A clip path is a URL, absolute, or leaves the file's folder.

    Example:
        >>> ls = read("exports/coco")  # doctest: +SKIP
        >>> ls.clips[0].boxes[0].track_id  # doctest: +SKIP
        1
    """
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / ANNOTATIONS_FILE
    return _parse(load_json(p, max_bytes, "COCO file"), p, max_bytes)


class _Reader:
    """The state of one parse: the file (for messages), its folder, the classes and clips so far."""

    def __init__(self, p: Path):
        self.p = p
        self.root = p.parent

    def bad(self, where: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.p}: {where} {reason}; fix the file (COCO JSON, see dlabel_lab.interop.coco)")

    def opt(self, d: dict, key: str, check: Callable[[object], bool], need: str, where: str) -> Any:
        v = d.get(key)
        if v is not None and not check(v):
            raise self.bad(where, f"has {key} {v!r}; it must be {need}")
        return v

    def text(self, d: dict, key: str, where: str) -> str | None:
        return self.opt(d, key, lambda v: isinstance(v, str), "a string or null", where)

    def box(self, a: dict, where: str, frame: int, label: str, source: str | None) -> Box:
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
            raise self.bad(where, f"has bbox {bbox!r}; it must be [x, y, w, h] of finite numbers")
        x, y, w, h = (float(v) for v in bbox)
        if not (w > 0 and h > 0) or not (x + w > x and y + h > y):
            raise self.bad(where, f"has bbox {bbox!r}; its width and height must be > 0")
        track = a.get("track_id", a.get("instance_id"))
        if track is not None and not is_int(track):
            raise self.bad(where, f"has track_id {track!r}; it must be an int or null")
        score = self.opt(a, "score", lambda v: is_number(v) and 0 <= v <= 1, "a number in [0, 1]", where)
        return Box(frame_index=frame, x1=x, y1=y, x2=x + w, y2=y + h, label=label, track_id=track,
                   score=None if score is None else float(score),
                   source=self.text(a, "source", where) if "source" in a else source,
                   author=self.text(a, "author", where))


def _parse(doc: object, p: Path, max_bytes: int) -> LabelSet:
    r = _Reader(p)
    if not isinstance(doc, dict):
        raise r.bad("the top level", "is not an object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise r.bad(f"key {key!r}", "is missing or not a list")
    videos = doc.get("videos")
    if videos is not None and not isinstance(videos, list):
        raise r.bad("key 'videos'", "is not a list")
    info = doc.get("info")
    if info is not None and not isinstance(info, dict):
        raise r.bad("key 'info'", "is not an object")
    info = info or {}

    name_of: dict[int, str] = {}
    for k, c in enumerate(doc["categories"]):
        if not (isinstance(c, dict) and is_int(c.get("id")) and isinstance(c.get("name"), str) and c["name"]):
            raise r.bad(f"categories[{k}]", "needs an int 'id' and a non-empty str 'name'")
        if c["id"] in name_of:
            raise r.bad(f"categories[{k}]", f"repeats id {c['id']}")
        if c["name"] in name_of.values():
            raise r.bad(f"categories[{k}]", f"repeats name {c['name']!r}")
        name_of[c["id"]] = c["name"]
    if not name_of:
        raise r.bad("'categories'", "is empty; a COCO file needs its classes as categories")
    classes = [name_of[i] for i in sorted(name_of)]

    def label(v: object, where: str, key: str) -> str | None:
        if v is not None and v not in classes:
            raise r.bad(where, f"has {key} {v!r}, not one of the categories {classes}")
        return v  # type: ignore[return-value]

    clips: list[ClipLabels] = []
    clip_of_video: dict[int, int] = {}
    for k, v in enumerate(videos or []):
        where = f"videos[{k}]"
        if not isinstance(v, dict) or not is_int(v.get("id")):
            raise r.bad(where, "needs an int 'id'")
        if v["id"] in clip_of_video:
            raise r.bad(where, f"repeats id {v['id']}")
        name = v.get("file_name", v.get("name"))
        if not isinstance(name, str):
            raise r.bad(where, "needs a str 'file_name' (the clip's path relative to the file)")
        media = str(resolve_media(r.root, name, what=f"{p}: {where} file_name"))
        clip = ClipLabels(media=media)
        for key in ("width", "height"):
            setattr(clip, key, r.opt(v, key, lambda x: is_int(x) and x > 0, "a positive int", where))
        frames = next((v[key] for key in ("frame_count", "length", "frames") if v.get(key) is not None), None)
        if frames is not None and not (is_int(frames) and frames >= 0):
            raise r.bad(where, f"has frame_count {frames!r}; it must be an int >= 0")
        clip.frame_count = frames
        fps = r.opt(v, "fps", lambda x: is_number(x) and x > 0, "a positive number", where)
        clip.fps = None if fps is None else float(fps)
        clip.scoring_id = r.text(v, "scoring_id", where)
        clip.label = label(r.text(v, "label", where), where, "label")
        clip.label_source = r.text(v, "label_source", where) if "label_source" in v else (
            FORMAT if clip.label is not None else None)
        clip.label_author = r.text(v, "label_author", where)
        clip.predicted_label = label(r.text(v, "predicted_label", where), where, "predicted_label")
        conf = r.opt(v, "predicted_confidence", lambda x: is_number(x) and 0 <= x <= 1, "a number in [0, 1]", where)
        clip.predicted_confidence = None if conf is None else float(conf)
        clip_of_video[v["id"]] = len(clips)
        clips.append(clip)

    frame_of: dict[int, tuple[int, int]] = {}  # image id -> (clip index, frame)
    clip_of_name: dict[str, int] = {}
    for k, im in enumerate(doc["images"]):
        where = f"images[{k}]"
        if not isinstance(im, dict) or not is_int(im.get("id")) or not isinstance(im.get("file_name"), str):
            raise r.bad(where, "needs an int 'id' and a str 'file_name'")
        if im["id"] in frame_of:
            raise r.bad(where, f"repeats id {im['id']}")
        size = [r.opt(im, key, lambda x: is_int(x) and x > 0, "a positive int", where) for key in ("width", "height")]
        frame = next((im[key] for key in ("frame_index", "frame_id") if im.get(key) is not None), None)
        if frame is not None and not (is_int(frame) and frame >= 0):
            raise r.bad(where, f"has frame_index {frame!r}; frames count from 0")
        if videos is not None:
            if im.get("video_id") not in clip_of_video:
                raise r.bad(where, f"has video_id {im.get('video_id')!r}, not the id of a listed video")
            if frame is None:
                raise r.bad(where, "needs a 'frame_index' or 'frame_id' (its frame in the video, from 0)")
            ci = clip_of_video[im["video_id"]]
        else:
            name = im["file_name"]
            if name not in clip_of_name:
                clip_of_name[name] = len(clips)
                clips.append(ClipLabels(media=str(resolve_media(r.root, name, what=f"{p}: {where} file_name"))))
            ci = clip_of_name[name]
            frame = 0 if frame is None else frame
        clip = clips[ci]
        if clip.width is None and clip.height is None:
            clip.width, clip.height = size
        if clip.frame_count is not None and frame >= clip.frame_count:
            raise r.bad(where, f"is frame {frame} of a video of {clip.frame_count} frames")
        frame_of[im["id"]] = (ci, frame)

    def boxes(entries: list, what: str, into: str) -> None:
        for k, a in enumerate(entries):
            where = f"{what}[{k}]"
            if not isinstance(a, dict):
                raise r.bad(where, "is not an object")
            if not is_int(a.get("image_id")) or a["image_id"] not in frame_of:
                raise r.bad(where, f"has image_id {a.get('image_id')!r}, not the id of a listed image")
            if not is_int(a.get("category_id")) or a["category_id"] not in name_of:
                raise r.bad(where, f"has category_id {a.get('category_id')!r}, not one of {sorted(name_of)}")
            ci, frame = frame_of[a["image_id"]]
            default = FORMAT if into == "boxes" else None  # a model's boxes have no source unless the file says
            getattr(clips[ci], into).append(r.box(a, where, frame, name_of[a["category_id"]], default))

    boxes(doc["annotations"], "annotations", "boxes")
    pred_name = info.get("predictions")
    if pred_name is not None:
        if not isinstance(pred_name, str):
            raise r.bad("info.predictions", f"is {pred_name!r}; it must name the predictions file")
        pp = resolve_media(r.root, pred_name, what=f"{p}: info.predictions")
        preds = load_json(pp, max_bytes, "COCO file")
        if not isinstance(preds, list):
            raise ConfigError(f"{pp}: the predictions file must be a list of COCO results (image_id, category_id, "
                              "bbox, score)")
        boxes(preds, f"{pp.name}", "predictions")
    model_version = info.get("model_version")
    if model_version is not None and not isinstance(model_version, str):
        raise r.bad("info.model_version", f"is {model_version!r}; it must be a string")
    return check_labelset(LabelSet(clips=clips, classes=classes, model_version=model_version), what=str(p))
