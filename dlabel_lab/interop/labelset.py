"""The neutral label set every format reads into and writes from, and the file-safety rules they share.

A :class:`LabelSet` is what an export holds and an import brings: per clip, its media file (a
path relative to the export folder), its size and timing, its clip label with the label's
source and author, people's boxes (with track ids) and, optionally, a model's boxes with
scores. Format modules (:mod:`.coco`, :mod:`.labelstudio`, :mod:`.cvat`, :mod:`.fiftyone`)
only convert between a :class:`LabelSet` and their files; :mod:`.from_store` builds one from a
store and :mod:`.to_store` ingests one.

Safety, for every format: media paths in a file are relative, posix, and resolve inside the
file's folder (:func:`resolve_media`); files are read with a size limit checked before reading
(:func:`read_limited`, :func:`load_json`); writers check every clip field before the first
write (:func:`check_for_writing`), only create files under the export folder (:func:`inside`)
and write them atomically (:func:`write_atomic`).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from ..errors import ConfigError, UnsafeSource

__all__ = ["Box", "ClipLabels", "LabelSet", "FORMATS", "MAX_LABEL_FILE_BYTES", "BAD_XML", "resolve_media",
           "read_limited", "load_json", "json_bytes", "inside", "write_atomic", "check_labelset", "check_clip_fields",
           "check_for_writing", "positive_int", "is_int", "is_number", "canonical"]

FORMATS = ("coco", "labelstudio", "cvat", "fiftyone")
MAX_LABEL_FILE_BYTES = 512 << 20  # a label file larger than this is refused before it is read
BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")  # characters XML 1.0 cannot carry


@dataclass(frozen=True)
class Box:
    """One box on one frame, in native pixels (``x1 < x2``, ``y1 < y2``; frames count from 0).

    People's boxes carry ``source`` and ``author``; a model's boxes carry ``score``.
    ``track_id`` is ``None`` for a box that belongs to no track.

    Example:
        >>> Box(frame_index=3, x1=2.0, y1=4.0, x2=10.0, y2=12.0, label="circle", track_id=1).width
        8.0
    """

    frame_index: int
    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    track_id: int | None = None
    score: float | None = None
    source: str | None = None
    author: str | None = None

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1


@dataclass
class ClipLabels:
    """One clip of a label set: its media file and everything said about it.

    Args:
        media: The clip's path relative to the export folder (posix), e.g. ``"media/<id>.mp4"``;
            after :func:`~dlabel_lab.interop.read_labels`, the resolved absolute path.
        width: Native frame width in pixels (formats with relative boxes need it).
        height: Native frame height in pixels.
        fps: Frames per second (Label Studio's times need it).
        frame_count: Frames in the clip.
        scoring_id: The store's id of the clip (exports keep it; imports give new ones).
        label: The clip's class label (the latest user score), or ``None``.
        label_source: Who gave it (``"human"``, ``"auto"``, ``"audit"``, or a format name).
        label_author: The labeller's name, where known.
        boxes: People's boxes.
        predictions: A model's boxes (with scores); written as predictions where the format
            has room, never imported as labels.
        predicted_label: The model's clip-level class, with ``predicted_confidence``.
        predicted_confidence: Its confidence in [0, 1].
    """

    media: str
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    frame_count: int | None = None
    scoring_id: str | None = None
    label: str | None = None
    label_source: str | None = None
    label_author: str | None = None
    boxes: list[Box] = field(default_factory=list)
    predictions: list[Box] = field(default_factory=list)
    predicted_label: str | None = None
    predicted_confidence: float | None = None


@dataclass
class LabelSet:
    """Clips with their labels, boxes and tracks; the classes in a fixed order; the predicting model.

    Example:
        >>> ls = LabelSet(clips=[ClipLabels(media="media/a.mp4", width=64, height=64, label="circle")],
        ...               classes=["circle", "square"])
        >>> ls.summary()
        '1 clips (1 labelled), 0 boxes in 0 tracks, 0 predicted boxes; classes circle, square'
    """

    clips: list[ClipLabels]
    classes: list[str]
    model_version: str | None = None

    def summary(self) -> str:
        boxes = [b for c in self.clips for b in c.boxes]
        tracks = {(i, b.track_id) for i, c in enumerate(self.clips) for b in c.boxes if b.track_id is not None}
        labelled = sum(c.label is not None for c in self.clips)
        return (f"{len(self.clips)} clips ({labelled} labelled), {len(boxes)} boxes in {len(tracks)} tracks, "
                f"{sum(len(c.predictions) for c in self.clips)} predicted boxes; classes {', '.join(self.classes)}")

    def with_media(self, media: Sequence[str]) -> LabelSet:
        """A copy whose clips point at ``media`` (one path per clip, in order)."""
        if len(media) != len(self.clips):
            raise ConfigError(f"{len(media)} media paths for {len(self.clips)} clips")
        return replace(self, clips=[replace(c, media=m) for c, m in zip(self.clips, media, strict=True)])


def is_int(v: object) -> bool:
    """Whether ``v`` is an int (``True`` and ``False`` are not).

    Example:
        >>> is_int(3), is_int(True), is_int(3.0)
        (True, False, False)
    """
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: object) -> bool:
    """Whether ``v`` is a finite int or float (not a bool, NaN or infinity).

    Example:
        >>> is_number(2.5), is_number(float("nan")), is_number(False), is_number("1")
        (True, False, False, False)
    """
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def positive_int(v: object, what: str) -> int | None:
    """``v`` as an int if it is a positive int, ``None`` if it is ``None``.

    Raises:
        ConfigError: ``v`` is anything else; the message starts with ``what``.

    Example:
        >>> positive_int(12, "clip 0: width"), positive_int(None, "clip 0: width")
        (12, None)
        >>> positive_int(0, "clip 0 ('a.mp4'): frame_count")
        Traceback (most recent call last):
        ...
        dlabel_lab.errors.ConfigError: clip 0 ('a.mp4'): frame_count must be a positive integer or None, got 0
    """
    if v is None:
        return None
    if not is_int(v) or v <= 0:  # type: ignore[operator]
        raise ConfigError(f"{what} must be a positive integer or None, got {v!r}")
    return int(v)  # type: ignore[arg-type]


def check_labelset(ls: LabelSet, *, what: str = "label set") -> LabelSet:
    """Validate a label set before anything is written from it; the same set.

    Raises:
        ConfigError: Classes repeat or are empty; a label is not a class; a box is degenerate,
            not finite, on a negative frame, or outside a clip's known frame count; a score is
            outside [0, 1]; one clip holds two boxes of the same track on one frame.

    Example:
        >>> check_labelset(LabelSet(clips=[], classes=["a"])).classes
        ['a']
    """
    if not isinstance(ls, LabelSet):
        raise ConfigError(f"{what} must be a LabelSet, got {type(ls).__name__}")
    classes = list(ls.classes)
    if not classes or len(set(classes)) != len(classes) or not all(isinstance(c, str) and c for c in classes):
        raise ConfigError(f"{what}: classes must be distinct non-empty names, got {classes!r}")
    known = set(classes)
    for i, c in enumerate(ls.clips):
        where = f"{what}: clip {i} ({c.media!r})"
        if c.label is not None and c.label not in known:
            raise ConfigError(f"{where}: label {c.label!r} is not among the classes {classes}")
        if c.predicted_label is not None and c.predicted_label not in known:
            raise ConfigError(f"{where}: predicted label {c.predicted_label!r} is not among the classes {classes}")
        for kind, boxes in (("box", c.boxes), ("predicted box", c.predictions)):
            seen: set[tuple[int, int]] = set()
            for k, b in enumerate(boxes):
                if not (isinstance(b.frame_index, int) and b.frame_index >= 0):
                    raise ConfigError(f"{where}: {kind} {k} has frame_index {b.frame_index!r}; frames count from 0")
                if c.frame_count is not None and b.frame_index >= c.frame_count:
                    raise ConfigError(f"{where}: {kind} {k} is on frame {b.frame_index}, but the clip has "
                                      f"{c.frame_count} frames")
                if not all(is_number(v) for v in (b.x1, b.y1, b.x2, b.y2)) or not (b.x1 < b.x2 and b.y1 < b.y2):
                    raise ConfigError(f"{where}: {kind} {k} is ({b.x1}, {b.y1}, {b.x2}, {b.y2}); boxes need "
                                      "finite x1 < x2 and y1 < y2")
                if b.label not in known:
                    raise ConfigError(f"{where}: {kind} {k} has label {b.label!r}, not among the classes {classes}")
                if b.score is not None and not (is_number(b.score) and 0.0 <= b.score <= 1.0):
                    raise ConfigError(f"{where}: {kind} {k} has score {b.score!r}; scores lie in [0, 1]")
                if b.track_id is not None:
                    key = (b.track_id, b.frame_index)
                    if key in seen:
                        raise ConfigError(f"{where}: track {b.track_id} has two {kind}es on frame {b.frame_index}")
                    seen.add(key)
    return ls


def check_clip_fields(out: Path, c: ClipLabels, k: int, *, boxes_need_size: str | None = None) -> None:
    """Check one clip's fields for a JSON writer, before anything is written (for :mod:`.coco`, :mod:`.fiftyone`).

    The media path must resolve inside ``out``; width and height are positive ints, ``frame_count``
    an int >= 0, ``fps`` a positive finite number, ``predicted_confidence`` in [0, 1] (each or
    ``None``); ``scoring_id``, ``label_source`` and ``label_author`` are strings or ``None``; box
    track ids are ints or ``None`` and box sources and authors strings or ``None``.

    Args:
        out: The export folder.
        c: The clip.
        k: Its index in the label set (errors name it as ``clip k ('media')``).
        boxes_need_size: Where given, a clip with boxes or predictions must know its width and
            height; the text says why (it ends the error message).

    Raises:
        ConfigError: A field has a value the format cannot hold.
        UnsafeSource: The media path is a URL, absolute, or leaves ``out``.

    Example:
        >>> check_clip_fields(Path("/tmp/x"), ClipLabels(media="a.mp4", fps=0.0), 3)
        Traceback (most recent call last):
        ...
        dlabel_lab.errors.ConfigError: clip 3 ('a.mp4'): fps must be a positive finite number or None, got 0.0
    """
    where = f"clip {k} ({c.media!r})"
    resolve_media(out, c.media, what=f"{where} media")
    inside(out, c.media)
    for key in ("width", "height"):
        v = getattr(c, key)
        if v is not None and not (is_int(v) and v > 0):
            raise ConfigError(f"{where}: {key} must be a positive int or None, got {v!r}")
    if boxes_need_size is not None and (c.boxes or c.predictions) and (c.width is None or c.height is None):
        raise ConfigError(f"{where} has boxes but no width and height; {boxes_need_size}")
    if c.frame_count is not None and not (is_int(c.frame_count) and c.frame_count >= 0):
        raise ConfigError(f"{where}: frame_count must be an int >= 0 or None, got {c.frame_count!r}")
    if c.fps is not None and not (is_number(c.fps) and c.fps > 0):
        raise ConfigError(f"{where}: fps must be a positive finite number or None, got {c.fps!r}")
    if c.predicted_confidence is not None and not (is_number(c.predicted_confidence)
                                                   and 0.0 <= c.predicted_confidence <= 1.0):
        raise ConfigError(f"{where}: predicted_confidence must lie in [0, 1], got {c.predicted_confidence!r}")
    for key in ("scoring_id", "label_source", "label_author"):
        v = getattr(c, key)
        if v is not None and not isinstance(v, str):
            raise ConfigError(f"{where}: {key} must be a str or None, got {v!r}")
    for kind, boxes in (("box", c.boxes), ("predicted box", c.predictions)):
        for n, b in enumerate(boxes):
            if b.track_id is not None and not is_int(b.track_id):
                raise ConfigError(f"{where}: {kind} {n} has track_id {b.track_id!r}; track ids are ints or None")
            for key in ("source", "author"):
                v = getattr(b, key)
                if v is not None and not isinstance(v, str):
                    raise ConfigError(f"{where}: {kind} {n} has {key} {v!r}; it must be a str or None")


def check_for_writing(ls: LabelSet, out_dir: str | os.PathLike, *, boxes_need_size: str | None = None) -> Path:
    """Check a label set for a JSON writer (:func:`check_labelset`, :func:`check_clip_fields` per clip, the
    model version); the export folder, ``~`` expanded.

    Raises:
        ConfigError: The label set is invalid, a clip field has a value the format cannot hold,
            or ``model_version`` is not a str or ``None``.
        UnsafeSource: A clip's media is a URL, absolute, or leaves ``out_dir``.

    Example:
        >>> check_for_writing(LabelSet(clips=[ClipLabels(media="media/a.mp4")], classes=["a"]), "/tmp/x").as_posix()
        '/tmp/x'
    """
    check_labelset(ls)
    out = Path(out_dir).expanduser()
    for k, c in enumerate(ls.clips):
        check_clip_fields(out, c, k, boxes_need_size=boxes_need_size)
    if ls.model_version is not None and not isinstance(ls.model_version, str):
        raise ConfigError(f"model_version must be a str or None, got {ls.model_version!r}")
    return out


def _box_key(b: Box) -> tuple:  # coordinates rounded: boxes 1e-9 px apart must not swap order after a round trip
    return (b.frame_index, -1 if b.track_id is None else b.track_id, b.label,
            *(round(v, 4) for v in (b.x1, b.y1, b.x2, b.y2)),
            -1.0 if b.score is None else b.score, b.source or "", b.author or "")


def canonical(ls: LabelSet, *, media: bool = False, predictions: bool = True) -> list[dict]:
    """A plain, ordered form of a label set for comparing two of them (round trips, tests).

    Clips keep their order; boxes are sorted by frame, track, label and position; media paths are
    left out unless ``media=True``, and predictions unless ``predictions=True``.

    Example:
        >>> canonical(LabelSet(clips=[ClipLabels(media="a.mp4", label="x")], classes=["x"]))[0]["label"]
        'x'
    """
    out = []
    for c in ls.clips:
        d = {"width": c.width, "height": c.height, "frame_count": c.frame_count, "label": c.label,
             "label_source": c.label_source, "label_author": c.label_author,
             "boxes": [_box_tuple(b) for b in sorted(c.boxes, key=_box_key)]}
        if media:
            d["media"] = c.media
        if predictions:
            d["predictions"] = [_box_tuple(b) for b in sorted(c.predictions, key=_box_key)]
            d["predicted_label"] = c.predicted_label
        out.append(d)
    return out


def _box_tuple(b: Box) -> tuple:
    return (b.frame_index, b.track_id, b.label, b.x1, b.y1, b.x2, b.y2, b.score, b.source, b.author)


# --- files -------------------------------------------------------------------------------
def read_limited(path: str | os.PathLike, *, max_bytes: int = MAX_LABEL_FILE_BYTES, what: str = "label file") -> bytes:
    """Read a regular file whose size (checked with ``stat`` first) is at most ``max_bytes``.

    Raises:
        ConfigError: The file is missing, not a regular file or larger than ``max_bytes``.

    Example:
        >>> read_limited("export/annotations.json")  # doctest: +SKIP
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise ConfigError(f"{what} {str(p)!r} cannot be opened ({e.strerror}); check the path") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {str(p)!r} is not a regular file")
    if st.st_size > max_bytes:
        raise ConfigError(f"{what} {str(p)!r} is {st.st_size} bytes, more than max_bytes={max_bytes}; if you "
                          f"trust it, pass max_bytes={st.st_size}")
    with open(p, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ConfigError(f"{what} {str(p)!r} grew past max_bytes={max_bytes} while it was read")
    return data


def load_json(path: str | os.PathLike, max_bytes: int = MAX_LABEL_FILE_BYTES, what: str = "JSON file") -> object:
    """Read a UTF-8 JSON file (a BOM is allowed) with :func:`read_limited` and parse it.

    Args:
        path: The file.
        max_bytes: Largest file accepted, checked before reading.
        what: What the file is, for messages (``"COCO file"``, ``"FiftyOne manifest"``).

    Raises:
        ConfigError: ``max_bytes`` is not a positive int; the file is missing, not a regular
            file, too large, not UTF-8 or not JSON (the message names the file).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "annotations.json"
        >>> _ = path.write_bytes(b'\\xef\\xbb\\xbf{"categories": [{"id": 1, "name": "circle"}]}')
        >>> load_json(path, what="COCO file")["categories"]
        [{'id': 1, 'name': 'circle'}]
    """
    if not is_int(max_bytes) or max_bytes < 1:
        raise ConfigError(f"max_bytes must be a positive int, got {max_bytes!r}")
    data = read_limited(path, max_bytes=max_bytes, what=what)
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ConfigError(f"{path} is not a UTF-8 JSON file ({type(e).__name__}: {str(e)[:200]}); fix or re-export "
                          "it") from None


def json_bytes(doc: object, indent: int | None = None, what: str = "JSON") -> bytes:
    """``doc`` as UTF-8 JSON text ending in a newline: the same document always gives the same bytes.

    Non-ASCII text is written as is; ``indent=None`` writes compact JSON (no spaces).

    Raises:
        ConfigError: ``doc`` holds a value JSON cannot store (NaN, infinity, an object that is not
            JSON, text that is not valid Unicode); ``what`` names the format in the message.

    Example:
        >>> json_bytes({"name": "zoë", "box": [1.5, 2]})
        b'{"name":"zo\\xc3\\xab","box":[1.5,2]}\\n'
        >>> json_bytes([1], indent=2)
        b'[\\n  1\\n]\\n'
    """
    try:
        text = json.dumps(doc, ensure_ascii=False, allow_nan=False, indent=indent,
                          separators=(",", ":") if indent is None else None)
        return (text + "\n").encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ConfigError(f"the label set holds a value {what} cannot store ({e})") from None


def resolve_media(root: str | os.PathLike, name: object, *, what: str = "media path") -> Path:
    """The absolute path of a clip named in a label file, refused unless it lies inside ``root``.

    ``name`` must be a relative path (``/`` or ``\\`` separators); URLs, absolute paths, drive
    letters and names that climb out of ``root`` (``..``, links) raise :class:`UnsafeSource`.
    Label Studio's ``/data/local-files/?d=`` and ``/data/upload/`` prefixes are understood.

    Example:
        >>> resolve_media("/tmp/export", "media/a.mp4").as_posix()
        '/tmp/export/media/a.mp4'
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{what} must be a non-empty string, got {name!r}")
    text = name.strip()
    if text.startswith("/data/local-files/?d="):
        text = unquote(text[len("/data/local-files/?d="):])  # Label Studio percent-encodes local-file paths
    elif text.startswith("/data/upload/"):
        text = text[len("/data/upload/"):]
    if "\x00" in text:
        raise UnsafeSource(f"{what} {name!r} holds a NUL byte; refusing it")
    if "://" in text or text.startswith(("//", "\\\\")):
        raise UnsafeSource(f"{what} {name!r} is a URL; clips are read from local files only. Download it "
                           "beside the label file and name it by a relative path")
    posix = text.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise UnsafeSource(f"{what} {name!r} is absolute; label files must name clips relative to their folder")
    base = Path(root).resolve()
    target = (base / PurePosixPath(posix)).resolve()
    if target != base and base not in target.parents:
        raise UnsafeSource(f"{what} {name!r} resolves outside {str(base)!r}; refusing it (a label file may only "
                           "name clips inside its own folder)")
    return target


def inside(out_dir: Path, relpath: str) -> Path:
    """``out_dir / relpath``, refused (:class:`UnsafeSource`) unless it stays inside ``out_dir``.

    Example:
        >>> inside(Path("/tmp/x"), "media/a.mp4").as_posix()
        '/tmp/x/media/a.mp4'
    """
    base = Path(out_dir).resolve()
    target = (base / PurePosixPath(relpath)).resolve()
    if base not in target.parents:
        raise UnsafeSource(f"refusing to write {relpath!r}: it resolves outside the export folder {str(base)!r}")
    return target


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
