"""CVAT for video 1.1 XML: one file per clip (CVAT's video tasks hold one video), tracks of boxes.

:func:`write` puts ``<name>_<n>_<scoring id>.xml`` per clip straight into the export folder (the
clip index and a sanitised scoring id name the file, never the clip's own file name), so the media
paths inside stay relative to the folder of the file that names them. Each file::

    <annotations>
      <version>1.1</version>
      <meta>
        <task> name, size (frames), mode interpolation, labels (with our attributes declared),
               original_size width/height </task>
        <source>media/<id>.mp4</source>            (the clip, relative to the file's folder)
        <dlabel_clip scoring_id= width= height= fps= frame_count= label= label_source= label_author=/>
      </meta>
      <track id="0" label="cat" source="manual">
        <box frame="3" keyframe="1" outside="0" occluded="0" xtl= ytl= xbr= ybr= z_order="0">
          <attribute name="dlabel_track_id">7</attribute> <attribute name="dlabel_source">human</attribute>
          <attribute name="dlabel_author">ann</attribute>
        </box>
        <box frame="4" keyframe="1" outside="1" .../>   (the track leaves the picture)
      </track>
    </annotations>

CVAT's semantics, as :func:`read` applies them: inside a track, frames between two listed boxes
whose first is not ``outside`` are interpolated linearly (CVAT's own exports list every frame;
keyframe-only files interpolate); an ``outside="1"`` box hides the object from its frame until the
next box; a track whose last box is not outside goes on to the task's last frame. :func:`write` is
lossless: every box is a keyframe, followed by an outside box on the next frame unless the track's
next box is there (or the clip ends).

What carries what: our track id in the box attribute ``dlabel_track_id`` (empty: a box of no
track; CVAT exports shapes as one-frame tracks, so each such box is its own ``<track>``); our
source and author in ``dlabel_source`` / ``dlabel_author`` (declared as text attributes of every
label, so CVAT keeps them when the task declares them and ignores them otherwise); the clip's
facts and class in ``<dlabel_clip>`` (CVAT for video has no clip-level tag: a top-level ``<tag>``
would make CVAT's importer fail, so the class is kept in ``<meta>``, which CVAT ignores). Files
from CVAT itself (no ``dlabel_clip``): tracks get ids 0, 1, 2, ... in file order, sources
``"cvat"`` (whatever CVAT's manual/auto/semi-auto/file), and a clip class from top-level ``<tag>``
elements where a hand-written file has them. A model's predictions are not written.

XML is parsed with :mod:`defusedxml` only: DTDs and entity declarations (billion laughs, external
entities) are refused.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape, quoteattr

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from ..errors import ConfigError
from .labelset import (
    BAD_XML,
    MAX_LABEL_FILE_BYTES,
    Box,
    ClipLabels,
    LabelSet,
    check_labelset,
    inside,
    is_number,
    positive_int,
    read_limited,
    resolve_media,
    write_atomic,
)

__all__ = ["write", "read", "FORMAT", "TRACK_ATTRIBUTE", "SOURCE_ATTRIBUTE", "AUTHOR_ATTRIBUTE"]

FORMAT = "cvat"
TRACK_ATTRIBUTE, SOURCE_ATTRIBUTE, AUTHOR_ATTRIBUTE = "dlabel_track_id", "dlabel_source", "dlabel_author"
CLIP_ELEMENT = "dlabel_clip"
MAX_EXPANDED_BOXES = 5_000_000  # boxes one read may expand to (interpolated frames, tracks held to the end)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_INT = re.compile(r"^\s*-?\d{1,18}\s*$")
_SHAPES = ("polygon", "polyline", "points", "cuboid", "ellipse", "mask", "skeleton")


# --- writing -----------------------------------------------------------------------------
def write(ls: LabelSet, out_dir: str | os.PathLike, *, name: str = "cvat") -> Path:
    """Write one CVAT for video 1.1 XML per clip into ``out_dir``; the folder's path.

    Files are named ``<name>_<index>_<scoring id>.xml`` (``clip`` without a scoring id); files of
    that pattern left from an earlier, larger export in ``out_dir`` are removed, so :func:`read`
    of the folder gives back exactly this label set. The same label set gives the same bytes.

    Args:
        ls: The label set; its media are relative paths inside ``out_dir``.
        out_dir: The export folder (it exists; nothing is written outside it).
        name: Prefix of the file names (letters, digits, ``_`` and ``-``).

    Raises:
        ConfigError: The label set is invalid, a text holds characters XML cannot carry, or
            ``name`` is not a plain name.
        UnsafeSource: A clip's media path is a URL, absolute, or leaves ``out_dir``.

    Example:
        >>> write(ls, "exports/cvat")  # doctest: +SKIP
        PosixPath('exports/cvat')
    """
    check_labelset(ls)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"name must be letters, digits, '_' or '-' (at most 64), got {name!r}")
    out = Path(out_dir)
    files = {}
    for n, clip in enumerate(ls.clips):  # everything is built and checked before the first write
        where = f"clip {n} ({clip.media!r})"
        resolve_media(out, clip.media, what=f"{where}: media path")
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", clip.scoring_id or "").strip("_")[:48] or "clip"
        task = f"{name}_{n:05d}_{stem}"
        files[f"{task}.xml"] = _document(clip, ls.classes, task, where).encode("utf-8")
    for file, data in files.items():
        write_atomic(inside(out, file), data)
    stale = re.compile(rf"^{re.escape(name)}_\d{{5}}_[A-Za-z0-9_-]+\.xml$")
    for old in sorted(out.iterdir()) if out.is_dir() else []:
        if stale.match(old.name) and old.name not in files and old.is_file() and not old.is_symlink():
            old.unlink()
    return out


def _text(v: object, where: str) -> str:
    s = str(v)
    if BAD_XML.search(s):
        raise ConfigError(f"{where}: {s!r} holds characters XML cannot carry")
    return s


def _num(v: float) -> str:
    return repr(float(v) + 0.0)


def _document(clip: ClipLabels, classes: list[str], task: str, where: str) -> str:
    width, height = positive_int(clip.width, f"{where}: width"), positive_int(clip.height, f"{where}: height")
    frame_count = positive_int(clip.frame_count, f"{where}: frame_count")
    if clip.fps is not None and not (is_number(clip.fps) and clip.fps > 0):
        raise ConfigError(f"{where}: fps must be a positive number or None, got {clip.fps!r}")
    size = frame_count if frame_count is not None else max((b.frame_index + 1 for b in clip.boxes), default=0)
    facts = {"scoring_id": clip.scoring_id, "width": width, "height": height,
             "fps": None if clip.fps is None else _num(clip.fps), "frame_count": frame_count, "label": clip.label,
             "label_source": clip.label_source, "label_author": clip.label_author}
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations>", "  <version>1.1</version>", "  <meta>",
             "    <task>", f"      <name>{escape(task)}</name>", f"      <size>{size}</size>",
             "      <mode>interpolation</mode>", "      <overlap>0</overlap>", "      <flipped>False</flipped>",
             "      <labels>"]
    for c in classes:
        lines += ["        <label>", f"          <name>{_escape(_text(c, f'{where}: class'))}</name>",
                  "          <attributes>"]
        for attr in (TRACK_ATTRIBUTE, SOURCE_ATTRIBUTE, AUTHOR_ATTRIBUTE):
            lines += ["            <attribute>", f"              <name>{attr}</name>",
                      "              <mutable>True</mutable>", "              <input_type>text</input_type>",
                      "              <default_value></default_value>", "              <values></values>",
                      "            </attribute>"]
        lines += ["          </attributes>", "        </label>"]
    lines.append("      </labels>")
    if width is not None and height is not None:
        lines += ["      <original_size>", f"        <width>{width}</width>", f"        <height>{height}</height>",
                  "      </original_size>"]
    lines += ["    </task>", f"    <source>{_escape(_text(clip.media, f'{where}: media'))}</source>"]
    attrs = "".join(f" {k}={quoteattr(_text(v, f'{where}: {k}'))}" for k, v in facts.items() if v is not None)
    lines += [f"    <{CLIP_ELEMENT}{attrs}/>", "  </meta>"]
    for n, (label, run) in enumerate(_tracks(clip.boxes, classes)):
        lines.append(f'  <track id="{n}" label={quoteattr(_text(label, f"{where}: label"))} source="manual">')
        for k, b in enumerate(run):
            lines += _box(b, b.frame_index, outside=False, where=where)
            nxt = run[k + 1].frame_index if k + 1 < len(run) else None
            if nxt != b.frame_index + 1 and b.frame_index + 1 < size:
                lines += _box(b, b.frame_index + 1, outside=True, where=where)
        lines.append("  </track>")
    lines += ["</annotations>", ""]
    return "\n".join(lines)


def _escape(s: str) -> str:
    return escape(s, {"\r": "&#13;"})


def _box(b: Box, frame: int, *, outside: bool, where: str) -> list[str]:
    head = (f'    <box frame="{frame}" keyframe="1" outside="{int(outside)}" occluded="0" xtl="{_num(b.x1)}" '
            f'ytl="{_num(b.y1)}" xbr="{_num(b.x2)}" ybr="{_num(b.y2)}" z_order="0">')
    attrs = [(TRACK_ATTRIBUTE, "" if b.track_id is None else str(int(b.track_id))), (SOURCE_ATTRIBUTE, b.source),
             (AUTHOR_ATTRIBUTE, b.author)]
    body = [f'      <attribute name="{k}">{_escape(_text(v, f"{where}: box {k}"))}</attribute>'
            for k, v in attrs if v is not None]
    return [head, *body, "    </box>"]


def _tracks(boxes: list[Box], classes: list[str]) -> list[tuple[str, list[Box]]]:
    """One run per (track, label) in track order, then one per box of no track."""
    groups: dict[tuple, list[Box]] = {}
    for b in sorted((b for b in boxes if b.track_id is not None), key=lambda b: (b.track_id, b.frame_index)):
        groups.setdefault((b.track_id, b.label), []).append(b)
    rank = {c: i for i, c in enumerate(classes)}
    untracked = sorted((b for b in boxes if b.track_id is None),
                       key=lambda b: (b.frame_index, rank.get(b.label, -1), b.label, b.x1, b.y1, b.x2, b.y2,
                                      b.source or "", b.source is None, b.author or "", b.author is None))
    return [(key[1], run) for key, run in groups.items()] + [(b.label, [b]) for b in untracked]


# --- reading -----------------------------------------------------------------------------
def read(path: str | os.PathLike, *, max_bytes: int = MAX_LABEL_FILE_BYTES) -> LabelSet:
    """Read CVAT for video 1.1 XML (one file, or every ``*.xml`` of a folder in name order) into a label set.

    Each file is one clip: ``<meta><source>`` (or ``<meta><task><source>``) names the video,
    relative to the file's folder. Tracks of boxes expand into one box per frame the object is
    shown (see the module docstring).

    Args:
        path: An XML file or a folder of them.
        max_bytes: Largest file accepted (each file's size is checked before it is read).

    Returns:
        The label set; media are absolute paths. Classes: the files' declared labels in order,
        then any other label met.

    Raises:
        ConfigError: A file is missing, too large, not well-formed, declares a DTD or entities,
            is a CVAT for images or project export, holds shapes other than boxes, or an entry is
            malformed (the message names the file, track and frame).
        UnsafeSource: A clip path is a URL, absolute, or leaves the file's folder.

    Example:
        >>> read("exports/cvat").summary()  # doctest: +SKIP
        '2 clips (2 labelled), 12 boxes in 2 tracks, 0 predicted boxes; classes circle, square'
    """
    p = Path(path)
    files = sorted(q for q in p.glob("*.xml") if q.is_file()) if p.is_dir() else [p]
    if not files:
        raise ConfigError(f"the folder {str(p)!r} holds no .xml files; pass a CVAT for video 1.1 XML file or its "
                          "folder")
    reader = _Reader()
    clips = [reader.clip(f, max_bytes) for f in files]
    classes = list(dict.fromkeys(reader.classes))
    if not classes:
        raise ConfigError(f"{p}: no labels declared or used; a CVAT task declares its labels in <meta>")
    return check_labelset(LabelSet(clips=clips, classes=classes), what=str(p))


def _parse_int(text: str | None, where: str, *, minimum: int = 0) -> int:
    if text is None or not _INT.match(text) or int(text) < minimum:
        raise ConfigError(f"{where} must be an integer >= {minimum}, got {text!r}")
    return int(text)


def _parse_float(text: str | None, where: str) -> float:
    try:
        v = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v):
        raise ConfigError(f"{where} must be a finite number, got {text!r}")
    return v


class _Shape:
    __slots__ = ("frame", "outside", "box", "attrs")

    def __init__(self, frame, outside, box, attrs):
        self.frame, self.outside, self.box, self.attrs = frame, outside, box, attrs


class _Reader:
    def __init__(self):
        self.classes: list[str] = []
        self.budget = MAX_EXPANDED_BOXES

    def clip(self, file: Path, max_bytes: int) -> ClipLabels:
        raw = read_limited(file, max_bytes=max_bytes, what="CVAT XML file")
        try:
            root = SafeET.fromstring(raw, forbid_dtd=True)
        except DefusedXmlException as e:
            raise ConfigError(f"{file} declares a DTD or entities ({type(e).__name__}); refusing it (CVAT never "
                              "writes them)") from None
        except (ParseError, ValueError) as e:
            raise ConfigError(f"{file} is not well-formed XML ({e}); export the task as 'CVAT for video 1.1'") from None
        if root.tag != "annotations":
            raise ConfigError(f"{file}: the root element is <{root.tag}>, not <annotations>; is it a CVAT XML file?")
        meta = root.find("meta")
        if meta is not None and meta.find("project") is not None:
            raise ConfigError(f"{file} is a CVAT project export; export each task as 'CVAT for video 1.1'")
        if root.find("image") is not None:
            raise ConfigError(f"{file} is 'CVAT for images' (it holds <image> elements); export the task as "
                              "'CVAT for video 1.1'")
        task = meta.find("task") if meta is not None else None
        task = task if task is not None else Element("task")
        for label in task.findall("labels/label"):
            name = label.findtext("name")
            if name:
                self.classes.append(name)
        size_text = task.findtext("size")
        size = None if size_text is None or not size_text.strip() else _parse_int(size_text, f"{file}: <size>")
        source = meta.findtext("source") if meta is not None else None
        source = source if source is not None else task.findtext("source")
        if source is None or not source.strip():
            raise ConfigError(f"{file}: <meta> names no <source> video; add <source>clip.mp4</source> with the clip's "
                              "path relative to the file")
        media = resolve_media(file.parent, source.strip(), what=f"{file}: <source>")
        ours = meta.find(CLIP_ELEMENT) if meta is not None else None
        if ours is not None:
            clip = self._facts(ours, file, media)
        else:
            w, h = task.findtext("original_size/width"), task.findtext("original_size/height")
            clip = ClipLabels(media=str(media), frame_count=size or None,
                              width=None if w is None else _parse_int(w, f"{file}: original_size width", minimum=1),
                              height=None if h is None else _parse_int(h, f"{file}: original_size height",
                                                                       minimum=1))
            self._tags(root, clip, file)
        end = clip.frame_count if clip.frame_count is not None else size
        self._tracks(root, clip, file, ours is not None, end)
        return clip

    def _facts(self, el: Element, file: Path, media: Path) -> ClipLabels:
        where = f"{file}: <{CLIP_ELEMENT}>"

        def count(key: str) -> int | None:
            v = el.get(key)
            return None if v is None else _parse_int(v, f"{where} {key}", minimum=1)

        fps = el.get("fps")
        rate = None if fps is None else _parse_float(fps, f"{where} fps")
        clip = ClipLabels(media=str(media), width=count("width"), height=count("height"),
                          frame_count=count("frame_count"), fps=rate,
                          scoring_id=el.get("scoring_id"), label=el.get("label"), label_source=el.get("label_source"),
                          label_author=el.get("label_author"))
        if clip.fps is not None and clip.fps <= 0:
            raise ConfigError(f"{where} fps must be positive, got {fps!r}")
        if clip.label is not None:
            self.classes.append(clip.label)
        return clip

    def _tags(self, root: Element, clip: ClipLabels, file: Path) -> None:
        """A clip class from top-level ``<tag>`` elements (hand-written files, other tools)."""
        tags = root.findall("tag")
        labels = list(dict.fromkeys(t.get("label") for t in tags))
        if not labels:
            return
        if len(labels) > 1 or not labels[0]:
            raise ConfigError(f"{file}: the <tag> elements name {labels}; a clip has one class")
        attrs = {a.get("name"): a.text or "" for a in tags[0].findall("attribute")}
        clip.label, clip.label_source = labels[0], attrs.get(SOURCE_ATTRIBUTE, FORMAT)
        clip.label_author = attrs.get(AUTHOR_ATTRIBUTE)
        self.classes.append(labels[0])

    def _tracks(self, root: Element, clip: ClipLabels, file: Path, ours: bool, end: int | None) -> None:
        tracks = []
        for n, track in enumerate(root.findall("track")):
            where = f"{file}: track {n} (id {track.get('id')!r})"
            label = track.get("label")
            if not label:
                raise ConfigError(f"{where} has no label")
            self.classes.append(label)
            shapes = []
            for el in track:
                if el.tag in _SHAPES:
                    raise ConfigError(f"{where} holds <{el.tag}> shapes; only boxes (<box>) can be imported")
                if el.tag == "box":
                    shapes.append(self._shape(el, where))
            shapes.sort(key=lambda s: s.frame)
            for a, b in zip(shapes, shapes[1:], strict=False):
                if a.frame == b.frame:
                    raise ConfigError(f"{where}: two boxes on frame {a.frame}")
            tracks.append((where, label, shapes))
        used = set()
        for _, _, shapes in tracks:
            for s in shapes:
                v = s.attrs.get(TRACK_ATTRIBUTE)
                if v is not None and v.strip():
                    used.add(_parse_int(v, f"{file}: {TRACK_ATTRIBUTE}", minimum=-(10**18)))
        spare = 0
        for where, label, shapes in tracks:
            if any(TRACK_ATTRIBUTE not in s.attrs for s in shapes):
                while spare in used:
                    spare += 1
                default, spare = spare, spare + 1
            else:
                default = None
            for frame, (x1, y1, x2, y2), attrs in self._expand(shapes, where, end):
                text = attrs.get(TRACK_ATTRIBUTE)
                track_id = default if text is None else (_parse_int(text, f"{where}: {TRACK_ATTRIBUTE}",
                                                                     minimum=-(10**18)) if text.strip() else None)
                clip.boxes.append(Box(frame_index=frame, x1=x1, y1=y1, x2=x2, y2=y2, label=label, track_id=track_id,
                                      source=attrs.get(SOURCE_ATTRIBUTE, None if ours else FORMAT),
                                      author=attrs.get(AUTHOR_ATTRIBUTE)))

    @staticmethod
    def _shape(el: Element, where: str) -> _Shape:
        frame = _parse_int(el.get("frame"), f"{where}: <box> frame")
        here = f"{where}: box on frame {frame}"
        outside = el.get("outside", "0").strip()
        if outside not in ("0", "1"):
            raise ConfigError(f"{here}: outside must be 0 or 1, got {outside!r}")
        box = tuple(_parse_float(el.get(k), f"{here}: {k}") for k in ("xtl", "ytl", "xbr", "ybr"))
        if outside == "0" and not (box[0] < box[2] and box[1] < box[3]):
            raise ConfigError(f"{here}: needs xtl < xbr and ytl < ybr, got {box}")
        attrs = {}
        for a in el.findall("attribute"):
            if not a.get("name"):
                raise ConfigError(f"{here}: an <attribute> has no name")
            attrs[a.get("name")] = a.text or ""
        return _Shape(frame, outside == "1", box, attrs)

    def _expand(self, shapes: list[_Shape], where: str, end: int | None):
        """(frame, box, attributes) for every frame a track shows its object, as CVAT interpolates it."""
        for j, s in enumerate(shapes):
            if s.outside:
                continue
            nxt = shapes[j + 1] if j + 1 < len(shapes) else None
            stop = nxt.frame - 1 if nxt is not None else max(s.frame, (end or 0) - 1)
            self.budget -= stop - s.frame + 1
            if self.budget < 0:
                raise ConfigError(f"{where}: the tracks expand to more than {MAX_EXPANDED_BOXES} boxes; refusing the "
                                  "file")
            for frame in range(s.frame, stop + 1):
                if nxt is None or frame == s.frame:
                    yield frame, s.box, s.attrs
                else:
                    r = (frame - s.frame) / (nxt.frame - s.frame)
                    yield frame, tuple(a + (b - a) * r for a, b in zip(s.box, nxt.box, strict=True)), s.attrs
