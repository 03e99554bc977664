"""Peak memory of ingesting one clip: normal clips, a long clip, and hostile files that must be refused.

Each case runs in a fresh process (deploy a tiny model into a new store,
score one clip) and reports that process's peak RSS, next to the same
process doing everything but the scoring call. The hostile files are
sparse, so making them costs no disk:
- "1 GiB padded mp4": a valid clip followed by a 1 GiB top-level ``free`` box
  (refused by the padding limit, ``ClipSpec.max_padding_bytes``);
- "10 GiB file": an mp4 head followed by 10 GiB of zeros (refused by the size
  limit, ``ClipSpec.max_file_bytes``, before anything is read).

``--code DIR`` runs the same cases against another checkout of the package
(e.g. a ``git worktree`` of an older commit) for a before/after comparison.

Run:
    .venv/bin/python bench/ingest_memory.py [--code DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

CASE = r"""
import json, resource, sys, time
import torch
import dlabel_lab as dl
torch.set_num_threads(1)
store_dir, clip, mode = sys.argv[1], sys.argv[2], sys.argv[3]
spec = dl.ClipSpec(frames=8, size=64)
with dl.PayloadStore(store_dir) as store:
    torch.manual_seed(0)
    model = dl.ClipClassifier(classes=["a", "b"], backbone="tiny3d", spec=spec, embed_dim=16)
    ingest = dl.deploy(model, store, classes=["a", "b"], name="m")
    outcome, t0 = "baseline", time.perf_counter()
    if mode == "score":
        try:
            outcome = "scored" if ingest.score(clip, label="a").ok else "model failed"
        except dl.DLabelError as e:
            outcome = f"refused: {type(e).__name__}"
        except MemoryError:
            outcome = "MemoryError (untyped)"
    seconds = time.perf_counter() - t0
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "outcome": outcome, "seconds": seconds}))
"""


def write_clip(path: Path, *, frames: int, size: tuple[int, int]) -> Path:
    w, h = size
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    for t in range(frames):
        f = np.roll(bg, 4 * t, axis=1).copy()
        cv2.circle(f, ((40 + 5 * t) % w, h // 2), h // 8, (255, 255, 255), -1)
        out.write(f)
    out.release()
    return path


def padded(src: Path, dst: Path, padding: int) -> Path:
    data = src.read_bytes()
    with open(dst, "wb") as fh:
        fh.write(data)
        fh.write(struct.pack(">I4s", 1, b"free") + struct.pack(">Q", padding))
        fh.truncate(len(data) + padding)
    return dst


def sparse(src: Path, dst: Path, size: int) -> Path:
    with open(dst, "wb") as fh:
        fh.write(src.read_bytes()[:512])
        fh.truncate(size)
    return dst


def run(code: Path, store: Path, clip: Path, mode: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code))
    out = subprocess.run([sys.executable, "-c", CASE, str(store), str(clip), mode], capture_output=True, text=True,
                         env=env, timeout=900, cwd=store.parent)  # not the repo root, so --code decides
    if out.returncode:
        return {"peak_rss_mib": float("nan"), "outcome": f"crashed ({out.stderr.strip().splitlines()[-1][:80]})",
                "seconds": float("nan")}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1],
                    help="checkout whose dlabel_lab is measured (default: this one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as tmp:
        root = Path(tmp)
        normal = write_clip(root / "normal.mp4", frames=90, size=(320, 240))
        long = write_clip(root / "long.mp4", frames=1500, size=(640, 360))
        cases = {
            "baseline (no scoring call)": (normal, "baseline"),
            f"normal clip ({normal.stat().st_size / 2**20:.1f} MiB, 90 frames 320x240)": (normal, "score"),
            f"long clip ({long.stat().st_size / 2**20:.1f} MiB, 1500 frames 640x360)": (long, "score"),
            "1 GiB padded mp4 (free box)": (padded(normal, root / "padded.mp4", 1 << 30), "score"),
            "10 GiB file (mp4 head, sparse)": (sparse(normal, root / "huge.mp4", 10 << 30), "score"),
        }
        env = dict(os.environ, PYTHONPATH=str(args.code))
        check = subprocess.run([sys.executable, "-c", "import dlabel_lab; print(dlabel_lab.__file__)"],
                               capture_output=True, text=True, cwd=root, env=env)
        print(f"code: {check.stdout.strip()}")
        print(f"{'case':<52}{'peak RSS MiB':>13}{'seconds':>9}  outcome")
        for i, (name, (clip, mode)) in enumerate(cases.items()):
            got = run(args.code, root / f"store{i}", clip, mode)
            print(f"{name:<52}{got['peak_rss_mib']:>13.0f}{got['seconds']:>9.2f}  {got['outcome']}")


if __name__ == "__main__":
    main()
