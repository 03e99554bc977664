"""The ``dlabel-lab`` command.

Example:
    $ dlabel-lab demo --store runs/demo
    $ dlabel-lab ingest runs/demo data/shapes/operational/labels.csv
    $ dlabel-lab retrain runs/demo --loop 2
    $ dlabel-lab versions runs/demo --lineage shapes-v3
    $ dlabel-lab export runs/demo runs/parquet
    $ dlabel-lab samples data
    $ dlabel-lab read data/shapes/train
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import DLabelError


def _cmd_samples(args) -> int:
    from .media.samples import write_sample_data

    for name, manifest in write_sample_data(args.root).items():
        print(f"{name:<22} {manifest}")
    return 0


def _cmd_read(args) -> int:
    from .media.samples import read_manifest
    from .media.video import ClipSpec, clip_stats, read_clip, to_tensor

    spec = ClipSpec(frames=args.frames, size=args.size)
    rows = read_manifest(args.manifest)
    print(f"{'clip':<18}{'label':<10}{'codec':<6}{'frames':>7}{'fps':>6}{'size':>9}  {'bright':>6}{'contr':>6}"
          f"{'motion':>7}{'blur':>6}")
    for r in rows[: args.limit]:
        clip = read_clip(r["path"], spec)
        x, _ = to_tensor(clip)
        s = clip_stats(clip)
        print(f"{Path(r['path']).name:<18}{r['label']:<10}{clip.codec:<6}{clip.frame_count:>7}{clip.fps:>6.1f}"
              f"{clip.width:>5}x{clip.height:<3}  {s.brightness:>6.2f}{s.contrast:>6.2f}{s.motion:>7.3f}{s.blur:>6.2f}"
              f"  -> tensor {tuple(x.shape)}")
    return 0


def _cmd_ingest(args) -> int:
    from .media.samples import read_manifest
    from .serving.endpoints import deploy_version
    from .store.payload_store import PayloadStore

    rows = read_manifest(args.manifest)
    with PayloadStore(args.store) as store:
        version = args.version or _newest(store)
        results = deploy_version(store, version).score_many(
            [r["path"] for r in rows], None if args.no_labels else [r["label"] for r in rows],
            on_error="skip" if args.skip_bad else "raise", progress=not args.no_progress)
        right = sum(bool(r.correct) for r in results)
        labelled = sum(r.correct is not None for r in results)
        print(f"scored {len(results)} of {len(rows)} clips with {version}"
              + (f"; {right} of {labelled} agree with their user scores" if labelled else ""))
    return 0


def _cmd_retrain(args) -> int:
    from .loop import retrain, run_loop
    from .store.payload_store import PayloadStore

    with PayloadStore(args.store) as store:
        if args.loop:
            report = run_loop(store, from_version=args.from_version, iterations=args.loop, epochs=args.epochs,
                              seed=args.seed, progress=not args.no_progress)
            print(report.table().to_string(index=False))
            print(f"deployed: {report.newest}")
        else:
            child = retrain(store, args.from_version, epochs=args.epochs, seed=args.seed,
                            progress=not args.no_progress)
            print(f"{child.version} (from {child.parent}) on {len(child.holdout_ids)} held-out ids:")
            print(child.comparison.round(3).to_string())
    return 0


def _cmd_export(args) -> int:
    from .store.payload_store import PayloadStore

    with PayloadStore(args.store, read_only=True) as store:
        out = store.export_parquet(args.out)
    print(f"matched data written as Hive-partitioned Parquet under {out}")
    return 0


def _cmd_versions(args) -> int:
    from .store.payload_store import PayloadStore

    with PayloadStore(args.store, read_only=True) as store:
        versions = store.model_versions()
        if versions.empty:
            print("no model versions yet")
            return 0
        cols = [c for c in ("model_version", "parent", "dataset_version", "created_at") if c in versions]
        print(versions[cols].to_string(index=False))
        if args.lineage:
            lineage = store.lineage(args.lineage)
            print(f"\nlineage of {args.lineage}: {' <- '.join(lineage['chain'])}")
            for ev in lineage.get("evaluations") or []:
                acc = (ev.get("metrics") or {}).get("accuracy")
                if acc is not None:
                    print(f"  {ev['split']}: accuracy {acc:.3f} on {ev.get('n_scoring_ids')} ids")
    return 0


def _newest(store) -> str:
    from .errors import ConfigError

    versions = store.model_versions()
    if versions.empty:
        raise ConfigError("the store has no model version; run `dlabel-lab demo` or train one first")
    return str(versions.iloc[-1]["model_version"])


def whole_number(minimum: int):
    """An argparse type for whole numbers >= ``minimum``, checked before anything heavy is imported."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum of {minimum}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dlabel-lab", description="The data-labelling loop for video models.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("samples", help="write the sample clips (shapes, drifted shapes, digits)")
    s.add_argument("root", nargs="?", default="data")
    s.set_defaults(func=_cmd_samples)
    r = sub.add_parser("read", help="read the clips of a manifest and report them")
    r.add_argument("manifest")
    r.add_argument("--frames", type=whole_number(1), default=8)
    r.add_argument("--size", type=whole_number(8), default=112)
    r.add_argument("--limit", type=whole_number(1), default=12)
    r.set_defaults(func=_cmd_read)
    i = sub.add_parser("ingest", help="score a manifest's clips (with their labels as user scores) into a store")
    i.add_argument("store")
    i.add_argument("manifest")
    i.add_argument("--version", help="model version to serve (default: the newest)")
    i.add_argument("--no-labels", action="store_true", help="do not forward the manifest labels as user scores")
    i.add_argument("--skip-bad", action="store_true", help="skip unreadable clips instead of stopping")
    i.add_argument("--no-progress", action="store_true")
    i.set_defaults(func=_cmd_ingest)
    t = sub.add_parser("retrain", help="retrain the newest (or a given) version on the store's labelled clips")
    t.add_argument("store")
    t.add_argument("--from", dest="from_version")
    t.add_argument("--epochs", type=whole_number(1), default=15)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--loop", type=whole_number(0), default=0, metavar="N",
                   help="run N attribution-loop iterations instead")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_cmd_retrain)
    e = sub.add_parser("export", help="export the matched data set as Hive-partitioned Parquet")
    e.add_argument("store")
    e.add_argument("out")
    e.set_defaults(func=_cmd_export)
    v = sub.add_parser("versions", help="list model versions (and one version's lineage)")
    v.add_argument("store")
    v.add_argument("--lineage", metavar="VERSION")
    v.set_defaults(func=_cmd_versions)
    from .demo import add_demo_parser

    add_demo_parser(sub, whole_number=whole_number)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dlabel-lab`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DLabelError as e:
        print(f"dlabel-lab: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
