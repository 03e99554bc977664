"""Scoring throughput: the whole endpoint pipeline vs its bare stages, measured in one run.

On the same clips, in each repeat: clips/s through ``IngestEndpoint.score_many``
(stage the clip into the store, check, decode, preprocess, log the raw payload
with grouped fsyncs, model forward, log transformed payload, prediction and
user score; the next batch is decoded while the model scores) vs the two bare
stages it is made of:

- bare decode + tensor: ``dl.read_clip`` + ``dl.to_tensor`` of each clip, in a loop;
- bare model forward of the same tensors (batch as the pipeline, under
  ``torch.inference_mode``), at 1 torch thread and at torch's default thread
  count; the faster of the two is the baseline (the fastest bare way).

Goal: the pipeline reaches at least 80 % of the slower bare stage's clips/s
(wall time). CPU (process) time per clip is reported for every arm too.

Every repeat writes fresh clips (data seed = repeat number), runs the arms in
alternating order, and pairs the ratio within the repeat; reported are the
median and interquartile range (IQR) over the repeats, after a warm-up.

Run:
    .venv/bin/python bench/endpoints.py [--clips 96] [--batch 16] [--repeats 7] [--threads auto]
    .venv/bin/python bench/endpoints.py --threads auto,2     # the pipeline also at 2 torch threads (context)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import dlabel_lab as dl

CLASSES = ["circle", "square", "triangle"]


def measure(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def spread(values: list[float]) -> tuple[float, float, float]:
    """Median and interquartile range (25th, 75th percentile)."""
    q1, q3 = np.quantile(np.asarray(values, dtype=float), [0.25, 0.75])
    return statistics.median(values), float(q1), float(q3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=96)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", default="auto",
                    help="comma list of the pipeline's num_threads: auto (the endpoint's default rule) or ints; "
                         "the first is the one held to the goal")  # fmt: skip
    args = ap.parse_args()
    default_threads = torch.get_num_threads()
    settings = args.threads.split(",")
    spec = dl.ClipSpec(frames=8, size=64)
    torch.manual_seed(0)
    model = dl.ClipClassifier(classes=CLASSES, backbone="tiny3d", spec=spec).eval()
    per_clip: dict[str, list[tuple[float, float]]] = {}  # arm -> (wall s, cpu s) per clip, one per repeat
    ratios: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with dl.PayloadStore(root / "store") as store:
            endpoints = {s: dl.deploy(model, store, classes=CLASSES, batch_size=args.batch, name="bench",
                                      num_threads=None if s == "auto" else int(s)) for s in settings}  # fmt: skip
            warm = dl.read_manifest(dl.make_shape_clips(root / "warm", 16, seed=10_000, frames=16, size=64))
            for ingest in endpoints.values():
                ingest.score_many([r["path"] for r in warm], [r["label"] for r in warm], progress=False)
            for rep in range(args.repeats):
                rows = dl.read_manifest(dl.make_shape_clips(root / f"clips{rep}", args.clips, seed=rep, frames=16,
                                                            size=64))  # fmt: skip
                paths, labels = [r["path"] for r in rows], [r["label"] for r in rows]
                x = torch.stack([dl.to_tensor(dl.read_clip(p, spec), spec)[0] for p in paths])

                def bare_preprocess(paths=paths) -> None:
                    for p in paths:
                        dl.to_tensor(dl.read_clip(p, spec), spec)

                def bare_model(threads: int, x=x) -> None:
                    torch.set_num_threads(threads)
                    try:
                        with torch.inference_mode():
                            for i in range(0, len(x), args.batch):
                                model.logits_and_embedding(x[i : i + args.batch])
                    finally:
                        torch.set_num_threads(default_threads)

                arms: dict[str, Callable[[], object]] = {
                    "bare read + preprocess": bare_preprocess,
                    "bare model, 1 thread": lambda: bare_model(1),
                    f"bare model, {default_threads} threads (torch default)": lambda: bare_model(default_threads),
                }
                for s, ingest in endpoints.items():
                    name = f"score_many, num_threads={s} (used {ingest.model_endpoint.threads()})"
                    arms[name] = lambda ingest=ingest, paths=paths, labels=labels: ingest.score_many(
                        paths, labels, progress=False)
                times = {}
                for name in list(arms) if rep % 2 == 0 else list(reversed(arms)):
                    wall, cpu = measure(arms[name])
                    times[name] = (wall, cpu)
                    per_clip.setdefault(name, []).append((wall / len(paths), cpu / len(paths)))
                names = list(arms)
                slower = max(times[names[0]][0], min(times[names[1]][0], times[names[2]][0]))
                ratios.append(slower / times[names[3]][0])  # pipeline clips/s over the slower bare stage's
            n_rows = len(store.matched().fetchall())
    print(f"{args.clips} clips per repeat (64x64, 16 frames, mp4v; data seeds 0-{args.repeats - 1}) -> tiny3d on "
          f"8x64x64, batch {args.batch}; {args.repeats} repeats, median [IQR]; {os.cpu_count()} cores, torch "
          f"{torch.__version__}; {n_rows} matched rows logged")
    print(f"{'arm':<48}{'clips/s (wall)':>24}{'CPU ms/clip':>22}")
    for name, values in per_clip.items():
        (r, r1, r3), (c, c1, c3) = spread([1 / w for w, _ in values]), spread([1000 * c for _, c in values])
        print(f"{name:<48}{r:>8.1f} [{r1:6.1f}, {r3:6.1f}]{c:>8.1f} [{c1:5.1f}, {c3:5.1f}]")
    med, q1, q3 = spread(ratios)
    print(f"\nscore_many (num_threads={settings[0]}) / slower bare stage (the faster bare model setting): "
          f"{med:.1%} [IQR {q1:.1%}-{q3:.1%}]   (goal >= 80 %)")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
