"""The seeking decoder: sampled frames are exactly a full decode's, only the needed GOPs are decoded,
integrity is checked from the container, and bytes are read from memory."""

from __future__ import annotations

import fractions
import os
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import dlabel_lab as dl
from dlabel_lab.media.checks import sniff_container
from dlabel_lab.media.decoding import decode_frames

pytestmark = pytest.mark.timeout(120)


def _frames(n: int, h: int = 96, w: int = 128, seed: int = 0):
    """Textured frames that change every frame (each frame is distinguishable)."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 3)
    for i in range(n):
        f = np.roll(base, 2 * i, axis=1).copy()
        cv2.putText(f, str(i), (4, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
        yield f


def _write_custom(path: Path, n: int, *, options: dict, vfr: bool = False, rotate: int | None = None) -> Path:
    """H.264 written with explicit x264 options (open GOPs, variable frame rate, display rotation)."""
    with av.open(str(path), "w") as box:
        s = box.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"
        s.codec_context.options = options
        if rotate is not None:
            s.set_display_rotation(rotate)
        if vfr:
            s.codec_context.time_base = fractions.Fraction(1, 1000)
        t, steps = 0, [33, 40, 67, 20, 45]
        for i, f in enumerate(_frames(n)):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            if vfr:
                frame.pts, frame.time_base = t, fractions.Fraction(1, 1000)
                t += steps[i % len(steps)]
            for p in s.encode(frame):
                box.mux(p)
        for p in s.encode():
            box.mux(p)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory, mp4_path, avi_path):
    """kind -> path: the codecs and containers real clips come in."""
    root = tmp_path_factory.mktemp("decoding")
    return {
        "mp4v-opencv": Path(mp4_path),
        "mjpg-opencv": Path(avi_path),
        "h264-bframes-mp4": dl.write_clip(root / "b.mp4", _frames(90), codec="h264", gop=20, bframes=2),
        "h264-mkv": dl.write_clip(root / "b.mkv", _frames(70), codec="h264", gop=15, bframes=3),
        "h264-ts": dl.write_clip(root / "b.ts", _frames(70), codec="h264", gop=15, bframes=2),
        "mpeg4-bframes-avi": dl.write_clip(root / "m.avi", _frames(60), codec="mpeg4", gop=12, bframes=2),
        "h264-open-gop": _write_custom(root / "open.mp4", 90, options={
            "bf": "3", "x264-params": "keyint=20:min-keyint=20:scenecut=0:open-gop=1"}),
        "h264-vfr": _write_custom(root / "vfr.mp4", 60, options={"bf": "2"}, vfr=True),
        "h264-rotated": _write_custom(root / "rot.mp4", 30, options={"bf": "0"}, rotate=90),
    }


def _full_decode(path: Path) -> list[np.ndarray]:
    """The reference: OpenCV's own decode of every frame, as RGB."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    out = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return out


KINDS = ["mp4v-opencv", "mjpg-opencv", "h264-bframes-mp4", "h264-mkv", "h264-ts", "mpeg4-bframes-avi",
         "h264-open-gop", "h264-vfr", "h264-rotated"]


@pytest.mark.parametrize("kind", KINDS)
def test_sampled_frames_are_bit_identical_to_a_full_decode(clips, kind):
    path = clips[kind]
    ref = _full_decode(path)
    n = len(ref)
    container = sniff_container(path.read_bytes()[:512])
    rng = np.random.default_rng(len(kind))
    samples = [np.linspace(0, n - 1, 8).round().astype(int).tolist(),
               sorted(rng.choice(n, 5, replace=False).tolist()) + [n - 1, 0, 0],
               list(range(n))]
    for sample in samples:
        for method in (None, "index", "sequential"):
            d = decode_frames(path, container=container, name=kind, sample=lambda k, s=sample: [i for i in s if i < k],
                              prep=lambda a: a, method=method)
            assert d.frame_count == n and not d.errors, (kind, method, d.frame_count, d.errors)
            for i in sample:
                assert np.array_equal(d.frames[i], ref[i]), (kind, method, i, d.method)


def test_the_fast_method_is_taken_where_it_holds(clips):
    def method(kind):
        path = clips[kind]
        return decode_frames(path, container=sniff_container(path.read_bytes()[:512]), name=kind,
                             sample=lambda n: [0, n // 2, n - 1], prep=lambda a: a).method

    assert method("h264-bframes-mp4") == method("mjpg-opencv") == method("mp4v-opencv") == "grid"
    # no frame count in Matroska / MPEG-TS, a variable frame rate: the demuxed index
    assert method("h264-mkv") == method("h264-ts") == method("h264-vfr") == "index"
    # open GOPs: the grid's keyframe check fails; a seek into an open GOP makes x264 streams log reference
    # errors, so the decode from the start decides
    assert method("h264-open-gop") == "sequential"


def test_only_the_needed_gops_are_decoded(tmp_path):
    path = dl.write_clip(tmp_path / "long.mp4", _frames(300, 48, 64), codec="h264", gop=30, bframes=2)

    def decoded(sample):
        return decode_frames(path, container="mp4", name="long", sample=lambda n: sample, prep=lambda a: a).decoded

    # three frames in three GOPs: at most three GOPs' worth of frames, not 300
    assert decoded([5, 150, 295]) <= 3 * 30
    # three frames in one GOP: that GOP once (frames 30..40 plus the decoder's B-frame delay)
    assert decoded([31, 35, 40]) <= 11 + 3
    # neighbouring GOPs are decoded in one pass, not sought twice
    assert decoded([29, 30]) <= 30 + 1 + 3
    # all frames: each frame once
    assert decoded(list(range(300))) == 300


def test_a_clip_holding_fewer_frames_than_it_declares_is_truncated(tmp_path):
    path = dl.write_clip(tmp_path / "m.avi", _frames(60), codec="mjpeg")
    data = path.read_bytes()
    cut = data[: int(len(data) * 0.6)]  # the AVI header still declares 60 frames
    with pytest.raises(dl.TruncatedMedia, match="declares 60 frames but only"):
        decode_frames(cut, container="avi", name="cut", sample=lambda n: [0, n - 1], prep=lambda a: a)
    d = decode_frames(cut, container="avi", name="cut", sample=lambda n: [0, n - 2, n - 1], prep=lambda a: a,
                      allow_truncated=True)
    assert 0 < d.frame_count < 60 and d.declared == 60
    ref = _full_decode(path)  # the last present frame may be cut short; the one before it is whole
    assert np.array_equal(d.frames[0], ref[0]) and np.array_equal(d.frames[d.frame_count - 2], ref[d.frame_count - 2])


def test_damage_in_a_sampled_gop_is_reported(tmp_path):
    path = dl.write_clip(tmp_path / "d.mp4", _frames(60), codec="h264", gop=20, bframes=0)
    with av.open(str(path)) as box:
        packets = [(p.pos, p.size, p.is_keyframe) for p in box.demux(box.streams.video[0]) if p.size]
    pos, size, key = packets[20]  # the keyframe of the second GOP
    assert key
    data = bytearray(path.read_bytes())
    for k in range(size // 2, size // 2 + 16):
        data[pos + k] ^= 0xFF
    spec = dl.ClipSpec(frames=None, sampling="stride", indices=(30,), size=32)
    with pytest.raises(dl.TruncatedMedia, match="decoder reported"):
        dl.read_clip(bytes(data), spec)
    # frames whose GOPs do not include the damage read clean (they are not decoded)
    clean = dl.ClipSpec(frames=None, sampling="stride", indices=(5, 45), size=32)
    assert dl.read_clip(bytes(data), clean).indices == (5, 45)


def test_bytes_are_read_from_memory_without_a_temporary_copy(monkeypatch, tmp_path):
    path = dl.write_clip(tmp_path / "t.mp4", _frames(20), codec="h264", gop=10)

    def refuse(*args, **kwargs):
        raise AssertionError("a temporary copy was made")

    monkeypatch.setattr(os, "memfd_create", refuse, raising=False)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    from_bytes = dl.read_clip(path.read_bytes(), dl.ClipSpec(frames=4, size=32))
    from_file = dl.read_clip(path, dl.ClipSpec(frames=4, size=32))
    assert np.array_equal(from_bytes.frames, from_file.frames)


def test_display_rotation_is_applied_like_opencv(clips):
    path = clips["h264-rotated"]
    clip = dl.read_clip(path, dl.ClipSpec(frames=3, size=(128, 96)))
    assert (clip.width, clip.height) == (96, 128)
    ref = _full_decode(path)
    assert ref[0].shape == (128, 96, 3)


def test_packet_count_is_limited_before_decoding(clips):
    with pytest.raises(dl.MediaTooLarge, match="max_frames"):
        dl.read_clip(clips["h264-mkv"], dl.ClipSpec(frames=4, max_frames=50))


def test_write_clip_refuses_bad_arguments(tmp_path):
    with pytest.raises(dl.ConfigError, match="codec"):
        dl.write_clip(tmp_path / "a.mp4", _frames(2), codec="vp9")
    with pytest.raises(dl.ConfigError, match="written as"):
        dl.write_clip(tmp_path / "a.avi", _frames(2), codec="h264")
    with pytest.raises(dl.ConfigError, match="even"):
        dl.write_clip(tmp_path / "a.mp4", [np.zeros((9, 9, 3), np.uint8)])
    with pytest.raises(dl.ConfigError, match="no frames"):
        dl.write_clip(tmp_path / "a.mp4", [])
    assert not list(tmp_path.iterdir())  # nothing half-written is left
