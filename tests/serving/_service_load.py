"""Helpers of ``test_service_kill.py``: a real ``dlabel-lab serve`` process and threads that send labels to it.

Not collected by pytest (the name starts with an underscore). The service
runs as ``python -m dlabel_lab.cli serve STORE --port P``, its stdout and
stderr go to files (no pipe can fill up and stall it), and every process
started here is killed by :func:`serving` on the way out, whatever happens.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dlabel_lab.serving.client import ServiceClient

READY = re.compile(r"^serving .* at (http://127\.0\.0\.1:(\d+)) \(OpenAPI", re.MULTILINE)
LABELS = ("circle", "square", "triangle")
_starts = itertools.count()


@dataclass
class Server:
    """A ``dlabel-lab serve`` process and where its output goes."""

    proc: subprocess.Popen
    url: str
    port: int
    out: Path
    err: Path

    def output(self) -> str:
        return f"--- stdout ---\n{_text(self.out)}\n--- stderr ---\n{_text(self.err)}"

    def kill(self) -> int:
        """SIGKILL, then reap it; its exit status."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (a graceful stop), then wait for it to exit; its exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the service did not exit within {timeout} s of SIGTERM\n{self.output()}")


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def start_server(store_dir: Path, log_dir: Path, *, port: int = 0, timeout: float = 60.0) -> Server:
    """Start ``dlabel-lab serve STORE`` and wait for its "serving ... at URL" line; fail the test with its output."""
    n = next(_starts)
    log_dir.mkdir(parents=True, exist_ok=True)
    out, err = log_dir / f"serve-{n}.out", log_dir / f"serve-{n}.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "dlabel_lab.cli", "serve", str(store_dir), "--port", str(port)],
                                stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
    server = Server(proc, "", 0, out, err)
    deadline = time.monotonic() + timeout
    try:
        while True:
            found = READY.search(_text(out))
            if found:
                server.url, server.port = found.group(1), int(found.group(2))
                return server
            if proc.poll() is not None:
                pytest.fail(f"the service exited with status {proc.returncode} before it served\n{server.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the service printed no 'serving ... at URL' line within {timeout} s\n{server.output()}")
            time.sleep(0.02)
    except BaseException:
        server.kill()
        raise


@contextlib.contextmanager
def serving(store_dir: Path, log_dir: Path, *, port: int = 0) -> Iterator[Server]:
    """:func:`start_server`, killed (SIGKILL) and reaped on the way out unless it has exited already."""
    server = start_server(store_dir, log_dir, port=port)
    try:
        yield server
    finally:
        server.kill()


class Stamps:
    """Distinct ``labelled_at`` stamps (UTC, one microsecond apart), shared by every thread of a test.

    The first falls on a whole second, whose ISO text has no fraction while the
    others have one (a mix the client's DataFrames must parse).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
        self._n = itertools.count()
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._start + timedelta(microseconds=next(self._n))


@dataclass
class Batch:
    """One ``log_score_many`` request: its rows, and its label ids once the service acknowledged it."""

    rows: list[dict]
    thread: int
    label_ids: list[int] | None = None
    error: BaseException | None = None

    @property
    def acknowledged(self) -> bool:
        return self.label_ids is not None


def key(scoring_id: str, label: str, source: str, author: str | None, labelled_at: datetime) -> tuple:
    """A label row's identity: every field the service compares to recognise a retry (``labelled_at`` naive UTC)."""
    if labelled_at.tzinfo is not None:
        labelled_at = labelled_at.astimezone(timezone.utc).replace(tzinfo=None)
    return (scoring_id, label, source, author, labelled_at)


def row_key(row: dict) -> tuple:
    return key(row["scoring_id"], row["label"], row["source"], row["author"], row["labelled_at"])


@dataclass
class LabelLoad:
    """Threads that each send label batches to the service, one after another, until a request fails.

    Each batch is recorded before it is sent, so a batch in flight when the
    service dies is known (``acknowledged`` False, ``error`` set). The clients
    do not retry (``retries=0``): a batch either got its answer or did not.
    """

    url: str
    scoring_ids: list[str]
    stamps: Stamps
    seed: int
    threads: int = 3
    sizes: tuple[int, int] = (10, 50)
    max_batches: int = 10_000
    batches: list[Batch] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _first_ack: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _crashes: list[BaseException] = field(default_factory=list)

    def start(self) -> LabelLoad:
        for k in range(self.threads):
            thread = threading.Thread(target=self._run, args=(k,), name=f"label-load-{k}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def wait_for_ack(self, timeout: float = 60.0) -> bool:
        """Wait until some batch is acknowledged (the service is up and the load flows); whether one was."""
        return self._first_ack.wait(timeout)

    def stop(self, timeout: float = 60.0) -> list[Batch]:
        """Stop sending (the threads end after their current request) and return every batch sent."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert alive == [], f"label threads still running {timeout} s after the stop: {alive}"
        assert self._crashes == [], f"a label thread failed outside its request: {self._crashes!r}"
        return list(self.batches)

    def _run(self, k: int) -> None:
        rng = random.Random(self.seed * 100 + k)
        try:
            client = ServiceClient(self.url, retries=0, timeout=30.0)
        except BaseException as error:  # surfaced by stop()
            self._crashes.append(error)
            return
        try:
            while not self._stop.is_set():
                rows = [{"scoring_id": rng.choice(self.scoring_ids), "label": rng.choice(LABELS), "source": "human",
                         "author": f"thread-{k}", "labelled_at": self.stamps()}
                        for _ in range(rng.randint(*self.sizes))]
                batch = Batch(rows, k)
                with self._lock:
                    if len(self.batches) >= self.max_batches:
                        return
                    self.batches.append(batch)
                try:
                    batch.label_ids = client.log_score_many(rows)
                    self._first_ack.set()
                except Exception as error:  # not acknowledged; check_labels() fails on anything but a lost service
                    batch.error = error
                    return
        except BaseException as error:
            self._crashes.append(error)
        finally:
            client.close()


@dataclass
class Tally:
    """What :func:`check_labels` found: acknowledged rows, and unacknowledged rows that landed or did not."""

    acknowledged: int
    landed_unacknowledged: int
    lost_unacknowledged: int
    stored: int


def stored_labels(store_dir: Path) -> dict[tuple, list[int]]:
    """Every label row of the store (opened read-only): its :func:`key` -> the label ids stored under it."""
    import dlabel_lab as dl

    with dl.PayloadStore(store_dir, read_only=True) as store:
        history = store.score_history()
    found: dict[tuple, list[int]] = {}
    for r in history.itertuples(index=False):
        author = None if r.author is None or r.author != r.author else str(r.author)  # None / NaN: no author
        k = key(str(r.scoring_id), str(r.label), str(r.source), author, r.labelled_at.to_pydatetime())
        found.setdefault(k, []).append(int(r.label_id))
    return found


def check_labels(store_dir: Path, batches: list[Batch]) -> Tally:
    """The store holds every acknowledged row exactly once under its acknowledged id, and nothing not sent.

    A batch that was not acknowledged failed only because the service went
    away (no error answer), and landed whole or not at all.
    """
    answered = [b.error for b in batches if b.error is not None and "did not answer" not in str(b.error)]
    assert answered == [], f"requests failed with an answer, not a lost service: {answered[:3]!r}"
    found = stored_labels(store_dir)
    twice = {k: ids for k, ids in found.items() if len(ids) > 1}
    assert twice == {}, f"{len(twice)} label rows stored more than once: {list(twice.items())[:3]}"
    sent = {row_key(row) for b in batches for row in b.rows}
    extra = set(found) - sent
    assert extra == set(), f"{len(extra)} stored label rows were never sent: {sorted(extra)[:3]}"
    acknowledged = landed = lost = 0
    for b in batches:
        keys = [row_key(row) for row in b.rows]
        if b.acknowledged:
            missing = [k for k in keys if k not in found]
            assert missing == [], f"{len(missing)} of {len(keys)} acknowledged rows are lost: {missing[:3]}"
            assert [found[k][0] for k in keys] == b.label_ids, "stored label ids differ from the acknowledged ones"
            acknowledged += len(keys)
        else:
            present = sum(k in found for k in keys)
            assert present in (0, len(keys)), f"an unacknowledged batch landed in part: {present} of {len(keys)} rows"
            landed += present
            lost += len(keys) - present
    return Tally(acknowledged, landed, lost, len(found))
