"""Sample clips with several moving objects and their ground-truth boxes, in COCO format.

:func:`make_object_clips` writes H.264 clips (through :func:`~dlabel_lab.write_clip`) in which
shapes of several classes and sizes move across the frame, enter it and leave it, plus two files
beside them: ``labels.csv`` (``path,label``, the clip's most frequent class, so every clip reader of
the package still works) and ``annotations.json``, a COCO detection file with one image per
(clip, frame). :func:`read_object_annotations` reads such a file back with a size limit checked
before reading and every field validated. The shapes are drawn with the same masks as
:func:`~dlabel_lab.make_shape_clips`; boxes are the tight boxes of each object's drawn mask
clipped to the frame, so they are exact by construction.

Example:
    >>> import dlabel_lab as dl
    >>> manifest = dl.make_object_clips("clips/objects", 8, seed=0)  # doctest: +SKIP
    >>> ann = dl.read_object_annotations(manifest.parent / "annotations.json")  # doctest: +SKIP
    >>> ann.classes  # doctest: +SKIP
    ['circle', 'square', 'triangle']
"""

from __future__ import annotations

import csv
import json
import math
import os
import stat
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, UnsafeSource
from .samples import _shape_mask
from .writing import write_clip

__all__ = ["make_object_clips", "read_object_annotations", "ObjectAnnotations", "MAX_ANNOTATION_BYTES"]

#: Largest ``annotations.json`` read by default (``max_bytes=`` raises it); checked with ``stat`` first.
MAX_ANNOTATION_BYTES = 64 * 2**20
#: Share of objects that start outside the frame and enter it.
_ENTERING = 0.3


def make_object_clips(
    out_dir: str | os.PathLike,
    n: int,
    *,
    classes: Sequence[str] = ("circle", "square", "triangle"),
    frames: int = 16,
    width: int = 160,
    height: int = 120,
    objects: tuple[int, int] = (1, 4),
    min_size: int = 6,
    max_size: int = 40,
    seed: int = 0,
    fps: float = 12.0,
) -> Path:
    """Write ``n`` clips of moving objects, ``labels.csv`` and a COCO ``annotations.json``.

    Each clip holds ``objects[0]`` to ``objects[1]`` objects (inclusive) of random classes over a
    dark, slightly noisy background. Object diameters are uniform in ``[min_size, max_size]``
    pixels, so with the defaults most objects are COCO-small (area under 32x32). About 30% of objects start outside the
    frame and enter it; the others start inside and may leave. An object has a box on every
    frame where some of it is visible (the box is clipped to the frame) and none where it is fully
    outside; every object is visible on at least one frame. Same arguments, same files.

    ``annotations.json`` has ``images`` (one per clip frame: ``id``, ``file_name`` = the clip path
    relative to the file, ``frame_index``, ``timestamp`` in seconds, ``video_id``, ``width``,
    ``height``), ``annotations`` (``bbox`` ``[x, y, w, h]`` in pixels, ``area`` = ``w * h``,
    ``category_id``, ``track_id`` unique over the data set, ``iscrowd`` = 0), ``categories``
    (ids ``1..K`` in the order of ``classes``) and ``videos``.

    Args:
        out_dir: Folder to write into (created).
        n: Number of clips.
        classes: Class names; ``circle``, ``square`` and ``triangle`` have their shapes, other
            names get polygons (as in :func:`~dlabel_lab.make_shape_clips`).
        frames: Frames per clip.
        width: Frame width in pixels (even, at least 32).
        height: Frame height in pixels (even, at least 32).
        objects: ``(fewest, most)`` objects per clip.
        min_size: Smallest object diameter in pixels (at least 3).
        max_size: Largest object diameter in pixels.
        seed: Random seed.
        fps: Frame rate written to the clips and used for ``timestamp``.

    Returns:
        The path of ``labels.csv``; ``annotations.json`` is beside it.

    Raises:
        ConfigError: An argument out of range.

    Example:
        >>> make_object_clips("clips/objects", 4, seed=0)  # doctest: +SKIP
        PosixPath('clips/objects/labels.csv')
    """
    classes = _check_make_args(n, classes, frames, width, height, objects, min_size, max_size, fps)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images, annotations, videos, rows = [], [], [], []
    track = 0
    for i in range(n):
        rng = np.random.default_rng([seed, i, 20])
        tracks = [
            _draw_track(rng, len(classes), frames, width, height, min_size, max_size)
            for _ in range(int(rng.integers(objects[0], objects[1] + 1)))
        ]
        clip, boxes = _render(rng, classes, tracks, frames, width, height)
        name = f"objects_{i:04d}.mp4"
        write_clip(out / name, clip, fps=fps, codec="h264", crf=18)
        videos.append({"id": i + 1, "file_name": name, "width": width, "height": height, "frames": frames, "fps": fps})
        first_image = len(images) + 1
        for t in range(frames):
            images.append(
                {
                    "id": first_image + t,
                    "file_name": name,
                    "video_id": i + 1,
                    "frame_index": t,
                    "timestamp": round(t / fps, 6),
                    "width": width,
                    "height": height,
                }
            )
        counts: Counter = Counter()
        for j, (label, _) in enumerate(tracks):
            track += 1
            for t, (x0, y0, x1, y1) in boxes[j].items():
                w, h = x1 - x0, y1 - y0
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": first_image + t,
                        "category_id": label + 1,
                        "bbox": [x0, y0, w, h],
                        "area": w * h,
                        "iscrowd": 0,
                        "track_id": track,
                    }
                )
                counts[label] += 1
        top = max(counts, key=lambda k: (counts[k], -k))  # most annotated class; ties go to the first class
        rows.append({"path": name, "label": classes[top]})
    coco = {
        "info": {"description": "dlabel_lab.make_object_clips", "seed": seed, "fps": fps},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": c, "supercategory": "shape"} for k, c in enumerate(classes)],
        "videos": videos,
    }
    _write_atomic(out / "annotations.json", json.dumps(coco, separators=(",", ":")))
    with open(out / "labels.csv.tmp", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label"])
        writer.writeheader()
        writer.writerows(rows)
    os.replace(out / "labels.csv.tmp", out / "labels.csv")
    return out / "labels.csv"


def _check_make_args(n, classes, frames, width, height, objects, min_size, max_size, fps) -> list[str]:
    def is_int(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not is_int(n) or n < 1:
        raise ConfigError(f"n must be a positive int, got {n!r}")
    classes = [str(c) for c in classes]
    if not classes or len(set(classes)) != len(classes):
        raise ConfigError(f"classes must be one or more distinct names, got {classes!r}")
    if not is_int(frames) or frames < 1:
        raise ConfigError(f"frames must be a positive int, got {frames!r}")
    for side, v in (("width", width), ("height", height)):
        if not is_int(v) or v < 32 or v % 2:
            raise ConfigError(f"{side} must be an even int >= 32 (H.264 needs even sizes), got {v!r}")
    if (
        not isinstance(objects, (tuple, list))
        or len(objects) != 2
        or not all(is_int(v) for v in objects)
        or not 1 <= objects[0] <= objects[1]
    ):
        raise ConfigError(f"objects must be (fewest, most) with 1 <= fewest <= most, got {objects!r}")
    if not (is_int(min_size) and is_int(max_size) and 3 <= min_size <= max_size <= min(width, height)):
        raise ConfigError(
            f"need ints 3 <= min_size <= max_size <= {min(width, height)} (the frame's shorter side), got "
            f"min_size={min_size!r}, max_size={max_size!r}"
        )
    if not (isinstance(fps, (int, float)) and fps > 0):
        raise ConfigError(f"fps must be > 0, got {fps!r}")
    return classes


def _draw_track(rng, n_classes: int, frames: int, width: int, height: int, min_size: int, max_size: int):
    """``(class index, motion)`` for one object; its path is re-drawn until its centre is in the frame once."""
    label = int(rng.integers(n_classes))
    r = float(rng.uniform(min_size, max_size)) / 2
    colour = rng.uniform(140, 255, 3)
    angle, spin = rng.uniform(0, 2 * np.pi), rng.uniform(-0.1, 0.1)
    for _ in range(20):
        speed = rng.uniform(0.5, 3.0)
        if rng.random() < _ENTERING:  # start outside one edge, heading in
            edge = int(rng.integers(4))
            gap = r + rng.uniform(0, max(1.0, speed * frames / 3))
            heading = edge * np.pi / 2 + np.pi + rng.uniform(-np.pi / 4, np.pi / 4)  # edge 0 = right, 1 = bottom
            cx = {0: width + gap, 2: -gap}.get(edge, rng.uniform(0, width))
            cy = {1: height + gap, 3: -gap}.get(edge, rng.uniform(0, height))
        else:
            cx, cy, heading = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0, 2 * np.pi)
        vx, vy = speed * np.cos(heading), speed * np.sin(heading)
        path = [(cx + vx * t, cy + vy * t) for t in range(frames)]
        if any(0 <= x < width and 0 <= y < height for x, y in path):  # the centre shows on some frame
            break
    else:  # a path that never shows the object: put it in the middle, still
        path = [(width / 2, height / 2)] * frames
    return label, {"r": r, "colour": colour, "angle": angle, "spin": spin, "path": path}


def _render(rng, classes: list[str], tracks, frames: int, width: int, height: int):
    """RGB frames and, per track, ``{frame: (x0, y0, x1, y1)}`` of its visible mask (``x1`` exclusive)."""
    level = rng.uniform(15, 55)
    gradient = np.linspace(0, rng.uniform(0, 25), width, dtype=np.float32)[None, :, None]
    background = np.full((height, width, 3), level, np.float32) + gradient
    boxes: list[dict[int, tuple[int, int, int, int]]] = [{} for _ in tracks]
    out = []
    for t in range(frames):
        img = background + rng.normal(0, 3, background.shape).astype(np.float32)
        for j, (label, m) in enumerate(tracks):
            cx, cy = m["path"][t]
            side = int(math.ceil(2 * m["r"])) + 4
            ox, oy = math.floor(cx) - side // 2, math.floor(cy) - side // 2
            x0, y0, x1, y1 = max(0, ox), max(0, oy), min(width, ox + side), min(height, oy + side)
            if x0 >= x1 or y0 >= y1:
                continue
            mask = _shape_mask(classes[label], side, cx - ox, cy - oy, m["r"], m["angle"] + m["spin"] * t)
            mask = mask[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
            ys, xs = np.nonzero(mask)
            if len(ys) == 0:
                continue
            alpha = mask.astype(np.float32)[..., None] / 255.0
            region = img[y0:y1, x0:x1]
            img[y0:y1, x0:x1] = region * (1 - alpha) + m["colour"][None, None, :].astype(np.float32) * alpha
            boxes[j][t] = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)
        out.append(np.clip(np.round(img), 0, 255).astype(np.uint8))
    return out, boxes


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --- reading -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectAnnotations:
    """A validated COCO detection file whose images are frames of clips.

    Attributes:
        path: The ``annotations.json`` read.
        classes: Category names ordered by category id; label ``k`` (1-based, 0 is background)
            is ``classes[k - 1]``.
        category_ids: The COCO category id of each class, same order.
        images: Image records, each with ``id``, ``path`` (absolute clip path), ``frame_index``,
            ``timestamp``, ``width`` and ``height``, ordered by clip then frame.
        boxes: Per image id, a ``float32`` array ``(n, 4)`` of ``x0, y0, x1, y1`` boxes.
        labels: Per image id, an ``int64`` array ``(n,)`` of 1-based labels.
        track_ids: Per image id, an ``int64`` array ``(n,)`` of track ids (-1 where none).
    """

    path: Path
    classes: list[str]
    category_ids: list[int]
    images: list[dict]
    boxes: dict[int, np.ndarray]
    labels: dict[int, np.ndarray]
    track_ids: dict[int, np.ndarray]

    @property
    def n_objects(self) -> int:
        """Number of boxes over all images."""
        return sum(len(b) for b in self.boxes.values())

    def target(self, image_id: int) -> dict[str, np.ndarray]:
        """``{"boxes": (n, 4) xyxy, "labels": (n,)}`` of one image."""
        return {"boxes": self.boxes[image_id], "labels": self.labels[image_id]}


def read_object_annotations(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    max_bytes: int = MAX_ANNOTATION_BYTES,
) -> ObjectAnnotations:
    """Read and validate a COCO detection file whose images are clip frames.

    Every image needs ``id``, ``file_name`` (a clip path relative to the file, or absolute),
    ``frame_index``, ``width`` and ``height``; every annotation ``image_id``, ``category_id`` and
    ``bbox`` ``[x, y, w, h]`` with ``w, h >= 0``. Clip paths must resolve inside the file's folder
    (or ``root``). Nothing is read from the clips.

    Args:
        path: The ``annotations.json`` file, or a folder holding one.
        root: Folder the clip paths must stay inside (default: the file's folder).
        max_bytes: Largest file accepted, checked with ``stat`` before reading.

    Returns:
        The :class:`ObjectAnnotations`.

    Raises:
        ConfigError: The file is missing, too large, not JSON or not a valid COCO detection file;
            the message names the first bad entry.
        UnsafeSource: A clip path resolves outside the allowed folder.

    Example:
        >>> ann = read_object_annotations("clips/objects/annotations.json")  # doctest: +SKIP
        >>> ann.target(ann.images[0]["id"])["boxes"].shape  # doctest: +SKIP
        (2, 4)
    """
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "annotations.json"
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise ConfigError(f"max_bytes must be a positive int, got {max_bytes!r}")
    try:
        st = p.stat()
    except OSError as e:
        raise ConfigError(f"annotations file {str(p)!r} cannot be opened ({e.strerror}); check the path") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"annotations file {str(p)!r} is not a regular file")
    if st.st_size > max_bytes:
        raise ConfigError(
            f"annotations file {str(p)!r} is {st.st_size} bytes, more than max_bytes={max_bytes}; "
            f"if you trust it, pass max_bytes={st.st_size}"
        )
    with open(p, "rb") as fh:
        data = fh.read(max_bytes + 1)
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ConfigError(f"{p} is not a UTF-8 JSON file ({type(e).__name__}: {str(e)[:200]})") from None
    base = p.parent.resolve() if root is None else Path(root).expanduser().resolve()
    return _parse(doc, p, base)


def _parse(doc, p: Path, base: Path) -> ObjectAnnotations:
    def bad(where: str, reason: str) -> ConfigError:
        return ConfigError(f"{p}: {where} {reason}; fix the file (COCO detection format with frame_index per image)")

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def integer(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not isinstance(doc, dict):
        raise bad("the top level", "is not an object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise bad(f"key {key!r}", "is missing or not a list")
    cats = {}
    for k, c in enumerate(doc["categories"]):
        if not (isinstance(c, dict) and integer(c.get("id")) and isinstance(c.get("name"), str)):
            raise bad(f"categories[{k}]", "needs an int 'id' and a str 'name'")
        if c["id"] in cats:
            raise bad(f"categories[{k}]", f"repeats id {c['id']}")
        cats[c["id"]] = c["name"]
    if not cats:
        raise bad("'categories'", "is empty")
    category_ids = sorted(cats)
    label_of = {cid: k + 1 for k, cid in enumerate(category_ids)}
    images, resolved = {}, {}
    for k, im in enumerate(doc["images"]):
        if not isinstance(im, dict) or not integer(im.get("id")) or not isinstance(im.get("file_name"), str):
            raise bad(f"images[{k}]", "needs an int 'id' and a str 'file_name'")
        if not (integer(im.get("frame_index")) and im["frame_index"] >= 0):
            raise bad(f"images[{k}]", "needs an int 'frame_index' >= 0 (the frame of the clip it comes from)")
        if not all(integer(im.get(s)) and im[s] > 0 for s in ("width", "height")):
            raise bad(f"images[{k}]", "needs positive int 'width' and 'height'")
        if im["id"] in images:
            raise bad(f"images[{k}]", f"repeats id {im['id']}")
        name = im["file_name"]
        if name not in resolved:
            target = (p.parent / name).resolve()
            if target != base and base not in target.parents:
                raise UnsafeSource(
                    f"{p}: images[{k}] file_name {name!r} resolves outside {str(base)!r}; move the "
                    "clip there or pass root=<a folder holding every clip>"
                )
            resolved[name] = str(target)
        ts = im.get("timestamp")
        images[im["id"]] = {
            "id": im["id"],
            "path": resolved[name],
            "frame_index": im["frame_index"],
            "timestamp": float(ts) if number(ts) else None,
            "width": im["width"],
            "height": im["height"],
        }
    per_image: dict[int, list] = {i: [] for i in images}
    for k, a in enumerate(doc["annotations"]):
        if not isinstance(a, dict) or a.get("image_id") not in images:
            raise bad(f"annotations[{k}]", "has no 'image_id' of a listed image")
        if a.get("category_id") not in label_of:
            raise bad(f"annotations[{k}]", f"has category_id {a.get('category_id')!r}, not one of {category_ids}")
        box = a.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(number(v) for v in box) and min(box[2:]) >= 0):
            raise bad(f"annotations[{k}]", f"has bbox {box!r}; it must be [x, y, w, h] with w, h >= 0")
        track = a.get("track_id")
        per_image[a["image_id"]].append((*box, label_of[a["category_id"]], track if integer(track) else -1))
    order = sorted(images, key=lambda i: (images[i]["path"], images[i]["frame_index"], i))
    boxes, labels, tracks = {}, {}, {}
    for i in order:
        rows = np.asarray(per_image[i], np.float64).reshape(-1, 6)
        boxes[i] = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:4]], axis=1).astype(np.float32)
        labels[i] = rows[:, 4].astype(np.int64)
        tracks[i] = rows[:, 5].astype(np.int64)
    return ObjectAnnotations(
        path=p,
        classes=[cats[c] for c in category_ids],
        category_ids=category_ids,
        images=[images[i] for i in order],
        boxes=boxes,
        labels=labels,
        track_ids=tracks,
    )
