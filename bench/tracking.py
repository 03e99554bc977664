"""Which tracker: norfair (the product's) against the strongest obvious hand-written baseline, with motmetrics.

What is measured. Per data seed, ``dl.make_object_clips`` writes test clips (1-4 objects per clip
that move, enter and leave; most are COCO-small) with ground-truth tracks. Every tracker gets exactly
the same per-frame detections, from two sources:

- ``noisy_truth``: the annotated boxes with Gaussian jitter (sd ``--jitter`` of the box side), a
  share ``--drop`` of them missing, and ``--false-positives`` random boxes per frame (scores random):
  the tracker's own quality, with a known detector error;
- ``detector``: an in-house ``tiny_fcos`` trained per seed on separate clips (``--epochs``), boxes
  kept at score >= ``--threshold``: what the product's detection endpoint feeds the tracker.

Trackers (arms):

- ``norfair``: ``dl.track_detections`` (norfair's Kalman-filtered IoU tracker with the product's
  defaults; BSD-3-Clause);
- ``norfair_centroid``: norfair with Euclidean distance between box centres (threshold in pixels,
  ``--centroid-px``), the other common norfair set-up;
- ``iou_greedy``: the IoU tracker of Bochinski et al. (2017), what one writes by hand: each
  detection joins the unmatched track of the previous frame it overlaps most (IoU >= 0.3, best
  first), else starts a track; a track missing on a frame ends.

ByteTrack was not run: ``supervision`` 0.31 no longer ships it, and older versions and ``trackeval``
(for HOTA) require ``opencv-python``, which cannot sit beside ``opencv-python-headless``; MOTA, IDF1
and identity switches come from ``motmetrics`` (MIT) through ``dl.evaluate_tracks``.

Reported per source and arm, pooled over the test clips of a seed (counts summed, then MOTA =
1 - (misses + false positives + switches) / objects, IDF1 from summed identity counts): mean ± sd over
seeds, and the paired difference norfair - iou_greedy with a bootstrap 95 % interval over seeds.

Run (about 6 minutes on 2 shared cores):
    .venv/bin/python bench/tracking.py --seeds 0 1 2 3 4 --json tracking.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_stats import bootstrap

import dlabel_lab as dl
from dlabel_lab.labeling.simulate import iou_matrix
from dlabel_lab.objects.tracking import _rows

ARMS = ("norfair", "norfair_centroid", "iou_greedy")
SOURCES = ("noisy_truth", "detector")


def iou_greedy(frames: list[dict], *, threshold: float = 0.3) -> list[list[tuple[int, int]]]:
    """The hand-written baseline: per frame ``(detection index, track id)``."""
    out, previous, next_id = [], [], 1  # previous: list of (box, track id)
    for frame in frames:
        boxes = np.asarray(frame["boxes"], float).reshape(-1, 4)
        prev_boxes = np.asarray([b for b, _ in previous], float).reshape(-1, 4)
        m = iou_matrix(boxes, prev_boxes)
        pairs = sorted(((m[i, j], i, j) for i in range(len(boxes)) for j in range(len(previous))
                        if m[i, j] >= threshold), reverse=True)  # fmt: skip
        taken_i, taken_j, ids = set(), set(), {}
        for _, i, j in pairs:
            if i not in taken_i and j not in taken_j:
                taken_i.add(i)
                taken_j.add(j)
                ids[i] = previous[j][1]
        for i in range(len(boxes)):
            if i not in ids:
                ids[i], next_id = next_id, next_id + 1
        out.append(sorted(ids.items()))
        previous = [(boxes[i], ids[i]) for i in range(len(boxes))]
    return out


def norfair_centroid(frames: list[dict], *, px: float) -> list[list[tuple[int, int]]]:
    import norfair

    tracker = norfair.Tracker(distance_function="mean_euclidean", distance_threshold=px, hit_counter_max=5,
                              initialization_delay=0)  # fmt: skip
    out = []
    for f, frame in enumerate(frames):
        dets = [norfair.Detection(points=((b[:2] + b[2:]) / 2)[None, :], data=(f, k))
                for k, b in enumerate(np.asarray(frame["boxes"], float).reshape(-1, 4))]  # fmt: skip
        objs = tracker.update(dets)
        out.append(sorted((o.last_detection.data[1], o.id) for o in objs if o.last_detection.data[0] == f))
    return out


def track(arm: str, frames: list[dict], indices: list[int], fps: float, args) -> list[list[dict]]:
    if arm == "norfair":
        return dl.track_detections(frames, fps=fps, frame_indices=indices)
    frames = [{"boxes": np.asarray(f["boxes"], float).reshape(-1, 4), "labels": np.asarray(f["labels"]).reshape(-1),
               "scores": np.asarray(f["scores"], float).reshape(-1)} for f in frames]  # fmt: skip
    per_frame = iou_greedy(frames) if arm == "iou_greedy" else norfair_centroid(frames, px=args.centroid_px)
    return _rows(frames, per_frame, indices, fps)


def noisy_truth(ann, images: list[dict], rng, args) -> list[dict]:
    out = []
    for im in images:
        boxes = ann.boxes[im["id"]].astype(float).copy()
        labels = ann.labels[im["id"]].copy()
        keep = rng.random(len(boxes)) >= args.drop
        boxes, labels = boxes[keep], labels[keep]
        side = np.maximum(boxes[:, 2:] - boxes[:, :2], 1.0)
        boxes += rng.normal(0, args.jitter, boxes.shape) * np.concatenate([side, side], axis=1)
        n_fp = rng.poisson(args.false_positives)
        w, h = im["width"], im["height"]
        size = rng.uniform(6, 30, (n_fp, 1))
        xy = rng.uniform(0, 1, (n_fp, 2)) * [w, h]
        fps_boxes = np.concatenate([xy, xy + size], axis=1)
        boxes = np.concatenate([boxes, fps_boxes]).clip(0, [w, h, w, h])
        ok = (boxes[:, 2] > boxes[:, 0] + 0.5) & (boxes[:, 3] > boxes[:, 1] + 0.5)
        labels = np.concatenate([labels, rng.integers(1, len(ann.classes) + 1, n_fp)])
        scores = np.concatenate([rng.uniform(0.6, 1.0, keep.sum()), rng.uniform(0.5, 0.9, n_fp)])
        out.append({"boxes": boxes[ok], "labels": labels[ok], "scores": scores[ok]})
    return out


def clip_images(ann) -> dict[str, list[dict]]:
    by_clip: dict[str, list[dict]] = {}
    for im in ann.images:
        by_clip.setdefault(im["path"], []).append(im)
    return {k: sorted(v, key=lambda im: im["frame_index"]) for k, v in by_clip.items()}


def pooled(results: list[dict]) -> dict:
    """Counts summed over clips, then MOTA and IDF1 of the sums."""
    s = {k: sum(r[k] for r in results) for k in ("misses", "false_positives", "id_switches", "objects", "idtp",
                                                 "idfp", "idfn")}  # fmt: skip
    return {
        "mota": 1 - (s["misses"] + s["false_positives"] + s["id_switches"]) / max(s["objects"], 1),
        "idf1": 2 * s["idtp"] / max(2 * s["idtp"] + s["idfp"] + s["idfn"], 1e-9),
        "id_switches": s["id_switches"],
        "objects": s["objects"],
    }


def run_seed(seed: int, args, root: Path) -> dict:
    rng = np.random.default_rng(seed)
    size = dict(width=args.width, height=args.height, frames=args.frames, objects=(1, 4))
    test = dl.make_object_clips(root / f"test{seed}", args.clips, seed=10_000 + seed, **size).parent
    ann = dl.read_object_annotations(test / "annotations.json")
    by_clip = clip_images(ann)
    sources = {"noisy_truth": {p: noisy_truth(ann, ims, rng, args) for p, ims in by_clip.items()}}
    if "detector" in args.sources:
        train = dl.make_object_clips(root / f"train{seed}", args.train_clips, seed=20_000 + seed, **size).parent
        t0 = time.perf_counter()
        det = dl.train_detector(train / "annotations.json", epochs=args.epochs, seed=seed)
        print(f"  seed {seed}: detector trained in {time.perf_counter() - t0:.0f} s")
        dets = {}
        for path in by_clip:
            frames = dl.read_clip(path, dl.ClipSpec(frames=None, size=(args.height, args.width))).frames
            out = []
            for d in det.detect(frames):
                keep = d["scores"] >= args.threshold
                out.append({k: d[k][keep].numpy() for k in ("boxes", "labels", "scores")})
            dets[path] = out
        sources["detector"] = dets
    fps = 12.0
    out = {"seed": seed}
    for source in args.sources:
        for arm in ARMS:
            per_clip = []
            for path, ims in by_clip.items():
                rows = track(arm, sources[source][path], [im["frame_index"] for im in ims], fps, args)
                per_clip.append(dl.evaluate_tracks(rows, ann, path))
            out[f"{source}/{arm}"] = pooled(per_clip)
    return out


def summarise(results: list[dict], sources) -> str:
    lines = ["| detections | tracker | MOTA | IDF1 | ID switches / 100 objects |", "|---|---|---|---|---|"]
    for source in sources:
        for arm in ARMS:
            v = [r[f"{source}/{arm}"] for r in results]
            mota, idf1 = np.array([x["mota"] for x in v]), np.array([x["idf1"] for x in v])
            sw = np.array([100 * x["id_switches"] / max(x["objects"], 1) for x in v])
            sd = (lambda a: a.std(ddof=1) if len(a) > 1 else 0.0)  # noqa: E731
            lines.append(f"| {source} | {arm} | {mota.mean():.3f} ± {sd(mota):.3f} | {idf1.mean():.3f} ± "
                         f"{sd(idf1):.3f} | {sw.mean():.2f} ± {sd(sw):.2f} |")  # fmt: skip
    lines.append("")
    for source in sources:
        for metric in ("mota", "idf1"):
            d = np.array([r[f"{source}/norfair"][metric] - r[f"{source}/iou_greedy"][metric] for r in results])
            lo, hi = bootstrap(d)
            lines.append(f"{source}: norfair - iou_greedy {metric.upper()} {100 * d.mean():+.1f} points, "
                         f"95 % CI [{100 * lo:+.1f}, {100 * hi:+.1f}] over {len(d)} seeds")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--clips", type=int, default=20, help="test clips per seed")
    ap.add_argument("--train-clips", type=int, default=16, help="detector training clips per seed")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--threshold", type=float, default=0.5, help="detector score threshold")
    ap.add_argument("--jitter", type=float, default=0.05, help="box jitter, share of the box side")
    ap.add_argument("--drop", type=float, default=0.1, help="share of true boxes missing")
    ap.add_argument("--false-positives", type=float, default=0.3, help="random boxes per frame")
    ap.add_argument("--centroid-px", type=float, default=20.0)
    ap.add_argument("--sources", default=",".join(SOURCES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="toy size, for the test")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    args.sources = [s for s in args.sources.split(",") if s]
    if args.quick:
        args.seeds, args.clips, args.train_clips, args.frames, args.epochs = args.seeds[:2], 2, 2, 8, 1
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dlabel-tracking-") as tmp:
        results = [run_seed(s, args, Path(tmp)) for s in args.seeds]
    table = summarise(results, args.sources)
    print(table)
    out = {"args": {k: v for k, v in vars(args).items() if k != "json"}, "results": results, "table": table,
           "seconds": time.perf_counter() - t0}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
