"""A malformed-media corpus: every input raises a MediaError subclass.

The corpus is generated here from real OpenCV-written clips: empty and random
bytes, truncations and byte flips of mp4 and avi files, other file types
renamed .mp4, directories, missing paths, playlists, URLs and stream schemes,
each also as bytes where that makes sense, and an oversized clip. None may
crash, hang or reach the network (unsafe sources never reach a decoder).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

import dlabel_lab as dl
import dlabel_lab.media.decoding as decoding
import dlabel_lab.media.video as video

pytestmark = pytest.mark.timeout(60)


def _png_bytes() -> bytes:
    ok, buf = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    assert ok
    return buf.tobytes()


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
TEXT = b"this is not a video, just some text\n" * 5
GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff,"
       b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def _flip(data: bytes, pos: int, n: int = 8) -> bytes:
    b = bytearray(data)
    for k in range(n):
        b[pos + k] ^= 0xFF
    return bytes(b)


def _mp4_cases(data: bytes) -> dict[str, bytes]:
    n = len(data)
    mdat = data.find(b"mdat") + 4
    mdat_size = struct.unpack(">I", data[mdat - 8 : mdat - 4])[0]
    moov = data.find(b"moov") - 4
    cases = {f"mp4-trunc-{f}": data[: int(n * f)] for f in (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98)}
    cases["mp4-trunc-last-byte"] = data[:-1]
    cases["mp4-header-only"] = data[:32]
    for k, frac in enumerate((0.1, 0.4, 0.7)):
        cases[f"mp4-flip-mdat-{k}"] = _flip(data, mdat + int(mdat_size * frac))
    cases["mp4-flip-moov-size"] = _flip(data, moov, 4)
    cases["mp4-flip-first-box"] = _flip(data, 0, 4)
    return cases


def _avi_cases(data: bytes) -> dict[str, bytes]:
    n = len(data)
    frame = data.find(b"00dc", data.find(b"movi"))
    cases = {f"avi-trunc-{f}": data[: int(n * f)] for f in (0.01, 0.2, 0.5, 0.8, 0.97)}
    cases["avi-trunc-last-byte"] = data[:-1]
    cases["avi-flip-riff-size"] = _flip(data, 4, 4)
    cases["avi-flip-chunk-id"] = _flip(data, frame, 4)
    cases["avi-flip-chunk-size"] = _flip(data, frame + 4, 4)
    cases["avi-flip-jpeg-soi"] = _flip(data, frame + 8, 2)
    return cases


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, mp4_path, avi_path):
    """name -> (source, expected MediaError subclass or MediaError)."""
    root = tmp_path_factory.mktemp("corpus")
    mp4 = Path(mp4_path).read_bytes()
    avi = Path(avi_path).read_bytes()
    rng = np.random.default_rng(0)
    items: dict[str, tuple[object, type]] = {}

    def as_file(name, data, suffix=".mp4"):
        p = root / f"{name}{suffix}"
        p.write_bytes(data)
        return p

    # empty and random
    items["empty-file"] = (as_file("empty", b""), dl.EmptyMedia)
    items["empty-bytes"] = (b"", dl.EmptyMedia)
    for k in range(3):
        data = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        items[f"random-file-{k}"] = (as_file(f"random{k}", data), dl.UnsupportedMedia)
    items["random-bytes"] = (rng.integers(0, 256, 777, dtype=np.uint8).tobytes(), dl.UnsupportedMedia)
    # truncations and flips, as files and as bytes
    for name, data in {**_mp4_cases(mp4), **_avi_cases(avi)}.items():
        suffix = ".mp4" if name.startswith("mp4") else ".avi"
        items[name] = (as_file(name, data, suffix), dl.MediaError)
    for name in ("mp4-trunc-0.5", "mp4-flip-mdat-1", "avi-trunc-0.5", "avi-flip-chunk-id"):
        items[name + "-bytes"] = (items[name][0].read_bytes(), dl.MediaError)
    # other file types renamed .mp4
    for name, data in {"png": _png_bytes(), "pdf": PDF, "text": TEXT, "gif": GIF}.items():
        items[f"{name}-as-mp4"] = (as_file(f"{name}_renamed", data), dl.UnsupportedMedia)
        items[f"{name}-bytes"] = (data, dl.UnsupportedMedia)
    # not files
    d = root / "a_directory.mp4"
    d.mkdir()
    items["directory"] = (d, dl.UnsupportedMedia)
    items["missing"] = (root / "missing.mp4", dl.MissingMedia)
    items["not-a-source"] = (12345, dl.UnsupportedMedia)
    # playlists
    items["m3u8-playlist"] = (as_file("list", b"#EXTM3U\n#EXTINF:1,\n" + mp4_path.encode() + b"\n", ".m3u8"),
                              dl.UnsafeSource)
    items["ffconcat-renamed"] = (as_file("concat", b"ffconcat version 1.0\nfile '/etc/hostname'\n"), dl.UnsafeSource)
    items["m3u-bytes"] = (b"#EXTM3U\nhttp://127.0.0.1:9/x.ts\n", dl.UnsafeSource)
    # URLs and stream schemes
    for url in ("http://127.0.0.1:9/clip.mp4", "https://example.invalid/a.mp4", "rtsp://127.0.0.1:9/s",
                "file:///etc/hostname", "tcp://127.0.0.1:9", "udp://127.0.0.1:9", "rtmp://127.0.0.1/x",
                "concat:/a.mp4|/b.mp4", "pipe:0", "data:video/mp4;base64,AAAA", "//127.0.0.1/share/a.mp4"):
        items[f"url-{url.split(':')[0] or 'unc'}"] = (url, dl.UnsafeSource)
    # oversized resolution (header says 5000x4000 > the 4096x4096 pixel budget)
    big = root / "oversized.avi"
    w = cv2.VideoWriter(str(big), cv2.VideoWriter_fourcc(*"MJPG"), 5, (5000, 4000))
    for _ in range(2):
        w.write(np.zeros((4000, 5000, 3), np.uint8))
    w.release()
    items["oversized-resolution"] = (big, dl.MediaTooLarge)
    items["over-memory-budget"] = (mp4_path, dl.MediaTooLarge)  # with a tiny max_bytes below
    return items


def test_corpus_is_large_enough(corpus):
    assert len(corpus) >= 40


def test_every_malformed_input_raises_a_media_error(corpus, monkeypatch):
    opened: list[str] = []
    real_cv, real_av = cv2.VideoCapture, decoding.av.open

    def spy_cv(path, *args):
        opened.append(str(path))
        return real_cv(path, *args)

    def spy_av(file, *args, **kwargs):
        opened.append(repr(file))
        return real_av(file, *args, **kwargs)

    monkeypatch.setattr(video.cv2, "VideoCapture", spy_cv)
    monkeypatch.setattr(decoding.av, "open", spy_av)
    failures = []
    for name, (source, expected) in corpus.items():
        spec = dl.ClipSpec(frames=None, sampling="stride", max_bytes=10_000) if name == "over-memory-budget" else None
        opened.clear()
        try:
            dl.read_clip(source, spec)
        except expected as e:
            assert str(e), name
            if expected is dl.UnsafeSource:
                assert not opened, f"{name} reached a decoder"
            continue
        except dl.MediaError as e:
            failures.append(f"{name}: {type(e).__name__} instead of {expected.__name__}: {e}")
            continue
        except Exception as e:  # noqa: BLE001 - the point is to catch anything else
            failures.append(f"{name}: untyped {type(e).__name__}: {e}")
            continue
        failures.append(f"{name}: no error")
    assert not failures, "\n".join(failures)


def test_errors_say_what_to_do(corpus):
    for name in ("empty-file", "png-as-mp4", "missing", "url-http", "m3u8-playlist", "mp4-trunc-0.5"):
        source, _ = corpus[name]
        with pytest.raises(dl.MediaError) as info:
            dl.read_clip(source)
        msg = str(info.value)
        assert any(w in msg for w in ("Pass", "Check", "Re-export", "Download", "Re-")), msg


def test_media_errors_are_dlabel_errors():
    for cls in (dl.MissingMedia, dl.UnsupportedMedia, dl.EmptyMedia, dl.TruncatedMedia, dl.MediaTooLarge,
                dl.UnsafeSource):
        assert issubclass(cls, dl.MediaError) and issubclass(cls, dl.DLabelError)


def test_crc_sanity_of_helpers():
    # the flip helper really changes bytes (a corpus built on a no-op would prove nothing)
    data = bytes(range(32))
    assert zlib.crc32(_flip(data, 3)) != zlib.crc32(data)
    assert struct.unpack("<I", _flip(b"\x00" * 8, 0, 4)[:4])[0] == 0xFFFFFFFF
