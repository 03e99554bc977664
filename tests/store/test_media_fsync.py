"""Grouped fsyncs of a raw batch: one per new file, one per folder, all before the rows commit."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from dlabel_lab.store import PayloadStore, new_scoring_id

N = 32
CLIPS = [f"clip {i} ".encode() * (i + 1) for i in range(N)]  # fixed bytes: fixed shard folders
SHARDS = {hashlib.sha256(c).hexdigest()[:2] for c in CLIPS}


@pytest.fixture
def store(tmp_path):
    with PayloadStore(tmp_path / "store") as s:
        yield s


@pytest.fixture
def events(store, monkeypatch):
    """Record fsyncs (by path), renames and inserts, in order."""
    log: list[tuple[str, Path]] = []
    real_fsync, real_replace, real_insert = os.fsync, os.replace, store._insert

    def fsync(fd: int) -> None:
        log.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}"))))
        real_fsync(fd)

    def replace(src, dst) -> None:  # noqa: ANN001
        real_replace(src, dst)
        log.append(("rename", Path(dst)))

    def insert(table, *args) -> None:  # noqa: ANN001
        log.append(("insert", Path(table)))
        real_insert(table, *args)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(store, "_insert", insert)
    return log


def rows(store: PayloadStore, *, staged: bool) -> list[dict]:
    key = "staged" if staged else "data"
    return [{"scoring_id": new_scoring_id(), key: store.stage_media(c) if staged else c, "source_name": "c.mp4"}
            for c in CLIPS]  # fmt: skip


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names fds through /proc")
@pytest.mark.parametrize("staged", [True, False])
def test_a_batch_fsyncs_each_file_once_and_each_folder_once_before_its_rows(store, events, staged):
    assert 1 < len(SHARDS) < N  # some clips share a shard folder
    batch = rows(store, staged=staged)
    store.log_raw_many(batch)
    media = store.media_dir
    folders = {media / s for s in SHARDS} | {media}
    kinds = [kind for kind, _ in events]
    fsynced = [path for kind, path in events if kind == "fsync"]
    assert len(fsynced) == N + len(SHARDS) + 1 == len(set(fsynced))  # 32 files + 31 shard folders + media/
    assert set(fsynced[N:]) == folders  # files first, then the folders
    assert kinds == ["fsync"] * N + ["rename"] * N + ["fsync"] * len(folders) + ["insert"]
    for sid in (r["scoring_id"] for r in batch):
        assert store.raw_path(sid).read_bytes() in CLIPS

    events.clear()
    store.log_raw_many(rows(store, staged=staged))  # the same clips under new ids: nothing new to write
    assert [kind for kind, _ in events] == ["fsync"] * len(folders) + ["insert"]
    assert sorted(store.media_dir.glob("staging/*")) == []


def test_a_failed_rename_commits_nothing_and_the_retry_fsyncs_the_files_already_in_place(store, events, monkeypatch):
    real_replace = os.replace
    calls = []

    def flaky(src, dst) -> None:  # noqa: ANN001
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    batch = rows(store, staged=False)
    with pytest.raises(OSError, match="No space"):
        store.log_raw_many(batch)
    assert store._rows("SELECT count(*) FROM raw_payloads") == [(0,)]
    assert [p.name for p in store.media_dir.rglob(".tmp-*")] == []  # temp files of the batch removed
    in_place = [Path(p) for p in calls[:2]]
    assert all(p.is_file() for p in in_place)

    events.clear()
    monkeypatch.setattr(os, "replace", real_replace)
    store.log_raw_many(batch)  # the two files already in place are not written again, their folders are fsynced
    fsynced = [path for kind, path in events if kind == "fsync"]
    assert len(fsynced) == N - 2 + len(SHARDS) + 1
    assert {p.parent for p in in_place} <= set(fsynced)
    assert store._rows("SELECT count(*) FROM raw_payloads") == [(N,)]
