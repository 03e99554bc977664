"""Payload store throughput: the store's paths vs bare DuckDB, measured in one run, file-backed.

1. Logging: ``PayloadStore.log_prediction_many`` (validation, idempotent
   insert through an Arrow table) vs a bare DuckDB Appender filling a table of
   the same shape (same DDL, primary key included) from the same rows, in
   batches of the same size. Goal: the store reaches at least 25 % of bare
   throughput. A bare Arrow ``INSERT ... SELECT`` is shown for context.
2. Matching: ``PayloadStore.matched().to_arrow_table()`` over N scoring ids
   (raw, transformed, prediction and one user score each, filled with DuckDB
   SQL over ``range()``) vs a bare 4-way join of the same tables materialised
   the same way. Goal: at most 3x the bare time.

Run:
    .venv/bin/python bench/store.py [--rows 100000] [--matched-rows 1000000] [--batch 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import duckdb
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


def bare_log(root: Path, rows: list[dict], size: int) -> float:
    con = duckdb.connect(str(root / "bare.duckdb"))
    con.execute(PREDICTIONS_DDL)
    start = time.perf_counter()
    for chunk in batches(rows, size):
        now = time.time()  # a fresh timestamp per batch, as the store takes one
        stamp = duckdb.execute("SELECT to_timestamp(?)::TIMESTAMP", [now]).fetchall()[0][0]
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


def bare_arrow_log(root: Path, rows: list[dict], size: int) -> float:
    """For context: the same rows as one Arrow table per batch, inserted with INSERT ... SELECT."""
    con = duckdb.connect(str(root / "arrow.duckdb"))
    con.execute(PREDICTIONS_DDL)
    start = time.perf_counter()
    for chunk in batches(rows, size):
        stamp = duckdb.execute("SELECT now()::TIMESTAMP").fetchall()[0][0]
        table = pa.table({
            "scoring_id": [r["scoring_id"] for r in chunk], "model_version": [r["model_version"] for r in chunk],
            "label": [r["label"] for r in chunk],
            "probabilities": pa.array([r["probabilities"] for r in chunk], pa.list_(pa.float32())),
            "confidence": [r["confidence"] for r in chunk], "latency_ms": [r["latency_ms"] for r in chunk],
            "predicted_at": pa.array([stamp] * len(chunk), pa.timestamp("us")),
        })  # fmt: skip
        con.register("batch", table)
        con.execute("INSERT INTO predictions SELECT * FROM batch")
        con.unregister("batch")
    elapsed = time.perf_counter() - start
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


def best(fn, repeats: int) -> float:  # noqa: ANN001
    fn()  # warm-up
    return min(fn() for _ in range(repeats))


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="prediction rows to log")
    parser.add_argument("--matched-rows", type=int, default=1_000_000, help="scoring ids behind matched()")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per logging batch")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rows = make_rows(args.rows)
    with tempfile.TemporaryDirectory() as tmp:  # warm-up: imports (pandas, pyarrow.dataset) and caches, not timed
        bare_log(Path(tmp), rows[: args.batch], args.batch)
        store_log(Path(tmp), rows[: args.batch], args.batch)
    bare_s, arrow_s, store_s = [], [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            bare_s.append(bare_log(Path(tmp), rows, args.batch))
        with tempfile.TemporaryDirectory() as tmp:
            arrow_s.append(bare_arrow_log(Path(tmp), rows, args.batch))
        with tempfile.TemporaryDirectory() as tmp:
            store_s.append(store_log(Path(tmp), rows, args.batch))
    bare_log_s, arrow_log_s, store_log_s = min(bare_s), min(arrow_s), min(store_s)

    with tempfile.TemporaryDirectory() as tmp, PayloadStore(Path(tmp) / "store") as store:
        fill(store, args.matched_rows)
        cursor = store._cursor("read")
        n_bare = cursor.sql(BARE_JOIN).to_arrow_table().num_rows
        n_matched = store.matched().to_arrow_table().num_rows
        assert n_bare == n_matched == args.matched_rows, (n_bare, n_matched)
        bare_join_s = best(lambda: timed(lambda: cursor.sql(BARE_JOIN).to_arrow_table()), args.repeats)
        matched_s = best(lambda: timed(lambda: store.matched().to_arrow_table()), args.repeats)
        filtered_s = best(
            lambda: timed(lambda: store.matched(label="circle", min_confidence=0.8).to_arrow_table()), args.repeats
        )

    store_rate, bare_rate = args.rows / store_log_s, args.rows / bare_log_s
    print(f"{'measure':<44} {'seconds':>9} {'rows/s':>12}")
    print(f"{'log: bare DuckDB Appender':<44} {bare_log_s:9.3f} {bare_rate:12,.0f}")
    print(f"{'log: bare Arrow INSERT (context)':<44} {arrow_log_s:9.3f} {args.rows / arrow_log_s:12,.0f}")
    print(f"{'log: PayloadStore.log_prediction_many':<44} {store_log_s:9.3f} {store_rate:12,.0f}")
    print(f"{'match: bare 4-way join -> Arrow':<44} {bare_join_s:9.3f} {args.matched_rows / bare_join_s:12,.0f}")
    print(f"{'match: PayloadStore.matched() -> Arrow':<44} {matched_s:9.3f} {args.matched_rows / matched_s:12,.0f}")
    print(f"{'match: matched(label=, min_confidence=)':<44} {filtered_s:9.3f}")
    print()
    print(f"logging: store throughput = {store_rate / bare_rate:.0%} of bare Appender (goal >= 25%), "
          f"{arrow_log_s / store_log_s:.0%} of bare Arrow INSERT")
    print(f"matched: {matched_s / bare_join_s:.2f}x the bare join time (goal <= 3x)")
    print(f"rows={args.rows:,} batch={args.batch:,} matched_rows={args.matched_rows:,} repeats={args.repeats}")


if __name__ == "__main__":
    main()
