"""The scoring service as a real process under kill -9 and SIGTERM: no acknowledged label is lost or doubled.

Each test runs ``python -m dlabel_lab.cli serve STORE --port 0`` (no torch is
imported until a clip is scored, so it starts in about a second), sends label
batches over real HTTP on loopback from a few client threads, and kills the
service. The store (a real DuckDB file) is then opened read-only in this
process: every acknowledged (2xx) row is there exactly once under the label id
the service answered, an unacknowledged batch landed whole or not at all, and
nothing else is there. A retry after a restart (the same rows, the same
``labelled_at`` stamps: what the client sends on its own retries) adds nothing.

The load and process helpers are in ``_service_load.py``; every service
process is killed and reaped in a ``finally`` (:func:`serving`).
"""

from __future__ import annotations

import json
import random
import signal
import socket
import time
from pathlib import Path

import pytest
from _service_load import Batch, LabelLoad, Stamps, check_labels, row_key, serving, stored_labels

import dlabel_lab as dl
from dlabel_lab.store import new_scoring_id

pytestmark = pytest.mark.timeout(600)


def _store_with_events(path: Path, n: int = 12, seed: int = 0) -> list[str]:
    """A closed store holding ``n`` raw scoring events (bytes only, no model); their scoring ids."""
    rng = random.Random(seed)
    rows = [{"scoring_id": new_scoring_id(), "data": rng.randbytes(256), "source_name": f"cam/clip-{i}.mp4"}
            for i in range(n)]
    with dl.PayloadStore(path) as store:
        store.log_raw_many(rows)
    return [r["scoring_id"] for r in rows]


def _kill_trials(tmp_path: Path, trials: int, seed: int) -> None:
    store_dir = tmp_path / "store"
    ids = _store_with_events(store_dir, seed=seed)
    rng = random.Random(seed)
    stamps = Stamps()
    batches: list[Batch] = []
    landed_before = landed_trials = 0  # trials whose kill fell between a commit and its answer
    start = time.perf_counter()
    for trial in range(trials):
        with serving(store_dir, tmp_path / "logs") as server:  # recovers the store the last kill left
            load = LabelLoad(server.url, ids, stamps, seed=seed * 1000 + trial, threads=rng.choice((2, 3))).start()
            try:
                assert load.wait_for_ack(60), f"no label batch was acknowledged within 60 s\n{server.output()}"
                time.sleep(rng.uniform(0.0, 0.5))  # then kill it at a random moment of the load
                assert server.proc.poll() is None, f"the service died under load\n{server.output()}"
                assert server.kill() == -signal.SIGKILL
            finally:
                server.kill()  # (a no-op unless an assertion stopped the trial) so that no request waits on it
                sent = load.stop()
        batches += sent
        tally = check_labels(store_dir, batches)  # every trial: the store as the kill left it
        landed_trials += tally.landed_unacknowledged > landed_before
        landed_before = tally.landed_unacknowledged
        print(f"trial {trial}: {sum(b.acknowledged for b in sent)} batches acknowledged, "
              f"{sum(not b.acknowledged for b in sent)} not; totals {tally}")
    print(f"{trials} kill -9 trials in {time.perf_counter() - start:.1f} s: {tally}; in {landed_trials} trials "
          "an unacknowledged batch landed")
    assert tally.acknowledged >= 10 * trials, "too few labels were acknowledged to test anything"
    assert tally.stored == tally.acknowledged + tally.landed_unacknowledged


@pytest.mark.slow
def test_kill_9_under_label_load_loses_no_acknowledged_label_20_trials(tmp_path):
    _kill_trials(tmp_path, trials=20, seed=20240502)


def _send_unread(url: str, rows: list[dict]) -> socket.socket:
    """POST /labels on a raw socket and read no answer: a write whose acknowledgement the client never gets."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"rows": [{**r, "labelled_at": r["labelled_at"].isoformat()} for r in rows]}).encode()
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(b"POST /labels HTTP/1.1\r\nHost: " + host.encode() + b"\r\ncontent-type: application/json\r\n"
                 b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    return sock


def _rows(ids: list[str], stamps: Stamps, n: int, author: str) -> list[dict]:
    return [{"scoring_id": ids[i % len(ids)], "label": ("circle", "square", "triangle")[i % 3], "source": "human",
             "author": author, "labelled_at": stamps()} for i in range(n)]


def test_retry_after_kill_adds_nothing(tmp_path):
    store_dir = tmp_path / "store"
    ids = _store_with_events(store_dir, seed=1)
    stamps = Stamps()
    acked = _rows(ids, stamps, 20, "ana")
    unread = _rows(ids, stamps, 15, "bo")  # lands, but its answer is never read
    with serving(store_dir, tmp_path / "logs") as server, dl.connect(server.url, retries=0) as client:
        acked_ids = client.log_score_many(acked)
        sock = _send_unread(server.url, unread)
        try:
            deadline = time.monotonic() + 30
            while len(client.score_history()) < len(acked) + len(unread):
                assert time.monotonic() < deadline, "the unread batch never landed"
                time.sleep(0.05)
            assert server.kill() == -signal.SIGKILL
        finally:
            sock.close()
    before = stored_labels(store_dir)
    assert len(before) == len(acked) + len(unread)
    unread_ids = [before[row_key(r)][0] for r in unread]

    fresh = _rows(ids, stamps, 5, "cy")
    with serving(store_dir, tmp_path / "logs") as server, dl.connect(server.url, retries=0) as client:
        assert client.log_score_many(acked) == acked_ids  # the same stamps: recognised, nothing appended
        assert client.log_score_many(unread) == unread_ids  # the write whose answer was lost: its stored ids
        mixed = client.log_score_many(acked[:5] + fresh)  # a retry with new rows in it: only those are new
        assert mixed[:5] == acked_ids[:5]
        assert min(mixed[5:]) > max(acked_ids + unread_ids)  # the label id counter recovered past the kill
        assert len(set(mixed[5:])) == len(fresh)
        assert client.log_score_many(fresh) == mixed[5:]
        assert server.kill() == -signal.SIGKILL
    after = stored_labels(store_dir)
    assert len(after) == len(acked) + len(unread) + len(fresh)
    assert all(len(v) == 1 for v in after.values())
    batches = [Batch(acked, 0, acked_ids), Batch(unread, 0, unread_ids), Batch(fresh, 0, mixed[5:])]
    assert check_labels(store_dir, batches).stored == len(after)


def test_sigterm_closes_the_store(tmp_path):
    store_dir = tmp_path / "store"
    ids = _store_with_events(store_dir, seed=2)
    rng = random.Random(3)
    with serving(store_dir, tmp_path / "logs") as server:
        load = LabelLoad(server.url, ids, Stamps(), seed=3, threads=3).start()
        try:
            assert load.wait_for_ack(60), f"no label batch was acknowledged within 60 s\n{server.output()}"
            time.sleep(rng.uniform(0.0, 0.3))
            assert server.proc.poll() is None, f"the service died under load\n{server.output()}"
            status = server.terminate(timeout=60)
        finally:
            server.kill()  # a no-op once SIGTERM ended it
            batches = load.stop()
        # uvicorn finishes the requests in flight, its shutdown closes the store, serve() returns, the CLI exits 0
        assert status == 0, f"exit status {status}\n{server.output()}"
        assert "Traceback" not in server.output() and "is closed" in server.output(), server.output()
    wal = store_dir / "store.duckdb.wal"
    assert not wal.exists() or wal.stat().st_size == 0, f"the write-ahead log holds {wal.stat().st_size} bytes"
    with dl.PayloadStore(store_dir) as store:  # the lock is free: a writer opens at once
        assert not store.read_only
    tally = check_labels(store_dir, batches)
    assert tally.acknowledged > 0
    assert tally.stored == tally.acknowledged + tally.landed_unacknowledged
