"""PayloadStore hardening: other processes, relocation, temp files, atomic export, content-addressed data sets,
verify, typed errors for damaged files and symlinks.

Every test uses real DuckDB files under ``tmp_path``; the data are tiny and the
expected answers are written out by hand.
"""

from __future__ import annotations

import gc
import hashlib
import json
import multiprocessing as mp
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.dataset
import pytest

import dlabel_lab as dl
from dlabel_lab import cli
from dlabel_lab.store import PayloadStore, new_scoring_id, schema

OTHER_PROCESS = "Open the store in this process"


def _count(store, table: str) -> int:
    return store._rows(f"SELECT count(*) FROM {table}")[0][0]


def _labelled(store, n: int, *, model_version: str = "m-v1") -> list[str]:
    """``n`` complete scoring events (raw, transformed, prediction, score) with distinct bytes."""
    ids = [new_scoring_id() for _ in range(n)]
    for i, sid in enumerate(ids):
        store.log_raw(sid, f"clip-{i}".encode() * 8, source_name=f"{i}.mp4")
        store.log_transformed(sid, model_version=model_version, record={"i": i}, tensor_digest=f"d{i}",
                              embedding=[float(i)], objects=[])  # fmt: skip
        store.log_prediction(sid, model_version=model_version, label="a", probabilities=[1.0, 0.0], confidence=1.0)
        store.log_score(sid, "a" if i % 2 == 0 else "b")
    return ids


# --- 1. other processes ------------------------------------------------------------------------
def _child_uses_store(store, conn) -> None:
    """Run in a multiprocessing child: every use of the inherited store must raise StoreError."""
    results = []
    for name, call in (("log_score", lambda: store.log_score(new_scoring_id(), "x")),
                       ("matched", lambda: store.matched()), ("score_history", lambda: store.score_history()),
                       ("close", lambda: store.close())):  # fmt: skip
        try:
            call()
            results.append((name, "no error"))
        except dl.StoreError as error:
            results.append((name, "StoreError" if OTHER_PROCESS in str(error) else f"StoreError: {error}"))
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            results.append((name, f"{type(error).__name__}: {error}"))
    conn.send(results)
    conn.close()


def _child_opens_path(path: str, conn) -> None:
    """Run in a spawned child: open the store by its path (the way to hand a store to a process)."""
    with PayloadStore(path) as store:
        conn.send(store.log_score(new_scoring_id(), "from-child"))
    conn.close()


def test_a_forked_child_gets_store_error_for_every_method_and_the_parent_loses_nothing(tmp_path):
    store = PayloadStore(tmp_path / "s")
    ids = _labelled(store, 2)
    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"weights")
    calls = {
        "log_score": lambda: store.log_score(ids[0], "b"),
        "log_score_many": lambda: store.log_score_many([{"scoring_id": ids[0], "label": "b"}]),
        "log_raw": lambda: store.log_raw(new_scoring_id(), b"new bytes"),
        "log_prediction": lambda: store.log_prediction(new_scoring_id(), model_version="m-v1", label="a",
                                                       probabilities=[1.0], confidence=1.0),
        "log_clip_tags": lambda: store.log_clip_tags("m-v1", [{"scoring_id": ids[0], "tag": "t"}]),
        "register_model": lambda: store.register_model(name="m", checkpoint_path=ckpt, classes=["a"], spec={}),
        "start_run": lambda: store.start_run("x"),
        "snapshot_dataset": lambda: store.snapshot_dataset("d"),
        "matched": lambda: store.matched(),
        "matched_df": lambda: store.matched_df(),
        "unmatched": lambda: store.unmatched(),
        "score_history": lambda: store.score_history(),
        "raw_path": lambda: store.raw_path(ids[0]),
        "raw_bytes": lambda: store.raw_bytes(ids[0]),
        "runs": lambda: store.runs(),
        "model_versions": lambda: store.model_versions(),
        "neuron_functions": lambda: store.neuron_functions("m-v1"),
        "verify": lambda: store.verify(),
        "export_parquet": lambda: store.export_parquet(tmp_path / "export"),
        "close": lambda: store.close(),
        "close again": lambda: store.close(),
    }  # fmt: skip
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report each call's outcome, then drop the store through garbage collection
        code = 1
        try:
            os.close(read_end)
            out = {}
            for name, call in calls.items():
                try:
                    call()
                    out[name] = "no error"
                except dl.StoreError as error:
                    out[name] = "StoreError" if OTHER_PROCESS in str(error) else f"StoreError: {error}"
                except BaseException as error:  # noqa: BLE001
                    out[name] = f"{type(error).__name__}: {error}"
            del calls, store
            gc.collect()  # __del__ in the child: must neither raise nor touch the connection
            os.write(write_end, json.dumps(out).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = json.loads(pipe.read() or b"{}")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # no crash (a SIGSEGV would be -11)
    assert report == {name: "StoreError" for name in calls}
    # the parent's store still works, still holds the lock, and nothing the child tried was written
    assert _count(store, "user_scores") == 2 and _count(store, "raw_payloads") == 2
    assert _count(store, "model_versions") == 0 and _count(store, "runs") == 0
    assert not (tmp_path / "export").exists()
    with pytest.raises(dl.StoreLocked, match="this process"):
        PayloadStore(tmp_path / "s")
    store.log_score(ids[1], "a")
    store.close()
    with PayloadStore(tmp_path / "s", read_only=True) as again:
        assert _count(again, "user_scores") == 3 and len(again.matched_df()) == 2


def test_a_forked_child_that_exits_normally_does_not_crash_or_touch_the_store(tmp_path):
    script = textwrap.dedent(f"""
        import os, sys
        from dlabel_lab.errors import StoreError
        from dlabel_lab.store import PayloadStore, new_scoring_id
        store = PayloadStore({str(tmp_path / "s")!r})
        store.log_score(new_scoring_id(), "before")
        rel = store.matched()
        pid = os.fork()
        if pid == 0:
            try:
                store.log_score(new_scoring_id(), "child")
                sys.exit(5)
            except StoreError:
                pass
            try:
                store.close()
                sys.exit(6)
            except StoreError:
                pass
            sys.exit(3)  # a normal interpreter exit: finalizers and __del__ run in the child
        _, status = os.waitpid(pid, 0)
        store.log_score(new_scoring_id(), "after")
        store.close()
        with PayloadStore({str(tmp_path / "s")!r}, read_only=True) as ro:
            labels = sorted(r[0] for r in ro._rows("SELECT label FROM user_scores"))
        print(os.waitstatus_to_exitcode(status), labels)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3 ['after', 'before']"


def test_a_multiprocessing_fork_child_gets_store_error(tmp_path):
    store = PayloadStore(tmp_path / "s")
    store.log_score(new_scoring_id(), "a")
    ctx = mp.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=_child_uses_store, args=(store, child_end))
    child.start()
    child_end.close()  # so that a child that dies unheard ends recv() with EOFError
    results = parent_end.recv() if parent_end.poll(60) else None
    child.join(60)
    assert child.exitcode == 0
    assert results == [("log_score", "StoreError"), ("matched", "StoreError"), ("score_history", "StoreError"),
                       ("close", "StoreError")]  # fmt: skip
    assert _count(store, "user_scores") == 1
    store.log_score(new_scoring_id(), "b")
    store.close()
    with PayloadStore(tmp_path / "s", read_only=True) as again:
        assert _count(again, "user_scores") == 2


def test_pickling_a_store_raises_store_error_and_spawn_children_open_the_path(tmp_path):
    store = PayloadStore(tmp_path / "s")
    store.log_score(new_scoring_id(), "a")
    with pytest.raises(dl.StoreError, match="cannot be pickled.*PayloadStore\\(path\\)"):
        pickle.dumps(store)
    ctx = mp.get_context("spawn")
    parent_end, child_end = ctx.Pipe()
    with pytest.raises(dl.StoreError, match="cannot be pickled"):
        ctx.Process(target=_child_uses_store, args=(store, child_end)).start()  # raises here, in the parent
    assert _count(store, "user_scores") == 1
    store.close()
    child = ctx.Process(target=_child_opens_path, args=(str(tmp_path / "s"), child_end))
    child.start()
    child_end.close()
    label_id = parent_end.recv() if parent_end.poll(120) else None
    child.join(120)
    assert child.exitcode == 0 and label_id == 2
    with PayloadStore(tmp_path / "s", read_only=True) as again:
        assert sorted(r[0] for r in again._rows("SELECT label FROM user_scores")) == ["a", "from-child"]


# --- 3. relocatable stores -------------------------------------------------------------------
def _store_with_checkpoints(root: Path, outside: Path) -> tuple[str, str]:
    with PayloadStore(root) as store:
        (root / "models").mkdir()
        (root / "models" / "m-inside.safetensors").write_bytes(b"inside weights")
        outside.write_bytes(b"outside weights")
        v1 = store.register_model(name="m", checkpoint_path=root / "models" / "m-inside.safetensors",
                                  classes=["a"], spec={})  # fmt: skip
        v2 = store.register_model(name="m", checkpoint_path=outside, classes=["a"], spec={}, parent=v1)
        stored = dict(store._rows("SELECT model_version, checkpoint_path FROM model_versions"))
    assert stored == {v1: "models/m-inside.safetensors", v2: str(outside.resolve())}
    return v1, v2


def test_a_moved_store_resolves_its_checkpoints_in_the_new_folder(tmp_path):
    old, new, outside = tmp_path / "old", tmp_path / "elsewhere" / "new", tmp_path / "outside.ckpt"
    v1, v2 = _store_with_checkpoints(old, outside)
    new.parent.mkdir()
    shutil.move(old, new)
    with PayloadStore(new) as store:
        inside = str(new.resolve() / "models" / "m-inside.safetensors")
        assert store.get_model(v1)["checkpoint_path"] == inside
        assert store.model_versions().checkpoint_path.tolist() == [inside, str(outside.resolve())]
        assert store.lineage(v2)["parents"][0]["checkpoint_path"] == inside
        assert store.verify().ok


def test_a_copied_store_uses_its_own_checkpoints(tmp_path):
    orig, copy, outside = tmp_path / "orig", tmp_path / "copy", tmp_path / "outside.ckpt"
    v1, _ = _store_with_checkpoints(orig, outside)
    shutil.copytree(orig, copy)
    (orig / "models" / "m-inside.safetensors").write_bytes(b"changed in the original")
    with PayloadStore(copy) as store:
        path = Path(store.get_model(v1)["checkpoint_path"])
        assert path == copy.resolve() / "models" / "m-inside.safetensors"
        assert path.read_bytes() == b"inside weights" and store.verify().ok
    with PayloadStore(orig) as store:
        assert store.verify().problems[["kind", "id"]].values.tolist() == [["checkpoint", v1]]


def test_an_older_store_gets_relative_checkpoint_paths_and_new_content_hashes(tmp_path):
    root = (tmp_path / "old").resolve()
    (root / "models").mkdir(parents=True)
    inside = root / "models" / "a.safetensors"
    inside.write_bytes(b"a weights")
    moved = root / "models" / "b.safetensors"  # registered when the store lived at /gone/store
    moved.write_bytes(b"b weights")
    outside = tmp_path / "c.safetensors"
    outside.write_bytes(b"c weights")
    sha = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (inside, moved, outside)}
    con = duckdb.connect(str(root / "store.duckdb"))
    assert schema.migrate(con, target=2) == 2
    model_rows = [("m-v1", str(inside), sha[inside]), ("m-v2", "/gone/store/models/b.safetensors", sha[moved]),
                  ("m-v3", str(outside), sha[outside]), ("m-v4", "/gone/store/models/a.safetensors", "0" * 64)]
    for n, (version, path, digest) in enumerate(model_rows, 1):
        con.execute("INSERT INTO model_versions VALUES (?, 'm', ?, now()::TIMESTAMP, ?, ?, NULL, NULL, '{}', '{}', "
                    "['a'], '{}')", [version, n, path, digest])  # fmt: skip
    ids = [new_scoring_id() for _ in range(2)]
    for i, sid in enumerate(ids):
        data = f"clip {i}".encode()
        clip_sha = hashlib.sha256(data).hexdigest()
        relpath = f"media/{clip_sha[:2]}/{clip_sha}.bin"
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(data)
        con.execute("INSERT INTO raw_payloads VALUES (?, now()::TIMESTAMP, ?, ?, ?, '', NULL, NULL, NULL, NULL, NULL, "
                    "'{}')", [sid, clip_sha, relpath, len(data)])  # fmt: skip
        con.execute("INSERT INTO user_scores VALUES (?, ?, 'a', 'human', NULL, now()::TIMESTAMP)", [i + 1, sid])
        con.execute("INSERT INTO dataset_members VALUES ('d-v1', ?, ?, 'a', ?)", [sid, i + 1, clip_sha])
    con.execute("INSERT INTO dataset_versions VALUES ('d-v1', 'd', 1, now()::TIMESTAMP, '{}', 2, 'old-style hash')")
    con.close()
    with PayloadStore(root) as store:
        assert store._rows("SELECT max(version) FROM schema_version")[0][0] == schema.SCHEMA_VERSION == 4
        stored = dict(store._rows("SELECT model_version, checkpoint_path FROM model_versions"))
        assert stored == {"m-v1": "models/a.safetensors", "m-v2": "models/b.safetensors", "m-v3": str(outside),
                          "m-v4": "/gone/store/models/a.safetensors"}  # m-v4: the digest does not match  # fmt: skip
        assert store.get_model("m-v2")["checkpoint_path"] == str(moved)
        assert store.snapshot_dataset("d") == "d-v1"  # the recomputed hash finds the same content
        assert store.matched().columns[-1] == "media_ok"


# --- 4. temp checkpoints ---------------------------------------------------------------------------
def test_stale_temp_checkpoints_are_removed_on_the_next_writable_open(tmp_path):
    root = tmp_path / "s"
    PayloadStore(root).close()
    models = root / "models"
    models.mkdir()
    stale = [models / ".shapes-4242-1700000000000000000.safetensors",
             models / "..shapes-4242-1700000000000000000.safetensors.k2j3h4.tmp"]  # fmt: skip
    kept = [models / "shapes-0123456789abcdef.safetensors", models / "notes.txt"]
    for path in stale + kept:
        path.write_bytes(b"x")
    PayloadStore(root, read_only=True).close()  # a reader removes nothing
    assert all(p.exists() for p in stale)
    PayloadStore(root).close()
    assert sorted(p.name for p in models.iterdir()) == sorted(p.name for p in kept)


# --- 5. atomic export -------------------------------------------------------------------------------
def _failing_writer(real):
    def write_dataset(table, base_dir, **kwargs):
        part = Path(base_dir) / "model_version=m-v1" / "received_date=2024-01-01"
        part.mkdir(parents=True, exist_ok=True)
        (part / "part-0.parquet").write_bytes(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    return write_dataset


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failed_export_leaves_no_folder_and_a_previous_export_intact(tmp_path, monkeypatch):
    out = tmp_path / "exports" / "matched"
    with PayloadStore(tmp_path / "s") as store:
        _labelled(store, 3)
        real = pyarrow.dataset.write_dataset
        monkeypatch.setattr(pyarrow.dataset, "write_dataset", _failing_writer(real))
        with pytest.raises(OSError, match="No space left"):
            store.export_parquet(out)
        assert sorted(os.listdir(out.parent)) == []  # neither out_dir nor a temp folder
        monkeypatch.setattr(pyarrow.dataset, "write_dataset", real)
        assert store.export_parquet(out) == out
        before = _tree(out)
        (out / "README.txt").write_text("mine")  # not an export partition: kept by later exports
        assert len(before) == 1 and duckdb.connect().execute(
            f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet')").fetchall() == [(3,)]
        monkeypatch.setattr(pyarrow.dataset, "write_dataset", _failing_writer(real))
        with pytest.raises(OSError, match="No space left"):
            store.export_parquet(out)
        assert _tree(out) == before | {"README.txt": b"mine"}
        assert sorted(os.listdir(out.parent)) == ["matched"]
        monkeypatch.setattr(pyarrow.dataset, "write_dataset", real)
        stale = out.parent / ".matched.export-999999999-deadbeef"  # a killed export (no such pid)
        stale.mkdir()
        _labelled(store, 1, model_version="m-v2")
        store.export_parquet(out)
        assert sorted(os.listdir(out.parent)) == ["matched"]
        parts = sorted(str(p.relative_to(out).parent) for p in out.rglob("*.parquet"))
        assert [p.split("/")[0] for p in parts] == ["model_version=m-v1", "model_version=m-v2"]
        assert (out / "README.txt").read_text() == "mine"


# --- 6. content-addressed data set versions ----------------------------------------------------
def test_snapshots_of_the_same_content_return_the_same_version(tmp_path):
    with PayloadStore(tmp_path / "s") as store:
        ids = _labelled(store, 3)
        first = store.snapshot_dataset("d")
        assert first == "d-v1" and store.snapshot_dataset("d") == "d-v1"
        assert store.snapshot_dataset("d", scoring_ids=list(reversed(ids))) == "d-v1"
        store.log_score(ids[0], "a")  # a new label row with the same label: same content
        assert store.snapshot_dataset("d") == "d-v1"
        store.log_score(ids[1], "a")  # relabelled: new content
        assert store.snapshot_dataset("d") == "d-v2"
        assert store.snapshot_dataset("other") == "other-v1"  # versions are addressed within a name
        # the same clips (same bytes) with the same labels under new scoring ids hash the same
        again = [new_scoring_id() for _ in ids]
        for i, sid in enumerate(again):
            store.log_raw(sid, f"clip-{i}".encode() * 8)
            store.log_score(sid, "a" if i % 2 == 0 else "b")
        assert store.snapshot_dataset("d", scoring_ids=again) == "d-v1"
        assert _count(store, "dataset_versions") == 3
        pairs = sorted((hashlib.sha256(f"clip-{i}".encode() * 8).hexdigest(), lab) for i, lab in enumerate("aba"))
        want = hashlib.sha256("".join(f"{s}\t{lab}\n" for s, lab in pairs).encode()).hexdigest()
        assert store._rows("SELECT content_hash FROM dataset_versions WHERE dataset_version = 'd-v1'")[0][0] == want


# --- 7. verify -----------------------------------------------------------------------------------
def test_verify_reports_missing_and_altered_files_and_matched_flags_them(tmp_path, capsys):
    root = tmp_path / "s"
    with PayloadStore(root) as store:
        ids = _labelled(store, 4)
        ckpt = tmp_path / "m.ckpt"
        ckpt.write_bytes(b"weights")
        version = store.register_model(name="m", checkpoint_path=ckpt, classes=["a", "b"], spec={})
        assert store.matched_df().media_ok.isna().all()  # never verified
        first = store.verify()
        assert first.ok and first.problems.empty and first.recorded
        assert (first.n_media, first.n_raw_rows, first.n_checkpoints) == (4, 4, 1)
        assert "all intact" in first.summary()
        store.raw_path(ids[0]).unlink()
        altered = store.raw_path(ids[1])
        data = bytearray(altered.read_bytes())
        data[3] ^= 0x01
        altered.write_bytes(bytes(data))
        ckpt.write_bytes(b"weights, changed")
        report = store.verify()
        sha = {sid: store._rows("SELECT sha256 FROM raw_payloads WHERE scoring_id = ?", [sid])[0][0] for sid in ids}
        assert not report.ok and list(report.problems.columns) == ["kind", "id", "path", "expected", "found"]
        got = {(r.kind, r.id): (r.path, r.expected, r.found) for r in report.problems.itertuples()}
        assert got == {
            ("media", sha[ids[0]]): (str(store.raw_path(ids[0])), sha[ids[0]], "missing"),
            ("media", sha[ids[1]]): (str(altered), sha[ids[1]], hashlib.sha256(bytes(data)).hexdigest()),
            ("checkpoint", version): (str(ckpt.resolve()), hashlib.sha256(b"weights").hexdigest(),
                                      hashlib.sha256(b"weights, changed").hexdigest()),
        }  # fmt: skip
        text = report.summary()
        assert "3 problem(s)" in text and "2 raw payload row(s) point at a missing or altered file" in text
        assert "re-register" in text
        flags = dict(store.matched().select("scoring_id, media_ok").fetchall())
        assert flags == {ids[0]: False, ids[1]: False, ids[2]: True, ids[3]: True}
        assert store.runs("verify").status.tolist() == ["ok", "ok"]
        statuses = store._rows("SELECT status, count(*) FROM media_checks GROUP BY ALL ORDER BY 1")
        assert statuses == [("altered", 1), ("missing", 1), ("ok", 6)]
    # the command: exit 1 with problems, and records; 0 once fixed
    assert cli.main(["verify", str(root)]) == 1
    out = capsys.readouterr().out
    assert "3 problem(s)" in out and "missing" in out
    store = PayloadStore(root)
    store.raw_path(ids[1]).write_bytes(f"clip-{1}".encode() * 8)
    store.close()
    ckpt.write_bytes(b"weights")
    with PayloadStore(root, read_only=True) as reader:  # a reader holds it: verify reports without recording
        assert cli.main(["verify", str(root)]) == 1
        assert "results not recorded" in capsys.readouterr().out
        assert reader.verify(record=False).problems.kind.tolist() == ["media"]
        with pytest.raises(dl.StoreError, match="read-only"):
            reader.verify(record=True)
    with PayloadStore(root) as store:
        store.log_raw(new_scoring_id(), f"clip-{0}".encode() * 8)  # the missing file is written again
        assert store.verify().ok
        assert store.matched_df().media_ok.tolist() == [True] * 4
    assert cli.main(["verify", str(root)]) == 0
    assert "all intact" in capsys.readouterr().out
    assert cli.main(["verify", str(tmp_path / "nowhere")]) == 2 and not (tmp_path / "nowhere").exists()


# --- 8. typed errors ----------------------------------------------------------------------------
def test_reading_a_damaged_database_raises_store_corrupt(tmp_path):
    root = tmp_path / "s"
    with PayloadStore(root) as store:
        ids = [new_scoring_id() for _ in range(3000)]
        store.log_raw_many([{"scoring_id": i, "data": i.encode() * 5} for i in ids])
        store.log_transformed_many([{"scoring_id": i, "model_version": "m-v1", "record": {"a": 1},
                                     "tensor_digest": "d", "embedding": [0.1] * 16} for i in ids])  # fmt: skip
        store.log_prediction_many([{"scoring_id": i, "model_version": "m-v1", "label": "x",
                                    "probabilities": [0.5, 0.5], "confidence": 0.5} for i in ids])  # fmt: skip
        store.log_score_many([{"scoring_id": i, "label": "x"} for i in ids])
    db = root / "store.duckdb"
    data = bytearray(db.read_bytes())
    rng = np.random.default_rng(0)
    for offset in range(3 * 4096 * 64, len(data) - 4096, 262_144):
        data[offset : offset + 4096] = rng.bytes(4096)
    db.write_bytes(bytes(data))
    with PayloadStore(root, read_only=True) as store:
        with pytest.raises(duckdb.Error):  # the lazy relation: DuckDB's own error, as documented
            store.matched().df()
        for call in (store.matched_df, store.unmatched, lambda: store.export_parquet(tmp_path / "out")):
            with pytest.raises(dl.StoreCorrupt, match="Restore store.duckdb from a backup"):
                call()
    assert not (tmp_path / "out").exists() and os.listdir(tmp_path) == ["s"]


def test_symlinked_lock_or_database_files_are_refused(tmp_path):
    root = tmp_path / "s"
    PayloadStore(root).close()
    (root / ".lock").unlink()
    (root / ".lock").symlink_to("/dev/null")
    for read_only in (False, True):
        with pytest.raises(dl.StoreError, match=r"\.lock is a symbolic link.*Remove the link"):
            PayloadStore(root, read_only=read_only)
    (root / ".lock").unlink()
    PayloadStore(root).close()  # a fresh lock file: fine again
    other = tmp_path / "other"
    other.mkdir()
    (other / "store.duckdb").symlink_to(root / "store.duckdb")
    for read_only in (False, True):
        with pytest.raises(dl.StoreError, match=r"store\.duckdb is a symbolic link.*Remove the link"):
            PayloadStore(other, read_only=read_only)
    (other / ".lock").unlink()
    os.mkfifo(other / ".lock")
    with pytest.raises(dl.StoreError, match="not a regular file"):
        PayloadStore(other, read_only=True)
