"""Label less (issue 12): query strategies against random and class-balanced sampling, and auto-labelling.

What is measured. Per data set (the shape clips, 3 classes, ``dl.make_shape_clips``; the handwritten digit
clips, 10 classes, ``dl.load_digit_clips``) and seed, a pool of unlabelled clips (600) is generated with a
seed-dependent generation seed, and one fixed test set (300 clips, the same generation seed for every seed
and arm) is generated once. Every arm starts from the same 20 randomly drawn labelled clips and labels
20 more per round, chosen by its query strategy, up to 300 labels; after every round the model is
trained and scored on the test set, which gives the arm's learning curve (test accuracy against the
number of labels). The arms are the strategies of :mod:`dlabel_lab.labeling.strategies` (scikit-activeml
does the heavy lifting there): ``random``, ``balanced_random`` (equal numbers per predicted class),
``entropy``, ``margin``, ``bald`` (BatchBALD on MC-dropout samples), ``coreset``, ``typiclust`` and the
hybrid ``cluster_margin`` (the most uncertain clips, clustered on their embeddings, one per cluster). The
seed varies the pool, the initial labelled set, the weights' initialisation and the augmentation draws;
within a seed every arm shares them, so arms differ only by what they chose to label.

How a round trains (recipe ``v2-warm``, the same in every arm and round). The first round's model is
trained from scratch on the 20 starting labels; every later round fine-tunes a copy of the arm's previous
model on all of its labels, as ``dl.retrain`` does in the product. Model: ``ClipClassifier`` (tiny3d
backbone, dropout 0.3 before the head, which MC-dropout needs) reading ``ClipSpec(frames=4, size=32)``,
fitted by the package's ``train_model`` (AdamW at ``--lr`` 1e-3, batch 16, a cosine schedule per round,
weight averaging, precise BatchNorm; no validation split, so the last averaged weights are kept) for
``--epochs`` (8) epochs of exactly ``--epoch-clips`` (320) clips with the ordinary augmentation of
``generic_augment`` (random affine, colour jitter, blur, noise; the same draw on every frame) switched on
in every arm. An epoch is whole shuffled passes over the labelled clips cut at 320, so every labelled clip
is seen once or more per epoch and every round takes the same 160 optimiser steps, whatever the number of
labels. (Recipe ``v1``, whose results are in ``bench/runs/al_*.jsonl``, retrained from scratch and repeated
the labelled set whole up to >= 160 clips, so steps per round peaked at 140 labels and fell at 160, and
the models were under-trained; a run refuses to resume a file of another recipe.) Fine-tuning makes a
curve's accuracy grow with the rounds of training as well as with the labels; that is the same in every
arm, so the paired differences compare what the arms chose. The training seed depends on the seed and the
round only, so the first round's model is the same in every arm (it is trained once per seed). Pool and
test clips are decoded once (``ClipDataset``) into tensors; a round only trains and predicts.

Reported per data set and arm: mean ± sd over seeds of the final test accuracy and of the normalised area
under the learning curve (trapezoid over labels divided by the label range, so it lies in [0, 1]); the
labels needed to reach random's mean final accuracy (per seed the first round at or above it, then the
mean; "not reached" in the seeds that never do); paired differences against random of the area and of the
final accuracy with bootstrap 95 % intervals over seeds (numpy, 10,000 resamples).

Auto-labelling, per arm, on its final labelled set: 20 % of those labels are held out (``split_ids``,
grouped by the clips' sha256, so content-disjoint), a model is trained from scratch on the rest (none of
the arm's models can be used: they have seen the held-out clips) for ``--autolabel-epochs`` (30) epochs,
its temperature is fitted on the held-out clips (``fit_temperature``) and the lowest threshold whose
held-out precision reaches 0.95 is chosen (``choose_threshold``, at least ``--min-support`` clips above
it). Then, on the remaining unlabelled pool, with its true labels: precision of the clips at or above the
threshold with its exact (Clopper-Pearson) interval (``exact_interval``), coverage (their share of the
remaining pool) and the share of all labels made without a person, auto / (auto + human) (PowerAI's
published example: about 62 %).

Goals, printed as measured ("met" / "missed"; the benchmark is not tuned towards them): the best strategy
(highest mean paired area difference against random over the data sets measured; class-balanced random is
a baseline, not a candidate; choosing the best after the fact flatters it) reaches random's final accuracy
with at most 50 % of random's labels on at least one data set, and its area is never significantly below
random's (bootstrap interval entirely below zero) on either; auto-labelling with that strategy's labels
reaches precision >= 95 % with the interval's lower bound >= 92 % at coverage >= 50 % of the remaining
pool (pooled over seeds).

Caveat: digit clips draw their glyph from scikit-learn's 1,797 handwritten digits, so a pool clip and a test
clip can show the same handwritten sample (with different motion, scale, background and noise).

Run (the defaults are the issue's sizes; the full run takes hours, one core per process):
    .venv/bin/python bench/active_learning.py --json al.jsonl --plot bench/active_learning.png
On two cores, one process per data set, then one summary of both (the results so far are committed in
``bench/runs/``; a run given the same ``--json`` resumes, skipping the arm runs already there; it refuses a file
written by another recipe):
    .venv/bin/python bench/active_learning.py --dataset shapes --json bench/runs/al2_shapes.jsonl &
    .venv/bin/python bench/active_learning.py --dataset digits --json bench/runs/al2_digits.jsonl &
    wait; .venv/bin/python bench/active_learning.py --summarise bench/runs/al2_shapes.jsonl \\
        bench/runs/al2_digits.jsonl --plot bench/active_learning.png
A quick look:
    .venv/bin/python bench/active_learning.py --dataset shapes --seeds 1 --pool 120 --test 100 --max-labels 60 \\
        --epoch-clips 64
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from bench_stats import bootstrap
from torch.utils.data import Dataset

import dlabel_lab as dl
from dlabel_lab.labeling import (
    STRATEGIES,
    apply_temperature,
    choose_threshold,
    exact_interval,
    fit_temperature,
    mc_dropout_probabilities,
    select,
)
from dlabel_lab.train.augment import generic_augment
from dlabel_lab.train.training import fine_tune_copy

ARMS = ("random", "balanced_random", "entropy", "margin", "bald", "coreset", "typiclust", "cluster_margin")
BASELINES = ("random", "balanced_random")
RECIPE = "v2-warm"  # written into every result; a run resumes only results of the same recipe
DATASETS = {"shapes": dl.make_shape_clips, "digits": dl.load_digit_clips}
TEST_SEED = 999_983  # the fixed test set's generation seed (pool seeds are seed * 10_000 + 1)


class _Clips(Dataset):
    """Decoded clips in memory, augmented on the fly; an epoch is ``size`` items (default: each clip once).

    With ``size`` the epoch is a fixed number of items drawn as whole shuffled passes over the clips
    (``seed``), cut at ``size``: every clip appears ``size // n`` or one more times, so the optimiser takes
    the same number of steps whatever the number of labels. ``train_model`` needs what ``ClipDataset``
    offers: items ``(x, y)`` and ``without_augment()`` (the un-augmented clips, once each, for precise
    BatchNorm); ``ClipDataset`` itself only reads files.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, augment=None, size: int | None = None,
                 seed: int = 0) -> None:
        self.x, self.y, self.augment = x, y, augment
        n = len(x)
        if size is None:
            self.index = np.arange(n)
        else:
            if size < n:
                raise ValueError(f"an epoch of {size} items cannot show each of {n} clips; raise --epoch-clips")
            rng = np.random.default_rng(seed)
            self.index = np.concatenate([rng.permutation(n) for _ in range(math.ceil(size / n))])[:size]

    def __len__(self) -> int:
        return len(self.index)

    def without_augment(self) -> _Clips:
        return _Clips(self.x, self.y)

    def __getitem__(self, i: int):
        j = int(self.index[i])
        x = self.x[j]
        return (x if self.augment is None else self.augment(x)), self.y[j]


def _recipe(result: dict) -> str:
    """The recipe a result was written with (recipe v1 wrote none)."""
    return result.get("recipe", "v1")


def _decode(manifest: Path, classes: list[str], spec) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every clip of a manifest decoded once: tensors ``(N, C, T, H, W)``, class indices, sha256 digests."""
    rows = dl.read_manifest(manifest)
    ds = dl.ClipDataset(rows, classes=classes, spec=spec, cache=False)
    x = torch.stack([ds.tensor(i) for i in range(len(ds))])
    digests = [hashlib.sha256(Path(r["path"]).read_bytes()).hexdigest() for r in rows]
    return x, torch.tensor(ds.targets), digests


def _train(x: torch.Tensor, y: torch.Tensor, classes: list[str], spec, seed: int, root: Path, args, *,
           start=None, epochs: int | None = None):
    """The recipe: ``epochs`` (default ``args.epochs``) epochs of ``args.epoch_clips`` ``generic_augment``-ed
    clips, ``train_model``; from a fresh model, or fine-tuning a copy of ``start`` (it is left unchanged)."""
    torch.manual_seed(seed)
    model = (dl.ClipClassifier(classes=classes, spec=spec, dropout=args.dropout, lr=args.lr) if start is None
             else fine_tune_copy(start))
    augment = generic_augment(size=spec.out_size, mean=spec.mean, std=spec.std, seed=seed)
    data = _Clips(x, y, augment=augment, size=args.epoch_clips, seed=seed)
    model, _, _ = dl.train_model(model, data, epochs=epochs or args.epochs, batch_size=args.batch_size, seed=seed,
                                 root_dir=root, progress=False)
    return model


@torch.no_grad()
def _predict(model, x: torch.Tensor, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities ``(N, K)`` and embeddings ``(N, D)`` in eval mode, one pass."""
    model.eval()
    probs, embs = [], []
    for i in range(0, len(x), batch):
        logits, emb = model.logits_and_embedding(x[i : i + batch])
        probs.append(torch.softmax(logits, dim=1).double())
        embs.append(emb.double())
    return torch.cat(probs).numpy(), torch.cat(embs).numpy()


def _accuracy(model, test: tuple[torch.Tensor, torch.Tensor]) -> float:
    return float((_predict(model, test[0])[0].argmax(1) == test[1].numpy()).mean())


def normalised_auc(labels, accuracy) -> float:
    """Area under the learning curve (trapezoid) divided by the label range; the accuracy when one point.

    Example:
        >>> normalised_auc([20, 40], [0.5, 0.7])
        0.6
    """
    labels, accuracy = np.asarray(labels, dtype=float), np.asarray(accuracy, dtype=float)
    if len(labels) < 2:
        return float(accuracy[0])
    return float(np.trapezoid(accuracy, labels) / (labels[-1] - labels[0]))


def labels_to_reach(labels, accuracy, target: float) -> int | None:
    """The first label count whose accuracy is at or above ``target`` (``None`` when none is)."""
    for n, a in zip(labels, accuracy, strict=True):
        if a >= target - 1e-12:
            return int(n)
    return None


def _autolabel(arm_order: list[int], pool, test, classes, spec, seed: int, root: Path, args) -> dict:
    """Hold out a content-disjoint slice of the final labels, calibrate, threshold, label the rest of the pool."""
    x, y, digests = pool
    ids = [str(i) for i in arm_order]
    train_ids, val_ids = dl.split_ids(ids, holdout=args.val_fraction, seed=seed,
                                      groups=[digests[i] for i in arm_order])
    tr, va = np.array(train_ids, dtype=int), np.array(val_ids, dtype=int)
    model = _train(x[tr], y[tr], classes, spec, seed * 1000 + 999, root, args, epochs=args.autolabel_epochs)
    val_probs, _ = _predict(model, x[va])
    temperature = fit_temperature(val_probs, y[va].numpy())
    val_cal = apply_temperature(val_probs, temperature)
    threshold, stats = choose_threshold(val_cal.max(axis=1), val_cal.argmax(axis=1) == y[va].numpy(),
                                        target_precision=args.target_precision, min_support=args.min_support)
    rest = np.setdiff1d(np.arange(len(x)), np.asarray(arm_order))
    rest_cal = apply_temperature(_predict(model, x[rest])[0], temperature)
    take = rest_cal.max(axis=1) >= threshold if threshold is not None else np.zeros(len(rest), dtype=bool)
    correct = int((rest_cal.argmax(axis=1)[take] == y[rest].numpy()[take]).sum())
    n_auto = int(take.sum())
    low, high = exact_interval(correct, n_auto)
    return {"n_train": len(tr), "n_val": len(va), "temperature": temperature, "threshold": threshold,
            "val_support": stats["n_above"], "val_precision": stats["precision"], "val_ci_low": stats["ci_low"],
            "n_remaining": len(rest), "n_auto": n_auto, "n_correct": correct,
            "precision": correct / n_auto if n_auto else None, "ci_low": low, "ci_high": high,
            "coverage": n_auto / len(rest) if len(rest) else 0.0,
            "auto_share": n_auto / (n_auto + len(arm_order)),
            "test_accuracy": _accuracy(model, test)}


def run_arm(arm: str, dataset: str, seed: int, pool, test, classes, spec, root: Path, args,
            shared: dict | None = None) -> dict:
    """One arm's learning curve from the seed's shared start, and its auto-labelling figures.

    ``shared`` (one dict per seed) keeps the first round's model: it is the same in every arm (same
    labels, same training seed), so it is trained once.
    """
    x, y, digests = pool
    shared = {} if shared is None else shared
    t0 = time.perf_counter()
    order = [int(i) for i in np.random.default_rng(seed).permutation(len(x))[: args.start]]
    labels, accuracy, seconds = [], [], {"train": 0.0, "select": 0.0}
    rnd = 0
    while True:
        lab = np.asarray(order)
        t = time.perf_counter()
        if rnd == 0 and "model" in shared:
            model = shared["model"]
        else:
            model = _train(x[lab], y[lab], classes, spec, seed * 1000 + rnd, root, args,
                           start=None if rnd == 0 else model)
            shared.setdefault("model", model)
        seconds["train"] += time.perf_counter() - t
        labels.append(len(order))
        accuracy.append(_accuracy(model, test))
        if len(order) >= args.max_labels:
            break
        t = time.perf_counter()
        rest = np.setdiff1d(np.arange(len(x)), lab)
        probs, emb = _predict(model, x[rest])
        mc = (mc_dropout_probabilities(model, x[rest], passes=args.mc_passes, seed=seed * 1000 + rnd)
              if "mc_probabilities" in STRATEGIES[arm] else None)
        chosen = select(arm, min(args.step, args.max_labels - len(order)), probabilities=probs,
                        mc_probabilities=mc, embeddings=emb, labelled_embeddings=_predict(model, x[lab])[1],
                        seed=seed * 1000 + rnd)
        order.extend(int(rest[i]) for i in chosen.indices)
        seconds["select"] += time.perf_counter() - t
        rnd += 1
    t = time.perf_counter()
    auto = _autolabel(order, pool, test, classes, spec, seed, root, args)
    seconds["autolabel"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    return {"dataset": dataset, "seed": seed, "arm": arm, "labels": labels, "accuracy": accuracy,
            "auc": normalised_auc(labels, accuracy), "final_accuracy": accuracy[-1], "order": order,
            "autolabel": auto, "pool": len(x), "test": len(test[1]), "classes": classes,
            "epochs": args.epochs, "epoch_clips": args.epoch_clips, "recipe": RECIPE,
            "autolabel_epochs": args.autolabel_epochs, "batch_size": args.batch_size, "lr": args.lr,
            "seconds": seconds}


def _fmt(v: np.ndarray, digits: int = 3) -> str:
    sd = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.{digits}f} ± {sd:.{digits}f}"


def _ci(d: np.ndarray) -> str:
    lo, hi = bootstrap(d)
    interval = "[n/a: one seed]" if np.isnan(lo) else f"[{100 * lo:+5.1f}, {100 * hi:+5.1f}]"
    return f"{100 * d.mean():+5.1f} {interval}"


def summarise(results: list[dict], *, target_precision: float = 0.95) -> tuple[str, dict]:
    """The report (text) and the figures the goal lines use, per data set and arm."""
    lines, figures = [], {}
    for ds in dict.fromkeys(r["dataset"] for r in results):
        rs = [r for r in results if r["dataset"] == ds]
        arms = list(dict.fromkeys(r["arm"] for r in rs))
        seeds = sorted({r["seed"] for r in rs if r["arm"] == "random"})
        by = {(r["arm"], r["seed"]): r for r in rs}
        ref = [by[("random", s)] for s in seeds]
        target = float(np.mean([r["final_accuracy"] for r in ref])) if ref else float("nan")
        max_labels = ref[0]["labels"][-1] if ref else rs[0]["labels"][-1]
        lines.append(f"\n== {ds}: {len(seeds)} seeds, pool {rs[0]['pool']}, test {rs[0]['test']}, labels "
                     f"{rs[0]['labels'][0]}..{rs[0]['labels'][-1]} in {len(rs[0]['labels'])} rounds, {rs[0]['epochs']}"
                     f" epochs of {rs[0]['epoch_clips']} clips per round (recipe {_recipe(rs[0])}); "
                     f"random's mean final accuracy {target:.3f}")
        lines.append(f"  {'arm':<16} {'final accuracy':<15} {'area (AUC)':<15} {'labels to random final':<26} "
                     f"{'dAUC vs random, points [95% CI]':<32} dfinal vs random [95% CI]")
        for arm in arms:
            common = [s for s in seeds if (arm, s) in by]
            cur = [by[(arm, s)] for s in common]
            base = [by[("random", s)] for s in common]
            final, auc = np.array([r["final_accuracy"] for r in cur]), np.array([r["auc"] for r in cur])
            need = [labels_to_reach(r["labels"], r["accuracy"], target) for r in cur]
            reached = [n for n in need if n is not None]
            text = f"{np.mean(reached):.0f} ({len(reached)}/{len(need)} seeds)" if reached else "not reached"
            if reached and len(reached) < len(need):
                text += f", not reached in {len(need) - len(reached)}"
            d_auc = auc - np.array([r["auc"] for r in base])
            d_fin = final - np.array([r["final_accuracy"] for r in base])
            vs = ("-", "-") if arm == "random" else (_ci(d_auc), _ci(d_fin))
            lines.append(f"  {arm:<16} {_fmt(final):<15} {_fmt(auc):<15} {text:<26} {vs[0]:<32} {vs[1]}")
            figures[(ds, arm)] = {"d_auc": d_auc, "ci_auc": bootstrap(d_auc), "all_reached": len(reached) == len(need),
                                  "labels_needed": float(np.mean(reached)) if reached else None,
                                  "max_labels": max_labels}
        lines.append(f"  auto-labelling: model on 80 % of the final labels, temperature and threshold (precision >= "
                     f"{target_precision:.2f}) from the other 20 %, measured on the remaining pool; pooled over seeds")
        lines.append(f"  {'arm':<16} {'threshold':<15} {'auto / remaining':<18} {'precision [95% CI]':<24} "
                     f"{'coverage':<15} {'auto share of labels':<21} no threshold")
        for arm in arms:
            autos = [by[(arm, s)]["autolabel"] for s in seeds if (arm, s) in by]
            n, k = sum(a["n_auto"] for a in autos), sum(a["n_correct"] for a in autos)
            low, high = exact_interval(k, n)
            prec = k / n if n else float("nan")
            thr = np.array([a["threshold"] for a in autos if a["threshold"] is not None])
            cov = np.array([a["coverage"] for a in autos])
            share = np.array([a["auto_share"] for a in autos])
            none = sum(a["threshold"] is None for a in autos)
            remaining = sum(a["n_remaining"] for a in autos)
            lines.append(f"  {arm:<16} {(_fmt(thr) if len(thr) else '-'):<15} {f'{n} / {remaining}':<18} "
                         f"{f'{prec:.3f} [{low:.3f}, {high:.3f}]':<24} {_fmt(cov):<15} {_fmt(share):<21} {none}")
            figures[(ds, arm)].update(precision=prec, precision_low=low, coverage=float(cov.mean()))
    return "\n".join(lines), figures


def goals(figures: dict) -> str:
    """The issue's goal lines, as measured."""
    datasets = list(dict.fromkeys(ds for ds, _ in figures))
    candidates = [a for a in dict.fromkeys(a for _, a in figures) if a not in BASELINES]
    complete = [a for a in candidates if all((ds, a) in figures for ds in datasets)]
    if not complete or not all((ds, "random") in figures for ds in datasets):
        return "\ngoals: need random and at least one strategy on every data set measured"
    best = max(complete, key=lambda a: np.mean([figures[(ds, a)]["d_auc"].mean() for ds in datasets]))
    lines = [f"\nGoals ({', '.join(datasets)} measured; best strategy by mean dAUC vs random: {best})"]
    saving = []
    for ds in datasets:
        f = figures[(ds, best)]
        ok = f["all_reached"] and f["labels_needed"] <= 0.5 * f["max_labels"]
        needed = "not reached in every seed" if not f["all_reached"] else f"{f['labels_needed']:.0f} labels"
        saving.append(ok)
        lines.append(f"  {ds}: {best} reaches random's final accuracy with {needed} (goal <= "
                     f"{0.5 * f['max_labels']:.0f}, 50 % of {f['max_labels']}): {'met' if ok else 'missed'}")
    lines.append(f"  label saving on at least one data set: {'met' if any(saving) else 'missed'}")
    intervals = {ds: figures[(ds, best)]["ci_auc"] for ds in datasets}
    worse = [ds for ds, (_, hi) in intervals.items() if hi < 0]
    cis = ", ".join(f"{ds} [{100 * lo:+.1f}, {100 * hi:+.1f}]" for ds, (lo, hi) in intervals.items())
    verdict = ("missed on " + ", ".join(worse) if worse else
               "not tested (needs two or more seeds)" if any(np.isnan(lo) for lo, _ in intervals.values()) else "met")
    lines.append(f"  never significantly worse than random (dAUC 95 % CI, points: {cis}): {verdict}")
    for ds in datasets:
        f = figures[(ds, best)]
        ok = f["precision"] >= 0.95 and f["precision_low"] >= 0.92 and f["coverage"] >= 0.5
        lines.append(f"  auto-labelling on {ds} with {best}'s labels: precision {f['precision']:.3f} (CI low "
                     f"{f['precision_low']:.3f}), coverage {f['coverage']:.1%} (goal >= 0.95, >= 0.92, >= 50 %): "
                     f"{'met' if ok else 'missed'}")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> Path:
    """Mean learning curve ± sd per arm, one panel per data set; saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlabel_lab.plots import save_figure

    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.2), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        rs = [r for r in results if r["dataset"] == ds]
        for i, arm in enumerate(dict.fromkeys(r["arm"] for r in rs)):
            curves = [r for r in rs if r["arm"] == arm]
            acc = np.array([r["accuracy"] for r in curves])
            labels = curves[0]["labels"]
            mean, sd = acc.mean(axis=0), acc.std(axis=0, ddof=1) if len(acc) > 1 else np.zeros(acc.shape[1])
            ax.plot(labels, mean, color=f"C{i}", marker=".", linestyle="--" if arm in BASELINES else "-", label=arm)
            ax.fill_between(labels, mean - sd, mean + sd, color=f"C{i}", alpha=0.12)
        final = [r["final_accuracy"] for r in rs if r["arm"] == "random"]
        if final:
            ax.axhline(np.mean(final), color="grey", linestyle=":", linewidth=1, label="random's final")
        ax.set(title=f"{ds}: {len({r['seed'] for r in rs})} seeds", xlabel="labelled clips", ylabel="test accuracy")
        ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def run_dataset(dataset: str, root: Path, args, on_result, done: frozenset = frozenset()) -> None:
    """Generate and decode a data set's fixed test set once, then every seed's pool and arms.

    ``done`` holds ``(dataset, seed, arm)`` runs already written (``--json`` resumes): they are skipped.
    """
    spec = dl.ClipSpec(frames=args.frames, size=args.size)
    make = DATASETS[dataset]
    kw = {"frames": args.frames_in, "size": args.size_in}
    test_manifest = make(root / dataset / "test", args.test, seed=TEST_SEED, **kw)
    classes = sorted({r["label"] for r in dl.read_manifest(test_manifest)})
    test_x, test_y, test_digests = _decode(test_manifest, classes, spec)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        if all((dataset, seed, arm) in done for arm in args.arms):
            continue
        manifest = make(root / dataset / f"pool{seed}", args.pool, seed=seed * 10_000 + 1, **kw)
        x, y, digests = _decode(manifest, classes, spec)
        overlap = set(digests) & set(test_digests)
        if overlap:
            raise SystemExit(f"{dataset} seed {seed}: {len(overlap)} pool clips are byte-identical to test clips")
        shared: dict = {}
        for arm in args.arms:
            if (dataset, seed, arm) in done:
                continue
            on_result(run_arm(arm, dataset, seed, (x, y, digests), (test_x, test_y), classes, spec,
                              root / dataset / arm, args, shared))


def main(argv: list[str] | None = None) -> list[dict]:
    """Run (or only summarise) the benchmark; returns one result per data set, seed and arm."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=("shapes", "digits", "both"), default="both")
    ap.add_argument("--seeds", type=int, default=5, help="number of seeds")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--pool", type=int, default=600, help="unlabelled pool clips per seed")
    ap.add_argument("--test", type=int, default=300, help="clips of the fixed test set")
    ap.add_argument("--start", type=int, default=20, help="labelled clips to start from (random, shared by arms)")
    ap.add_argument("--step", type=int, default=20, help="clips labelled per round")
    ap.add_argument("--max-labels", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=8, help="epochs per round (later rounds fine-tune the last model)")
    ap.add_argument("--epoch-clips", type=int, default=320,
                    help="clips per epoch, the same at every label count (>= --max-labels)")
    ap.add_argument("--autolabel-epochs", type=int, default=30,
                    help="epochs of the auto-labelling model (trained from scratch on 80 %% of the final labels)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    ap.add_argument("--dropout", type=float, default=0.3, help="before the head, in every arm (MC-dropout needs it)")
    ap.add_argument("--mc-passes", type=int, default=8, help="MC-dropout passes for bald")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {','.join(STRATEGIES)}")
    ap.add_argument("--val-fraction", type=float, default=0.2, help="final labels held out to calibrate")
    ap.add_argument("--target-precision", type=float, default=0.95)
    ap.add_argument("--min-support", type=int, default=10, help="validation clips needed above the threshold")
    ap.add_argument("--frames", type=int, default=4, help="frames the model reads")
    ap.add_argument("--size", type=int, default=32, help="frame size the model reads")
    ap.add_argument("--frames-in", type=int, default=16, help="frames of the generated clips")
    ap.add_argument("--size-in", type=int, default=64, help="size of the generated clips")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="append raw results here (JSON lines)")
    ap.add_argument("--plot", type=Path, default=None, help="save the learning curves here (png, svg, pdf)")
    ap.add_argument("--summarise", type=Path, nargs="+", default=None,
                    help="only summarise results already written with --json (e.g. by processes in parallel)")
    args = ap.parse_args(argv)
    if args.summarise:
        results = [json.loads(line) for f in args.summarise for line in f.read_text().splitlines() if line.strip()]
        recipes = sorted({_recipe(r) for r in results})
        if len(recipes) > 1:
            ap.error(f"the files mix results of recipes {recipes}; summarise one recipe at a time")
    else:
        args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
        unknown = sorted(set(args.arms) - set(STRATEGIES))
        if unknown or "random" not in args.arms:
            ap.error(f"arms must include random (the baseline) and come from {sorted(STRATEGIES)}; got {unknown}")
        if not 2 <= args.start < args.max_labels <= args.pool or args.step < 1:
            ap.error("need 2 <= --start < --max-labels <= --pool and --step >= 1")
        if args.epoch_clips < args.max_labels:
            ap.error("--epoch-clips must be >= --max-labels, so that every epoch shows every labelled clip")
        warnings.filterwarnings("ignore")
        logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
        torch.set_num_threads(args.threads)
        datasets = list(DATASETS) if args.dataset == "both" else [args.dataset]
        results = []
        t0 = time.perf_counter()

        def on_result(r: dict) -> None:
            results.append(r)
            a = r["autolabel"]
            prec = "-" if a["precision"] is None else f"{a['precision']:.3f}"
            print(f"{r['dataset']} seed {r['seed']} {r['arm']:<16} final {r['final_accuracy']:.3f} AUC {r['auc']:.3f} "
                  f"auto {a['n_auto']}/{a['n_remaining']} precision {prec}  ({r['seconds']['total']:.0f} s: train "
                  f"{r['seconds']['train']:.0f}, select {r['seconds']['select']:.0f}, auto-label "
                  f"{r['seconds']['autolabel']:.0f})", flush=True)
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps(r) + "\n")

        done = set()
        if args.json and args.json.exists():  # resume: arm runs already written are not run again
            for line in args.json.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    if _recipe(r) != RECIPE:
                        ap.error(f"{args.json} holds results of recipe {_recipe(r)!r}, this script runs "
                                 f"{RECIPE!r}; write to a new file")
                    results.append(r)
                    done.add((r["dataset"], r["seed"], r["arm"]))
            print(f"resuming: {len(done)} arm runs already in {args.json}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            for ds in datasets:
                run_dataset(ds, Path(tmp), args, on_result, frozenset(done))
        print(f"\n{len(results)} arm runs in {time.perf_counter() - t0:.0f} s")
    text, figures = summarise(results, target_precision=args.target_precision)
    print(text)
    print(goals(figures))
    if args.plot:
        print(f"learning curves: {plot(results, args.plot)}")
    return results


if __name__ == "__main__":
    main()
