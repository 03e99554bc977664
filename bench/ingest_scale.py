"""Ingest at scale: thousands of generated clips through ``IngestEndpoint.score_many`` into a real store.

Measured, per run (each run in a fresh process and a fresh store folder, so
that its peak RSS is its own):

- clips/s of each chunk of ``--chunk`` clips (one ``score_many`` call per
  chunk), wall and CPU (process) time: the rate should stay flat as the
  store grows; the ratio of the last chunk's rate to the first's says how flat;
- store bytes per clip after closing (``store.duckdb`` + its WAL + ``media/``),
  split into the clip files themselves (the bare minimum: the clips must be
  kept) and the rest (DuckDB rows, staging leftovers);
- fsync calls per clip and the share of wall time spent in them;
- resident memory after each chunk and the peak RSS of the process
  (``resource.getrusage``).

The clips are ``dl.make_shape_clips`` (64x64, 16 frames, mp4v; data seed
``--seed``, a fresh set per repeat: seed + repeat), scored by a tiny3d
``ClipClassifier`` on 8x64x64 (torch seed 0), batch 16, after an untimed
warm-up of 16 clips into a separate store.

``--busy N`` runs N other processes that each keep a core busy beside every
run (a machine shared with other work). ``--threads`` compares torch thread settings for scoring (``auto`` is the
endpoint's default rule, see ``dlabel_lab/serving/threads.py``), and
``--modes`` the endpoint's own pipeline (``prefetch``: one ``score_many``
call per chunk, the next batch decoded while the model scores) with
``sequential`` (one call per batch of 16: decode, log, score one batch at a
time, as before issue 14). Settings run interleaved, repeat by repeat.

Run:
    .venv/bin/python bench/ingest_scale.py                                   # 5,000 clips, chunks of 1,000
    .venv/bin/python bench/ingest_scale.py --clips 1000 --threads 1,2 --modes prefetch,sequential --repeats 3
    .venv/bin/python bench/ingest_scale.py --clips 64 --chunk 32 --json scale.json                   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BATCH = 16


def _rss_mib() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def worker(config: dict) -> dict:
    """One run, in this (fresh) process: ingest the clips chunk by chunk into a new store."""
    import torch

    import dlabel_lab as dl

    rows = dl.read_manifest(config["manifest"])
    paths, labels = [r["path"] for r in rows], [r["label"] for r in rows]
    classes = sorted({r["label"] for r in rows})
    spec = dl.ClipSpec(frames=8, size=64)
    torch.manual_seed(0)
    model = dl.ClipClassifier(classes=classes, backbone="tiny3d", spec=spec)
    threads = None if config["threads"] == "auto" else int(config["threads"])
    root = Path(config["store"])
    with dl.PayloadStore(root / "warmup") as warm:
        dl.deploy(model, warm, classes=classes, name="scale", batch_size=BATCH, num_threads=threads).score_many(
            paths[:BATCH], labels[:BATCH], progress=False)
    fsyncs = {"n": 0, "s": 0.0}
    real_fsync = os.fsync

    def counted(fd: int) -> None:
        t0 = time.perf_counter()
        real_fsync(fd)
        fsyncs["s"] += time.perf_counter() - t0
        fsyncs["n"] += 1

    os.fsync = counted
    chunks = []
    with dl.PayloadStore(root / "store") as store:
        ingest = dl.deploy(model, store, classes=classes, name="scale", batch_size=BATCH, num_threads=threads)
        used = ingest.model_endpoint.threads()
        rss_start = _rss_mib()
        for start in range(0, len(paths), config["chunk"]):
            part = slice(start, start + config["chunk"])
            wall, cpu, n0, f0 = time.perf_counter(), time.process_time(), fsyncs["n"], fsyncs["s"]
            if config["mode"] == "sequential":
                for b in range(part.start, min(part.stop, len(paths)), BATCH):
                    ingest.score_many(paths[b : min(b + BATCH, part.stop)], labels[b : min(b + BATCH, part.stop)],
                                      progress=False)  # fmt: skip
            else:
                ingest.score_many(paths[part], labels[part], progress=False)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            n = len(paths[part])
            chunks.append({"clips": n, "wall_s": wall, "cpu_s": cpu, "clips_per_s": n / wall,
                           "fsyncs": fsyncs["n"] - n0, "fsync_s": fsyncs["s"] - f0, "rss_mib": _rss_mib()})
        matched = len(store.matched().fetchall())
    os.fsync = real_fsync
    clip_bytes = sum(Path(p).stat().st_size for p in paths)
    db_bytes = sum((root / "store" / name).stat().st_size for name in ("store.duckdb", "store.duckdb.wal")
                   if (root / "store" / name).exists())  # fmt: skip
    media_bytes = _folder_bytes(root / "store" / "media")
    return {"config": config, "threads_used": used, "rss_start_mib": rss_start, "chunks": chunks, "matched": matched,
            "clips": len(paths), "clip_bytes": clip_bytes, "db_bytes": db_bytes, "media_bytes": media_bytes,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_one(config: dict) -> dict:
    """One run in a fresh process, beside ``config["busy"]`` processes that each keep a core busy (competing load)."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(config.get("busy", 0))]
    try:
        out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(config)], capture_output=True,
                             text=True)  # fmt: skip
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    if out.returncode:
        raise SystemExit(f"run {config} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> str:
    """``median [q1, q3]`` (interquartile range), or just the value for one repeat."""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    q1, q3 = np.quantile(np.asarray(values, dtype=float), [0.25, 0.75])
    return f"{statistics.median(values):.1f} [{q1:.1f}, {q3:.1f}]"


def table(results: list[dict], settings: list[tuple[str, str]]) -> str:
    """The Markdown table: one column per setting, one row per chunk, then the totals."""
    runs = {s: [r for r in results if (r["config"]["mode"], r["config"]["threads"]) == s] for s in settings}
    names = [f"{mode}, threads={threads} (used {runs[(mode, threads)][0]['threads_used']})"
             for mode, threads in settings]  # fmt: skip
    lines = ["| measure | " + " | ".join(names) + " |", "|---" * (len(settings) + 1) + "|"]

    def row(label: str, fn) -> None:  # noqa: ANN001
        lines.append(f"| {label} | " + " | ".join(spread([fn(r) for r in runs[s]]) for s in settings) + " |")

    first = runs[settings[0]][0]
    for i, chunk in enumerate(first["chunks"]):
        done = sum(c["clips"] for c in first["chunks"][:i])
        row(f"clips/s, clips {done:,}-{done + chunk['clips'] - 1:,}", lambda r, i=i: r["chunks"][i]["clips_per_s"])
    row("clips/s, all", lambda r: r["clips"] / sum(c["wall_s"] for c in r["chunks"]))
    row("last chunk / first chunk, %", lambda r: 100 * r["chunks"][-1]["clips_per_s"] / r["chunks"][0]["clips_per_s"])
    row("CPU s / wall s", lambda r: sum(c["cpu_s"] for c in r["chunks"]) / sum(c["wall_s"] for c in r["chunks"]))
    row("fsync calls per clip", lambda r: sum(c["fsyncs"] for c in r["chunks"]) / r["clips"])
    row("fsync share of wall time, %",
        lambda r: 100 * sum(c["fsync_s"] for c in r["chunks"]) / sum(c["wall_s"] for c in r["chunks"]))
    row("store KiB per clip (db + media)", lambda r: (r["db_bytes"] + r["media_bytes"]) / r["clips"] / 1024)
    row("  of which clip files, KiB", lambda r: r["clip_bytes"] / r["clips"] / 1024)
    row("  of which DuckDB, KiB", lambda r: r["db_bytes"] / r["clips"] / 1024)
    row("RSS before the first chunk (imports, model, warm-up), MiB", lambda r: r["rss_start_mib"])
    row("RSS after first chunk, MiB", lambda r: r["chunks"][0]["rss_mib"])
    row("RSS after last chunk, MiB", lambda r: r["chunks"][-1]["rss_mib"])
    row("peak RSS, MiB", lambda r: r["peak_rss_mib"])
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=5000)
    ap.add_argument("--chunk", type=int, default=1000, help="clips per score_many call (and per reported rate)")
    ap.add_argument("--threads", default="auto", help="comma list of torch thread settings: auto or ints")
    ap.add_argument("--modes", default="prefetch", help="comma list of prefetch, sequential")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--busy", type=int, default=0,
                    help="competing load: this many other processes each keep a core busy during every run")
    ap.add_argument("--seed", type=int, default=0, help="data seed of the first repeat (then seed + repeat)")
    ap.add_argument("--json", type=Path, help="also write every run's figures here")
    ap.add_argument("--dir", type=Path, help="keep the clips and stores in this folder (default: a temporary one)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    import dlabel_lab as dl

    settings = [(m, t) for m in args.modes.split(",") for t in args.threads.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.dir is not None:
            args.dir.mkdir(parents=True, exist_ok=True)
            tmp = str(args.dir)
        for rep in range(args.repeats):
            manifest = dl.make_shape_clips(Path(tmp) / f"clips{rep}", args.clips, seed=args.seed + rep, frames=16,
                                           size=64)  # fmt: skip
            for k, (mode, threads) in enumerate(settings if rep % 2 == 0 else settings[::-1]):
                store = Path(tmp) / f"run{rep}-{k}"
                store.mkdir()
                config = {"manifest": str(manifest), "store": str(store), "mode": mode, "threads": threads,
                          "chunk": args.chunk, "seed": args.seed + rep, "busy": args.busy}  # fmt: skip
                result = run_one(config)
                assert result["matched"] == args.clips, result["matched"]
                results.append(result)
                total = result["clips"] / sum(c["wall_s"] for c in result["chunks"])
                print(f"repeat {rep} {mode} threads={threads}: {total:.1f} clips/s "
                      f"(load average {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
    import torch

    print(f"{args.clips:,} clips (64x64, 16 frames, mp4v) -> tiny3d 8x64x64, batch {BATCH}, chunks of {args.chunk:,}; "
          f"{args.repeats} repeat(s), median [IQR]; {os.cpu_count()} cores, torch {torch.__version__}; "
          f"{args.busy} competing busy process(es)\n")
    print(table(results, settings))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
