"""``dlabel-lab demo``: the whole loop on generated clips, start to finish.

Generates clean training clips and drifted operational clips, trains v1,
deploys both endpoints, scores the operational clips with their labels as
user scores, matches, evaluates, runs the attribution → parameters →
retraining loop, and prints a before/after table and the lineage of the
newest version. Plots are written next to the store.

Example:
    $ dlabel-lab demo --store runs/demo
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .errors import ConfigError


def add_demo_parser(sub, *, whole_number) -> None:
    """Add the ``demo`` sub-command; ``whole_number(minimum)`` is the CLI's checked integer type."""
    d = sub.add_parser("demo", help="run the whole loop on generated sample clips")
    d.add_argument("--store", default="dlabel_store", help="store folder (replaced if it holds an earlier demo)")
    d.add_argument("--train-clips", type=whole_number(4), default=60)
    d.add_argument("--ops-clips", type=whole_number(4), default=72)
    d.add_argument("--epochs", type=whole_number(1), default=30)
    d.add_argument("--retrain-epochs", type=whole_number(1), default=15)
    d.add_argument("--iterations", type=whole_number(1), default=2)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--fast", action="store_true", help="tiny sizes for a smoke test")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=run_demo_command)


def _fresh(store_dir: Path) -> None:
    if store_dir.exists():
        marker = store_dir / "store.duckdb"
        if not marker.exists() and any(store_dir.iterdir()):
            raise ConfigError(f"{store_dir} exists and is not a dlabel store; pass another --store folder")
        shutil.rmtree(store_dir)
    store_dir.mkdir(parents=True)


def run_demo_command(args) -> int:
    fast = args.fast or os.environ.get("DLABEL_FAST") == "1"
    summary = run_demo(
        Path(args.store),
        train_clips=12 if fast else args.train_clips,
        ops_clips=18 if fast else args.ops_clips,
        epochs=2 if fast else args.epochs,
        retrain_epochs=2 if fast else args.retrain_epochs,
        iterations=1 if fast else args.iterations,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(f"\ndone in {summary['seconds']:.0f} s; store: {summary['store']}; plots: {summary['plots']}")
    return 0


def run_demo(store_dir: Path, *, train_clips: int = 48, ops_clips: int = 72, epochs: int = 10,
             retrain_epochs: int = 8, iterations: int = 2, seed: int = 0, progress: bool = True) -> dict:
    """Run the demo loop into ``store_dir``; return a summary dict."""
    import pandas as pd

    from .evaluation import evaluate
    from .loop import train_initial
    from .media.samples import make_shape_clips, read_manifest
    from .plots import plot_confusion, plot_learning_curves, plot_reliability, save_figure
    from .serving.endpoints import deploy_version
    from .store.payload_store import PayloadStore

    t0 = time.perf_counter()
    store_dir = Path(store_dir)
    _fresh(store_dir)
    plots = store_dir / "plots"
    classes = ["circle", "square", "triangle"]
    print(f"[1/6] generating {train_clips} clean and {ops_clips} drifted clips", flush=True)
    train_manifest = make_shape_clips(store_dir / "clips" / "train", train_clips, seed=seed)
    ops_manifest = make_shape_clips(store_dir / "clips" / "operational", ops_clips, seed=seed + 1,
                                    drift="operational")
    with PayloadStore(store_dir) as store:
        print("[2/6] training v1 on the clean clips", flush=True)
        v1 = train_initial(store, train_manifest, name="shapes", classes=classes, epochs=epochs, seed=seed,
                           progress=progress)
        save_figure(plot_learning_curves(v1.history), plots / "v1_learning_curves.png")
        print(f"[3/6] deploying {v1.version} and scoring the operational clips with their user scores", flush=True)
        ingest = deploy_version(store, v1.version)
        ops = read_manifest(ops_manifest)
        results = ingest.score_many([r["path"] for r in ops], [r["label"] for r in ops], progress=progress)
        print(f"      {len(results)} scored, {sum(r.ok for r in results)} ok", flush=True)
        print("[4/6] matching and evaluating", flush=True)
        matched = store.matched(model_version=v1.version).df()
        ev1 = evaluate(matched, classes=classes)
        print(ev1.table().to_string())
        save_figure(plot_confusion(ev1.confusion, classes), plots / "v1_confusion.png")
        save_figure(plot_reliability(matched["confidence"].to_numpy(),
                                     (matched["predicted_label"] == matched["user_label"]).to_numpy()),
                    plots / "v1_reliability.png")
        print(f"[5/6] the loop: {iterations} iteration(s) of evaluate -> attribute -> derive -> retrain", flush=True)
        newest = _improve(store, v1.version, iterations=iterations, epochs=retrain_epochs, seed=seed,
                          progress=progress, plots=plots)
        print("[6/6] before/after and lineage", flush=True)
        table = newest["table"]
        with pd.option_context("display.width", 140, "display.max_columns", 20):
            print(table.to_string(index=False))
        print(f"deployed: {newest['deployed']}")
        _print_lineage(store.lineage(newest["version"]))
    return {"seconds": time.perf_counter() - t0, "store": str(store_dir), "plots": str(plots),
            "newest": newest["version"], "table": table}


def _improve(store, parent: str, *, iterations: int, epochs: int, seed: int, progress: bool, plots: Path) -> dict:
    """The attribution loop; the table compares every child with its parent on the same held-out ids."""
    from .loop import run_loop

    report = run_loop(store, from_version=parent, iterations=iterations, epochs=epochs, seed=seed,
                      progress=progress, plots_dir=plots)
    last = report.iterations[-1].child
    print("\nderived transformation parameters (last iteration):")
    desc = report.iterations[-1].params.describe()
    print(desc[["parameter", "value", "source", "supported"]].to_string(index=False))
    print(f"\n{last.version} vs its parent {last.parent} on the same {len(last.holdout_ids)} held-out ids:")
    print(last.comparison.round(3).to_string())
    return {"version": last.version, "deployed": report.newest, "table": report.table()}


def _print_lineage(lineage: dict) -> None:
    model = lineage.get("model", {})
    print(f"\nlineage of {lineage.get('model_version')}: {' <- '.join(lineage.get('chain', []))}")
    print(f"  checkpoint : {model.get('checkpoint_path')} (sha256 {str(model.get('checkpoint_sha256'))[:16]}...)")
    dataset = lineage.get("dataset") or {}
    if dataset:
        print(f"  dataset    : {dataset.get('version')} with {dataset.get('n_members')} labelled clips "
              f"{dict(dataset.get('label_counts') or {})}")
    params = lineage.get("params") or {}
    tp = params.get("transformation_params") if isinstance(params, dict) else None
    if tp:
        shown = {k: v for k, v in tp.items() if k not in ("evidence", "schema", "seed") and v not in (None, {}, 1, 0.8)}
        print(f"  params     : {shown}")
    training = params.get("training") if isinstance(params, dict) else None
    if training:
        print(f"  training   : { {k: v for k, v in training.items() if k != 'params'} }")
    for ev in lineage.get("evaluations") or []:
        m = ev.get("metrics") or {}
        if "accuracy" in m:
            print(f"  evaluated  : {ev.get('split')}: accuracy {m['accuracy']:.3f}, macro-F1 "
                  f"{m.get('macro_f1', float('nan')):.3f} on {ev.get('n_scoring_ids')} scoring ids")
