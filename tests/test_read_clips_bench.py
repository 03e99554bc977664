"""A tiny real run of the reading benchmark (bench/read_clips.py): its three ways agree and it reports every row."""

from __future__ import annotations

import json

import numpy as np
from bench_loader import load_bench

import dlabel_lab as dl


def _bench():
    return load_bench("read_clips")


def test_bare_seeking_returns_the_frames_read_clip_returns(tmp_path):
    bench = _bench()
    path = dl.write_clip(tmp_path / "c.mp4", (f[..., ::-1] for f in bench._textured(120, 48, 64, 0)), gop=25)
    idx = [3, 40, 41, 119]
    clip = dl.read_clip(path, dl.ClipSpec(frames=None, indices=tuple(idx), size=(48, 64)))
    for a, b in zip(clip.frames, bench.bare_pyav_seek(path, idx), strict=True):
        assert np.array_equal(a, b)


def test_a_tiny_run_reports_every_measurement(tmp_path, capsys):
    bench = _bench()
    out = tmp_path / "r.json"
    res = bench.main(["--repeats", "1", "--long-frames", "60", "--long-size", "48", "64", "--hd-frames", "2",
                      "--short-clips", "1", "--short-frames", "4", "--json", str(out)])
    assert set(res) == {"short", "long", "hd"}
    assert set(res["long"]["uniform"]) == {"read_clip", "bare_pyav_seek", "bare_opencv_full"}
    assert res["hd"]["baseline"] in ("bare_opencv_read_kept", "bare_pyav_read_kept")
    assert json.loads(out.read_text())["results"]["long"]["uniform"]["bare_pyav_seek"]["ratio_to_bare_pyav_seek"] == 1
    text = capsys.readouterr().out
    assert "goal <= 1.2x" in text and "goal >= 85%" in text and "goal >= 55%" in text
