"""Label Studio JSON tasks for video: a clip class (``choices``) and tracked boxes (``videorectangle``).

One ``tasks.json`` (a list of tasks, Label Studio's import/export "JSON" format) and, beside it,
``label_config.xml``: the labelling config to paste into the project (``<Video>``, ``<Choices>``
for the clip class, ``<VideoRectangle>`` + ``<Labels>`` for boxes). Per clip one task::

    {"id": 1, "data": {"video": "media/<id>.mp4", "scoring_id": ..., "width": 64, "height": 48,
                       "fps": 25.0, "frame_count": 30},
     "annotations": [{"result": [choices, videorectangle, ...], "was_cancelled": false, ...}],
     "predictions": [{"model_version": "v1", "score": 0.9, "result": [...]}]}

Boxes are Label Studio keyframes in percent of the frame, ``frame`` counting from 1. Label
Studio shows a region on a keyframe's own frame, interpolates it linearly up to the next keyframe
when the keyframe is ``enabled``, holds the last ``enabled`` keyframe to the end of the video
(``framesCount``), and hides it after a keyframe with ``enabled: false``. :func:`read` expands
keyframes exactly so; :func:`write` makes every box a keyframe and sets ``enabled`` only where the
next box of the region is on the very next frame, so nothing is shown that was not there.

What carries what (so that write -> read is lossless, while Label Studio's own exports import):

* track id: the region ``id``: ``"t7"`` (track 7; ``"t7_1"``, ... when a track changes label,
  source or author), ``"b0"``, ``"b1"``, ... for boxes of no track. Other ids (Label Studio's
  random ones) get track ids 0, 1, 2, ... per clip in order of appearance.
* source and author: the result's ``meta`` (``{"source": ..., "author": ...}``). Without it the
  author is the annotation's ``completed_by`` and the source ``"labelstudio"``.
* model: ``predictions`` (pre-annotations) with ``model_version``, the clip class with its
  ``score`` and the boxes with the region's lowest ``score``, each keyframe its own ``score``.

Media paths stay relative to the folder of ``tasks.json`` (``/data/local-files/?d=`` and
``/data/upload/`` prefixes are understood on reading); serve that folder to Label Studio as local
storage to label the clips there.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import quoteattr

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
    is_int,
    is_number,
    json_bytes,
    positive_int,
    read_limited,
    resolve_media,
    write_atomic,
)

__all__ = ["write", "read", "label_config", "TASKS_FILE", "CONFIG_FILE", "FORMAT"]

FORMAT = "labelstudio"
TASKS_FILE = "tasks.json"
CONFIG_FILE = "label_config.xml"
CHOICES_NAME, BOX_NAME, LABELS_NAME, VIDEO_NAME = "label", "box", "videoLabels", "video"
MAX_EXPANDED_BOXES = 5_000_000  # boxes one file may expand to (keyframes, interpolated frames, held tails)
# percent values are rounded to 1e-10 % (an error of 1e-12 of the frame size), so that writing a label set read
# back from a file gives the same bytes (it does while coordinates stay within ~500 frame sizes)
_DIGITS = 10
_OUR_TRACK = re.compile(r"^t(-?\d{1,18})(?:_\d+)?$")
_OUR_UNTRACKED = re.compile(r"^b\d+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.json$")


# --- writing -----------------------------------------------------------------------------
def write(ls: LabelSet, out_dir: str | os.PathLike, *, name: str = TASKS_FILE) -> Path:
    """Write ``tasks.json`` and ``label_config.xml`` into ``out_dir``; the tasks file's path.

    Every clip's media must be a relative path inside ``out_dir`` (where the clips already are).
    The same label set always gives the same bytes.

    Args:
        ls: The label set (validated with :func:`~.labelset.check_labelset` first).
        out_dir: The export folder (it exists; nothing is written outside it).
        name: File name of the tasks file.

    Raises:
        ConfigError: The label set is invalid, a clip with boxes has no width/height (Label
            Studio stores boxes in percent of the frame), or ``name`` is not a plain ``.json`` name.
        UnsafeSource: A clip's media path is a URL, absolute, or leaves ``out_dir``.

    Example:
        >>> write(ls, "exports/ls")  # doctest: +SKIP
        PosixPath('exports/ls/tasks.json')
    """
    check_labelset(ls)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"name must be a plain file name ending in .json, got {name!r}")
    out = Path(out_dir)
    tasks = [_task(k, clip, ls, out) for k, clip in enumerate(ls.clips)]  # everything checked before writing
    body = json_bytes(tasks, 2, "Label Studio JSON")
    rates = {float(c.fps) for c in ls.clips if c.fps is not None}
    config = label_config(ls.classes, framerate=rates.pop() if len(rates) == 1 else None).encode("utf-8")
    main, cfg = inside(out, name), inside(out, CONFIG_FILE)
    write_atomic(cfg, config)
    write_atomic(main, body)
    return main


def label_config(classes: list[str], *, framerate: float | None = None) -> str:
    """The Label Studio labelling config (``<View>`` XML) for a clip class and tracked boxes of ``classes``.

    Paste it into the project's *Labeling Interface* (code view). Choices are named ``label``, the
    box control ``box``, the video ``video`` (``$video`` in the task data).

    Raises:
        ConfigError: A class name holds characters XML cannot carry.

    Example:
        >>> print(label_config(["cat", "dog"]).splitlines()[2])
          <Video name="video" value="$video"/>
    """
    bad = [c for c in classes if BAD_XML.search(c)]
    if bad:
        raise ConfigError(f"class names {bad!r} hold characters XML cannot carry; rename them")
    rate = "" if framerate is None else f" framerate={quoteattr(repr(float(framerate)))}"
    lines = ["<View>", '  <Header value="Label the clip; draw and track its objects"/>',
             f'  <Video name="{VIDEO_NAME}" value="$video"{rate}/>',
             f'  <Choices name="{CHOICES_NAME}" toName="{VIDEO_NAME}" choice="single-radio" showInline="true">']
    lines += [f"    <Choice value={quoteattr(c)}/>" for c in classes]
    lines += ["  </Choices>", f'  <VideoRectangle name="{BOX_NAME}" toName="{VIDEO_NAME}"/>',
              f'  <Labels name="{LABELS_NAME}" toName="{VIDEO_NAME}">']
    lines += [f"    <Label value={quoteattr(c)}/>" for c in classes]
    lines += ["  </Labels>", "</View>", ""]
    return "\n".join(lines)


def _task(k: int, clip: ClipLabels, ls: LabelSet, out: Path) -> dict:
    where = f"clip {k} ({clip.media!r})"
    resolve_media(out, clip.media, what=f"{where}: media path")
    width, height = positive_int(clip.width, f"{where}: width"), positive_int(clip.height, f"{where}: height")
    frame_count = positive_int(clip.frame_count, f"{where}: frame_count")
    fps = None
    if clip.fps is not None:
        if not (is_number(clip.fps) and clip.fps > 0):
            raise ConfigError(f"{where}: fps must be a positive number or None, got {clip.fps!r}")
        fps = float(clip.fps)
    if clip.scoring_id is not None and not isinstance(clip.scoring_id, str):
        raise ConfigError(f"{where}: scoring_id must be a string or None, got {clip.scoring_id!r}")
    boxes = [*clip.boxes, *clip.predictions]
    if boxes and (width is None or height is None):
        raise ConfigError(f"{where} has boxes but no width/height; Label Studio stores boxes in percent of the frame, "
                          "so give the clip its size in pixels")
    frames = frame_count if frame_count is not None else (max(b.frame_index for b in boxes) + 1 if boxes else None)
    geo = _Geometry(width, height, fps, frames, where)
    data = {"video": clip.media, "scoring_id": clip.scoring_id, "width": width, "height": height, "fps": fps,
            "frame_count": frame_count}
    results: list[dict] = []
    if clip.label is not None:
        results.append({"id": "label", "type": "choices", "from_name": CHOICES_NAME, "to_name": VIDEO_NAME,
                        "value": {"choices": [clip.label]},
                        "meta": {"source": clip.label_source, "author": clip.label_author}})
    results += _regions(clip.boxes, ls.classes, geo, people=True)
    task: dict = {"id": k + 1, "data": data,
                  "annotations": [{"result": results, "was_cancelled": False, "ground_truth": False}] if results
                  else [], "predictions": []}
    predicted: list[dict] = []
    if clip.predicted_label is not None:
        choice = {"id": "label", "type": "choices", "from_name": CHOICES_NAME, "to_name": VIDEO_NAME,
                  "value": {"choices": [clip.predicted_label]}}
        if clip.predicted_confidence is not None:
            choice["score"] = float(clip.predicted_confidence)
        predicted.append(choice)
    predicted += _regions(clip.predictions, ls.classes, geo, people=False)
    if predicted:
        prediction: dict = {}
        if ls.model_version is not None:
            prediction["model_version"] = str(ls.model_version)
        if clip.predicted_confidence is not None:
            prediction["score"] = float(clip.predicted_confidence)
        prediction["result"] = predicted
        task["predictions"] = [prediction]
    return task


class _Geometry:
    """Pixels <-> Label Studio percent and times for one clip."""

    def __init__(self, width, height, fps, frames, where):
        self.width, self.height, self.fps, self.frames, self.where = width, height, fps, frames, where

    def pct(self, v: float, size: int, positive: bool = False) -> float:
        p = round(float(v) * 100.0 / size, _DIGITS) + 0.0  # + 0.0: no "-0.0"
        if positive and not p > 0:
            raise ConfigError(f"{self.where}: a box of {v} px is too small to keep in percent of {size} px")
        return p

    def keyframe(self, b: Box, enabled: bool, score: bool) -> dict:
        frame = b.frame_index + 1
        item = {"frame": frame, "enabled": enabled, "rotation": 0, "x": self.pct(b.x1, self.width),
                "y": self.pct(b.y1, self.height), "width": self.pct(b.x2 - b.x1, self.width, True),
                "height": self.pct(b.y2 - b.y1, self.height, True)}
        if self.fps is not None:
            item["time"] = frame / self.fps
        if score:  # a model's box: its own score on its keyframe (null where it has none)
            item["score"] = None if b.score is None else float(b.score)
        return item

    def value(self, sequence: list[dict], label: str) -> dict:
        value: dict = {"framesCount": self.frames}
        if self.fps is not None and self.frames is not None:
            value["duration"] = self.frames / self.fps
        value["sequence"] = sequence
        value["labels"] = [label]
        return value


def _regions(boxes: list[Box], classes: list[str], geo: _Geometry, *, people: bool) -> list[dict]:
    """``videorectangle`` results: one per track and (label, source, author), then one per untracked box."""
    groups: dict[tuple, list[Box]] = {}
    for b in sorted((b for b in boxes if b.track_id is not None), key=lambda b: (b.track_id, b.frame_index)):
        key = (b.track_id, b.label, b.source, b.author) if people else (b.track_id, b.label)
        groups.setdefault(key, []).append(b)
    out, parts = [], {}
    for key, run in groups.items():
        n = parts[key[0]] = parts.get(key[0], -1) + 1
        seq = [geo.keyframe(b, i + 1 < len(run) and run[i + 1].frame_index == b.frame_index + 1, not people)
               for i, b in enumerate(run)]
        out.append(_region(f"t{key[0]}" if n == 0 else f"t{key[0]}_{n}", run, seq, geo, people))
    # boxes of no track in the order of what is written (percent), so that a re-read set is written alike
    rank = {c: i for i, c in enumerate(classes)}
    untracked = sorted(((b, geo.keyframe(b, False, not people)) for b in boxes if b.track_id is None),
                       key=lambda bk: _written_order(bk[0], bk[1], rank))
    for n, (b, kf) in enumerate(untracked):
        out.append(_region(f"b{n}", [b], [kf], geo, people))
    return out


def _written_order(b: Box, kf: dict, rank: dict[str, int]) -> tuple:
    score = kf.get("score")
    return (b.frame_index, rank.get(b.label, -1), b.label, kf["x"], kf["y"], kf["width"], kf["height"],
            score is None, score or 0.0, b.source is None, b.source or "", b.author is None, b.author or "")


def _region(rid: str, run: list[Box], seq: list[dict], geo: _Geometry, people: bool) -> dict:
    res = {"id": rid, "type": "videorectangle", "from_name": BOX_NAME, "to_name": VIDEO_NAME,
           "value": geo.value(seq, run[0].label)}
    if people:
        res["meta"] = {"source": run[0].source, "author": run[0].author}
    else:
        scores = [b.score for b in run if b.score is not None]
        if scores:
            res["score"] = float(min(scores))
    return res


# --- reading -----------------------------------------------------------------------------
def read(path: str | os.PathLike, *, max_bytes: int = MAX_LABEL_FILE_BYTES) -> LabelSet:
    """Read Label Studio tasks (a ``tasks.json``, or the folder holding it) into a label set.

    Accepts a list of tasks or a single task, ``data.video`` relative to the file's folder (also
    with Label Studio's ``/data/local-files/?d=`` or ``/data/upload/`` prefix). Keyframes expand
    into one box per frame the way Label Studio shows them (see the module docstring). Per task
    the annotation marked ``ground_truth`` is read, else the last one not cancelled; per task the
    first prediction. Classes come from ``label_config.xml`` beside the file when there is one,
    then from the labels in order of appearance.

    Args:
        path: The tasks file, or a folder holding ``tasks.json`` (or a single ``.json`` file).
        max_bytes: Largest file accepted (checked before reading).

    Returns:
        The label set; clip media are absolute paths. Sources the file does not give are
        ``"labelstudio"``; authors come from result ``meta`` or the annotation's ``completed_by``.

    Raises:
        ConfigError: The file is missing, too large, not JSON, or an entry is malformed (the
            message names the first bad task and result).
        UnsafeSource: A clip path is a URL, absolute, or leaves the file's folder.

    Example:
        >>> read("exports/ls").summary()  # doctest: +SKIP
        '2 clips (2 labelled), 12 boxes in 2 tracks, 0 predicted boxes; classes circle, square'
    """
    file = _tasks_file(Path(path))
    raw = read_limited(file, max_bytes=max_bytes, what="Label Studio tasks file")
    doc = _loads(raw, file)
    tasks = [doc] if isinstance(doc, dict) else doc
    if not isinstance(tasks, list):
        raise ConfigError(f"{file}: expected a list of Label Studio tasks (or one task), got {type(doc).__name__}")
    reader = _Reader(file, _config_classes(file.parent / CONFIG_FILE, max_bytes))
    clips = [reader.clip(i, t) for i, t in enumerate(tasks)]
    classes = list(dict.fromkeys(reader.classes))
    if not classes:
        raise ConfigError(f"{file}: no class names found (no labels in the tasks and no {CONFIG_FILE} beside the "
                          f"file); save the project's labelling config there as {CONFIG_FILE}")
    return check_labelset(LabelSet(clips=clips, classes=classes, model_version=reader.model_version), what=str(file))


def _tasks_file(p: Path) -> Path:
    if not p.is_dir():
        return p
    if (p / TASKS_FILE).is_file():
        return p / TASKS_FILE
    found = sorted(q for q in p.glob("*.json") if q.is_file())
    if len(found) == 1:
        return found[0]
    raise ConfigError(f"the folder {str(p)!r} holds no {TASKS_FILE} ({len(found)} other .json files); pass the tasks "
                      "file itself")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _loads(raw: bytes, file: Path) -> object:
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise ConfigError(f"{file} is not valid JSON ({str(e)[:200]}); export the project from Label Studio as "
                          "'JSON'") from None


def _config_classes(cfg: Path, max_bytes: int) -> list[str]:
    """Label and Choice values of a labelling config beside the tasks file, in order (none without one)."""
    if not cfg.is_file():
        return []
    raw = read_limited(cfg, max_bytes=max_bytes, what="Label Studio labelling config")
    try:
        root = SafeET.fromstring(raw)
    except (DefusedXmlException, ParseError) as e:
        raise ConfigError(f"{cfg} is not a usable labelling config ({type(e).__name__}: {e}); fix or remove "
                          "it") from None
    names = [el.get("value") for el in root.iter() if el.tag in ("Label", "Choice")]
    return [n for n in names if isinstance(n, str) and n]


def _opt_int(d: dict, key: str, where: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not is_int(v) or v <= 0:
        raise ConfigError(f"{where}: {key} must be a positive integer, got {v!r}")
    return v


def _opt_text(d: dict, key: str, where: str) -> str | None:
    v = d.get(key)
    if v is not None and not isinstance(v, str):
        raise ConfigError(f"{where}: {key} must be text or null, got {v!r}")
    return v


def _author_of(completed_by: object) -> str | None:
    if isinstance(completed_by, str):
        return completed_by
    if is_int(completed_by):
        return str(completed_by)
    if isinstance(completed_by, dict):
        for key in ("email", "username", "id"):
            v = completed_by.get(key)
            if isinstance(v, (str, int)) and not isinstance(v, bool) and v != "":
                return str(v)
    return None


class _Keyframe:
    __slots__ = ("frame", "enabled", "x", "y", "w", "h", "score")

    def __init__(self, frame, enabled, x, y, w, h, score):
        self.frame, self.enabled, self.x, self.y, self.w, self.h, self.score = frame, enabled, x, y, w, h, score


class _Reader:
    """Reads tasks one by one, collecting classes and the model version."""

    def __init__(self, file: Path, classes: list[str]):
        self.file, self.root = file, file.parent
        self.classes = list(classes)
        self.model_version: str | None = None
        self.budget = MAX_EXPANDED_BOXES

    # -- one task
    def clip(self, i: int, task: object) -> ClipLabels:
        where = f"{self.file}: task {i}"
        if not isinstance(task, dict):
            raise ConfigError(f"{where} is a {type(task).__name__}, not a task object")
        if "id" in task:
            where += f" (id {task['id']!r})"
        data = task.get("data")
        if not isinstance(data, dict):
            raise ConfigError(f"{where} has no 'data' object; export the project from Label Studio as 'JSON' "
                              "(not JSON-MIN or CSV)")
        if "video" not in data:
            raise ConfigError(f"{where}: data has no 'video'; the video's key must be 'video' "
                              "(<Video value=\"$video\"/>)")
        media = resolve_media(self.root, data["video"], what=f"{where}: data.video")
        annotations = task.get("annotations", task.get("completions", []))
        predictions = task.get("predictions", [])
        for key, v in (("annotations", annotations), ("predictions", predictions)):
            if not isinstance(v, list):
                raise ConfigError(f"{where}: {key} must be a list, got {type(v).__name__}")
        width, height = _opt_int(data, "width", f"{where}: data"), _opt_int(data, "height", f"{where}: data")
        frame_count = _opt_int(data, "frame_count", f"{where}: data")
        fps = data.get("fps")
        if fps is not None and not (is_number(fps) and fps > 0):
            raise ConfigError(f"{where}: data.fps must be a positive number, got {fps!r}")
        clip = ClipLabels(media=str(media), width=width, height=height, fps=None if fps is None else float(fps),
                          frame_count=frame_count, scoring_id=_opt_text(data, "scoring_id", f"{where}: data"))
        ann_idx = self._chosen_annotation(annotations, where)
        for j, pred in enumerate(predictions):
            if not isinstance(pred, dict) or not isinstance(pred.get("result", []), list):
                raise ConfigError(f"{where}: prediction {j} must be an object with a result list")
        pred_idx = next((j for j, p in enumerate(predictions) if p.get("result")), None)
        people = [] if ann_idx is None else annotations[ann_idx]["result"]
        machine = [] if pred_idx is None else predictions[pred_idx]["result"]
        if clip.width is None or clip.height is None:  # Label Studio's image results carry the size; take it
            for res in (*people, *machine):
                w, h = (res.get("original_width"), res.get("original_height")) if isinstance(res, dict) else (0, 0)
                if is_number(w) and is_number(h) and w >= 1 and h >= 1:
                    clip.width = clip.width or int(res["original_width"])
                    clip.height = clip.height or int(res["original_height"])
                    break
        frames_known = "frame_count" in data
        if ann_idx is not None:
            ann = annotations[ann_idx]
            self._results(clip, people, f"{where}: annotation {ann_idx}", _author_of(ann.get("completed_by")),
                          frames_known, people=True, score=None)
        if pred_idx is not None:
            pred = predictions[pred_idx]
            version = pred.get("model_version")
            if version is not None and not isinstance(version, (str, int, float)):
                raise ConfigError(f"{where}: prediction {pred_idx}: model_version must be text, got {version!r}")
            if self.model_version is None and version not in (None, ""):
                self.model_version = str(version)
            score = pred.get("score")
            if score is not None and not is_number(score):
                raise ConfigError(f"{where}: prediction {pred_idx}: score must be a number, got {score!r}")
            self._results(clip, machine, f"{where}: prediction {pred_idx}", None, frames_known, people=False,
                          score=score)
        return clip

    def _chosen_annotation(self, annotations: list, where: str) -> int | None:
        usable = []
        for j, ann in enumerate(annotations):
            if not isinstance(ann, dict):
                raise ConfigError(f"{where}: annotation {j} is a {type(ann).__name__}, not an object")
            if not isinstance(ann.get("result", []), list):
                raise ConfigError(f"{where}: annotation {j}: result must be a list")
            if ann.get("was_cancelled") is True or not ann.get("result"):
                continue
            usable.append(j)
        truth = [j for j in usable if annotations[j].get("ground_truth") is True]
        return truth[0] if truth else (usable[-1] if usable else None)

    # -- the results of one annotation or prediction
    def _results(self, clip: ClipLabels, results: list, where: str, author: str | None, frames_known: bool, *,
                 people: bool, score: float | None) -> None:
        prediction = score
        for k, res in enumerate(results):
            if not isinstance(res, dict):
                raise ConfigError(f"{where}: result {k} is a {type(res).__name__}, not an object")
            if not isinstance(res.get("type"), str):
                raise ConfigError(f"{where}: result {k} has no 'type'")
            if not isinstance(res.get("value"), dict):
                raise ConfigError(f"{where}: result {k} ({res['type']}) has no 'value' object")
        labels_by_id = {res.get("id"): res["value"].get("labels") for res in results if res["type"] == "labels"}
        choices = [(k, res) for k, res in enumerate(results) if res["type"] == "choices"]
        if len(choices) > 1:
            named = [(k, r) for k, r in choices if r.get("from_name") == CHOICES_NAME]
            if len(named) != 1:
                names = [r.get("from_name") for _, r in choices]
                raise ConfigError(f"{where}: {len(choices)} choices results ({names}); name the clip class control "
                                  f"'{CHOICES_NAME}'")
            choices = named
        if choices:
            k, res = choices[0]
            label = self._one_label(res["value"].get("choices"), f"{where}: result {k} (choices)")
            if people:
                clip.label = label
                clip.label_source, clip.label_author = self._who(res, f"{where}: result {k}", author)
            else:
                clip.predicted_label = label
                conf = res.get("score", prediction)
                if conf is not None and not (is_number(conf) and 0.0 <= conf <= 1.0):
                    raise ConfigError(f"{where}: result {k}: score {conf!r} is not in [0, 1]")
                clip.predicted_confidence = None if conf is None else float(conf)
        regions = []
        for k, res in enumerate(results):
            if res["type"] != "videorectangle":
                continue
            here = f"{where}: result {k} (id {res.get('id')!r})"
            if clip.width is None or clip.height is None:
                raise ConfigError(f"{here}: boxes are in percent of the frame, but the task gives no size; add "
                                  "data.width and data.height (pixels)")
            labels = res["value"].get("labels") or labels_by_id.get(res.get("id"))
            label = self._one_label(labels, here)
            who = self._who(res, here, author) if people else (None, None)
            score = res.get("score", prediction)
            if score is not None and not is_number(score):
                raise ConfigError(f"{here}: score must be a number, got {score!r}")
            regions.append((res.get("id"), label, who, self._expand(res["value"], clip, here, frames_known, score)))
        ours = {int(m.group(1)) for rid, *_ in regions if isinstance(rid, str) and (m := _OUR_TRACK.match(rid))}
        foreign: dict[object, int] = {}
        spare = 0
        out = clip.boxes if people else clip.predictions
        for rid, label, (source, who), boxes in regions:
            if isinstance(rid, str) and (m := _OUR_TRACK.match(rid)):
                track: int | None = int(m.group(1))
            elif isinstance(rid, str) and _OUR_UNTRACKED.match(rid):
                track = None
            else:
                key = rid if isinstance(rid, (str, int)) and not isinstance(rid, bool) else ("#", len(foreign))
                if key not in foreign:
                    while spare in ours:
                        spare += 1
                    foreign[key] = spare
                    spare += 1
                track = foreign[key]
            for frame, x1, y1, x2, y2, s in boxes:
                out.append(Box(frame_index=frame, x1=x1, y1=y1, x2=x2, y2=y2, label=label, track_id=track,
                               score=None if people else s, source=source, author=who))

    def _one_label(self, labels: object, where: str) -> str:
        if not (isinstance(labels, list) and len(labels) == 1 and isinstance(labels[0], str) and labels[0]):
            raise ConfigError(f"{where}: needs exactly one label, got {labels!r}")
        self.classes.append(labels[0])
        return labels[0]

    @staticmethod
    def _who(res: dict, where: str, author: str | None) -> tuple[str | None, str | None]:
        meta = res.get("meta")
        if meta is None:
            return FORMAT, author
        if not isinstance(meta, dict):
            raise ConfigError(f"{where}: meta must be an object, got {type(meta).__name__}")
        for key in ("source", "author"):
            if meta.get(key) is not None and not isinstance(meta[key], str):
                raise ConfigError(f"{where}: meta.{key} must be text or null, got {meta[key]!r}")
        return meta.get("source", FORMAT), meta.get("author", author)

    def _expand(self, value: dict, clip: ClipLabels, where: str, frames_known: bool,
                score: float | None) -> list[tuple]:
        """Keyframes -> (frame_index, x1, y1, x2, y2, score) per frame shown, as Label Studio shows them."""
        seq = value.get("sequence")
        if not isinstance(seq, list) or not seq:
            raise ConfigError(f"{where}: value.sequence must be a non-empty list of keyframes")
        total = value.get("framesCount")
        if total is not None:
            if isinstance(total, float) and total.is_integer():
                total = int(total)
            if not is_int(total) or total < 0:
                raise ConfigError(f"{where}: framesCount must be a count of frames, got {total!r}")
            if not frames_known and clip.frame_count is None and total > 0:
                clip.frame_count = total
        end = total if total is not None else clip.frame_count  # last frame (1-based) a held keyframe reaches
        if end is not None and clip.frame_count is not None:
            end = min(end, clip.frame_count)
        keys = [self._keyframe(item, f"{where}: keyframe {j}", score) for j, item in enumerate(seq)]
        keys.sort(key=lambda kf: kf.frame)
        for a, b in zip(keys, keys[1:], strict=False):
            if a.frame == b.frame:
                raise ConfigError(f"{where}: two keyframes on frame {a.frame}")
        out = []
        for j, kf in enumerate(keys):
            nxt = keys[j + 1] if j + 1 < len(keys) else None
            stop = kf.frame if not kf.enabled else (nxt.frame - 1 if nxt is not None else max(kf.frame, end or 0))
            self.budget -= stop - kf.frame + 1
            if self.budget < 0:
                raise ConfigError(f"{where}: the keyframes expand to more than {MAX_EXPANDED_BOXES} boxes; refusing "
                                  "the file")
            for frame in range(kf.frame, stop + 1):
                if nxt is None or frame == kf.frame:
                    x, y, w, h = kf.x, kf.y, kf.w, kf.h
                else:  # Label Studio's interpolateProp: start + (end - start) * r
                    r = (frame - kf.frame) / (nxt.frame - kf.frame)
                    x, y = kf.x + (nxt.x - kf.x) * r, kf.y + (nxt.y - kf.y) * r
                    w, h = kf.w + (nxt.w - kf.w) * r, kf.h + (nxt.h - kf.h) * r
                out.append((frame - 1, x * clip.width / 100.0, y * clip.height / 100.0,
                            (x + w) * clip.width / 100.0, (y + h) * clip.height / 100.0, kf.score))
        return out

    @staticmethod
    def _keyframe(item: object, where: str, score: float | None) -> _Keyframe:
        if not isinstance(item, dict):
            raise ConfigError(f"{where} is a {type(item).__name__}, not an object")
        frame = item.get("frame")
        if isinstance(frame, float) and frame.is_integer():
            frame = int(frame)
        if not is_int(frame) or frame < 1:
            raise ConfigError(f"{where}: frame must be an integer from 1, got {frame!r}")
        for key in ("x", "y", "width", "height"):
            if not is_number(item.get(key)):
                raise ConfigError(f"{where}: {key} must be a finite number (percent), got {item.get(key)!r}")
        if not (item["width"] > 0 and item["height"] > 0):
            raise ConfigError(f"{where}: width and height must be positive, got {item['width']!r}, {item['height']!r}")
        rotation = item.get("rotation", 0)
        if not is_number(rotation) or rotation % 360 != 0:
            raise ConfigError(f"{where}: rotation {rotation!r} is not supported; boxes must be upright (rotation 0)")
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where}: enabled must be true or false, got {enabled!r}")
        s = item.get("score", score)
        if s is not None and not is_number(s):
            raise ConfigError(f"{where}: score must be a number, got {s!r}")
        return _Keyframe(frame, enabled, float(item["x"]), float(item["y"]), float(item["width"]),
                         float(item["height"]), None if s is None else float(s))
