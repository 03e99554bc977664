"""Does the loop recover drift, and do derived parameters beat plain and generic retraining? A battery.

Per seed (the seed varies the data, the training and the split):
  v1   is trained on clean lab clips (shapes or digits) and scored on held-out clean clips;
per drift, on a copy of that store:
  labelled drifted clips arrive as user scores through the endpoints;
  ``run_loop`` (one iteration) analyses v1, derives transformation parameters and trains, on the
  same content-grouped split and seed, the candidates
    (b) plain retraining, (c) derived parameters, (d) generic augmentation
    (RandomAffine + ColorJitter + blur + noise, same draw on every frame), (e) derived + generic,
  and picks one on the labelled validation split (the loop's choice);
  every arm and v1 (a) are scored on held-out drifted test clips (never labelled, never in the store).

Drifts made by the generator: ``operational`` (preset: darker, smaller, clutter, noise), ``motion``
(3x speed), ``noise``; made here by post-processing the clean clips' video files: ``blur``,
``low_contrast``, ``bright_inverted`` (inverted, then brightened), ``hue`` (hue rotated by 120
degrees), ``vignette_jpeg`` (vignette and heavy JPEG re-compression).

Reported per drift: mean and sd over seeds of every arm; paired differences (c) - (b),
(c) - (d), choice - max((b), (d)) with bootstrap 95 % intervals over seeds; recovery
((c) - v1 drifted) / (v1 clean - v1 drifted) with its interval.

Run (the full battery is slow):
    .venv/bin/python bench/drift_recovery.py --seeds 10 --drifts all --test 300
    .venv/bin/python bench/drift_recovery.py --seeds 5 --drifts operational,blur,bright_inverted --test 300
    .venv/bin/python bench/drift_recovery.py --dataset digits --seeds 3 --drifts operational --train 200
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from bench_stats import bootstrap

import dlabel_lab as dl
from dlabel_lab.loop import run_loop

GENERATED = {
    "operational": "operational",
    "motion": {"speed": 3.0},
    "noise": {"noise": 0.12},
}


def _blur(f: np.ndarray, rng) -> np.ndarray:
    return cv2.GaussianBlur(f, (0, 0), 1.6)


def _low_contrast(f: np.ndarray, rng) -> np.ndarray:
    m = f.mean(axis=(0, 1), keepdims=True)
    return np.clip(m + 0.35 * (f.astype(np.float32) - m), 0, 255).astype(np.uint8)


def _bright_inverted(f: np.ndarray, rng) -> np.ndarray:
    return np.clip((255 - f.astype(np.float32)) * 1.3 + 20, 0, 255).astype(np.uint8)


def _hue(f: np.ndarray, rng) -> np.ndarray:
    hsv = cv2.cvtColor(f, cv2.COLOR_BGR2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + 60) % 180  # 120 degrees
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def _vignette_jpeg(f: np.ndarray, rng) -> np.ndarray:
    h, w = f.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.sqrt(((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2)
    out = (f.astype(np.float32) * np.clip(1.0 - 0.6 * r**2, 0.15, 1.0)[..., None]).astype(np.uint8)
    ok, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 8])
    return cv2.imdecode(enc, cv2.IMREAD_COLOR)


POSTPROCESSED: dict[str, Callable] = {
    "blur": _blur, "low_contrast": _low_contrast, "bright_inverted": _bright_inverted, "hue": _hue,
    "vignette_jpeg": _vignette_jpeg,
}
DRIFTS = (*GENERATED, *POSTPROCESSED)
ARMS = ("plain", "derived", "generic", "derived+generic")


def postprocess(manifest: Path, out_dir: Path, fn: Callable) -> Path:
    """Copy a manifest's clips frame by frame through ``fn`` (BGR uint8 -> BGR uint8) into ``out_dir``."""
    src = manifest.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        cap = cv2.VideoCapture(str(src / row["path"]))
        fps = cap.get(cv2.CAP_PROP_FPS) or 12.0
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(fn(frame, rng))
        cap.release()
        target = out_dir / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        h, w = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        for frame in frames:
            writer.write(frame)
        writer.release()
    shutil.copy(manifest, out_dir / "labels.csv")
    return out_dir / "labels.csv"


def make_clips(dataset: str, out: Path, n: int, seed: int, drift: str | None, args) -> Path:
    make = dl.make_shape_clips if dataset == "shapes" else dl.load_digit_clips
    if drift is None or drift in GENERATED:
        return make(out, n, seed=seed, frames=args.frames_in, size=args.size_in,
                    drift=None if drift is None else GENERATED[drift])
    clean = make(out.with_name(out.name + "_clean"), n, seed=seed, frames=args.frames_in, size=args.size_in)
    return postprocess(clean, out, POSTPROCESSED[drift])


def tensors(manifest, model):
    rows = dl.read_manifest(manifest)
    xs = [dl.to_tensor(dl.read_clip(r["path"], model.spec))[0] for r in rows]
    return torch.stack(xs), torch.tensor([model.classes.index(r["label"]) for r in rows])


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 64]).argmax(-1) for i in range(0, len(x), 64)])
    return float((pred == y).float().mean())


def lab_model(root: Path, seed: int, args) -> tuple[object, Path, Path]:
    """v1 of a seed (trained once, kept for every drift) with its store and clean test clips."""
    base = seed * 10_000
    data = root / "clips"
    store_dir = root / "store_v1"
    test_clean = data / "test_clean" / "labels.csv"
    done = root / "v1.json"
    if done.exists():
        return json.loads(done.read_text()), store_dir, test_clean
    train = make_clips(args.dataset, data / "train", args.train, base + 1, None, args)
    test_clean = make_clips(args.dataset, data / "test_clean", args.test, base + 2, None, args)
    spec = dl.ClipSpec(frames=args.frames, size=args.size)
    with dl.PayloadStore(store_dir) as store:
        v1 = dl.train_initial(store, train, name=args.dataset, spec=spec, epochs=args.epochs, seed=seed,
                              progress=False)
    done.write_text(json.dumps({"version": v1.version}))
    return {"version": v1.version}, store_dir, test_clean


def run_battery(root: Path, seeds: list[int], drifts: list[str], args, on_result, done: set) -> None:
    """Drift by drift, seed by seed, so that each drift completes over every seed before the next starts."""
    for drift in drifts:
        k = DRIFTS.index(drift)  # the drift's data seed does not depend on which drifts run
        for seed in seeds:
            if (seed, drift) in done:
                continue
            try:
                v1, store_dir, test_clean = lab_model(root / f"seed{seed}", seed, args)
                one_cell(root / f"seed{seed}", seed, k, drift, v1["version"], store_dir, test_clean, args, on_result)
            except Exception as exc:  # one broken cell must not lose the battery: record it and go on
                shutil.rmtree(root / f"seed{seed}" / f"store_{drift}", ignore_errors=True)
                print(f"seed {seed} {drift}: FAILED {type(exc).__name__}: {exc}", flush=True)
                if args.json:
                    with open(args.json, "a") as fh:
                        fh.write(json.dumps({"seed": seed, "drift": drift,
                                             "error": f"{type(exc).__name__}: {exc}"}) + "\n")


def one_cell(root: Path, seed: int, k: int, drift: str, v1_version: str, store_dir: Path, test_clean: Path, args,
             on_result) -> None:
    base = seed * 10_000
    data = root / "clips"
    t0 = time.perf_counter()
    ops = make_clips(args.dataset, data / f"ops_{drift}", args.ops, base + 100 + k, drift, args)
    test = make_clips(args.dataset, data / f"test_{drift}", args.test, base + 200 + k, drift, args)
    shutil.copytree(store_dir, root / f"store_{drift}")
    out = {"seed": seed, "drift": drift, "dataset": args.dataset}
    with dl.PayloadStore(root / f"store_{drift}") as store:
        model1 = dl.load_version(store, v1_version)
        xc, yc = tensors(test_clean, model1)
        xd, yd = tensors(test, model1)
        out["v1_clean"], out["v1_drift"] = accuracy(model1, xc, yc), accuracy(model1, xd, yd)
        rows = dl.read_manifest(ops)
        dl.deploy(model1, store, model_version=v1_version).score_many(
            [r["path"] for r in rows], [r["label"] for r in rows], progress=False)
        report = run_loop(store, from_version=v1_version, iterations=1, epochs=args.retrain_epochs, seed=seed,
                          holdout=args.holdout, top_neurons=4, n_steps=4, candidates=args.arms,
                          patience=args.patience, progress=False)
        it = report.iterations[0]
        for name, mv in it.candidates.items():
            model = dl.load_version(store, mv.version)
            out[f"{name}_drift"] = accuracy(model, xd, yd)
            out[f"{name}_val"] = mv.evaluation.accuracy
            out[f"{name}_epochs"] = mv.selection.get("epochs_run")
            if name == "derived":
                out["derived_clean"] = accuracy(model, xc, yc)
        out["choice"] = it.chosen
        out["choice_drift"] = out[f"{it.chosen}_drift"]
        out["n_val"] = len(it.child.holdout_ids)
        out["params"] = {r["parameter"]: (r["value"], r["supported"])
                         for r in it.params.describe().to_dict("records")}
        out["verdict"] = it.verdict
        if args.cost and k == 0 and seed == args.first_seed:
            out["cost"] = dl.attribution_cost_benchmark(model1, xd[:16], n_steps=16, repeats=3)
        if args.b_repeats and k == 0 and seed == args.first_seed:
            # training noise alone: plain retraining on the same data and split, other training seeds
            out["plain_repeats"] = []
            for j in range(1, args.b_repeats + 1):
                mv = dl.retrain(store, v1_version, epochs=args.retrain_epochs, seed=seed + 1000 * j,
                                split_seed=seed, holdout=args.holdout, patience=args.patience, progress=False)
                out["plain_repeats"].append(accuracy(dl.load_version(store, mv.version), xd, yd))
    out["seconds"] = time.perf_counter() - t0
    shutil.rmtree(root / f"store_{drift}", ignore_errors=True)
    on_result(out)


def markdown_table(results: list[dict]) -> str:
    """One Markdown row per drift (for bench/README.md): arms mean ± sd, paired differences and recovery with CIs."""
    out = ["| drift (seeds) | (a) v1 clean / drifted | (b) plain | (c) derived | (d) generic | loop's choice | "
           "(c) - (b) [95 % CI] | (c) - (d) [95 % CI] | choice - max(b, d) [95 % CI] | recovery by (c) [95 % CI] |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for drift in dict.fromkeys(r["drift"] for r in results):
        rs = [r for r in results if r["drift"] == drift]

        def col(key, rs=rs):
            return np.array([r[key] for r in rs], dtype=float)

        def ms(key):
            v = col(key)
            return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"

        def diff(d):
            lo, hi = bootstrap(d)
            return f"{100 * d.mean():+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"

        best = np.maximum(col("plain_drift"), col("generic_drift"))
        rec, lo, hi = recovery(rs)
        out.append(f"| {drift} ({len(rs)}) | {col('v1_clean').mean():.3f} / {col('v1_drift').mean():.3f} | "
                   f"{ms('plain_drift')} | {ms('derived_drift')} | {ms('generic_drift')} | {ms('choice_drift')} | "
                   f"{diff(col('derived_drift') - col('plain_drift'))} | "
                   f"{diff(col('derived_drift') - col('generic_drift'))} | {diff(col('choice_drift') - best)} | "
                   f"{rec:.1%} [{lo:.1%}, {hi:.1%}] |")
    return "\n".join(out)


def recovery(rs: list[dict]) -> tuple[float, float, float]:
    """((c) - v1 drifted) / (v1 clean - v1 drifted) over the seeds, with a bootstrap 95 % interval."""
    data = np.array([[r["derived_drift"], r["v1_drift"], r["v1_clean"]] for r in rs], dtype=float)

    def rec(rows):
        lost = rows[:, 2].mean() - rows[:, 1].mean()
        return (rows[:, 0].mean() - rows[:, 1].mean()) / lost if lost > 0 else float("nan")

    rng = np.random.default_rng(1)
    boots = [rec(data[rng.integers(0, len(data), len(data))]) for _ in range(5000)] if len(data) > 1 else []
    lo, hi = np.nanquantile(boots, [0.025, 0.975]) if boots else (float("nan"), float("nan"))
    return rec(data), float(lo), float(hi)


def summarise(results: list[dict], arms: list[str]) -> str:
    lines = []
    for drift in dict.fromkeys(r["drift"] for r in results):
        rs = [r for r in results if r["drift"] == drift]
        n_val = sorted(r["n_val"] for r in rs)
        lines.append(f"\n== {drift}: {len(rs)} seeds, {rs[0]['dataset']}, validation clips per seed "
                     f"{n_val[0]}-{n_val[-1]}")

        def col(key, rs=rs):
            return np.array([r[key] for r in rs], dtype=float)

        def ms(key):
            v = col(key)
            return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"

        lines.append(f"  (a) v1 clean             {ms('v1_clean')}")
        lines.append(f"  (a) v1 drifted           {ms('v1_drift')}")
        labels = {"plain": "(b) plain", "derived": "(c) derived", "generic": "(d) generic",
                  "derived+generic": "(e) derived+generic"}
        for arm in arms:
            lines.append(f"  {labels[arm]:<24} {ms(f'{arm}_drift')}")
        lines.append(f"  loop's choice            {ms('choice_drift')}   "
                     f"(chosen: {', '.join(r['choice'] for r in rs)})")
        pairs = []
        if "plain" in arms and "derived" in arms:
            pairs.append(("(c) - (b)", col("derived_drift") - col("plain_drift")))
        if "generic" in arms and "derived" in arms:
            pairs.append(("(c) - (d)", col("derived_drift") - col("generic_drift")))
        if "plain" in arms and "generic" in arms:
            best = np.maximum(col("plain_drift"), col("generic_drift"))
            pairs.append(("choice - max((b), (d))", col("choice_drift") - best))
        for name, d in pairs:
            lo, hi = bootstrap(d)
            lines.append(f"  {name:<24} {100 * d.mean():+.1f} points, 95 % CI [{100 * lo:+.1f}, {100 * hi:+.1f}]")
        if "derived" in arms:
            rec, lo, hi = recovery(rs)
            lines.append(f"  (c) recovery             {rec:.1%}, 95 % CI [{lo:.1%}, {hi:.1%}]")
        reps = [r for r in rs if r.get("plain_repeats")]
        for r in reps:
            v = [r["plain_drift"], *r["plain_repeats"]]
            lines.append(f"  (b) training seeds only, seed {r['seed']}: {statistics.mean(v):.3f} ± "
                         f"{statistics.stdev(v):.3f} over {len(v)} trainings on one split")
        applied = {}
        for r in rs:
            for name, (value, _) in r["params"].items():
                if value is not None:
                    applied[name] = applied.get(name, 0) + 1
        lines.append(f"  derived parameters applied (seeds): {applied or 'none'}")
        lines.append(f"  verdict, seed {rs[0]['seed']}: {rs[0]['verdict']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=("shapes", "digits"), default="shapes")
    ap.add_argument("--seeds", type=int, default=10, help="number of seeds")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--drifts", default="all", help=f"comma-separated subset of {','.join(DRIFTS)}, or 'all'")
    ap.add_argument("--arms", default=",".join(ARMS), help="candidates trained by the loop (plain,derived,...)")
    ap.add_argument("--train", type=int, default=96, help="clean lab clips v1 is trained on")
    ap.add_argument("--ops", type=int, default=60, help="labelled drifted clips")
    ap.add_argument("--test", type=int, default=300, help="held-out drifted (and clean) test clips")
    ap.add_argument("--holdout", type=float, default=0.25, help="validation fraction of the labelled drifted clips")
    ap.add_argument("--frames", type=int, default=4, help="frames the model reads")
    ap.add_argument("--size", type=int, default=32, help="frame size the model reads")
    ap.add_argument("--frames-in", type=int, default=16, help="frames of the generated clips")
    ap.add_argument("--size-in", type=int, default=64, help="size of the generated clips")
    ap.add_argument("--epochs", type=int, default=30, help="v1 epochs")
    ap.add_argument("--retrain-epochs", type=int, default=25)
    ap.add_argument("--patience", type=int, default=8)
    ap.add_argument("--b-repeats", type=int, default=0, help="extra plain trainings on seed 0's first drift")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cost", action="store_true", help="also time attribution against n_steps x (fwd + bwd)")
    ap.add_argument("--json", type=Path, default=None, help="append raw results here (JSON lines)")
    ap.add_argument("--summarise", type=Path, nargs="+", default=None,
                    help="only summarise results already written with --json (e.g. by runs in parallel)")
    args = ap.parse_args(argv)
    if args.summarise:
        results = [json.loads(line) for f in args.summarise for line in f.read_text().splitlines() if line.strip()]
        failed = [r for r in results if "error" in r]
        results = [r for r in results if "error" not in r]
        arms = [a for a in ARMS if all(f"{a}_drift" in r for r in results)] if results else []
        print(f"{len(results)} cells from {', '.join(map(str, args.summarise))}; {len(failed)} failed")
        for r in failed:
            print(f"  failed: seed {r['seed']} {r['drift']}: {r['error']}")
        results = sorted(results, key=lambda r: (DRIFTS.index(r["drift"]), r["seed"]))
        print(summarise(results, arms))
        if {"plain", "derived", "generic"} <= set(arms):
            print("\n" + markdown_table(results))
        return results
    drifts = list(DRIFTS) if args.drifts == "all" else [d.strip() for d in args.drifts.split(",") if d.strip()]
    unknown = sorted(set(drifts) - set(DRIFTS))
    if unknown:
        ap.error(f"unknown drifts {unknown}; choose from {DRIFTS}")
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    results: list[dict] = []

    def on_result(r: dict) -> None:
        results.append(r)
        arms = "  ".join(f"{a} {r[f'{a}_drift']:.3f}" for a in args.arms)
        print(f"seed {r['seed']} {r['drift']:<16} v1 clean {r['v1_clean']:.3f} drifted {r['v1_drift']:.3f}  {arms}  "
              f"choice {r['choice']}  ({r['seconds']:.0f} s)", flush=True)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(r, default=str) + "\n")

    done: set = set()
    if args.json and args.json.exists():  # resume: cells already written are not run again
        for line in args.json.read_text().splitlines():
            r = json.loads(line) if line.strip() else {}
            if r and "error" not in r:
                results.append(r)
                done.add((r["seed"], r["drift"]))
        print(f"resuming: {len(done)} cells already in {args.json}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        run_battery(Path(tmp), list(range(args.first_seed, args.first_seed + args.seeds)), drifts, args, on_result,
                    done)
    print(f"\n{args.dataset}: {args.seeds} seeds x {len(drifts)} drifts; {args.train} lab clips, {args.ops} labelled "
          f"drifted clips ({args.holdout:.0%} validation), {args.test}+{args.test} held-out test clips per drift and "
          f"seed; model reads {args.frames}x{args.size}px; v1 {args.epochs} epochs, retraining <= "
          f"{args.retrain_epochs} epochs (patience {args.patience}); {time.perf_counter() - t0:.0f} s")
    print(summarise(results, args.arms))
    for r in results:
        if "cost" in r:
            c = r["cost"]
            print(f"\nattribution cost per sample (n_steps={c['n_steps']}): IG {c['ig_s_per_sample'] * 1e3:.1f} ms, "
                  f"NeuronIG {c['neuron_ig_s_per_sample'] * 1e3:.1f} ms vs n_steps x (fwd+bwd) "
                  f"{c['reference_s_per_sample'] * 1e3:.1f} ms -> {c['ig_ratio']:.2f}x / {c['neuron_ig_ratio']:.2f}x "
                  "(goal <= 1.3x)")
    return results


if __name__ == "__main__":
    main()
