"""Shared pieces of the interop tests: random label sets, tolerant comparison, hostile paths, round trips.

A plain module, not a test file: tests in ``tests/interop`` import it as ``from interop_helpers import ...``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import strategies as st

from dlabel_lab.errors import UnsafeSource
from dlabel_lab.interop.labelset import Box, ClipLabels, LabelSet, canonical

# media names a label file must not get away with (each reader adds the prefixes its format knows)
HOSTILE = ["../../etc/passwd", "/etc/passwd", "http://x/a.mp4"]
# media paths a writer must refuse before it writes anything
HOSTILE_WRITES = ["../x.mp4", "/abs/x.mp4", "/etc/passwd", "http://x/a.mp4", "media/../../x.mp4", "a/../../x.mp4"]


# --- comparing ---------------------------------------------------------------------------
def close(a: list[dict], b: list[dict], *, tol: float = 1e-6) -> bool:
    """Two canonical label sets (:func:`~dlabel_lab.interop.labelset.canonical`) are equal, box corners within
    ``tol`` px; boxes are matched one to one (corners that close may sort differently)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if {k: v for k, v in x.items() if k not in ("boxes", "predictions")} != \
                {k: v for k, v in y.items() if k not in ("boxes", "predictions")}:
            return False
        for key in ("boxes", "predictions"):
            if key not in x:
                continue
            left = list(y[key])
            for p in x[key]:
                match = next((q for q in left if p[:3] == q[:3] and p[7:] == q[7:] and all(
                    math.isclose(u, v, rel_tol=0, abs_tol=tol) for u, v in zip(p[3:7], q[3:7], strict=True))), None)
                if match is None:
                    return False
                left.remove(match)
            if left:
                return False
    return True


def json_files(folder: Path) -> dict[str, bytes]:
    """Every ``.json`` file under ``folder`` by its relative path, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.json"))}


def relative_media(ls: LabelSet, folder: Path) -> LabelSet:
    """A label set read from ``folder`` (absolute media) with its media relative to ``folder`` again."""
    return ls.with_media([Path(c.media).relative_to(folder.resolve()).as_posix() for c in ls.clips])


def json_round_trip(fmt, ls: LabelSet, tmp: Path, main: str) -> tuple[Path, LabelSet]:
    """write -> read keeps the labels; write -> read -> write gives the same bytes (``fmt``: a JSON format module
    whose ``write`` returns ``out / main``)."""
    one, two = tmp / "one", tmp / "two"
    one.mkdir()
    two.mkdir()
    path = fmt.write(ls, one)
    assert path == one / main
    back = fmt.read(one)
    assert close(canonical(back), canonical(ls)), (canonical(back), canonical(ls))
    assert [c.media for c in back.clips] == [str((one / c.media).resolve()) for c in ls.clips]
    assert back.classes == ls.classes and back.model_version == ls.model_version
    assert [(c.fps, c.scoring_id) for c in back.clips] == [(c.fps, c.scoring_id) for c in ls.clips]
    fmt.write(relative_media(back, one), two)
    assert json_files(one) == json_files(two)
    return path, back


# --- hostile paths and files -------------------------------------------------------------
def assert_write_refused(write: Callable[[LabelSet, Path], object], ls: LabelSet, tmp_path: Path) -> None:
    """``write(ls, tmp_path / "out")`` raises :class:`UnsafeSource` and writes nothing anywhere under ``tmp_path``."""
    out = tmp_path / "out"
    out.mkdir()
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UnsafeSource):
        write(ls, out)
    assert sorted(tmp_path.rglob("*")) == before and list(out.iterdir()) == []


def forbid_opening(monkeypatch) -> None:
    """Make any ``open`` of a label file fail the test (a size check must refuse it first)."""

    def never(*args, **kwargs):
        raise AssertionError("the file was opened")

    monkeypatch.setattr("dlabel_lab.interop.labelset.open", never, raising=False)


# --- hand-made label sets ----------------------------------------------------------------
def json_handmade(label_source: str, *, last_score: float | None, size: tuple[int, int]) -> LabelSet:
    """Tracks, an untracked box, a frame with predictions only, a clip with nothing known; for COCO and FiftyOne.

    ``label_source`` is the second clip's, ``last_score`` the score of the last prediction, ``size`` the
    fourth clip's width and height.
    """
    return LabelSet(classes=["circle", "square", "triangle"], model_version="shapes-v1", clips=[
        ClipLabels(media="media/a.mp4", width=96, height=72, fps=25.0, frame_count=8, scoring_id="sid-a",
                   label="circle", label_source="human", label_author="ana", predicted_label="square",
                   predicted_confidence=0.625,
                   boxes=[Box(0, 1.5, 2.25, 10.1, 20.3, "circle", track_id=1, source="human", author="bo"),
                          Box(1, 2.5, 3.25, 11.1, 21.3, "circle", track_id=1, source="audit"),
                          Box(1, 0.1, 0.2, 0.3, 0.7, "triangle", source="human", author="cy"),  # untracked
                          Box(1, 40.0, 30.0, 60.0, 50.0, "square", track_id=0, source=None)],
                   predictions=[Box(1, 2.0, 3.0, 11.0, 21.0, "circle", track_id=7, score=0.9),
                                Box(5, 2.0, 3.0, 11.0, 21.0, "square", score=last_score)]),  # predictions only
        ClipLabels(media="media/b.mp4", width=96, height=72, frame_count=8, label="square", label_source=label_source),
        ClipLabels(media="media/c.mp4"),  # nothing known but the clip
        ClipLabels(media="media/d.mp4", width=size[0], height=size[1], label="triangle", label_source=None,
                   boxes=[Box(3, 1.0, 1.0, 2.0, 2.0, "triangle", track_id=2, source="cvat", author="zoë")]),
    ])


def gappy_track_boxes() -> list[Box]:
    """Boxes on a 200 x 100 clip of 12 frames: a track with a gap, a change of author and of label, a track on the
    last frame without a source, two identical untracked boxes (CVAT and Label Studio hand-made sets)."""
    return [Box(0, 1.5, 2.25, 10.125, 20.0, "cat", 3, source="human", author="ann"),
            Box(1, 2.5, 2.25, 11.125, 20.0, "cat", 3, source="human", author="ann"),
            Box(2, 3.5, 2.25, 12.125, 21.0, "cat", 3, source="audit", author="bo"),  # same track, other author
            Box(5, 4.0, 3.0, 13.0, 22.0, "cat", 3, source="human", author="ann"),  # a gap of two frames
            Box(6, 4.0, 3.0, 13.0, 22.0, "dog", 3, source="human", author="ann"),  # the track changes label
            Box(11, 0.1, 0.2, 199.9, 99.8, "dog", 0, source=None, author=None),  # the last frame, no source
            Box(4, 30.0, 40.0, 50.0, 60.0, "dog", None, source="human", author="cy"),  # no track
            Box(4, 30.0, 40.0, 50.0, 60.0, "dog", None, source="human", author="cy")]  # its twin


def small_track_set() -> LabelSet:
    """One 100 x 100 clip of 5 frames labelled ``x`` with one track of two boxes: the base of malformed files."""
    return LabelSet(clips=[ClipLabels(media="v.mp4", width=100, height=100, frame_count=5, label="x",
                                      boxes=[Box(0, 1.0, 1.0, 5.0, 5.0, "x", 0), Box(1, 1.0, 1.0, 5.0, 5.0, "x", 0)])],
                    classes=["x"])


# --- random label sets -------------------------------------------------------------------
CLASS_POOL = ["circle", "square", "triangle", "zoë", "two words"]
TRACK_CLASS_POOL = ["cat", "dog", "bird & <fish>", 'café "x"']
TEXTS = ["human", "auto", "audit", "coco", "ana", "bo", "", " spaced ", "é<&>\"'"]
_source = st.one_of(st.none(), st.sampled_from(["human", "audit", "cvat", "auto"]))
_author = st.one_of(st.none(), st.sampled_from(["ana", "bo", "Zoë Ø"]))
_score = st.floats(0, 1, allow_nan=False)


def _draw_boxes(draw, classes: list[str], frames: int, *, predicted: bool) -> list[Box]:
    out, seen = [], set()
    for _ in range(draw(st.integers(0, 5))):
        f = draw(st.integers(0, frames - 1))
        track = draw(st.one_of(st.none(), st.integers(0, 4)))
        if track is not None and (f, track) in seen:
            continue
        seen.add((f, track))
        x1, y1 = draw(st.floats(-50, 4000, allow_nan=False)), draw(st.floats(-50, 4000, allow_nan=False))
        w, h = draw(st.floats(1e-3, 900, allow_nan=False)), draw(st.floats(1e-3, 900, allow_nan=False))
        score = draw(_score) if predicted else draw(st.one_of(st.none(), _score))
        out.append(Box(f, x1, y1, x1 + w, y1 + h, draw(st.sampled_from(classes)), track_id=track, score=score,
                       source=draw(_source), author=draw(_author)))
    return out


def json_clip(draw, classes: list[str], k: int) -> ClipLabels:
    """A clip for COCO and FiftyOne: known size, boxes on random frames with fractional corners, tracks, sources,
    predictions."""
    frame_count = draw(st.one_of(st.none(), st.integers(1, 40)))
    label = draw(st.one_of(st.none(), st.sampled_from(classes)))
    predicted = draw(st.one_of(st.none(), st.sampled_from(classes)))
    return ClipLabels(
        media=f"media/clip {k}.mp4", width=draw(st.integers(1, 4000)), height=draw(st.integers(1, 4000)),
        frame_count=frame_count, fps=draw(st.one_of(st.none(), st.floats(1, 120, allow_nan=False))),
        scoring_id=draw(st.one_of(st.none(), st.just(f"s{k}"))), label=label,
        label_source=draw(_source) if label is not None else None,
        label_author=draw(_author) if label is not None else None,
        boxes=_draw_boxes(draw, classes, frame_count or 40, predicted=False),
        predictions=_draw_boxes(draw, classes, frame_count or 40, predicted=True) if draw(st.booleans()) else [],
        predicted_label=predicted, predicted_confidence=draw(_score) if predicted is not None else None)


@st.composite
def label_sets(draw, clip: Callable = json_clip, pool: list[str] = CLASS_POOL, model_version: bool = True) -> LabelSet:
    """1-3 clips of 1-4 classes drawn from ``pool``; each clip drawn by ``clip(draw, classes, k)`` (default: the
    JSON formats' clips, :func:`json_clip`); a model version (``None`` or ``"m-1"``) unless ``model_version=False``.
    """
    classes = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4, unique=True))
    clips = [clip(draw, classes, k) for k in range(draw(st.integers(1, 3)))]
    return LabelSet(clips=clips, classes=classes,
                    model_version=draw(st.one_of(st.none(), st.just("m-1"))) if model_version else None)


def track_box(classes: list[str], last: int, width: int, height: int, text, *, model: bool = False):
    """A strategy for one box on frames 0..``last`` of a ``width`` x ``height`` clip, in a track -2..4 or none:
    a person's (source and author drawn from ``text``) or, with ``model=True``, a model's (a score)."""
    return st.builds(
        lambda f, x, y, w, h, lab, track, s, src, who: Box(
            f, x, y, x + w, y + h, lab, track, score=s, source=None if model else src, author=None if model else who),
        st.integers(0, last), st.floats(-20, width, allow_nan=False), st.floats(-20, height, allow_nan=False),
        st.floats(0.01, 200, allow_nan=False), st.floats(0.01, 200, allow_nan=False), st.sampled_from(classes),
        st.one_of(st.none(), st.integers(-2, 4)), st.one_of(st.none(), st.floats(0, 1)) if model else st.none(),
        st.one_of(st.none(), text), st.one_of(st.none(), text))


def one_per_track_and_frame(boxes: list, key: Callable = lambda b: (b.track_id, b.frame_index)) -> list:
    """The boxes less any repeat of a (track, frame) pair; ``key`` gives a box's pair (untracked boxes all stay)."""
    seen, out = set(), []
    for b in boxes:
        track, frame = key(b)
        if track is not None and (track, frame) in seen:
            continue
        seen.add((track, frame))
        out.append(b)
    return out
