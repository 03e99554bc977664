"""Decode throughput: bare OpenCV read loop vs read_clip + to_tensor.

Both read the same 320x240 mp4v clips in one run. The package path reads
every frame, checks the container, resizes to 112x112 as uint8, converts to
RGB and normalises once per clip into a float (C, T, H, W) tensor.

Run:
    .venv/bin/python bench/read_clips.py [--clips 12] [--frames 90] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

import dlabel_lab as dl


def make_clips(root: Path, n: int, frames: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = root / f"bench_{i:03d}.mp4"
        w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), 25, (320, 240))
        bg = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        for t in range(frames):
            f = np.roll(bg, 3 * t, axis=1).copy()
            cv2.circle(f, (40 + 2 * t % 240, 120), 30, (255, 255, 255), -1)
            w.write(f)
        w.release()
        paths.append(p)
    return paths


def bare(paths: list[Path]) -> int:
    n = 0
    for p in paths:
        cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG)
        while True:
            ok, _ = cap.read()
            if not ok:
                break
            n += 1
        cap.release()
    return n


def package(paths: list[Path]) -> int:
    spec = dl.ClipSpec(frames=None, sampling="stride", size=112)
    n = 0
    for p in paths:
        x, _ = dl.to_tensor(dl.read_clip(p, spec))
        n += x.shape[1]
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_clips(Path(tmp), args.clips, args.frames)
        bare(paths), package(paths)  # warm caches and codecs
        rates = {"bare": [], "package": []}
        for _ in range(args.repeats):
            for name, fn in (("bare", bare), ("package", package)):
                t0 = time.perf_counter()
                frames = fn(paths)
                rates[name].append(frames / (time.perf_counter() - t0))
    b, p = statistics.median(rates["bare"]), statistics.median(rates["package"])
    print(f"clips: {args.clips} x {args.frames} frames, 320x240 mp4v, median of {args.repeats}")
    print(f"{'bare OpenCV read loop':<44}{b:>10.0f} frames/s")
    print(f"{'read_clip + to_tensor (112x112 float)':<44}{p:>10.0f} frames/s")
    print(f"{'ratio package / bare':<44}{p / b:>10.1%}   (goal >= 55%)")


if __name__ == "__main__":
    main()
