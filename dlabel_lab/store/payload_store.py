"""The payload store: one DuckDB file and a folder of content-addressed media.

:class:`PayloadStore` logs every scoring event under its ``scoring_id`` — the
raw clip, what the model saw (the transformed payload), the prediction and the
user scores — and joins them back into the comprehensive data set with
:meth:`PayloadStore.matched`. Versions of data sets, models and transformation
parameters and the execution log live in the same file (see
:mod:`dlabel_lab._store_versions`).

One process owns a writable store (an OS lock on ``<dir>/.lock``); threads of
that process may log concurrently. Writes are idempotent on ``scoring_id``.
A store object belongs to the process that opened it: a forked child that
uses it, and pickling it (multiprocessing's spawn), raise :class:`StoreError`.

Example:
    >>> import dlabel_lab as dl
    >>> with dl.PayloadStore("runs/store") as store:  # doctest: +SKIP
    ...     sid = store.new_scoring_id()
    ...     sha = store.log_raw(sid, open("clip.mp4", "rb").read(), source_name="clip.mp4")
    ...     store.log_score(sid, "circle")
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from ..errors import (
    SchemaVersionError,
    StoreCorrupt,
    StoreError,
    StoreLocked,
)
from . import io, writes
from .analysis import AnalysisMixin
from .events import LoggingMixin
from .lock import LockFile
from .objects import ObjectsMixin
from .queries import MATCHED_COLUMNS, matched_filters, matched_query, unmatched_query
from .raw import RawMixin
from .schema import SCHEMA_VERSION, current_version, migrate, newer_message
from .tasks import TasksMixin
from .verify import VerifyMixin, VerifyReport
from .versions import VersionsMixin

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PayloadStore", "VerifyReport", "new_scoring_id", "MATCHED_COLUMNS", "write_matched_parquet"]

new_scoring_id = io.new_scoring_id

_CORRUPT_HINTS = ("corrupt", "checksum", "not a valid duckdb", "wal file", "write-ahead", "serializ", "malformed",
                  "internal error", "deserializ", "invalid block", "unexpected end", "could not read enough bytes")
_LOCK_HINTS = ("could not set lock", "conflicting lock")
_DISK_HINTS = ("no space left", "permission denied", "read-only file system", "disk quota")
# DuckDB errors that, outside a statement's own mistakes, mean the file (or the open database) cannot be read
_DAMAGE_ERRORS = (duckdb.IOException, duckdb.InternalException, duckdb.FatalException, duckdb.SerializationException)


def _keep_forever(*objects: object) -> None:
    """Leak ``objects`` on purpose: their destructors never run in this process.

    A DuckDB connection inherited through ``fork()`` must not be closed or
    destroyed in the child (its threads and buffers belong to the parent;
    closing it there crashes or writes a half-state), so the child keeps an
    extra reference that nothing ever drops.
    """
    for obj in objects:
        if obj is not None:
            with contextlib.suppress(Exception):
                ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


class PayloadStore(RawMixin, LoggingMixin, VersionsMixin, VerifyMixin, AnalysisMixin, ObjectsMixin, TasksMixin):
    """A folder holding ``store.duckdb`` and ``media/``: every payload of every scoring event.

    Opening takes the store's lock (the one thing done on construction, so a
    second process learns at once that it cannot have the store), opens the
    database with external file access disabled, and creates or migrates the
    schema.

    Args:
        path: The store folder; created (with ``media/``) when missing, unless
            ``read_only``.
        read_only: Open for reading only; works while no writer holds the store.

    A store object belongs to the process that opened it. Used from another
    process (a ``fork()`` child, a multiprocessing worker), every method raises
    :class:`StoreError` and nothing is written; ``close()`` and garbage
    collection there let go of the inherited connection without touching it.
    Pickling a store (what multiprocessing's spawn does with arguments)
    raises :class:`StoreError` too. Open the store in the process that uses it.

    Raises:
        StoreLocked: Another process (or another open store object in this
            process) holds the store for writing, or readers hold it and this
            open wants to write.
        StoreCorrupt: ``store.duckdb`` or its write-ahead log is damaged.
        StoreError: ``.lock`` or ``store.duckdb`` is a symbolic link (remove it).
        SchemaVersionError: The store was written by a newer dlabel_lab, or is
            older and ``read_only`` forbids migrating it.

    Example:
        >>> store = PayloadStore("runs/store")  # doctest: +SKIP
        >>> store.matched().df().shape  # doctest: +SKIP
        (0, 27)
        >>> store.close()  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self._pid = os.getpid()  # the process that owns this object (see _check_process)
        self.path = Path(path).expanduser().resolve()
        self.media_dir = self.path / "media"
        self.read_only = bool(read_only)
        self._db_path = self.path / "store.duckdb"
        self._lock = LockFile(self.path / ".lock")
        self._state_lock = threading.Lock()  # guards cursors and counters
        self._write_lock = threading.RLock()  # one writer at a time: check-then-insert stays atomic
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._con: duckdb.DuckDBPyConnection | None = None
        self._next_label_id = 0
        self._open()

    # --- opening and closing --------------------------------------------------
    def _open(self) -> None:
        if self.read_only:
            if not self._db_path.is_file():
                raise StoreError(f"there is no payload store at {self.path} (no store.duckdb). Check the path.")
        else:
            self.media_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire(exclusive=not self.read_only, store_dir=self.path)
        try:
            for name, what in (("store.duckdb", "database file"), ("store.duckdb.wal", "write-ahead log")):
                io.refuse_symlink(self.path / name, what=what)
            config = {
                "enable_external_access": False,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            }
            with self._mapped_errors(opening=True):
                self._con = duckdb.connect(str(self._db_path), read_only=self.read_only, config=config)
                self._check_schema()
                if not self.read_only:
                    row = self._con.execute("SELECT coalesce(max(label_id), 0) FROM user_scores").fetchall()
                    self._next_label_id = int(row[0][0]) + 1
            if not self.read_only:
                io.clean_temp_media(self.media_dir)
                io.clean_temp_checkpoints(self.path / "models")
        except BaseException:
            self._shutdown()
            raise

    def _check_schema(self) -> None:
        con = self._con
        assert con is not None
        found = current_version(con)
        if found > SCHEMA_VERSION:
            raise SchemaVersionError(newer_message(found))
        if found < SCHEMA_VERSION:
            if self.read_only:
                raise SchemaVersionError(
                    f"store.duckdb has schema version {found}, older than {SCHEMA_VERSION}. Open it once without "
                    "read_only=True to migrate it, then open it read-only."
                )
            migrate(con, store_dir=self.path)

    @contextlib.contextmanager
    def _mapped_errors(self, *, opening: bool = False) -> Iterator[None]:
        """Turn DuckDB's lock and corruption errors into the store's typed errors."""
        try:
            yield
        except duckdb.Error as error:
            text = str(error)
            low = text.lower()
            if any(h in low for h in _LOCK_HINTS):
                pid = re.search(r"PID (\d+)", text)
                holder = f"process {pid.group(1)}" if pid else "another process"
                raise StoreLocked(
                    f"The payload store {self.path} is locked: {holder} has store.duckdb open (outside "
                    f"dlabel_lab's lock). Close it there, then open the store again. DuckDB said: {text}"
                ) from None
            if opening and not any(h in low for h in _CORRUPT_HINTS) and isinstance(error, duckdb.IOException):
                raise StoreError(f"cannot open {self._db_path}: {text.splitlines()[0]}") from None
            if isinstance(error, duckdb.IOException) and any(h in low for h in _DISK_HINTS):
                raise StoreError(
                    f"the file system refused the payload store {self.path}: {text.splitlines()[0]}. Free space "
                    "or fix the permissions, then try again."
                ) from None
            if opening or any(h in low for h in _CORRUPT_HINTS) or isinstance(error, _DAMAGE_ERRORS) \
                    or "invalidated" in low:
                raise StoreCorrupt(
                    f"{self._db_path} (or its write-ahead log store.duckdb.wal) is damaged and cannot be read: "
                    f"{text.splitlines()[0]}. Restore store.duckdb from a backup, or from a Parquet export "
                    "(store.export_parquet()); the media/ folder is content-addressed and can be kept."
                    + ("" if opening else " (If the damage may be in memory only, close the store and open it "
                       "again first.)")
                ) from None
            raise

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run (the store can no longer be used).

        Example:
            >>> store.closed  # doctest: +SKIP
            False
        """
        return self._con is None

    def close(self) -> None:
        """Checkpoint (when writable), close every connection and release the lock.

        Raises:
            StoreError: Called in another process than the one that opened
                the store (a forked child); the inherited connection is let go
                of there without being touched, and the owner's store stays open.

        Example:
            >>> store.close()  # doctest: +SKIP
        """
        if self._foreign():
            self._abandon()
            raise StoreError(self._foreign_message())
        with self._write_lock:
            if self._con is not None and not self.read_only:
                with contextlib.suppress(duckdb.Error):
                    self._con.execute("CHECKPOINT")
            self._shutdown()

    def _shutdown(self) -> None:
        with self._state_lock:
            cursors, self._cursors = self._cursors, []
            con, self._con = self._con, None
        for cursor in cursors:
            with contextlib.suppress(Exception):
                cursor.close()
        if con is not None:
            with contextlib.suppress(Exception):
                con.close()
        self._lock.release()

    def __enter__(self) -> PayloadStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self._foreign():
                self._abandon()
            else:
                self._shutdown()

    def __reduce_ex__(self, protocol: object) -> Any:  # noqa: ANN401
        raise StoreError(
            f"a PayloadStore cannot be pickled or sent to another process (multiprocessing's spawn and forkserver "
            f"pickle their arguments): its DuckDB connection belongs to this process. Pass the path "
            f"({str(self.path)!r}) and open the store in the process that uses it, with PayloadStore(path), once "
            "this process has closed it (one process owns a writable store); or send the work to the owning "
            "process (the scoring service, later)."
        )

    # --- the owning process ----------------------------------------------------------
    def _foreign(self) -> bool:
        """Whether this process is not the one that opened the store (a forked child)."""
        return os.getpid() != getattr(self, "_pid", os.getpid())

    def _foreign_message(self) -> str:
        return (
            f"the payload store {self.path} was opened by process {self._pid}; this is process {os.getpid()} "
            "(a forked child or multiprocessing worker). A store's DuckDB connection cannot be used from another "
            "process: nothing was read or written. Open the store in this process with PayloadStore(path) (after "
            f"process {self._pid} has closed it: one process owns a writable store), or send the work to the "
            "process that owns it (the scoring service, later)."
        )

    def _check_process(self) -> None:
        if self._foreign():
            raise StoreError(self._foreign_message())

    def _abandon(self) -> None:
        """Let go of an inherited connection in a forked child without touching it (or the parent's lock)."""
        cursors, self._cursors = self._cursors, []
        con, self._con = self._con, None
        local = self.__dict__.pop("_local", None)
        self._local = threading.local()
        _keep_forever(con, *cursors, local)
        self._lock.abandon()

    def __repr__(self) -> str:
        state = "closed" if self._con is None else ("read-only" if self.read_only else "writable")
        return f"PayloadStore({str(self.path)!r}, {state})"

    # --- connections -------------------------------------------------------------
    def _cursor(self, slot: str = "work") -> duckdb.DuckDBPyConnection:
        """This thread's own cursor (``work`` for the store's statements, ``read`` for returned relations)."""
        self._check_process()
        con = self._con
        if con is None:
            raise StoreError(f"the payload store {self.path} is closed; open it again with PayloadStore(path)")
        local = self._local
        if getattr(local, "con", None) is not con:
            local.con, local.work, local.read = con, None, None
        cursor = getattr(local, slot)
        if cursor is None:
            with self._state_lock:
                cursor = con.cursor()
                self._cursors.append(cursor)
            setattr(local, slot, cursor)
        return cursor

    def _rows(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._mapped_errors():
            return self._cursor().execute(sql, params).fetchall()

    def _df(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """A small result as a DataFrame whose missing text values are ``None`` (not NaN)."""
        import pandas as pd
        with self._mapped_errors():
            frame = self._cursor().execute(sql, params).df()
        for column in frame.columns:
            if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column].dtype):
                values = frame[column].astype(object)
                frame[column] = values.where(values.notna(), None)
        return frame

    def _writable(self) -> None:
        self._check_process()
        if self.read_only:
            raise StoreError(
                f"the payload store {self.path} is open read-only; open it with PayloadStore(path) to write"
            )

    def advertise_service(self, url: str) -> None:
        """Write the URL of the service that owns this store into its lock file.

        Another process that finds the store locked reads it there
        (:func:`~dlabel_lab.store.lock.describe_holder`) and talks to the
        service instead of failing with :class:`StoreLocked`.

        Example:
            >>> store.advertise_service("http://127.0.0.1:8765")  # doctest: +SKIP
        """
        self._writable()
        self._lock.annotate(service=str(url))

    # --- ids ---------------------------------------------------------------------
    @staticmethod
    def new_scoring_id() -> str:
        """A new time-ordered scoring id (UUIDv7 text).

        Example:
            >>> PayloadStore.new_scoring_id()[14]
            '7'
        """
        return io.new_scoring_id()

    # --- the comprehensive data set ---------------------------------------------------
    def matched(
        self,
        *,
        label: str | Sequence[str] | None = None,
        prediction: str | Sequence[str] | None = None,
        model_version: str | Sequence[str] | None = None,
        label_source: str | Sequence[str] | None = None,
        label_author: str | Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        min_confidence: float | None = None,
        max_confidence: float | None = None,
        correct: bool | None = None,
        tags: str | Sequence[str] | None = None,
        scoring_ids: Sequence[str] | None = None,
    ) -> duckdb.DuckDBPyRelation:
        """The comprehensive data set: raw ⋈ transformed ⋈ prediction ⋈ latest user score.

        One row per scoring id and model version that has a raw payload, a
        transformed payload and a prediction; the user score is the latest one
        (``NULL`` when unlabelled). Rows come in no set order (sorting a
        million wide rows costs more than the join); add
        ``.order("scoring_id, model_version")`` for arrival order. Every filter
        value is bound as a parameter; column names come from an allow-list.

        Args:
            label: Latest user label(s) to keep.
            prediction: Predicted label(s) to keep.
            model_version: Model version(s) to keep.
            label_source: Source(s) of the latest user label to keep
                (``"human"``, ``"auto"``, ``"audit"``, ...).
            label_author: Author(s) of the latest user label to keep (an
                auto-label's author is the model version that produced it).
            since: Keep clips received at or after this time.
            until: Keep clips received before this time.
            min_confidence: Keep predictions with ``confidence >= min_confidence``.
            max_confidence: Keep predictions with ``confidence <= max_confidence``.
            correct: ``True`` keeps labelled rows predicted right, ``False``
                labelled rows predicted wrong.
            tags: Keep rows carrying every one of these clip tags.
            scoring_ids: Keep these scoring ids.

        ``media_ok`` is the latest :meth:`verify` result of the row's media
        file: ``True`` verified intact, ``False`` missing or altered at that
        verify, ``NULL`` never verified.

        The relation is lazy: it runs when converted, so errors of a damaged
        database come from ``.df()``/``.fetchall()`` as DuckDB's own
        (untyped) errors. :meth:`matched_df` materialises with typed errors.

        Returns:
            A DuckDB relation (``.df()``, ``.to_arrow_table()``, ``.fetchall()``)
            with the columns :data:`MATCHED_COLUMNS`.

        Example:
            >>> store.matched(model_version="shapes-v1", correct=False).df()  # doctest: +SKIP
        """
        self._check_process()
        filters = matched_filters(
            label=label, prediction=prediction, model_version=model_version, label_source=label_source,
            label_author=label_author, since=since, until=until, min_confidence=min_confidence,
            max_confidence=max_confidence, correct=correct, tags=tags, scoring_ids=scoring_ids,
        )  # fmt: skip
        sql, params = matched_query(filters, media_root=f"{self.path}/")
        with self._mapped_errors():
            return self._cursor("read").sql(sql, params=params)

    def matched_df(self, **filters: Any) -> pd.DataFrame:
        """:meth:`matched` as a pandas DataFrame, read now, with DuckDB's read errors mapped to typed ones.

        Args:
            **filters: The filters of :meth:`matched`.

        Raises:
            StoreCorrupt: The database is damaged and the rows cannot be read.

        Example:
            >>> store.matched_df(label="circle").shape  # doctest: +SKIP
            (12, 27)
        """
        rel = self.matched(**filters)
        with self._mapped_errors():
            return rel.df()

    def unmatched(self) -> pd.DataFrame:
        """Scoring ids that lack a part, which parts, and the error the execution log holds for them.

        Returns:
            A DataFrame with ``scoring_id``, ``model_version`` (``None`` when
            no model has seen the clip), ``missing`` (a list drawn from
            ``raw``, ``transformed``, ``prediction``) and ``error`` (from the
            latest failed run of that scoring id, else ``None``).

        Example:
            >>> store.unmatched()  # doctest: +SKIP
                                           scoring_id model_version                  missing          error
            0  0190...                          None  [transformed, prediction]  TruncatedMedia: ...
        """
        frame = self._df(unmatched_query())
        frame["missing"] = [list(m) for m in frame["missing"]]
        return frame

    # --- export ------------------------------------------------------------------
    def export_parquet(self, out_dir: str | Path, **matched_filters: Any) -> Path:
        """Write the matched data as Hive-partitioned Parquet; the folder.

        Partitions are ``model_version=<v>/received_date=<YYYY-MM-DD>/part-0.parquet``,
        which Spark, Trino and DuckDB (``read_parquet(..., hive_partitioning=true)``)
        read directly from a folder or object storage. The store's DuckDB runs
        with external access disabled, so the files are written by PyArrow
        from the query result.

        The export is atomic: everything is written (and fsynced) into a
        hidden sibling folder ``.<out>.export-<pid>-<random>`` first. A new
        ``out_dir`` is then renamed into place in one step; into an existing
        ``out_dir`` each partition folder written is swapped in whole
        (partitions written again are replaced, others and unrelated files
        are kept). A failure or kill while writing leaves ``out_dir`` as it
        was; the temp folder is removed on failure (and, after a kill, by the
        next export to the same ``out_dir``).

        Args:
            out_dir: The folder to write (created when missing).
            **matched_filters: Filters as :meth:`matched` takes them.

        Raises:
            StoreCorrupt: The database is damaged and the rows cannot be read.

        Example:
            >>> store.export_parquet("exports/matched")  # doctest: +SKIP
            PosixPath('exports/matched')
        """
        rel = self.matched(**matched_filters)
        with self._mapped_errors():
            table = rel.to_arrow_table()
        return write_matched_parquet(table, out_dir)

    # --- inserts ---------------------------------------------------------------------
    def _insert(self, table: str, types: dict[str, pa.DataType], cols: dict[str, list[Any]], keep: list[int]) -> None:
        """Insert the ``keep`` rows of ``cols`` in one statement (the caller holds the write lock)."""
        with self._mapped_errors():
            writes.insert_rows(self._cursor(), table, types, cols, keep)


def write_matched_parquet(table: pa.Table, out_dir: str | Path) -> Path:
    """Write matched rows (an Arrow table) as Hive-partitioned Parquet, atomically; the folder.

    What :meth:`PayloadStore.export_parquet` writes; the service client uses it
    for rows that came over HTTP.

    Example:
        >>> write_matched_parquet(store.matched().to_arrow_table(), "exports/matched")  # doctest: +SKIP
        PosixPath('exports/matched')
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    out = Path(out_dir)
    dates = pc.strftime(table.column("received_at"), format="%Y-%m-%d")
    table = table.append_column("received_date", dates)
    if out.exists() and not out.is_dir():
        raise StoreError(f"cannot export to {out}: it exists and is not a folder; pick another out_dir")
    tmp = io.export_temp_dir(out)
    try:
        if table.num_rows:
            ds.write_dataset(
                table, tmp, format="parquet", partitioning=["model_version", "received_date"],
                partitioning_flavor="hive", existing_data_behavior="overwrite_or_ignore",
                basename_template="part-{i}.parquet",
            )  # fmt: skip
        io.publish_export(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
