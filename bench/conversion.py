"""Model conversion: ONNX parity, INT8 size and accuracy, CPU latency of PyTorch vs ONNX vs INT8.

What is measured. Per seed (the seed varies the training clips, the held-out clips and the
weights), ``dl.make_shape_clips`` writes ``--train-clips`` training clips and ``--test-clips``
held-out clips (16 frames of 64 px, read as 4 frames of 32 px); ``dl.train_initial`` trains
``tiny3d`` v1 for ``--epochs``. Then, through the package's own API:

- ``export_onnx(store, v1, parity_clips=held-out clips)``: the ONNX version, its parity (max abs
  difference of logits and embedding, ONNX Runtime vs the eval-mode PyTorch model) on every
  held-out clip;
- ``quantize_int8(store, onnx, method=m)`` for both methods: ``dynamic`` (no data) and ``static``
  (QDQ, MinMax ranges from ``--calibration-clips`` training clips);
- accuracy of PyTorch, ONNX and each INT8 version on the held-out clips, and the paired
  per-clip difference INT8 - FP32 (PyTorch) with a bootstrap 95 % interval over clips;
- bytes on disk (PyTorch safetensors, ONNX FP32, INT8) and the ratio INT8 / ONNX FP32;
- CPU latency of ``logits_and_embedding`` (what the endpoint runs), median of ``--repeats`` at
  batch 1 and 16 with ``--threads`` threads, seeded random clips.

Goal lines ("met"/"missed") are printed as measured for the default INT8 method
(``dlabel_lab.quality.convert.DEFAULT_INT8_METHOD``) and the other one; nothing is tuned toward them.

Run (about 5 minutes on one core, 5 seeds):
    nice .venv/bin/python bench/conversion.py --json conversion.json
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
from dlabel_lab.quality.convert import (
    DEFAULT_INT8_METHOD,
    INT8_METHODS,
    cpu_latency,
    export_onnx,
    load_converted,
    quantize_int8,
)
from dlabel_lab.serving.threads import torch_threads
from dlabel_lab.train.datasets import ClipDataset

GOAL_PARITY = 1e-4
GOAL_SIZE_RATIO = 0.3
GOAL_ACCURACY_POINTS = 1.0


def _tensors(rows, classes, spec) -> tuple[torch.Tensor, np.ndarray]:
    ds = ClipDataset(rows, classes=classes, spec=spec, cache=False)
    return torch.stack([ds.tensor(i) for i in range(len(ds))]), np.asarray(ds.targets)


def _predict(model, x: torch.Tensor, threads: int) -> np.ndarray:
    out = []
    with torch_threads(threads), torch.inference_mode():
        for start in range(0, len(x), 16):
            out.append(model.logits_and_embedding(x[start : start + 16])[0].argmax(-1))
    return torch.cat(out).numpy()


def run_seed(seed: int, args, root: Path) -> dict:
    spec = dl.ClipSpec(frames=args.frames, size=args.size)
    folder = root / f"seed{seed}"
    train = dl.make_shape_clips(folder / "train", args.train_clips, seed=1000 * seed + 1)
    test = dl.make_shape_clips(folder / "test", args.test_clips, seed=1000 * seed + 2)
    out: dict = {"seed": seed}
    with dl.PayloadStore(folder / "store") as store:
        t0 = time.perf_counter()
        v1 = dl.train_initial(store, train, name="shapes", spec=spec, epochs=args.epochs, seed=seed,
                              progress=False).version
        out["train_seconds"] = time.perf_counter() - t0
        model = dl.load_version(store, v1)
        x, y = _tensors(dl.read_manifest(test), model.classes, spec)
        cal, _ = _tensors(dl.read_manifest(train)[: args.calibration_clips], model.classes, spec)
        t0 = time.perf_counter()
        onnx_v = export_onnx(store, v1, parity_clips=x)
        out["export_seconds"] = time.perf_counter() - t0
        out["parity_max_abs"] = onnx_v.parity
        out["parity_probabilities_max_abs"] = onnx_v.details["parity_probabilities_max_abs"]
        arms = {"pytorch": (model, Path(store.get_model(v1)["checkpoint_path"]).stat().st_size),
                "onnx": (load_converted(store, onnx_v.version), onnx_v.size_bytes)}
        for method in INT8_METHODS:
            t0 = time.perf_counter()
            q = quantize_int8(store, onnx_v.version, method=method, calibration_clips=cal, check_clips=x,
                              name=f"shapes-int8-{method}")
            out[f"int8-{method}_quantize_seconds"] = time.perf_counter() - t0
            out[f"int8-{method}_agreement_with_fp32"] = q.details["top1_agreement_with_fp32"]
            arms[f"int8-{method}"] = (load_converted(store, q.version), q.size_bytes)
        correct = {}
        for arm, (m, size) in arms.items():
            correct[arm] = (_predict(m, x, args.threads) == y).astype(float)
            lat = cpu_latency(m, batch_sizes=(1, 16), repeats=args.repeats, threads=args.threads, seed=seed)
            out[arm] = {"accuracy": float(correct[arm].mean()), "size_bytes": int(size),
                        "latency_ms_b1": lat[1], "latency_ms_b16": lat[16]}
        for arm in arms:
            if arm.startswith("int8"):
                out[arm]["size_ratio_vs_onnx_fp32"] = out[arm]["size_bytes"] / out["onnx"]["size_bytes"]
        out["paired"] = {arm: (correct[arm] - correct["pytorch"]).tolist() for arm in arms if arm != "pytorch"}
    out["n_test"] = int(len(y))
    return out


def _ms(values) -> str:
    a = np.asarray(values, float)
    return f"{a.mean():.4g} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.2g}"


def summarise(results: list[dict]) -> tuple[str, dict]:
    arms = ["pytorch", "onnx", *(f"int8-{m}" for m in INT8_METHODS)]
    lines = ["| arm | accuracy | bytes | ratio vs ONNX FP32 | CPU ms batch 1 | CPU ms batch 16 |",
             "|---|---|---|---|---|---|"]
    for arm in arms:
        v = [r[arm] for r in results]
        ratio = _ms([x["size_ratio_vs_onnx_fp32"] for x in v]) if arm.startswith("int8") else "-"
        lines.append(f"| {arm} | {_ms([x['accuracy'] for x in v])} | {_ms([x['size_bytes'] for x in v])} | {ratio} | "
                     f"{_ms([x['latency_ms_b1'] for x in v])} | {_ms([x['latency_ms_b16'] for x in v])} |")
    lines.append("")
    lines.append("per seed: parity max abs; accuracy pytorch / onnx / int8-dynamic / int8-static; paired INT8 - FP32")
    for r in results:
        paired = ", ".join(f"{arm} {100 * np.mean(r['paired'][arm]):+.2f} pt "
                           f"[{100 * bootstrap(np.array(r['paired'][arm]))[0]:+.2f}, "
                           f"{100 * bootstrap(np.array(r['paired'][arm]))[1]:+.2f}]"
                           for arm in arms[2:])
        accs = " / ".join(f"{r[a]['accuracy']:.3f}" for a in arms)
        lines.append(f"  seed {r['seed']}: parity {r['parity_max_abs']:.2e}; accuracy {accs}; {paired}")
    lines.append("")
    goals: dict = {}
    parity = max(r["parity_max_abs"] for r in results)
    goals["onnx_parity"] = {"max_abs": parity, "met": parity <= GOAL_PARITY}
    lines.append(f"ONNX - PyTorch accuracy {100 * np.mean([np.mean(r['paired']['onnx']) for r in results]):+.2f} pt; "
                 f"parity max abs over seeds {parity:.2e}")
    for method in INT8_METHODS:
        arm = f"int8-{method}"
        d = np.concatenate([np.asarray(r["paired"][arm]) for r in results])
        lo, hi = bootstrap(d)
        ratio = max(r[arm]["size_ratio_vs_onnx_fp32"] for r in results)
        mean = float(np.mean(d))
        goals[arm] = {"size_ratio_max": ratio, "size_met": ratio <= GOAL_SIZE_RATIO, "accuracy_diff": mean,
                      "ci95": [lo, hi], "accuracy_met": mean >= -GOAL_ACCURACY_POINTS / 100,
                      "ci_within": lo >= -GOAL_ACCURACY_POINTS / 100}
        lines.append(f"{arm}: INT8 - FP32 accuracy {100 * mean:+.2f} pt, 95 % CI [{100 * lo:+.2f}, {100 * hi:+.2f}] "
                     f"over {len(d)} held-out clips ({len(results)} seeds, paired per clip)")
    lines.append("")
    default = f"int8-{DEFAULT_INT8_METHOD}"
    word = {True: "met", False: "missed"}
    lines.append(f"goal ONNX parity <= {GOAL_PARITY:g}: {word[goals['onnx_parity']['met']]} (max {parity:.2e})")
    for method in INT8_METHODS:
        arm = f"int8-{method}"
        g = goals[arm]
        tag = " (default)" if arm == default else ""
        lines.append(f"goal INT8 size <= {GOAL_SIZE_RATIO}x FP32, {arm}{tag}: {word[g['size_met']]} "
                     f"(max ratio {g['size_ratio_max']:.3f})")
        lines.append(f"goal INT8 accuracy within {GOAL_ACCURACY_POINTS:g} point of FP32, {arm}{tag}: "
                     f"{word[g['accuracy_met']]} (mean {100 * g['accuracy_diff']:+.2f} pt; 95 % CI lower bound "
                     f"{100 * g['ci95'][0]:+.2f} pt {'inside' if g['ci_within'] else 'outside'} the point)")
    lines.append("goal CPU latency of both recorded: met (table above, batch 1 and 16)")
    return "\n".join(lines), goals


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--train-clips", type=int, default=240)
    ap.add_argument("--test-clips", type=int, default=300, help="held-out clips per seed")
    ap.add_argument("--calibration-clips", type=int, default=64, help="training clips for static quantisation")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=30, help="timed repeats per latency (median)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="toy size, for the test")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.train_clips, args.test_clips = args.seeds[:1], 6, 6
        args.calibration_clips, args.epochs, args.repeats = 3, 1, 2
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dlabel-conversion-") as tmp:
        results = [run_seed(s, args, Path(tmp)) for s in args.seeds]
    table, goals = summarise(results)
    print(table)
    out = {"args": {k: v for k, v in vars(args).items() if k != "json"}, "default_int8_method": DEFAULT_INT8_METHOD,
           "results": results, "goals": goals, "table": table, "seconds": time.perf_counter() - t0}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
