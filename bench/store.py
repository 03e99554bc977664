"""Payload store throughput: the store's paths vs the fastest bare DuckDB way, measured in one run, file-backed.

1. Logging: ``PayloadStore.log_prediction_many`` (validation, idempotent
   insert on ``(scoring_id, model_version)``) vs a bare Arrow insert of the
   same rows: the rows' columns as one ``pyarrow`` table per batch,
   ``INSERT ... SELECT`` into a table with the same DDL (primary key
   included), in batches of the same size. A bare DuckDB Appender fed Python
   tuples (the old baseline, 1.8-2.4x slower than the Arrow insert) is shown
   for context. Goal: the store reaches at least 75 % of the bare Arrow
   insert's rows/s.
2. Matching: ``PayloadStore.matched().to_arrow_table()`` over N scoring ids
   (raw, transformed, prediction and one user score each, filled with DuckDB
   SQL over ``range()``) vs a bare 4-way join of the same tables materialised
   the same way. Goal: at most 3x the bare time.

Every repeat draws new rows (seed = repeat number), times each arm once on
them in a fresh database, and alternates the order of the arms; ratios are
paired within a repeat. Reported: median and interquartile range (IQR) over
the repeats, after one untimed warm-up of each arm.

Run:
    .venv/bin/python bench/store.py [--rows 100000] [--matched-rows 1000000] [--batch 10000] [--repeats 7]
    .venv/bin/python bench/store.py --rows 20000 --matched-rows 100000 --repeats 3   # quick check
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from dlabel_lab.store import PayloadStore, new_scoring_id
from dlabel_lab.store.schema import MIGRATIONS

CLASSES = ("circle", "square", "triangle")
PREDICTIONS_DDL = next(s for s in MIGRATIONS[0][1] if "CREATE TABLE predictions" in s)

BARE_JOIN = """
SELECT r.scoring_id, r.received_at, r.sha256, r.media_relpath, r.source_name, r.fps, r.frame_count, r.width,
       r.height, r.codec, r.metadata, p.model_version, t.record, t.tensor_digest, t.embedding, t.objects,
       p.label AS predicted_label, p.probabilities, p.confidence, p.latency_ms, p.predicted_at,
       s.label AS user_label, s.source AS label_source, s.labelled_at
FROM predictions p
JOIN raw_payloads r ON r.scoring_id = p.scoring_id
JOIN transformed_payloads t ON t.scoring_id = p.scoring_id AND t.model_version = p.model_version
LEFT JOIN user_scores s ON s.scoring_id = p.scoring_id"""

FILL = [
    """INSERT INTO raw_payloads SELECT printf('%08x-0000-7000-8000-%012x', i, i),
        TIMESTAMP '2024-01-01' + to_seconds(i), md5(i::VARCHAR) || md5(i::VARCHAR),
        'media/' || (i % 256)::VARCHAR || '/' || i::VARCHAR || '.mp4', 4096, 'cam/' || i::VARCHAR || '.mp4',
        25.0, 64, 320, 240, 'mp4v', '{"container":"mp4","fps":25.0}' FROM range(?) t(i)""",
    """INSERT INTO transformed_payloads SELECT printf('%08x-0000-7000-8000-%012x', i, i), 'bench-v1',
        '{"indices":[0,2,4,6],"size":[112,112]}', md5(i::VARCHAR),
        list_transform(range(16), lambda k: ((i * (k + 1)) % 97) / 97.0)::FLOAT[], '[]',
        TIMESTAMP '2024-01-01' + to_seconds(i) FROM range(?) t(i)""",
    """INSERT INTO predictions SELECT printf('%08x-0000-7000-8000-%012x', i, i), 'bench-v1',
        ['circle', 'square', 'triangle'][i % 3 + 1], [0.7, 0.2, 0.1]::FLOAT[], 0.5 + (i % 50) / 100.0, 3.5,
        TIMESTAMP '2024-01-01' + to_seconds(i) FROM range(?) t(i)""",
    """INSERT INTO user_scores SELECT i + 1, printf('%08x-0000-7000-8000-%012x', i, i),
        ['circle', 'square', 'triangle'][(i // 7) % 3 + 1], 'human', NULL, TIMESTAMP '2024-01-02' + to_seconds(i)
        FROM range(?) t(i)""",
]


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` prediction rows as a model endpoint would log them (Python floats, fresh scoring ids)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        p = [rng.random() for _ in CLASSES]
        total = sum(p)
        p = [x / total for x in p]
        best = max(range(len(p)), key=p.__getitem__)
        rows.append({"scoring_id": new_scoring_id(), "model_version": "bench-v1", "label": CLASSES[best],
                     "probabilities": p, "confidence": p[best], "latency_ms": rng.uniform(1, 9)})  # fmt: skip
    return rows


def batches(rows: list[dict], size: int) -> list[list[dict]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def bare_arrow_log(root: Path, rows: list[dict], size: int) -> float:
    """The baseline: each batch's columns as one Arrow table, ``INSERT ... SELECT`` into the same DDL."""
    con = duckdb.connect(str(root / "arrow.duckdb"))
    con.execute(PREDICTIONS_DDL)
    start = time.perf_counter()
    for chunk in batches(rows, size):
        stamp = duckdb.execute("SELECT now()::TIMESTAMP").fetchall()[0][0]  # a fresh timestamp per batch
        table = pa.table({
            "scoring_id": pa.array([r["scoring_id"] for r in chunk], pa.string()),
            "model_version": pa.array([r["model_version"] for r in chunk], pa.string()),
            "label": pa.array([r["label"] for r in chunk], pa.string()),
            "probabilities": pa.array([r["probabilities"] for r in chunk], pa.list_(pa.float32())),
            "confidence": pa.array([r["confidence"] for r in chunk], pa.float64()),
            "latency_ms": pa.array([r["latency_ms"] for r in chunk], pa.float64()),
            "predicted_at": pa.array([stamp] * len(chunk), pa.timestamp("us")),
        })  # fmt: skip
        con.register("batch", table)
        con.execute("INSERT INTO predictions SELECT * FROM batch")
        con.unregister("batch")
    elapsed = time.perf_counter() - start
    assert con.execute("SELECT count(*) FROM predictions").fetchall()[0][0] == len(rows)
    con.close()
    return elapsed


def bare_appender_log(root: Path, rows: list[dict], size: int) -> float:
    """For context (the old baseline): a DuckDB Appender fed Python tuples, one flush per batch."""
    con = duckdb.connect(str(root / "appender.duckdb"))
    con.execute(PREDICTIONS_DDL)
    start = time.perf_counter()
    for chunk in batches(rows, size):
        stamp = duckdb.execute("SELECT now()::TIMESTAMP").fetchall()[0][0]
        appender = con.appender("predictions")
        appender.append_rows(
            [(r["scoring_id"], r["model_version"], r["label"], r["probabilities"], r["confidence"], r["latency_ms"],
              stamp) for r in chunk]
        )  # fmt: skip
        appender.flush()
    elapsed = time.perf_counter() - start
    assert con.execute("SELECT count(*) FROM predictions").fetchall()[0][0] == len(rows)
    con.close()
    return elapsed


def store_log(root: Path, rows: list[dict], size: int) -> float:
    with PayloadStore(root / "store") as store:
        start = time.perf_counter()
        for chunk in batches(rows, size):
            store.log_prediction_many(chunk)
        elapsed = time.perf_counter() - start
        assert store._rows("SELECT count(*) FROM predictions")[0][0] == len(rows)
    return elapsed


def fill(store: PayloadStore, n: int) -> None:
    for statement in FILL:
        store._rows(statement, [n])
    store._rows("CHECKPOINT")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def spread(values: list[float]) -> tuple[float, float, float]:
    """Median and interquartile range (25th, 75th percentile)."""
    q1, q3 = np.quantile(np.asarray(values, dtype=float), [0.25, 0.75])
    return statistics.median(values), float(q1), float(q3)


def line(name: str, seconds: list[float], n: int) -> str:
    med, q1, q3 = spread(seconds)
    return f"{name:<44} {med:8.3f} [{q1:6.3f}, {q3:6.3f}] {n / med:12,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="prediction rows to log")
    parser.add_argument("--matched-rows", type=int, default=1_000_000, help="scoring ids behind matched()")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per logging batch")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    log_arms = {"arrow": bare_arrow_log, "appender": bare_appender_log, "store": store_log}
    with tempfile.TemporaryDirectory() as tmp:  # warm-up: imports (pandas, pyarrow.dataset) and caches, not timed
        warm = make_rows(args.batch, seed=-1)
        for name, arm in log_arms.items():
            os.makedirs(Path(tmp) / name)
            arm(Path(tmp) / name, warm, args.batch)
    log_s: dict[str, list[float]] = {name: [] for name in log_arms}
    for rep in range(args.repeats):
        rows = make_rows(args.rows, seed=rep)
        order = list(log_arms) if rep % 2 == 0 else list(reversed(log_arms))
        for name in order:
            with tempfile.TemporaryDirectory() as tmp:
                log_s[name].append(log_arms[name](Path(tmp), rows, args.batch))
    log_ratio = [a / s for a, s in zip(log_s["arrow"], log_s["store"], strict=True)]  # store rows/s / arrow rows/s
    app_ratio = [p / a for a, p in zip(log_s["arrow"], log_s["appender"], strict=True)]  # time ratio

    with tempfile.TemporaryDirectory() as tmp, PayloadStore(Path(tmp) / "store") as store:
        fill(store, args.matched_rows)
        cursor = store._cursor("read")
        n_bare = cursor.sql(BARE_JOIN).to_arrow_table().num_rows
        n_matched = store.matched().to_arrow_table().num_rows
        assert n_bare == n_matched == args.matched_rows, (n_bare, n_matched)
        match_arms = {
            "bare": lambda: cursor.sql(BARE_JOIN).to_arrow_table(),
            "matched": lambda: store.matched().to_arrow_table(),
            "filtered": lambda: store.matched(label="circle", min_confidence=0.8).to_arrow_table(),
        }
        match_s: dict[str, list[float]] = {name: [] for name in match_arms}
        for rep in range(args.repeats):
            for name in list(match_arms) if rep % 2 == 0 else list(reversed(match_arms)):
                match_s[name].append(timed(match_arms[name]))
    match_ratio = [m / b for m, b in zip(match_s["matched"], match_s["bare"], strict=True)]

    print(f"{'measure':<44} {'median s':>8} {'[IQR]':>16} {'rows/s':>12}")
    print(line("log: bare Arrow INSERT (baseline)", log_s["arrow"], args.rows))
    print(line("log: bare DuckDB Appender (context)", log_s["appender"], args.rows))
    print(line("log: PayloadStore.log_prediction_many", log_s["store"], args.rows))
    print(line("match: bare 4-way join -> Arrow", match_s["bare"], args.matched_rows))
    print(line("match: PayloadStore.matched() -> Arrow", match_s["matched"], args.matched_rows))
    print(line("match: matched(label=, min_confidence=)", match_s["filtered"], args.matched_rows))
    print()
    med, q1, q3 = spread(log_ratio)
    print(f"logging: store rows/s = {med:.0%} of the bare Arrow insert [IQR {q1:.0%}-{q3:.0%}] (goal >= 75%)")
    med, q1, q3 = spread(app_ratio)
    print(f"         (the bare Appender takes {med:.2f}x the Arrow insert's time [IQR {q1:.2f}-{q3:.2f}])")
    med, q1, q3 = spread(match_ratio)
    print(f"matched: {med:.2f}x the bare join time [IQR {q1:.2f}-{q3:.2f}] (goal <= 3x)")
    print(f"rows={args.rows:,} batch={args.batch:,} matched_rows={args.matched_rows:,} repeats={args.repeats} "
          f"(seeds 0-{args.repeats - 1}); load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
