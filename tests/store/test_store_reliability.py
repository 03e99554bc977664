"""The payload store under kill -9, a second process, and many threads.

Second processes run ``tests/_store_worker.py``, which imports the store
without torch so each trial starts quickly.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import dlabel_lab as dl
from dlabel_lab.store import PayloadStore, new_scoring_id

WORKER = Path(__file__).with_name("_store_worker.py")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def worker(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.PIPE, text=True, **kwargs)  # fmt: skip


def open_elsewhere(store_dir: Path, *mode: str) -> dict:
    proc = worker("open", str(store_dir), *mode)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out)


def check_store(store_dir: Path, acknowledged: list[str]) -> int:
    """Every acknowledged record complete; every row's media present and intact; no temp file left."""
    with PayloadStore(store_dir) as store:
        temp = [p for p in store.media_dir.rglob("*") if p.name.startswith(".tmp-")]
        assert temp == [], "reopening removes the temp files a killed writer left"
        rows = store._rows("SELECT scoring_id, sha256, media_relpath, size_bytes FROM raw_payloads")
        for sid, sha, relpath, size in rows:
            data = (store.path / relpath).read_bytes()
            assert len(data) == size and hashlib.sha256(data).hexdigest() == sha, sid
        for path in store.media_dir.rglob("*"):  # files no row points at yet are whole too
            if path.is_file():
                assert hashlib.sha256(path.read_bytes()).hexdigest() == path.stem
        matched = dict(store.matched(model_version="kill-v1").select("scoring_id, user_label").fetchall())
        missing = [sid for sid in acknowledged if matched.get(sid) != "square"]
        assert missing == [], f"{len(missing)} acknowledged records incomplete"
        assert store.unmatched().empty or set(store.unmatched().scoring_id).isdisjoint(acknowledged)
        return len(rows)


def test_kill_9_while_logging_loses_no_acknowledged_record(tmp_path):
    store_dir = tmp_path / "store"
    rng = random.Random(20240101)
    acknowledged: list[str] = []
    for trial in range(10):
        proc = worker("log", str(store_dir), str(trial))
        first = proc.stdout.readline()
        assert UUID.match(first.strip()), proc.stderr.read()
        time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()  # SIGKILL
        proc.wait(timeout=30)
        rest = proc.stdout.read()
        lines = (first + rest).split("\n")[:-1]  # the text after the last newline is not acknowledged
        acknowledged += [line for line in lines if UUID.match(line)]
        n_rows = check_store(store_dir, acknowledged)
        assert n_rows >= len(acknowledged)
    assert len(acknowledged) >= 10


def test_a_second_process_gets_store_locked_naming_the_holder(tmp_path):
    store = PayloadStore(tmp_path / "s")
    try:
        for mode in ((), ("ro",)):
            out = open_elsewhere(store.path, *mode)
            assert out["error"] == "StoreLocked", out
            assert f"process {os.getpid()}" in out["message"] and "close the store there" in out["message"]
            assert out["seconds"] < 1.0
        with pytest.raises(dl.StoreLocked, match=f"this process \\({os.getpid()}\\)"):
            PayloadStore(store.path)  # a second store object in this process is refused too
    finally:
        store.close()
    assert open_elsewhere(store.path, "ro")["error"] is None  # read-only works once no writer holds it


def test_readers_block_a_writer_and_share_with_each_other(tmp_path):
    PayloadStore(tmp_path / "s").close()
    reader = worker("hold", str(tmp_path / "s"), "ro")
    try:
        assert reader.stdout.readline().strip() == "ready"
        with PayloadStore(tmp_path / "s", read_only=True) as ro:
            assert ro.matched().df().empty
        with pytest.raises(dl.StoreLocked, match="read-only"):
            PayloadStore(tmp_path / "s")
    finally:
        reader.communicate(timeout=30)


def test_a_bare_duckdb_holder_is_reported_as_store_locked(tmp_path):
    PayloadStore(tmp_path / "s").close()
    holder = worker("hold", str(tmp_path / "s"), "raw")
    try:
        assert holder.stdout.readline().strip() == "ready"
        start = time.perf_counter()
        with pytest.raises(dl.StoreLocked, match=f"process {holder.pid}"):
            PayloadStore(tmp_path / "s")
        assert time.perf_counter() - start < 1.0
    finally:
        holder.communicate(timeout=30)
    PayloadStore(tmp_path / "s").close()  # and the failed open left nothing locked


def test_eight_threads_log_exactly_4000_rows(tmp_path):
    store = PayloadStore(tmp_path / "s")
    ids = [[new_scoring_id() for _ in range(500)] for _ in range(8)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def log(chunk: list[str]) -> None:
        try:
            for i, sid in enumerate(chunk):
                store.log_prediction(sid, model_version="threads-v1", label="circle", probabilities=[1.0, 0.0],
                                     confidence=1.0, latency_ms=float(i))  # fmt: skip
        except BaseException as error:  # surfaced below
            errors.append(error)

    def read() -> None:
        try:
            while not stop.is_set():
                store.matched().to_arrow_table()
                store.unmatched()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=log, args=(chunk,)) for chunk in ids] + [threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads[:-1]:
        t.join()
    stop.set()
    threads[-1].join()
    assert errors == []
    assert store._rows("SELECT count(*), count(DISTINCT scoring_id) FROM predictions") == [(4000, 4000)]
    store.close()
    with PayloadStore(tmp_path / "s", read_only=True) as again:
        assert again._rows("SELECT count(*) FROM predictions")[0][0] == 4000
