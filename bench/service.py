"""The scoring service under concurrent clients: rows landed, label and scoring throughput, latency.

What is measured. Setup (once): ``dl.make_shape_clips`` writes ``--clips`` clips (64x64, 16 frames,
mp4v; data seed ``--seed``); a store gets a tiny3d ``ClipClassifier`` (random init, torch seed 0;
``--frames`` x ``--size``), registered with ``dl.deploy``, which scores the clips once (their scoring
ids are what the label writes refer to); the store is closed. Then, per repeat (``--repeats``):

- in-process baseline: open the store, ``dl.deploy_version(store, v, num_threads=...)``, an untimed
  warm-up of up to 16 clips, then ``--clients`` calls of ``score_many`` over the clips (the same
  clip-events the clients send through the service), timed; close the store;
- the service: ``dl.serve(store, port=0, model_version=v, num_threads=...)`` in a subprocess (the
  same thread setting as the baseline; ``auto`` is the endpoint's default rule in both), an untimed
  warm-up (16 clips scored, 1 label row) from this process, then ``--clients`` client processes
  (kept for the whole run, each with its own ``dl.connect`` client) run three phases, started
  together and one after another:

  A1 labels, batched: each client writes ``--labels`` rows in ``log_score_many`` calls of
     ``--label-batch`` rows (one ``POST /labels`` each);
  A2 labels, one per request: each client writes ``--single-labels`` rows, one call per row;
  B  scores: each client scores the ``--clips`` clips (its own scoring ids, with their labels),
     one ``score_many(batch_size=--score-batch)`` call per batch (one multipart ``POST /score/batch``).

  Throughput is what all clients did over the phase's span (first client's start to last
  client's end); latency is per request, p50 and p99 over every request of the phase. Then the
  service is stopped (SIGTERM: graceful shutdown, the store is closed), the store is reopened
  read-only and the label rows written by the clients (by author) are counted and their label ids
  compared with the ids the service acknowledged.

With ``--per-request-baseline`` the in-process arm also times, after its timed run, one ``score_many``
call per ``--score-batch`` clips: what the service runs per request (the endpoint decodes the next
batch while the model scores only within one call), context for the ratio.

The in-process and service arms run in alternating order (repeat by repeat); the scoring ratio
(service clips/s over in-process clips/s) is paired within the repeat. Reported: mean ± sd over
repeats (with min and max). Goals, as the issue states them: every acknowledged row present; at
least 1,000 label rows/s batched; scoring through the service at least 80 % of in-process.

Run (about 5 minutes on 2 cores at the defaults):
    .venv/bin/python bench/service.py --json service.json
    .venv/bin/python bench/service.py --clips 32 --labels 200 --single-labels 20 --repeats 1   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = ["circle", "square", "triangle"]
GOAL_LABEL_ROWS_PER_S = 1000.0
GOAL_SCORING_RATIO = 0.8
WARMUP_CLIPS = 16


# --- the two kinds of child process ---------------------------------------------------------
def serve_main(store: str, model_version: str, threads: str) -> None:
    """``--serve``: own the store and serve it; print the URL once listening; SIGTERM stops it."""
    import dlabel_lab as dl

    dl.serve(store, port=0, model_version=model_version, num_threads=_threads(threads),
             on_ready=lambda url: print(url, flush=True))


def client_main() -> None:
    """``--client``: one client process; reads a JSON command per stdin line, answers one JSON line each."""
    import tqdm.auto  # noqa: F401

    import dlabel_lab as dl
    from dlabel_lab.serving import results  # noqa: F401 - imported before any timing (it loads torch)

    remote = None
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "quit":
            break
        if op == "connect":
            if remote is not None:
                remote.close()
            remote = dl.connect(cmd["url"])
            answer: dict = {"ok": True}
        elif op == "labels":
            answer = _client_labels(remote, cmd)
        elif op == "score":
            answer = _client_score(remote, cmd)
        else:
            raise SystemExit(f"unknown command {op!r}")
        print(json.dumps(answer), flush=True)
    if remote is not None:
        remote.close()


def _client_labels(remote, cmd: dict) -> dict:
    ids, n, batch = cmd["scoring_ids"], cmd["rows"], cmd["batch"]
    rows = [{"scoring_id": ids[i % len(ids)], "label": CLASSES[i % len(CLASSES)], "source": "human",
             "author": cmd["author"]} for i in range(n)]
    latencies, acknowledged = [], []
    start = time.time()
    for b in range(0, n, batch):
        t0 = time.perf_counter()
        acknowledged.extend(remote.log_score_many(rows[b : b + batch]))
        latencies.append(time.perf_counter() - t0)
    return {"start": start, "end": time.time(), "rows": n, "latencies_s": latencies, "label_ids": acknowledged}


def _client_score(remote, cmd: dict) -> dict:
    paths, labels, batch = cmd["paths"], cmd["labels"], cmd["batch"]
    latencies, errors, scored = [], 0, 0
    start = time.time()
    for b in range(0, len(paths), batch):
        t0 = time.perf_counter()
        got = remote.score_many(paths[b : b + batch], labels[b : b + batch], batch_size=batch, progress=False)
        latencies.append(time.perf_counter() - t0)
        scored += len(got)
        errors += sum(r.error is not None for r in got)
    return {"start": start, "end": time.time(), "clips": scored, "errors": errors, "latencies_s": latencies}


def _threads(text: str) -> int | None:
    return None if text == "auto" else int(text)


def _thread_setting(text: str) -> str:
    """``auto`` or a positive int (as text), for argparse."""
    if text != "auto" and not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"auto or an int >= 1, got {text!r}")
    return text


# --- the parent ------------------------------------------------------------------------------
def _readline(proc: subprocess.Popen, timeout: float, what: str, log: Path) -> str:
    """One line of a child's stdout, or an error naming the child (with the tail of its log)."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise SystemExit(f"{what} gave no answer within {timeout:.0f} s (exit code {proc.poll()}):\n{tail}")
    return line


class Clients:
    """``n`` client processes; :meth:`run` sends each its command at once and gathers the answers."""

    def __init__(self, n: int, logs: Path) -> None:
        self.logs = [logs / f"client{i}.log" for i in range(n)]
        self.procs = []
        for log in self.logs:
            with open(log, "w") as err:
                self.procs.append(subprocess.Popen([sys.executable, __file__, "--client"], stdin=subprocess.PIPE,
                                                   stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1))
        for i, proc in enumerate(self.procs):
            _readline(proc, 300, f"client {i}", self.logs[i])

    def run(self, commands: list[dict], timeout: float = 3600) -> list[dict]:
        for proc, cmd in zip(self.procs, commands, strict=True):
            proc.stdin.write(json.dumps(cmd) + "\n")
            proc.stdin.flush()
        return [json.loads(_readline(p, timeout, f"client {i}", self.logs[i])) for i, p in enumerate(self.procs)]

    def close(self) -> None:
        for proc in self.procs:
            try:
                proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                proc.stdin.close()
            except OSError:
                pass
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def setup(root: Path, args) -> dict:
    """Clips, and a store with a deployed tiny3d model that has scored them once (closed on return)."""
    import torch

    import dlabel_lab as dl

    rows = dl.read_manifest(dl.make_shape_clips(root / "clips", args.clips, seed=args.seed, frames=16, size=64))
    torch.manual_seed(0)
    model = dl.ClipClassifier(classes=CLASSES, backbone="tiny3d", spec=dl.ClipSpec(frames=args.frames, size=args.size))
    paths, labels = [str(r["path"]) for r in rows], [r["label"] for r in rows]
    with dl.PayloadStore(root / "store") as store:
        ingest = dl.deploy(model, store, classes=CLASSES, name="shapes", num_threads=_threads(args.threads))
        results = ingest.score_many(paths, labels, progress=False)
        version = ingest.model_version
    return {"paths": paths, "labels": labels, "scoring_ids": [r.scoring_id for r in results], "version": version}


def in_process(store_path: Path, data: dict, args) -> dict:
    """``score_many`` in this process: the clients' clip-events (clients x clips), after a warm-up."""
    import dlabel_lab as dl

    paths, labels = data["paths"], data["labels"]
    with dl.PayloadStore(store_path) as store:
        ingest = dl.deploy_version(store, data["version"], batch_size=args.score_batch,
                                   num_threads=_threads(args.threads))
        ingest.score_many(paths[:WARMUP_CLIPS], labels[:WARMUP_CLIPS], progress=False)
        t0 = time.perf_counter()
        for _ in range(args.clients):
            ingest.score_many(paths, labels, progress=False)
        seconds = time.perf_counter() - t0
        used = ingest.model_endpoint.threads()
        per_request = None
        if args.per_request_baseline:  # what the service runs per request: one call per batch, no prefetch across
            t0 = time.perf_counter()
            for _ in range(args.clients):
                for b in range(0, len(paths), args.score_batch):
                    ingest.score_many(paths[b : b + args.score_batch], labels[b : b + args.score_batch],
                                      progress=False)  # fmt: skip
            per_request = time.perf_counter() - t0
    clips = args.clients * len(paths)
    out = {"clips": clips, "seconds": seconds, "clips_per_s": clips / seconds, "threads_used": used}
    if per_request is not None:
        out["per_request_seconds"], out["per_request_clips_per_s"] = per_request, clips / per_request
    return out


def _phase(answers: list[dict], unit: str) -> dict:
    lat = np.asarray([x for a in answers for x in a["latencies_s"]], dtype=float)
    n = sum(a[unit] for a in answers)
    span = max(a["end"] for a in answers) - min(a["start"] for a in answers)
    return {unit: n, "seconds": span, f"{unit}_per_s": n / span, "requests": len(lat),
            "p50_ms": 1000 * float(np.percentile(lat, 50)), "p99_ms": 1000 * float(np.percentile(lat, 99))}


def through_service(root: Path, rep: int, clients: Clients, data: dict, args) -> dict:
    """One service run: start it, warm it up, the three phases, stop it, count the label rows that landed."""
    import dlabel_lab as dl

    store_path = root / "store"
    log = root / f"service{rep}.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, __file__, "--serve", str(store_path), "--model-version",
                                 data["version"], "--threads", args.threads], stdout=subprocess.PIPE, stderr=err,
                                text=True)  # fmt: skip
    try:
        t0 = time.perf_counter()
        url = _readline(proc, 300, "the service", log).strip()
        started_s = time.perf_counter() - t0
        paths, labels, n = data["paths"], data["labels"], args.clients
        with dl.connect(url) as warm:
            warm.score_many(paths[:WARMUP_CLIPS], labels[:WARMUP_CLIPS], batch_size=args.score_batch, progress=False)
            warm.log_score_many([{"scoring_id": data["scoring_ids"][0], "label": labels[0], "author": "warmup"}])
        clients.run([{"op": "connect", "url": url}] * n)
        authors = {mode: [f"bench-r{rep}-{mode}-c{i}" for i in range(n)] for mode in ("batched", "single")}
        batched = clients.run([{"op": "labels", "scoring_ids": data["scoring_ids"], "rows": args.labels,
                                "batch": args.label_batch, "author": a} for a in authors["batched"]])
        single = clients.run([{"op": "labels", "scoring_ids": data["scoring_ids"], "rows": args.single_labels,
                               "batch": 1, "author": a} for a in authors["single"]])
        scores = clients.run([{"op": "score", "paths": paths, "labels": labels, "batch": args.score_batch}] * n)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
            raise SystemExit(f"the service did not stop within 120 s of SIGTERM; see {log}") from None
    stopped_cleanly = code in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its graceful shutdown
    acknowledged = {i for a in batched + single for i in a["label_ids"]}
    with dl.PayloadStore(store_path, read_only=True) as store:
        history = store.score_history()
    mine = history[history["author"].isin([a for names in authors.values() for a in names])]
    landed = {int(i) for i in mine["label_id"]}
    out = {"service_start_s": started_s, "stopped_cleanly": stopped_cleanly, "exit_code": code,
           "labels_batched": _phase(batched, "rows"), "labels_single": _phase(single, "rows"),
           "scores": _phase(scores, "clips"),
           "rows_sent": sum(a["rows"] for a in batched + single),
           "rows_acknowledged": len(acknowledged), "rows_landed": len(mine),
           "acknowledged_missing": len(acknowledged - landed), "landed_not_acknowledged": len(landed - acknowledged),
           "score_errors": sum(a["errors"] for a in scores)}
    return out


def _ms(values) -> str:
    a = np.asarray(values, float)
    return f"{a.mean():.4g} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.2g}"


def summarise(repeats: list[dict], args) -> tuple[str, dict]:
    """The Markdown table and the goal lines."""
    rows = [
        (f"labels batched ({args.label_batch} rows/request): rows/s", lambda r: r["labels_batched"]["rows_per_s"]),
        ("  p50 ms per request", lambda r: r["labels_batched"]["p50_ms"]),
        ("  p99 ms per request", lambda r: r["labels_batched"]["p99_ms"]),
        ("labels one per request: rows/s", lambda r: r["labels_single"]["rows_per_s"]),
        ("  p50 ms per request", lambda r: r["labels_single"]["p50_ms"]),
        ("  p99 ms per request", lambda r: r["labels_single"]["p99_ms"]),
        ("scores through the service: clips/s", lambda r: r["scores"]["clips_per_s"]),
        (f"  p50 ms per request ({args.score_batch} clips)", lambda r: r["scores"]["p50_ms"]),
        (f"  p99 ms per request ({args.score_batch} clips)", lambda r: r["scores"]["p99_ms"]),
        ("scores in-process (score_many): clips/s", lambda r: r["in_process"]["clips_per_s"]),
        ("service / in-process, %", lambda r: 100 * r["ratio"]),
    ]
    if args.per_request_baseline:
        rows += [
            (f"scores in-process, one score_many per {args.score_batch} clips: clips/s",
             lambda r: r["in_process"]["per_request_clips_per_s"]),
            ("service / that, %",
             lambda r: 100 * r["scores"]["clips_per_s"] / r["in_process"]["per_request_clips_per_s"]),
        ]
    rows += [
        ("label rows acknowledged", lambda r: r["rows_acknowledged"]),
        ("label rows landed", lambda r: r["rows_landed"]),
        ("service start to listening, s", lambda r: r["service_start_s"]),
    ]
    lines = ["| measure | mean ± sd | min | max |", "|---|---|---|---|"]
    for name, fn in rows:
        v = [fn(r) for r in repeats]
        lines.append(f"| {name} | {_ms(v)} | {min(v):.4g} | {max(v):.4g} |")
    word = {True: "met", False: "missed"}
    ack = sum(r["rows_acknowledged"] for r in repeats)
    landed = sum(r["rows_landed"] for r in repeats)
    missing = sum(r["acknowledged_missing"] for r in repeats)
    extra = sum(r["landed_not_acknowledged"] for r in repeats)
    rows_ok = all(r["rows_landed"] == r["rows_acknowledged"] == r["rows_sent"] and not r["acknowledged_missing"]
                  and not r["landed_not_acknowledged"] for r in repeats)  # fmt: skip
    rate = [r["labels_batched"]["rows_per_s"] for r in repeats]
    ratio = [r["ratio"] for r in repeats]
    goals = {
        "rows_landed": {"acknowledged": ack, "landed": landed, "missing": missing, "unacknowledged": extra,
                        "met": rows_ok},
        "label_rows_per_s": {"mean": float(np.mean(rate)), "min": float(min(rate)), "goal": GOAL_LABEL_ROWS_PER_S,
                             "met": float(np.mean(rate)) >= GOAL_LABEL_ROWS_PER_S},
        "scoring_ratio": {"mean": float(np.mean(ratio)), "min": float(min(ratio)), "max": float(max(ratio)),
                          "goal": GOAL_SCORING_RATIO, "met": float(np.mean(ratio)) >= GOAL_SCORING_RATIO},
    }
    lines += ["",
              f"goal all acknowledged label rows present: {word[rows_ok]} ({ack:,} acknowledged, {landed:,} landed, "
              f"{missing} missing, {extra} landed unacknowledged; {len(repeats)} repeat(s))",
              f"goal >= {GOAL_LABEL_ROWS_PER_S:,.0f} label rows/s batched: {word[goals['label_rows_per_s']['met']]} "
              f"(mean {np.mean(rate):,.0f}, min {min(rate):,.0f} rows/s)",
              f"goal scoring through the service >= {GOAL_SCORING_RATIO:.0%} of in-process: "
              f"{word[goals['scoring_ratio']['met']]} (mean {np.mean(ratio):.1%}, range "
              f"{min(ratio):.1%}-{max(ratio):.1%})"]
    return "\n".join(lines), goals


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=200, help="clips each client scores (the same clips for all)")
    ap.add_argument("--clients", type=int, default=3, help="client processes")
    ap.add_argument("--labels", type=int, default=1000, help="label rows each client writes, batched")
    ap.add_argument("--label-batch", type=int, default=100, help="label rows per request (batched phase)")
    ap.add_argument("--single-labels", type=int, default=100, help="label rows each client writes one per request")
    ap.add_argument("--score-batch", type=int, default=16, help="clips per scoring request (and forward pass)")
    ap.add_argument("--threads", default="auto", type=_thread_setting,
                    help="torch threads of the service and the in-process baseline: auto (the endpoint's default "
                         "rule) or an int")
    ap.add_argument("--frames", type=int, default=8, help="frames the model reads per clip")
    ap.add_argument("--size", type=int, default=64, help="frame size the model reads")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--per-request-baseline", action="store_true",
                    help="context: also time in-process scoring one score_many call per scoring request's clips "
                         "(what the service runs per request), after the timed baseline")
    ap.add_argument("--seed", type=int, default=0, help="data seed of the clips")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--dir", type=Path, default=None, help="keep clips, store and logs here (default: a temporary "
                                                            "folder)")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--model-version", help=argparse.SUPPRESS)
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve_main(args.serve, args.model_version, args.threads)
        return {}
    if args.client:
        client_main()
        return {}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dlabel-service-bench-") as tmp:
        root = Path(tmp) if args.dir is None else args.dir
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        data = setup(root, args)
        setup_s = time.perf_counter() - t0
        clients = Clients(args.clients, root)
        repeats = []
        try:
            for rep in range(args.repeats):
                arms = ["in_process", "service"] if rep % 2 == 0 else ["service", "in_process"]
                got: dict = {}
                for arm in arms:
                    got[arm] = in_process(root / "store", data, args) if arm == "in_process" else \
                        through_service(root, rep, clients, data, args)
                result = {"repeat": rep, "order": arms, **got["service"], "in_process": got["in_process"]}
                result["ratio"] = result["scores"]["clips_per_s"] / result["in_process"]["clips_per_s"]
                repeats.append(result)
                print(f"repeat {rep}: labels {result['labels_batched']['rows_per_s']:,.0f} rows/s batched, "
                      f"{result['labels_single']['rows_per_s']:,.0f} one per request; scores "
                      f"{result['scores']['clips_per_s']:.1f} clips/s via service vs "
                      f"{result['in_process']['clips_per_s']:.1f} in-process ({result['ratio']:.1%}); rows "
                      f"{result['rows_landed']:,} landed / {result['rows_acknowledged']:,} acknowledged "
                      f"(load average {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
        finally:
            clients.close()
    import torch

    threads_used = repeats[0]["in_process"]["threads_used"]
    header = (f"{args.clients} client processes x {args.labels:,} label rows (batches of {args.label_batch}) + "
              f"{args.single_labels} one per request + {args.clips} clip scores (batches of {args.score_batch}) "
              f"against one service on loopback; clips 64x64, 16 frames, mp4v -> tiny3d {args.frames}x{args.size}x"
              f"{args.size}; torch threads {args.threads} (used {threads_used}); {args.repeats} repeat(s), "
              f"mean ± sd; {os.cpu_count()} cores, torch {torch.__version__}")
    table, goals = summarise(repeats, args)
    print(header + "\n\n" + table)
    out = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                    if k not in ("json", "serve", "client", "model_version")},
           "model_version": data["version"], "setup_seconds": setup_s, "repeats": repeats, "goals": goals,
           "header": header, "table": table, "seconds": time.perf_counter() - t_all}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
