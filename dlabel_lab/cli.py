"""The ``dlabel-lab`` command.

Example:
    $ dlabel-lab train runs/mine data/shapes/train/labels.csv --name shapes --epochs 20
    $ dlabel-lab demo --store runs/demo
    $ dlabel-lab ingest runs/demo data/shapes/operational/labels.csv
    $ dlabel-lab retrain runs/demo --loop 2
    $ dlabel-lab versions runs/demo --lineage shapes-v3
    $ dlabel-lab suggest runs/demo --budget 20
    $ dlabel-lab estimate runs/demo --budget 100 --sampler failure-seeking
    $ dlabel-lab export runs/demo runs/parquet
    $ dlabel-lab export runs/demo exports/ls --format labelstudio --model-version shapes-v1
    $ dlabel-lab import runs/other exports/ls --format labelstudio
    $ dlabel-lab verify runs/demo
    $ dlabel-lab report runs/demo --kind model --model-version shapes-v2
    $ dlabel-lab convert runs/demo --model-version shapes-v2 --to int8
    $ dlabel-lab samples data
    $ dlabel-lab read data/shapes/train
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import ConfigError, DLabelError


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
    from .media.samples import check_manifest, read_manifest

    # Everything checkable without the store comes first: PayloadStore(path) creates its folder.
    rows, skipped = check_manifest(args.manifest, root=args.root, line_numbers=True)
    if skipped and not args.skip_bad:
        read_manifest(args.manifest, root=args.root)  # raises the typed error of the first bad row
    manifest = Path(args.manifest)
    manifest = manifest / "labels.csv" if manifest.is_dir() else manifest
    total = len(rows) + len(skipped)
    if not rows:
        _print_skipped(manifest, skipped)
        raise ConfigError(f"no row of {manifest} can be ingested ({len(skipped)} bad rows, listed above); "
                          "fix the manifest")
    _require_store(args.store)

    from .serving.endpoints import deploy_version
    from .store.payload_store import PayloadStore

    with PayloadStore(args.store) as store:
        version = args.model_version or _newest(store)
        ingest = deploy_version(store, version)
        params = {"manifest": str(manifest.resolve()), "model_version": version, "rows": total,
                  "skip_bad": bool(args.skip_bad), "labels": not args.no_labels}
        run_id = store.start_run("ingest", params, model_version=version)
        try:
            results = _ingest_rows(ingest, rows, manifest, skipped, args)
        except BaseException as error:
            store.finish_run(run_id, status="failed", error=error, result=_ingest_result([], skipped))
            raise
        finally:
            _print_skipped(manifest, skipped)
        store.finish_run(run_id, result=_ingest_result(results, skipped))
    right = sum(bool(r.correct) for r in results)
    labelled = sum(r.correct is not None for r in results)
    print(f"scored {len(results)} of {total} clips with {version}"
          + (f"; {right} of {labelled} agree with their user scores" if labelled else "")
          + (f"; {len(skipped)} rows skipped" if skipped else ""))
    return 0


def _print_skipped(manifest: Path, skipped: list[dict]) -> None:
    for problem in sorted(skipped, key=lambda p: p["row"]):
        print(f"skipped {manifest} line {problem['row']}: {problem['path']}: {problem['reason']}")


def _ingest_rows(ingest, rows: list[dict], manifest: Path, skipped: list[dict], args) -> list:
    """Score manifest rows; every clip that cannot be read is named by its manifest line.

    Bad rows are appended to ``skipped`` with ``--skip-bad``; without it the clips
    before the first bad one are scored and it raises its own error type, its
    message naming the manifest and the line.
    """
    from .errors import MediaError, UnknownLabel

    def bad(row: dict, reason: str, error: Exception) -> None:
        if not args.skip_bad:
            message = f"{manifest} line {row['row']}: {reason}"
            try:
                typed = type(error)(message)
            except TypeError:  # an error type with a constructor of its own
                typed = MediaError(message)
            raise typed from None
        skipped.append({"row": row["row"], "path": row["given"], "reason": reason})

    base = manifest.parent
    for r in rows:
        path = Path(r["path"])
        r["given"] = str(path.relative_to(base.resolve())) if path.is_relative_to(base.resolve()) else r["path"]
    good = []
    for r in rows:
        if not args.no_labels and r["label"] not in ingest.classes:
            bad(r, f"label {r['label']!r} is not one of the model's classes {ingest.classes}",
                UnknownLabel(r["label"]))
        else:
            good.append(r)
    failures: list = []
    results = ingest.score_many([r["path"] for r in good], None if args.no_labels else [r["label"] for r in good],
                                on_error="skip" if args.skip_bad else "stop", failures=failures,
                                progress=not args.no_progress)
    for index, error in failures:
        r = good[index]
        bad(r, f"clip {r['path']}: {type(error).__name__}: {error}", error)
    skipped.sort(key=lambda p: p["row"])
    return results


def _ingest_result(results: list, skipped: list[dict], limit: int = 1000) -> dict:
    failed = [{"scoring_id": r.scoring_id, "error": r.error} for r in results if not r.ok]
    return {"scored": len(results), "model_failed": failed[:limit], "skipped": skipped[:limit],
            "skipped_total": len(skipped)}


def _cmd_train(args) -> int:
    from .media.samples import read_manifest
    from .media.video import ClipSpec
    from .store.payload_store import PayloadStore
    from .train.training import train_initial

    # The manifest and the options are checked before the store is opened (opening creates its folder).
    rows = read_manifest(args.manifest)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    found = sorted({r["label"] for r in rows})
    if classes is not None:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise ConfigError(f"the manifest has labels {unknown} that are not among --classes {classes}; "
                              "add them to --classes or fix the manifest")
    if len(classes or found) < 2:
        raise ConfigError(f"a classifier needs at least two classes; the manifest has {found}. Label clips of "
                          "at least two classes first.")
    spec = ClipSpec(frames=args.frames, size=args.size)
    with PayloadStore(args.store) as store:
        v = train_initial(store, args.manifest, name=args.name, classes=classes, backbone=args.backbone, spec=spec,
                          epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                          progress=not args.no_progress)
        final = v.history.iloc[-1].to_dict() if len(v.history) else {}
    shown = ", ".join(f"{k} {float(val):.3f}" for k, val in final.items() if k != "epoch" and isinstance(val, float))
    print(f"{v.version}: {len(rows)} clips, {args.epochs} epochs{'; ' + shown if shown else ''}")
    print(f"checkpoint: {v.checkpoint_path}")
    print(f"next: dlabel-lab ingest {args.store} NEW_CLIPS/labels.csv --model-version {v.version}")
    return 0


def _cmd_retrain(args) -> int:
    from .loop import retrain, run_loop
    from .store.payload_store import PayloadStore

    _require_store(args.store)
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

    _require_store(args.store)
    if args.format == "parquet":  # the one export a running service can give too
        with _read_store(args.store) as store:
            filters = {"model_version": args.model_version} if args.model_version else {}
            out = store.export_parquet(args.out, **filters)
        print(f"matched data written as Hive-partitioned Parquet under {out}")
        return 0
    with PayloadStore(args.store, read_only=True) as store:
        from .interop.api import export_labels
        from .interop.from_store import collect

        out = export_labels(store, args.out, format=args.format, model_version=args.model_version, media=args.media)
        summary = collect(store, model_version=args.model_version).summary()
    print(f"{args.format} export written: {out} ({summary}; clips {'copied' if args.media == 'copy' else 'linked'} "
          f"into {Path(args.out) / 'media'})")
    return 0


def _cmd_import(args) -> int:
    from .interop.api import import_labels
    from .models.registry import is_detector
    from .serving.detection import deploy_detector
    from .serving.endpoints import deploy_version
    from .store.payload_store import PayloadStore

    _require_store(args.store)
    with PayloadStore(args.store) as store:
        version = args.model_version or _newest(store)
        info = store.get_model(version)
        endpoint = deploy_detector(store, version) if is_detector(info) else deploy_version(store, version)
        report = import_labels(endpoint, args.file, format=args.format, on_error="skip" if args.skip_bad else "raise",
                               progress=not args.no_progress)
    for index, media, error in report.failures:
        print(f"skipped clip {index} ({media}): {error}")
    print(report.summary() + f" (scored with {version})")
    return 0


def _show_or_export(table, out: str | None, cols: list[str], *, what: str, digits: int) -> None:
    """Print a queue of clips (some columns), or write all of it as CSV to ``out``."""
    if out:
        table.to_csv(Path(out), index=False)
        print(f"{len(table)} clips {what} written to {out}")
    else:
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.{digits}f}"))


def _cmd_suggest(args) -> int:
    from .labeling.suggest import suggest

    _require_store(args.store)
    with _read_store(args.store, read_only=False) as store:  # the query is recorded (by the service, if one runs)
        version = args.model_version or _newest(store)
        queue = suggest(store, version, args.budget, strategy=args.strategy, seed=args.seed)
        table = queue.table
        _show_or_export(table, args.out, ["rank", "scoring_id", "score", "predicted_label", "confidence", "reason"],
                        what="to label next", digits=3)
        print(f"query {queue.run_id}: {args.strategy} over {queue.pool_size} unlabelled clips scored by {version}")
        stop = queue.stop
        kappas = ", ".join(f"{k:.3f}" for k in stop.kappas) or "none yet"
        print(f"should stop: {'yes' if queue.should_stop else 'no'} ({stop.reason}; kappas between successive "
              f"versions on {stop.n_stop_set} stop-set clips: {kappas})")
    return 0


def _cmd_estimate(args) -> int:
    from .estimate.api import estimate_accuracy

    _require_store(args.store)
    with _read_store(args.store, read_only=False) as store:  # the sample is recorded (by the service, if one runs)
        version = args.model_version or _newest(store)
        got = estimate_accuracy(store, version, budget=args.budget, sampler=args.sampler, method=args.method,
                                oracle=args.oracle, seed=args.seed)
        if not got.ready:
            table = got.missing
            _show_or_export(table, args.out, ["scoring_id", "draws", "inclusion_probability", "media_path"],
                            what="to label for the estimate", digits=4)
            print(f"sample {got.run_id}: {got.sampler} over {got.population_size} clips scored by {version}; "
                  f"{len(table)} of its clips need a person's label (source {got.label_source!r}); run the same "
                  "command again once they are labelled")
            return 0
        print(f"{version}: accuracy {got.point:.3f}, {got.confidence:.0%} interval [{got.low:.3f}, {got.high:.3f}] "
              f"from {got.labels_used} labels ({got.method}, {got.sampler} sample, oracle {got.oracle})")
    return 0


def _cmd_report(args) -> int:
    from .store.payload_store import PayloadStore

    _require_store(args.store)
    reports = Path(args.store) / "reports"
    if args.kind == "data":
        from .quality.data_report import data_report

        with PayloadStore(args.store, read_only=True) as store:
            report = data_report(store, model_version=args.model_version, progress=not args.no_progress)
        out = Path(args.out) if args.out else reports / "data_report.html"
    else:
        from .quality.model_report import model_report

        with PayloadStore(args.store) as store:  # the report is stored with the version
            version = args.model_version or _newest(store)
            report = model_report(store, version, robustness_clips=args.robustness_clips,
                                  progress=not args.no_progress)
        out = Path(args.out) if args.out else reports / f"model_report_{version}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    report.to_html(out)
    print(report.summary())
    print(f"{args.kind} report written: {out}")
    return 0


def _cmd_convert(args) -> int:
    from .quality.convert import export_onnx, quantize_int8
    from .store.payload_store import PayloadStore

    _require_store(args.store)
    with PayloadStore(args.store) as store:
        version = args.model_version or _newest(store)
        if args.to == "onnx":
            done = export_onnx(store, version, opset=args.opset, tolerance=args.tolerance)
        else:
            done = quantize_int8(store, version, method=args.method)
    parity = "" if done.parity is None else f", max abs difference {done.parity:.2e} on held-out clips"
    print(f"{done.version} ({done.method}, {done.size_bytes:,} bytes{parity}) registered as a child of {done.parent}; "
          f"serve it with dlabel-lab ingest {args.store} MANIFEST --model-version {done.version}")
    return 0


def _cmd_objects(args) -> int:
    from .store.payload_store import PayloadStore

    _require_store(args.store)
    frame_range = tuple(args.frames) if args.frames else None
    with PayloadStore(args.store, read_only=True) as store:
        table = store.objects_df(model=args.model, model_version=args.model_version, label=args.label,
                                 min_confidence=args.min_confidence, max_confidence=args.max_confidence,
                                 track_id=args.track, frame_range=frame_range)  # fmt: skip
    if args.out:
        table.to_csv(Path(args.out), index=False)
        print(f"{len(table)} objects written to {args.out}")
    elif table.empty:
        print("no objects match")
    else:
        cols = ["scoring_id", "model_version", "frame_index", "label", "score", "track_id", "x1", "y1", "x2", "y2"]
        print(table[cols].head(args.limit).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        print(f"{len(table)} objects in {table['scoring_id'].nunique()} clips"
              + (f" (first {args.limit} shown; --out writes all)" if len(table) > args.limit else ""))
    return 0


def _read_store(path: str, *, read_only: bool = True):
    """The store (read-only by default), or, while a scoring service owns it, a client of that service."""
    from .errors import StoreLocked
    from .store.lock import describe_holder
    from .store.payload_store import PayloadStore

    try:
        return PayloadStore(path, read_only=read_only)
    except StoreLocked:
        url = describe_holder(Path(path).expanduser().resolve()).get("service")
        if not url:
            raise
        from .serving.client import connect

        print(f"note: a scoring service owns {path}; going through it at {url}", file=sys.stderr)
        return connect(url)


def _cmd_serve(args) -> int:
    from .remote import serve

    def ready(url: str) -> None:
        print(f"serving {args.store} at {url} (OpenAPI schema at {url}/openapi.json); Ctrl-C stops", flush=True)

    try:
        serve(args.store, host=args.host, port=args.port, token=args.token, allow_roots=args.allow_root or (),
              cors_origins=args.cors_origin or (), model_version=args.model_version, on_ready=ready,
              log_level="info" if args.access_log else "warning")
    except KeyboardInterrupt:  # Ctrl-C: uvicorn finished the requests in flight and the store is closed
        pass
    print(f"stopped; {args.store} is closed", flush=True)
    return 0


def _cmd_versions(args) -> int:
    _require_store(args.store)
    with _read_store(args.store) as store:
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


def _cmd_verify(args) -> int:
    from .errors import SchemaVersionError, StoreCorrupt, StoreError
    from .store.payload_store import PayloadStore

    if not Path(args.store, "store.duckdb").is_file():  # never create a store just to verify it
        raise StoreError(f"there is no payload store at {args.store} (no store.duckdb). Check the path.")
    try:  # writable, to record the results (matched().media_ok)
        store = PayloadStore(args.store)
    except (StoreCorrupt, SchemaVersionError):
        raise
    except StoreError as error:  # readers hold it (StoreLocked), or the folder is read-only: report only
        print(f"note: cannot open the store for writing ({type(error).__name__}); verifying read-only, "
              "results not recorded", file=sys.stderr)
        store = PayloadStore(args.store, read_only=True)
    with store:
        report = store.verify()
    print(report.summary())
    return 0 if report.ok else 1


def _require_store(store: str) -> None:
    """Refuse a folder that holds no store before anything opens (and so creates) one."""
    if not (Path(store).expanduser() / "store.duckdb").is_file():
        raise ConfigError(f"{store} is not a payload store (no store.duckdb in it); create one first by "
                          f"training a model into it or with `dlabel-lab demo --store {store}`")


def _newest(store) -> str:

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


class _HelpWithDefaults(argparse.HelpFormatter):
    """Help that shows each option's default, where it has one and the text does not already say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


def _model_version_option(parser, help_text: str) -> None:
    """``--model-version`` (``--version`` still accepted, hidden: it read like the program's version)."""
    parser.add_argument("--model-version", dest="model_version", metavar="VERSION", help=help_text)
    parser.add_argument("--version", dest="model_version", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dlabel-lab", description="The data-labelling loop for video models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = {"formatter_class": _HelpWithDefaults}
    s = sub.add_parser("samples", help="write the sample clips (shapes, drifted shapes, digits)", **fmt)
    s.add_argument("root", nargs="?", default="data", help="folder to write the sample clips and manifests into")
    s.set_defaults(func=_cmd_samples)
    r = sub.add_parser("read", help="read the clips of a manifest and report them", **fmt)
    r.add_argument("manifest", help="a labels.csv manifest (or its folder)")
    r.add_argument("--frames", type=whole_number(1), default=8, help="frames sampled per clip")
    r.add_argument("--size", type=whole_number(8), default=112, help="frame size in pixels")
    r.add_argument("--limit", type=whole_number(1), default=12, help="clips to report")
    r.set_defaults(func=_cmd_read)
    n = sub.add_parser("train", help="train a first model version on your own labelled clips", **fmt,
                       description="Train v1 of a model on a labelled manifest (columns path, label) and register "
                                   "it in a store (created if missing), ready to serve with `ingest`.")
    n.add_argument("store", help="payload store folder (created if missing)")
    n.add_argument("manifest", help="a labels.csv manifest (columns path, label; or its folder)")
    n.add_argument("--name", default="model", help="registry name: versions are NAME-v1, NAME-v2, ...")
    n.add_argument("--classes", help="comma-separated class names (default: the manifest's labels, sorted)")
    n.add_argument("--backbone", default="tiny3d", help="backbone of the classifier (see dlabel_lab.BACKBONES)")
    n.add_argument("--frames", type=whole_number(1), default=8, help="frames the model reads per clip")
    n.add_argument("--size", type=whole_number(8), default=64, help="frame size the model reads, in pixels")
    n.add_argument("--epochs", type=whole_number(1), default=8, help="training epochs")
    n.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    n.add_argument("--batch-size", type=whole_number(1), default=8, help="clips per batch")
    n.add_argument("--seed", type=int, default=0, help="seed of everything")
    n.add_argument("--no-progress", action="store_true", help="no progress bar")
    n.set_defaults(func=_cmd_train)
    i = sub.add_parser("ingest", help="score a manifest's clips (with their labels as user scores) into a store",
                       **fmt)
    i.add_argument("store", help="payload store folder (holding a model version)")
    i.add_argument("manifest", help="a labels.csv manifest of the clips to score (or its folder)")
    _model_version_option(i, "model version to serve (default: the newest)")
    i.add_argument("--no-labels", action="store_true", help="do not forward the manifest labels as user scores")
    i.add_argument("--skip-bad", action="store_true",
                   help="skip bad manifest rows and unreadable clips (each is printed and logged) instead of stopping")
    i.add_argument("--root", help="folder the manifest's clip paths must stay inside (default: the manifest's folder)")
    i.add_argument("--no-progress", action="store_true", help="no progress bar")
    i.set_defaults(func=_cmd_ingest)
    t = sub.add_parser("retrain", help="retrain the newest (or a given) version on the store's labelled clips", **fmt)
    t.add_argument("store", help="payload store folder")
    t.add_argument("--from", dest="from_version", metavar="VERSION", help="parent version (default: the newest)")
    t.add_argument("--epochs", type=whole_number(1), default=15, help="training epochs")
    t.add_argument("--seed", type=int, default=0, help="seed of everything")
    t.add_argument("--loop", type=whole_number(0), default=0, metavar="N",
                   help="run N iterations of evaluate -> attribute -> derive -> retrain instead of one retrain")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_retrain)
    e = sub.add_parser("export", help="export labels, boxes and tracks to COCO, Label Studio, CVAT, FiftyOne or "
                       "Parquet", **fmt)
    e.add_argument("store", help="payload store folder")
    e.add_argument("out", help="export folder (clips are placed under OUT/media)")
    e.add_argument("--format", choices=("coco", "labelstudio", "cvat", "fiftyone", "parquet"), default="parquet",
                   help="file format (parquet: the matched data set, Hive-partitioned)")
    _model_version_option(e, "also export this model version's predictions (pre-annotations)")
    e.add_argument("--media", choices=("copy", "link"), default="copy",
                   help="copy the clips into the export folder, or hard-link them (same file system)")
    e.set_defaults(func=_cmd_export)
    m = sub.add_parser("import", help="import a COCO, Label Studio, CVAT or FiftyOne export: clips through the "
                       "ingest endpoint, labels as user scores, boxes as people's boxes", **fmt)
    m.add_argument("store", help="payload store folder (holding a model version)")
    m.add_argument("file", help="the label file, or the export folder holding it")
    m.add_argument("--format", choices=("coco", "labelstudio", "cvat", "fiftyone"), required=True, help="file format")
    _model_version_option(m, "model version (classifier or detector) to ingest through (default: the newest)")
    m.add_argument("--skip-bad", action="store_true",
                   help="import every readable clip and list the others instead of failing at the end")
    m.add_argument("--no-progress", action="store_true", help="no progress bar")
    m.set_defaults(func=_cmd_import)
    q = sub.add_parser("suggest", help="which unlabelled clips people should label next (active learning)", **fmt)
    q.add_argument("store", help="payload store folder")
    q.add_argument("--budget", type=whole_number(1), default=20, help="clips to suggest")
    q.add_argument("--strategy", default="margin",
                   choices=["margin", "entropy", "least_confidence", "bald", "coreset", "typiclust", "cluster_margin",
                            "balanced_random", "random"], help="query strategy")
    _model_version_option(q, "model version whose outputs are used (default: the newest)")
    q.add_argument("--seed", type=int, default=0, help="seed of the strategy's random choices")
    q.add_argument("--out", help="write the queue as CSV instead of printing it")
    q.set_defaults(func=_cmd_suggest)
    s = sub.add_parser("estimate", help="the deployed model's accuracy with an interval from a few sampled labels",
                       **fmt)
    s.add_argument("store", help="payload store folder")
    s.add_argument("--budget", type=whole_number(2), default=100, help="clips to sample (draws)")
    s.add_argument("--sampler", default="srs", choices=["srs", "stratified", "failure-seeking"],
                   help="how the clips to label are drawn")
    s.add_argument("--method", default=None, choices=["srs", "ppi", "stratified", "weighted"],
                   help="estimator (default: the sampler's first; ppi or srs with srs)")
    s.add_argument("--oracle", default="confidence",
                   choices=["confidence", "lineage_agreement", "tta_agreement", "mc_agreement"],
                   help="pseudo-oracle that guides stratified and failure-seeking draws")
    _model_version_option(s, "model version to estimate (default: the newest)")
    s.add_argument("--seed", type=int, default=0, help="seed of the draws")
    s.add_argument("--out", help="write the clips to label as CSV instead of printing them")
    s.set_defaults(func=_cmd_estimate)
    r = sub.add_parser("report", help="data quality (missing, shift, duplicates, likely label errors) or a model "
                       "version's quality (accuracy, calibration, latency, size, robustness) as HTML", **fmt)
    r.add_argument("store", help="payload store folder")
    r.add_argument("--kind", choices=("data", "model"), default="data", help="which report")
    _model_version_option(r, "model version (data: whose predictions and embeddings to use; model: the version "
                          "to report on, default the newest)")
    r.add_argument("--robustness-clips", type=whole_number(1), default=None,
                   help="model report: clips the corruption suite runs on (default all held-out clips)")
    r.add_argument("--out", help="HTML file (default STORE/reports/data_report.html or model_report_<version>.html)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_report)
    k = sub.add_parser("convert", help="convert a version to ONNX (parity-checked) or INT8, registered as a child "
                       "version that the endpoints serve on ONNX Runtime", **fmt)
    k.add_argument("store", help="payload store folder")
    _model_version_option(k, "version to convert (default: the newest)")
    k.add_argument("--to", choices=("onnx", "int8"), default="onnx", help="target form")
    k.add_argument("--method", choices=("dynamic", "static"), default="dynamic", help="INT8 quantisation method")
    k.add_argument("--opset", type=whole_number(13), default=17, help="ONNX opset")
    k.add_argument("--tolerance", type=float, default=1e-4, help="largest |ONNX - PyTorch| accepted on held-out clips")
    k.set_defaults(func=_cmd_convert)
    o = sub.add_parser("objects", help="objects detectors identified, filtered by model, class, confidence, "
                       "track and frames", **fmt)
    o.add_argument("store", help="payload store folder")
    o.add_argument("--model", help="model name (all its versions)")
    o.add_argument("--model-version", dest="model_version", help="one model version")
    o.add_argument("--label", help="class name")
    o.add_argument("--min-confidence", dest="min_confidence", type=float, help="keep score >= this")
    o.add_argument("--max-confidence", dest="max_confidence", type=float, help="keep score <= this")
    o.add_argument("--track", type=int, help="track id")
    o.add_argument("--frames", type=whole_number(0), nargs=2, metavar=("FIRST", "LAST"), help="frame range")
    o.add_argument("--limit", type=whole_number(1), default=30, help="rows printed")
    o.add_argument("--out", help="write every matching object as CSV instead of printing")
    o.set_defaults(func=_cmd_objects)
    h = sub.add_parser("serve", help="own a store and serve it over HTTP, so several notebooks and people share it",
                       **fmt)
    h.add_argument("store", help="payload store folder")
    h.add_argument("--host", default="127.0.0.1", help="address to bind; anything but loopback needs --token")
    h.add_argument("--port", type=whole_number(0), default=8765, help="port (0 picks a free one)")
    h.add_argument("--token", default=None, help="bearer token every request must carry (default $DLABEL_LAB_TOKEN)")
    h.add_argument("--allow-root", action="append", metavar="FOLDER",
                   help="a server folder whose clips clients may name by path (repeatable; none by default)")
    h.add_argument("--cors-origin", action="append", metavar="ORIGIN", help="a browser origin allowed (CORS off by "
                   "default)")
    h.add_argument("--model-version", dest="model_version", help="the version that scores clips (default newest)")
    h.add_argument("--access-log", action="store_true", help="log every request")
    h.set_defaults(func=_cmd_serve)
    v = sub.add_parser("versions", help="list model versions (and one version's lineage)", **fmt)
    v.add_argument("store", help="payload store folder")
    v.add_argument("--lineage", metavar="VERSION", help="also show this version's lineage")
    v.set_defaults(func=_cmd_versions)
    c = sub.add_parser("verify", help="re-hash media files and checkpoints; exit 1 when any is missing or altered",
                       **fmt)
    c.add_argument("store", help="payload store folder")
    c.set_defaults(func=_cmd_verify)
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
