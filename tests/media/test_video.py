"""read_clip, sampling, preprocessing records and clip statistics on real files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.media.video import _sample_indices, container_problem, sniff_container, spec_from_record


def _write(path, frames, fourcc="mp4v", fps=10.0):
    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    for f in frames:
        wr.write(f)
    wr.release()
    return path


def test_read_clip_shape_and_metadata(mp4_path):
    clip = dl.read_clip(mp4_path, dl.ClipSpec(frames=8, size=112))
    assert clip.frames.shape == (8, 112, 112, 3)
    assert clip.frames.dtype == np.uint8
    assert (clip.frame_count, clip.width, clip.height, clip.fps) == (16, 64, 64, 12.0)
    assert clip.codec == "mp4v"  # the container's codec tag
    assert clip.container == "mp4"
    assert clip.indices == (0, 2, 4, 6, 9, 11, 13, 15)


def test_path_and_bytes_give_identical_frames(mp4_path):
    a = dl.read_clip(mp4_path, dl.ClipSpec(frames=4, size=32))
    with open(mp4_path, "rb") as fh:
        b = dl.read_clip(fh.read(), dl.ClipSpec(frames=4, size=32))
    assert np.array_equal(a.frames, b.frames)
    assert b.source_name == "<bytes>"


def test_avi_mjpg_reads(avi_path):
    clip = dl.read_clip(avi_path, dl.ClipSpec(frames=4, size=(48, 32)))
    assert clip.frames.shape == (4, 48, 32, 3)
    assert clip.codec == "MJPG" and clip.container == "avi"


def test_frames_are_rgb(tmp_path):
    # a pure-blue BGR frame must come back as RGB (0, 0, 255)
    frames = [np.zeros((32, 32, 3), np.uint8) for _ in range(4)]
    for f in frames:
        f[..., 0] = 255
    p = _write(tmp_path / "blue.avi", frames, fourcc="MJPG")
    clip = dl.read_clip(p, dl.ClipSpec(frames=2, size=32))
    r, g, b = clip.frames[..., 0].mean(), clip.frames[..., 1].mean(), clip.frames[..., 2].mean()
    assert b > 240 and r < 15 and g < 15


@pytest.mark.parametrize(
    ("spec", "n", "expected"),
    [
        (dl.ClipSpec(frames=4), 16, [0, 5, 10, 15]),
        (dl.ClipSpec(frames=4, sampling="stride", stride=3), 16, [0, 3, 6, 9]),
        (dl.ClipSpec(frames=None, sampling="stride", stride=5), 16, [0, 5, 10, 15]),
        (dl.ClipSpec(frames=3, sampling="window", stride=2), 16, [5, 7, 9]),
        (dl.ClipSpec(frames=4, window=(0.5, 1.0)), 16, [8, 10, 13, 15]),
        (dl.ClipSpec(frames=6), 3, [0, 0, 1, 1, 2, 2]),
        (dl.ClipSpec(frames=3, indices=(1, 1, 7)), 16, [1, 1, 7]),
        (dl.ClipSpec(frames=4, sampling="stride", stride=4, window=(0.5, 1.0)), 16, [8, 12, 12, 12]),
    ],
)
def test_sampling(spec, n, expected):
    assert _sample_indices(n, spec) == expected


def test_frames_follow_sampled_indices(tmp_path):
    # frame i is filled with grey level 10*i, so the sampled levels reveal the indices
    frames = [np.full((32, 32, 3), 10 * i, np.uint8) for i in range(12)]
    p = _write(tmp_path / "ramp.avi", frames, fourcc="MJPG")
    clip = dl.read_clip(p, dl.ClipSpec(frames=4, sampling="stride", stride=3, size=16))
    levels = clip.frames.reshape(4, -1).mean(axis=1)
    assert clip.indices == (0, 3, 6, 9)
    assert np.allclose(levels, [0, 30, 60, 90], atol=3)


def test_crop_zooms_into_region(tmp_path):
    frames = [np.zeros((40, 40, 3), np.uint8) for _ in range(3)]
    for f in frames:
        f[:20, :20] = 255  # white top-left quadrant
    p = _write(tmp_path / "q.avi", frames, fourcc="MJPG")
    clip = dl.read_clip(p, dl.ClipSpec(frames=1, size=20, crop=(0.0, 0.0, 0.5, 0.5)))
    assert clip.frames.mean() > 245


def test_to_tensor_normalises_once_and_records(mp4_path):
    spec = dl.ClipSpec(frames=4, size=32)
    clip = dl.read_clip(mp4_path, spec)
    x, rec = dl.to_tensor(clip)
    assert x.shape == (3, 4, 32, 32) and x.dtype == torch.float32
    expected = (clip.frames[0, 5, 7, 1] / 255.0 - 0.45) / 0.225
    assert x[1, 0, 5, 7].item() == pytest.approx(expected, abs=1e-5)
    assert rec["indices"] == list(clip.indices) and rec["size"] == [32, 32]
    assert spec_from_record(rec).indices == clip.indices


def test_rebuild_tensor_matches_digest(mp4_path):
    clip = dl.read_clip(mp4_path, dl.ClipSpec(frames=5, size=40, crop=(0.1, 0.1, 0.8, 0.8)))
    x, rec = dl.to_tensor(clip)
    with open(mp4_path, "rb") as fh:
        y = dl.rebuild_tensor(fh.read(), rec)
    assert dl.tensor_digest(x) == dl.tensor_digest(y)
    assert dl.tensor_digest(x) != dl.tensor_digest(x + 1e-3)


def test_record_version_is_checked(mp4_path):
    _, rec = dl.to_tensor(dl.read_clip(mp4_path, dl.ClipSpec(frames=2, size=16)))
    with pytest.raises(dl.ConfigError, match="version"):
        dl.rebuild_tensor(mp4_path, {**rec, "version": 99})


def test_clip_stats_known_values():
    dark = np.zeros((3, 16, 16, 3), np.uint8)
    bright = np.full((3, 16, 16, 3), 255, np.uint8)
    assert dl.clip_stats(dark).brightness == 0.0
    assert dl.clip_stats(bright).brightness == pytest.approx(1.0)
    assert dl.clip_stats(bright).contrast == pytest.approx(0.0, abs=1e-6)
    moving = np.stack([dark[0], bright[0], dark[0]])
    assert dl.clip_stats(moving).motion == pytest.approx(1.0)
    assert dl.clip_stats(dark).blur == 1.0  # flat: no edges at all
    checker = np.indices((16, 16)).sum(0) % 2 * 255
    sharp = np.repeat(checker[None, ..., None], 3, axis=-1).astype(np.uint8).repeat(2, 0)
    assert dl.clip_stats(sharp).blur < 0.01


def test_clip_stats_rejects_bad_shape():
    with pytest.raises(dl.ConfigError):
        dl.clip_stats(np.zeros((4, 4), np.uint8))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frames": 0},
        {"size": 0},
        {"sampling": "random"},
        {"stride": 0},
        {"window": (0.5, 0.5)},
        {"crop": (0.5, 0.5, 0.8, 0.2)},
        {"std": (0.0, 1.0, 1.0)},
    ],
)
def test_bad_spec_raises_config_error(kwargs):
    with pytest.raises(dl.ConfigError):
        dl.ClipSpec(**kwargs)


def test_spec_dict_round_trip():
    spec = dl.ClipSpec(frames=6, size=(48, 64), sampling="window", stride=2, window=(0.1, 0.9),
                       crop=(0.0, 0.1, 0.5, 0.5))
    assert dl.ClipSpec.from_dict(spec.to_dict()) == spec


def test_sniff_and_structure():
    assert sniff_container(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 8) == "mp4"
    assert sniff_container(b"\x89PNG\r\n\x1a\n") is None
    assert container_problem(b"\x00\x00\x00\x08free", "mp4") is not None


def test_allow_truncated_reads_what_decodes(mp4_path):
    data = Path(mp4_path).read_bytes()
    with pytest.raises(dl.TruncatedMedia):
        dl.read_clip(data[:-40])
    clip = dl.read_clip(data[:-40], dl.ClipSpec(frames=4, size=16, allow_truncated=True))
    assert clip.frames.shape[0] == 4


def test_decoder_errors_are_not_printed_raw(mp4_path, capfd):
    data = bytearray(Path(mp4_path).read_bytes())
    start = data.find(b"mdat") + 4
    for k in range(8):
        data[start + 120 + k] ^= 0xFF
    with pytest.raises(dl.TruncatedMedia, match="decoder reported"):
        dl.read_clip(bytes(data))
    assert "mpeg4 @" not in capfd.readouterr().err
