"""Does retraining with derived transformation parameters recover drift?

One run, several seeds. Per seed:
  v1   trained on clean clips;
  the labelled operational (drifted) clips arrive as user scores through the endpoints;
  (b)  retrain v1 on the same labels with default training;
  (c)  retrain v1 on the same labels with the parameters derived from attribution;
all evaluated on the same held-out drifted clips (never labelled, never trained on)
and v1 also on held-out clean clips. Recovery = (c - v1 drifted) / (v1 clean - v1 drifted).

Also measures attribution cost per sample against n_steps x (forward + backward)
of the same model in the same run.

Run:
    .venv/bin/python bench/drift_recovery.py [--seeds 5] [--retrain-epochs 25] [--train 96] [--ops 60] [--test 90]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

import dlabel_lab as dl
from dlabel_lab.explain.derive import analyse, derive_transformation_params


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 32]).argmax(-1) for i in range(0, len(x), 32)])
    return float((pred == y).float().mean())


def tensors(manifest, model):
    rows = dl.read_manifest(manifest)
    xs = [dl.to_tensor(dl.read_clip(r["path"], model.spec))[0] for r in rows]
    y = torch.tensor([model.classes.index(r["label"]) for r in rows])
    return torch.stack(xs), y


def one_seed(root: Path, seed: int, args) -> dict:
    data = root / "clips"
    train = dl.make_shape_clips(data / "train", args.train, seed=100)
    ops = dl.make_shape_clips(data / "ops", args.ops, seed=101, drift="operational")
    test_drift = dl.make_shape_clips(data / "test_drift", args.test, seed=102, drift="operational")
    test_clean = dl.make_shape_clips(data / "test_clean", args.test, seed=103)
    out = {"seed": seed}
    with dl.PayloadStore(root / f"store_{seed}") as store:
        v1 = dl.train_initial(store, train, name="shapes", epochs=args.epochs, seed=seed, progress=False)
        model1 = dl.load_version(store, v1.version)
        xd, yd = tensors(test_drift, model1)
        xc, yc = tensors(test_clean, model1)
        out["v1_clean"], out["v1_drift"] = accuracy(model1, xc, yc), accuracy(model1, xd, yd)
        rows = dl.read_manifest(ops)
        dl.deploy(model1, store, model_version=v1.version).score_many(
            [r["path"] for r in rows], [r["label"] for r in rows], progress=False)
        t0 = time.perf_counter()
        analysis = analyse(store, v1.version, progress=False)
        params = derive_transformation_params(store, v1.version, analysis=analysis, progress=False)
        out["derive_s"] = time.perf_counter() - t0
        out["params"] = params.describe()[["parameter", "value", "supported"]].to_dict("records")
        common = dict(epochs=args.retrain_epochs, seed=seed, holdout=0.2, progress=False)
        b = dl.retrain(store, v1.version, **common)
        c = dl.retrain(store, v1.version, params=params, **common)
        out["b_drift"] = accuracy(dl.load_version(store, b.version), xd, yd)
        out["c_drift"] = accuracy(dl.load_version(store, c.version), xd, yd)
        out["c_clean"] = accuracy(dl.load_version(store, c.version), xc, yc)
        if seed == args.seeds - 1 or args.seeds == 1:
            out["cost"] = dl.attribution_cost_benchmark(model1, xd[:16], n_steps=16, repeats=3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--train", type=int, default=96)
    ap.add_argument("--ops", type=int, default=60)
    ap.add_argument("--test", type=int, default=90)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--retrain-epochs", type=int, default=25)
    ap.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            r = one_seed(Path(tmp) / f"seed{seed}", seed, args)
            results.append(r)
            print(f"seed {seed}: v1 clean {r['v1_clean']:.3f}  v1 drifted {r['v1_drift']:.3f}  "
                  f"(b) default {r['b_drift']:.3f}  (c) derived {r['c_drift']:.3f}  (c) clean {r['c_clean']:.3f}",
                  flush=True)

    def ms(key):
        v = [r[key] for r in results]
        return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)

    print(f"\n{args.seeds} seeds; {args.train} clean training clips, {args.ops} labelled drifted clips, "
          f"{args.test}+{args.test} held-out test clips; {time.perf_counter() - t0:.0f} s")
    for key, name in (("v1_clean", "(a) v1 on clean"), ("v1_drift", "(a) v1 on drifted"),
                      ("b_drift", "(b) default retraining, drifted"), ("c_drift", "(c) derived params, drifted"),
                      ("c_clean", "(c) derived params, clean")):
        m, s = ms(key)
        print(f"{name:<36} {m:.3f} ± {s:.3f}")
    lost = ms("v1_clean")[0] - ms("v1_drift")[0]
    recovered = (ms("c_drift")[0] - ms("v1_drift")[0]) / lost if lost > 0 else float("nan")
    print(f"{'accuracy lost to drift':<36} {lost:.3f}")
    print(f"{'(c) recovers':<36} {recovered:.1%}   (goal >= 80 %)")
    print(f"{'(c) - (b)':<36} {100 * (ms('c_drift')[0] - ms('b_drift')[0]):+.1f} points   (goal >= +5)")
    print("\nderived parameters (seed 0):")
    for p in results[0]["params"]:
        print(f"  {p['parameter']:<14} {str(p['value']):<48} supported={p['supported']}")
    cost = results[-1]["cost"]
    print(f"\nattribution cost per sample (n_steps={cost['n_steps']}): IG {cost['ig_s_per_sample'] * 1e3:.1f} ms, "
          f"NeuronIG {cost['neuron_ig_s_per_sample'] * 1e3:.1f} ms vs n_steps x (fwd+bwd) "
          f"{cost['reference_s_per_sample'] * 1e3:.1f} ms -> ratios {cost['ig_ratio']:.2f}x / "
          f"{cost['neuron_ig_ratio']:.2f}x (goal <= 1.3x)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
