"""A second process for the payload store's reliability tests (run as a script; pytest does not collect it).

It imports ``dlabel_lab.store`` (the package loads its heavy parts lazily), so
a trial starts in a fraction of a second, and it checks on the way that the
store pulls in no torch.

Modes:
    log STORE SEED      log complete records (raw bytes, transformed, prediction,
                        score) until killed; print each acknowledged scoring id.
    open STORE [ro]     try to open the store; print one JSON line with the
                        error class, its message and the seconds it took.
    hold STORE [ro|raw] hold the store (``raw``: store.duckdb through bare DuckDB),
                        print ``ready``, wait until stdin closes.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from dlabel_lab.store import PayloadStore

if "torch" in sys.modules:
    sys.exit("dlabel_lab.store imported torch")


def log_forever(store_dir: str, seed: int) -> None:
    rng = random.Random(seed)
    earlier: list[bytes] = []
    with PayloadStore(store_dir) as store:
        while True:
            n = rng.choice((1, 1, 3))
            rows = []
            for _ in range(n):
                if earlier and rng.random() < 0.2:
                    data = rng.choice(earlier)  # same bytes again: one media file
                else:
                    data = rng.randbytes(rng.choice((64, 2_000, 200_000)))
                    earlier.append(data)
                rows.append({"scoring_id": store.new_scoring_id(), "data": data, "source_name": "cam/clip.mp4",
                             "metadata": {"fps": 25.0, "frame_count": 16, "seed": seed}})  # fmt: skip
            store.log_raw_many(rows)
            ids = [r["scoring_id"] for r in rows]
            store.log_transformed_many([
                {"scoring_id": s, "model_version": "kill-v1", "record": {"indices": [0, 1]}, "tensor_digest": s,
                 "embedding": [0.25, 0.5], "objects": [{"label": "circle", "score": 0.5}]} for s in ids
            ])  # fmt: skip
            store.log_prediction_many([
                {"scoring_id": s, "model_version": "kill-v1", "label": "circle", "probabilities": [0.75, 0.25],
                 "confidence": 0.75, "latency_ms": 1.0} for s in ids
            ])  # fmt: skip
            store.log_score_many([{"scoring_id": s, "label": "square"} for s in ids])
            sys.stdout.write("".join(f"{s}\n" for s in ids))
            sys.stdout.flush()


def try_open(store_dir: str, read_only: bool) -> None:
    start = time.perf_counter()
    try:
        PayloadStore(store_dir, read_only=read_only).close()
        error, message = None, ""
    except Exception as exc:  # report any error, typed or not, to the test
        error, message = type(exc).__name__, str(exc)
    print(json.dumps({"error": error, "message": message, "seconds": time.perf_counter() - start}), flush=True)


def hold(store_dir: str, how: str) -> None:
    if how == "raw":
        import duckdb

        con = duckdb.connect(str(Path(store_dir) / "store.duckdb"))
    else:
        con = PayloadStore(store_dir, read_only=how == "ro")
    print("ready", flush=True)
    sys.stdin.read()
    con.close()


def main(argv: list[str]) -> None:
    mode, store_dir, *rest = argv
    if mode == "log":
        log_forever(store_dir, int(rest[0]))
    elif mode == "open":
        try_open(store_dir, read_only=rest[:1] == ["ro"])
    elif mode == "hold":
        hold(store_dir, rest[0] if rest else "rw")
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
