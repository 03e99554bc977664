"""Scoring throughput: the whole endpoint pipeline vs its bare stages.

In one run on the same clips: clips/s through ``IngestEndpoint.score_many``
(read bytes, sniff/check, decode, preprocess, log raw payload with fsync,
model forward, log transformed payload, prediction and user score) vs a bare
read+preprocess loop and vs bare ``model(x)`` on the preprocessed tensors.
Goal: the pipeline reaches at least 70 % of the slower bare stage.

Run:
    .venv/bin/python bench/endpoints.py [--clips 96] [--batch 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import dlabel_lab as dl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=96)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    classes = ["circle", "square", "triangle"]
    spec = dl.ClipSpec(frames=8, size=64)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = dl.read_manifest(dl.make_shape_clips(root / "clips", args.clips, seed=0, frames=16, size=64))
        paths, labels = [r["path"] for r in rows], [r["label"] for r in rows]
        torch.manual_seed(0)
        model = dl.ClipClassifier(classes=classes, backbone="tiny3d", spec=spec).eval()

        def bare_preprocess():
            return [dl.to_tensor(dl.read_clip(p, spec))[0] for p in paths]

        xs = bare_preprocess()
        x = torch.stack(xs)

        def bare_model():
            with torch.inference_mode():
                for i in range(0, len(x), args.batch):
                    model(x[i : i + args.batch])

        rates = {"preprocess": [], "model": [], "pipeline": []}
        with dl.PayloadStore(root / "store") as store:
            ingest = dl.deploy(model, store, classes=classes, batch_size=args.batch)
            ingest.score_many(paths[:8], labels[:8], progress=False)  # warm up
            for _ in range(args.repeats):
                for name, fn in (("preprocess", bare_preprocess), ("model", bare_model),
                                 ("pipeline", lambda: ingest.score_many(paths, labels, progress=False))):
                    t0 = time.perf_counter()
                    fn()
                    rates[name].append(len(paths) / (time.perf_counter() - t0))
            n_rows = len(store.matched().df())
    med = {k: statistics.median(v) for k, v in rates.items()}
    slower = min(med["preprocess"], med["model"])
    print(f"{args.clips} clips (64x64, 16 frames, mp4v) -> tiny3d on 8x64x64, batch {args.batch}, "
          f"{args.threads} torch thread(s), median of {args.repeats}; {n_rows} matched rows logged")
    print(f"{'bare read + preprocess':<40}{med['preprocess']:>9.1f} clips/s")
    print(f"{'bare model(x)':<40}{med['model']:>9.1f} clips/s")
    print(f"{'score_many (both endpoints + logging)':<40}{med['pipeline']:>9.1f} clips/s")
    print(f"{'pipeline / slower bare stage':<40}{med['pipeline'] / slower:>9.1%}   (goal >= 70 %)")


if __name__ == "__main__":
    main()
