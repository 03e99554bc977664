"""Sample clips are real, deterministic videos whose factors follow the drift."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import dlabel_lab as dl


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_same_files(tmp_path):
    a = dl.make_shape_clips(tmp_path / "a", 4, seed=7, frames=8, size=32)
    b = dl.make_shape_clips(tmp_path / "b", 4, seed=7, frames=8, size=32)
    c = dl.make_shape_clips(tmp_path / "c", 4, seed=8, frames=8, size=32)
    assert _digest(a.parent) == _digest(b.parent)
    assert _digest(a.parent) != _digest(c.parent)


def test_manifest_columns_and_decodable_clips(shape_manifest, shape_rows):
    header = shape_manifest.read_text().splitlines()[0].split(",")
    assert header == ["path", "label", "brightness", "scale", "speed", "clutter", "noise"]
    assert [r["label"] for r in shape_rows] == ["circle", "square", "triangle"] * 2
    for r in shape_rows:
        clip = dl.read_clip(r["path"], dl.ClipSpec(frames=16, size=64))
        assert clip.frames.shape == (16, 64, 64, 3) and clip.frame_count == 16


def test_drift_darkens_shrinks_and_clutters(tmp_path):
    clean = dl.read_manifest(dl.make_shape_clips(tmp_path / "clean", 9, seed=0, frames=4, size=32))
    ops = dl.read_manifest(dl.make_shape_clips(tmp_path / "ops", 9, seed=0, frames=4, size=32, drift="operational"))
    mean = lambda rows, k: np.mean([r[k] for r in rows])  # noqa: E731
    assert mean(ops, "brightness") < 0.6 * mean(clean, "brightness")
    assert mean(ops, "scale") < 0.7 * mean(clean, "scale")
    assert mean(ops, "clutter") > mean(clean, "clutter") + 0.3
    bright_clean = np.mean([dl.clip_stats(dl.read_clip(r["path"])).brightness for r in clean])
    bright_ops = np.mean([dl.clip_stats(dl.read_clip(r["path"])).brightness for r in ops])
    assert bright_ops < bright_clean  # the pixels follow the factor


def test_custom_drift_and_avi(tmp_path):
    rows = dl.read_manifest(dl.make_shape_clips(tmp_path, 2, seed=1, frames=4, size=32, fmt="avi",
                                                drift={"brightness": 0.5}))
    assert rows[0]["path"].endswith(".avi")
    assert dl.read_clip(rows[0]["path"]).codec == "MJPG"


def test_digit_clips_are_ten_classes_of_real_digits(tmp_path):
    rows = dl.read_manifest(dl.load_digit_clips(tmp_path, 10, frames=6, size=48))
    assert [r["label"] for r in rows] == [str(i) for i in range(10)]
    clip = dl.read_clip(rows[3]["path"], dl.ClipSpec(frames=6, size=48))
    assert clip.frames.shape == (6, 48, 48, 3)
    assert clip.frames.max() > 100  # a visible digit


@pytest.mark.parametrize(
    "kwargs", [{"n": 0}, {"n": 2, "classes": ("a",)}, {"n": 2, "drift": "sideways"}, {"n": 2, "fmt": "gif"},
               {"n": 2, "drift": {"colour": 2.0}}, {"n": 2, "frames": 1}],
)
def test_bad_arguments_raise_config_error(tmp_path, kwargs):
    with pytest.raises(dl.ConfigError):
        dl.make_shape_clips(tmp_path, **kwargs)


def test_committed_sample_is_small_and_readable():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "data"
    files = [p for p in root.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 2 * 2**20
    manifests = sorted(root.rglob("labels.csv"))
    assert len(manifests) == 3
    n = sum(len(dl.read_manifest(m)) for m in manifests)
    assert n >= 36
    dl.read_clip(dl.read_manifest(manifests[0])[0]["path"])
