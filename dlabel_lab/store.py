"""The payload store: one DuckDB file and a folder of content-addressed media.

:class:`PayloadStore` logs every scoring event under its ``scoring_id`` — the
raw clip, what the model saw (the transformed payload), the prediction and the
user scores — and joins them back into the comprehensive data set with
:meth:`PayloadStore.matched`. Versions of data sets, models and transformation
parameters and the execution log live in the same file (see
:mod:`dlabel_lab._store_versions`).

One process owns a writable store (an OS lock on ``<dir>/.lock``); threads of
that process may log concurrently. Writes are idempotent on ``scoring_id``.

Example:
    >>> import dlabel_lab as dl
    >>> with dl.PayloadStore("runs/store") as store:  # doctest: +SKIP
    ...     sid = store.new_scoring_id()
    ...     sha = store.log_raw(sid, open("clip.mp4", "rb").read(), source_name="clip.mp4")
    ...     store.log_score(sid, "circle")
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from . import _store_io as io
from ._store_queries import MATCHED_COLUMNS, matched_filters, matched_query, unmatched_query
from ._store_schema import SCHEMA_VERSION, current_version, migrate, newer_message
from ._store_versions import VersionsMixin
from .errors import (
    ConfigError,
    DuplicateScoringId,
    SchemaVersionError,
    StoreCorrupt,
    StoreError,
    StoreLocked,
    UnknownRecord,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PayloadStore", "new_scoring_id", "MATCHED_COLUMNS"]

new_scoring_id = io.new_scoring_id

_SMALL_BATCH = 32  # up to this many rows go as one parameterised statement, more as an Arrow table
_TS = pa.timestamp("us")
_F32 = pa.list_(pa.float32())
_RAW_COLUMNS = {
    "scoring_id": pa.string(), "received_at": _TS, "sha256": pa.string(), "media_relpath": pa.string(),
    "size_bytes": pa.int64(), "source_name": pa.string(), "fps": pa.float64(), "frame_count": pa.int64(),
    "width": pa.int32(), "height": pa.int32(), "codec": pa.string(), "metadata": pa.string(),
}  # fmt: skip
_TRANSFORMED_COLUMNS = {
    "scoring_id": pa.string(), "model_version": pa.string(), "record": pa.string(), "tensor_digest": pa.string(),
    "embedding": _F32, "objects": pa.string(), "transformed_at": _TS,
}  # fmt: skip
_PREDICTION_COLUMNS = {
    "scoring_id": pa.string(), "model_version": pa.string(), "label": pa.string(), "probabilities": _F32,
    "confidence": pa.float64(), "latency_ms": pa.float64(), "predicted_at": _TS,
}  # fmt: skip
_SCORE_COLUMNS = {
    "label_id": pa.int64(), "scoring_id": pa.string(), "label": pa.string(), "source": pa.string(),
    "author": pa.string(), "labelled_at": _TS,
}  # fmt: skip
_CORRUPT_HINTS = ("corrupt", "checksum", "not a valid duckdb", "wal", "serialization", "malformed", "internal")
_LOCK_HINTS = ("could not set lock", "conflicting lock")


class PayloadStore(VersionsMixin):
    """A folder holding ``store.duckdb`` and ``media/``: every payload of every scoring event.

    Opening takes the store's lock (the one thing done on construction, so a
    second process learns at once that it cannot have the store), opens the
    database with external file access disabled, and creates or migrates the
    schema.

    Args:
        path: The store folder; created (with ``media/``) when missing, unless
            ``read_only``.
        read_only: Open for reading only; works while no writer holds the store.

    Raises:
        StoreLocked: Another process (or another open store object in this
            process) holds the store for writing, or readers hold it and this
            open wants to write.
        StoreCorrupt: ``store.duckdb`` or its write-ahead log is damaged.
        SchemaVersionError: The store was written by a newer dlabel_lab, or is
            older and ``read_only`` forbids migrating it.

    Example:
        >>> store = PayloadStore("runs/store")  # doctest: +SKIP
        >>> store.matched().df().shape  # doctest: +SKIP
        (0, 26)
        >>> store.close()  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path).expanduser().resolve()
        self.media_dir = self.path / "media"
        self.read_only = bool(read_only)
        self._db_path = self.path / "store.duckdb"
        self._lock = io.LockFile(self.path / ".lock")
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
            migrate(con)

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
            if opening or any(h in low for h in _CORRUPT_HINTS):
                raise StoreCorrupt(
                    f"{self._db_path} (or its write-ahead log store.duckdb.wal) is damaged and cannot be read: "
                    f"{text.splitlines()[0]}. Restore store.duckdb from a backup, or from a Parquet export "
                    "(store.export_parquet()); the media/ folder is content-addressed and can be kept."
                ) from None
            raise

    def close(self) -> None:
        """Checkpoint (when writable), close every connection and release the lock.

        Example:
            >>> store.close()  # doctest: +SKIP
        """
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
            self._shutdown()

    def __repr__(self) -> str:
        state = "closed" if self._con is None else ("read-only" if self.read_only else "writable")
        return f"PayloadStore({str(self.path)!r}, {state})"

    # --- connections -------------------------------------------------------------
    def _cursor(self, slot: str = "work") -> duckdb.DuckDBPyConnection:
        """This thread's own cursor (``work`` for the store's statements, ``read`` for returned relations)."""
        cursor = getattr(self._local, slot, None)
        con = self._con
        if con is None:
            raise StoreError(f"the payload store {self.path} is closed; open it again with PayloadStore(path)")
        if cursor is None or getattr(self._local, "con", None) is not con:
            with self._state_lock:
                cursor = con.cursor()
                self._cursors.append(cursor)
            setattr(self._local, slot, cursor)
            if slot == "work":
                self._local.read = None
            else:
                self._local.work = None
            self._local.con = con
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
        if self.read_only:
            raise StoreError(
                f"the payload store {self.path} is open read-only; open it with PayloadStore(path) to write"
            )

    # --- ids ---------------------------------------------------------------------
    @staticmethod
    def new_scoring_id() -> str:
        """A new time-ordered scoring id (UUIDv7 text).

        Example:
            >>> PayloadStore.new_scoring_id()[14]
            '7'
        """
        return io.new_scoring_id()

    # --- raw payloads ------------------------------------------------------------
    def log_raw(
        self,
        scoring_id: str,
        data: bytes,
        *,
        source_name: str = "",
        metadata: Mapping[str, Any] | None = None,
        received_at: datetime | None = None,
    ) -> str:
        """Log the native clip bytes of a scoring event; the sha256 of the bytes.

        The bytes go to ``media/<sha[:2]>/<sha>.<ext>`` (written atomically,
        once per content) before the row that points at them commits.
        ``metadata`` keys ``fps``, ``frame_count``, ``width``, ``height``,
        ``codec`` fill columns of their own; ``container`` picks the file
        extension when ``source_name`` has none.

        Args:
            scoring_id: The event's id (see :meth:`new_scoring_id`).
            data: The clip file's bytes.
            source_name: Where the clip came from (a file name or camera id).
            metadata: JSON-serialisable facts about the clip.
            received_at: When the clip arrived (default: now, UTC).

        Raises:
            DuplicateScoringId: Different bytes or metadata were logged under
                this id before (the same ones again add nothing).

        Example:
            >>> store.log_raw(sid, b"...", source_name="clip.mp4", metadata={"fps": 25})  # doctest: +SKIP
            '5f3c...'
        """
        row = {"scoring_id": scoring_id, "data": data, "source_name": source_name, "metadata": metadata}
        if received_at is not None:
            row["received_at"] = received_at
        return self.log_raw_many([row])[0]

    def log_raw_many(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Log several raw payloads in one transaction; their sha256 digests, in order.

        Args:
            rows: Dicts with ``scoring_id`` and ``data`` and optionally
                ``source_name``, ``metadata``, ``received_at``.

        Raises:
            DuplicateScoringId: An id is known (or repeated in ``rows``) with a
                different payload; nothing of the batch is written.

        Example:
            >>> store.log_raw_many([{"scoring_id": sid, "data": b"..."}])  # doctest: +SKIP
            ['5f3c...']
        """
        self._writable()
        now = io.utc_now()
        cols: dict[str, list[Any]] = {name: [] for name in _RAW_COLUMNS}
        blobs: list[bytes | bytearray | memoryview] = []
        for i, row in enumerate(_rows_of(rows, "log_raw_many")):
            try:
                sid = io.check_scoring_id(row["scoring_id"])
                data = row["data"]
            except KeyError as missing:
                raise ConfigError(f"row {i} of log_raw_many lacks {missing}") from None
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise ConfigError(f"data of {sid} must be bytes (the clip file's content), got {type(data).__name__}")
            source = io.check_text(row.get("source_name") or "", what="source_name", allow_empty=True)
            meta = row.get("metadata") or {}
            if not isinstance(meta, Mapping):
                raise ConfigError(f"metadata of {sid} must be a dict, got {type(meta).__name__}")
            sha = hashlib.sha256(data).hexdigest()
            cols["scoring_id"].append(sid)
            cols["received_at"].append(io.utc_naive(row.get("received_at"), what="received_at") or now)
            cols["sha256"].append(sha)
            cols["media_relpath"].append(f"media/{sha[:2]}/{sha}.{io.media_extension(source, meta)}")  # type: ignore[arg-type]
            cols["size_bytes"].append(len(data))
            cols["source_name"].append(source)
            cols["fps"].append(_meta_number(meta, "fps", float, sid))
            cols["frame_count"].append(_meta_number(meta, "frame_count", int, sid))
            cols["width"].append(_meta_number(meta, "width", int, sid))
            cols["height"].append(_meta_number(meta, "height", int, sid))
            codec = meta.get("codec")
            cols["codec"].append(None if codec is None else io.check_text(str(codec), what="codec", allow_empty=True))
            cols["metadata"].append(io.canonical_json(dict(meta), what=f"metadata of {sid}"))
            blobs.append(data)
        with self._write_lock:
            payload = ("sha256", "source_name", "metadata")
            keep = self._unique_in_batch("raw_payloads", ("scoring_id",), cols, payload)
            keep = self._not_stored("raw_payloads", ("scoring_id",), cols, payload, keep)  # before any media
            if keep:
                known = self._known_media([cols["sha256"][i] for i in keep])
                for i in keep:
                    sha = cols["sha256"][i]
                    relpath = known.setdefault(sha, cols["media_relpath"][i])
                    cols["media_relpath"][i] = relpath
                    io.write_media(self.path, relpath, blobs[i])
                self._insert("raw_payloads", _RAW_COLUMNS, cols, keep)
        return list(cols["sha256"])

    def _known_media(self, shas: list[str]) -> dict[str, str]:
        """sha256 -> relative path of media that committed rows already point at."""
        found = self._rows(
            "SELECT sha256, any_value(media_relpath) FROM raw_payloads WHERE list_contains(?, sha256) GROUP BY ALL",
            [sorted(set(shas))],
        )
        return dict(found)

    def raw_path(self, scoring_id: str) -> Path:
        """The absolute path of the clip file logged under ``scoring_id``.

        Raises:
            UnknownRecord: No raw payload has this id.

        Example:
            >>> store.raw_path(sid).suffix  # doctest: +SKIP
            '.mp4'
        """
        io.check_scoring_id(scoring_id)
        found = self._rows("SELECT media_relpath FROM raw_payloads WHERE scoring_id = ?", [scoring_id])
        if not found:
            raise UnknownRecord(f"no raw payload is logged under scoring id {scoring_id}; log it with log_raw()")
        return self.path / found[0][0]

    def raw_bytes(self, scoring_id: str) -> bytes:
        """The clip bytes logged under ``scoring_id``, checked against their sha256.

        Raises:
            UnknownRecord: No raw payload has this id.
            StoreCorrupt: The media file is missing or its content changed.

        Example:
            >>> store.raw_bytes(sid)[:4]  # doctest: +SKIP
            b'\\x00\\x00\\x00\\x18'
        """
        path = self.raw_path(scoring_id)
        sha = self._rows("SELECT sha256 FROM raw_payloads WHERE scoring_id = ?", [scoring_id])[0][0]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreCorrupt(
                f"the media file {path} of {scoring_id} is missing; restore media/ from a backup"
            ) from None
        if hashlib.sha256(data).hexdigest() != sha:
            raise StoreCorrupt(f"the media file {path} of {scoring_id} no longer matches its sha256; restore it")
        return data

    # --- transformed payloads and predictions --------------------------------------
    def log_transformed(
        self,
        scoring_id: str,
        *,
        model_version: str,
        record: Mapping[str, Any],
        tensor_digest: str,
        embedding: Sequence[float],
        objects: Sequence[Mapping[str, Any]] = (),
        transformed_at: datetime | None = None,
    ) -> None:
        """Log what a model version saw of a clip: preprocessing record, tensor digest, embedding, objects.

        The tensor itself is not stored: it is rebuilt from the raw clip and the
        record (``dlabel_lab.rebuild_tensor``) and checked with the digest.

        Args:
            scoring_id: The event's id.
            model_version: The model version that saw it.
            record: The preprocessing record (frame indices, crop, size, ...).
            tensor_digest: sha256 of the model input tensor.
            embedding: The clip's embedding (stored as ``FLOAT[]``).
            objects: What the model identified, e.g. ``[{"label": "circle", "score": 0.9}]``.
            transformed_at: When (default: now, UTC).

        Raises:
            DuplicateScoringId: A different transformed payload is logged for
                this id and model version.

        Example:
            >>> store.log_transformed(sid, model_version="shapes-v1", record={"indices": [0, 2]},
            ...                       tensor_digest="ab..", embedding=[0.1, 0.2], objects=[])  # doctest: +SKIP
        """
        row = dict(scoring_id=scoring_id, model_version=model_version, record=record, tensor_digest=tensor_digest,
                   embedding=embedding, objects=objects, transformed_at=transformed_at)  # fmt: skip
        self.log_transformed_many([row])

    def log_transformed_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Log several transformed payloads in one statement (keys as :meth:`log_transformed`).

        Raises:
            DuplicateScoringId: A (scoring_id, model_version) is known with a
                different payload; nothing of the batch is written.

        Example:
            >>> store.log_transformed_many([{"scoring_id": sid, "model_version": "shapes-v1", "record": {},
            ...     "tensor_digest": "ab..", "embedding": [0.1], "objects": []}])  # doctest: +SKIP
        """
        self._writable()
        now = io.utc_now()
        cols: dict[str, list[Any]] = {name: [] for name in _TRANSFORMED_COLUMNS}
        for i, row in enumerate(_rows_of(rows, "log_transformed_many")):
            try:
                sid = io.check_scoring_id(row["scoring_id"])
                cols["model_version"].append(io.check_name(row["model_version"], what="model_version"))
                record, digest, embedding = row["record"], row["tensor_digest"], row["embedding"]
            except KeyError as missing:
                raise ConfigError(f"row {i} of log_transformed_many lacks {missing}") from None
            if not isinstance(record, Mapping):
                raise ConfigError(f"record of {sid} must be a dict (the preprocessing record)")
            cols["scoring_id"].append(sid)
            cols["record"].append(io.canonical_json(dict(record), what=f"record of {sid}"))
            cols["tensor_digest"].append(io.check_text(digest, what="tensor_digest"))
            cols["embedding"].append(io.float_list(embedding, what=f"embedding of {sid}"))
            cols["objects"].append(io.canonical_json(list(row.get("objects") or ()), what=f"objects of {sid}"))
            cols["transformed_at"].append(io.utc_naive(row.get("transformed_at"), what="transformed_at") or now)
        self._insert_keyed("transformed_payloads", _TRANSFORMED_COLUMNS, ("scoring_id", "model_version"), cols,
                           ("record", "tensor_digest", "embedding", "objects"))  # fmt: skip

    def log_prediction(
        self,
        scoring_id: str,
        *,
        model_version: str,
        label: str,
        probabilities: Sequence[float],
        confidence: float,
        latency_ms: float | None = None,
        predicted_at: datetime | None = None,
    ) -> None:
        """Log a model version's prediction for a clip.

        Args:
            scoring_id: The event's id.
            model_version: The model version that predicted.
            label: The predicted class.
            probabilities: Class probabilities in the model's class order.
            confidence: The confidence of ``label`` (usually its probability).
            latency_ms: How long scoring took.
            predicted_at: When (default: now, UTC).

        Raises:
            DuplicateScoringId: A different prediction is logged for this id
                and model version (the same one again adds nothing).

        Example:
            >>> store.log_prediction(sid, model_version="shapes-v1", label="circle",
            ...                      probabilities=[0.8, 0.1, 0.1], confidence=0.8, latency_ms=3.2)  # doctest: +SKIP
        """
        row = dict(scoring_id=scoring_id, model_version=model_version, label=label, probabilities=probabilities,
                   confidence=confidence, latency_ms=latency_ms, predicted_at=predicted_at)  # fmt: skip
        self.log_prediction_many([row])

    def log_prediction_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Log several predictions in one statement (keys as :meth:`log_prediction`).

        Raises:
            DuplicateScoringId: A (scoring_id, model_version) is known with a
                different prediction; nothing of the batch is written.

        Example:
            >>> store.log_prediction_many([{"scoring_id": sid, "model_version": "shapes-v1", "label": "circle",
            ...     "probabilities": [0.8, 0.2], "confidence": 0.8}])  # doctest: +SKIP
        """
        self._writable()
        now = io.utc_now()
        rows = _rows_of(rows, "log_prediction_many")
        try:
            cols: dict[str, list[Any]] = {
                "scoring_id": [r["scoring_id"] for r in rows],
                "model_version": [r["model_version"] for r in rows],
                "label": [r["label"] for r in rows],
                "probabilities": [r["probabilities"] for r in rows],
                "confidence": [r["confidence"] for r in rows],
                "latency_ms": [r.get("latency_ms") for r in rows],
                "predicted_at": [r.get("predicted_at") for r in rows],
            }
        except KeyError as missing:
            raise ConfigError(f"a row of log_prediction_many lacks {missing}") from None
        _check_column(cols["scoring_id"], io.check_scoring_id)
        _check_column(cols["model_version"], lambda v: io.check_name(v, what="model_version"))
        _check_column(cols["label"], lambda v: io.check_text(v, what="predicted label"))
        cols["probabilities"] = [_floats(v, "probabilities") for v in cols["probabilities"]]
        cols["confidence"] = [_number(v, "confidence") for v in cols["confidence"]]
        cols["latency_ms"] = [None if v is None else _number(v, "latency_ms") for v in cols["latency_ms"]]
        cols["predicted_at"] = [now if v is None else io.utc_naive(v, what="predicted_at")
                                for v in cols["predicted_at"]]
        self._insert_keyed("predictions", _PREDICTION_COLUMNS, ("scoring_id", "model_version"), cols,
                           ("label", "probabilities", "confidence", "latency_ms"))  # fmt: skip

    # --- user scores ---------------------------------------------------------------
    def log_score(
        self,
        scoring_id: str,
        label: str,
        *,
        source: str = "human",
        author: str | None = None,
        labelled_at: datetime | None = None,
    ) -> int:
        """Append a user score (a label) for a clip; its ``label_id``. The latest label wins.

        Labels are never replaced: a correction, an auto-label or an audit is a
        new row, and the history stays (:meth:`score_history`).

        Args:
            scoring_id: The event's id.
            label: The class the user (or auto-labeller, or auditor) gave.
            source: Who labelled: ``"human"``, ``"auto"``, ``"audit"``, ...
            author: Optional name of the labeller.
            labelled_at: When (default: now, UTC).

        Example:
            >>> store.log_score(sid, "circle", source="human", author="ana")  # doctest: +SKIP
            1
        """
        row = dict(scoring_id=scoring_id, label=label, source=source, author=author, labelled_at=labelled_at)
        return self.log_score_many([row])[0]

    def log_score_many(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append several user scores in one statement; their ``label_id``s, in order.

        Example:
            >>> store.log_score_many([{"scoring_id": sid, "label": "circle"}])  # doctest: +SKIP
            [1]
        """
        self._writable()
        now = io.utc_now()
        cols: dict[str, list[Any]] = {name: [] for name in _SCORE_COLUMNS}
        for i, row in enumerate(_rows_of(rows, "log_score_many")):
            try:
                cols["scoring_id"].append(io.check_scoring_id(row["scoring_id"]))
                cols["label"].append(io.check_text(row["label"], what="label"))
            except KeyError as missing:
                raise ConfigError(f"row {i} of log_score_many lacks {missing}") from None
            cols["source"].append(io.check_text(row.get("source", "human"), what="source"))
            cols["author"].append(io.check_text(row.get("author"), what="author", optional=True))
            cols["labelled_at"].append(io.utc_naive(row.get("labelled_at"), what="labelled_at") or now)
        n = len(cols["scoring_id"])
        with self._write_lock:
            first = self._next_label_id
            cols["label_id"] = list(range(first, first + n))
            self._insert("user_scores", _SCORE_COLUMNS, cols, list(range(n)))
            self._next_label_id = first + n
        return cols["label_id"]

    def score_history(self, scoring_id: str | None = None) -> pd.DataFrame:
        """Every user score, oldest first (one clip's, or all); the last per clip is the one that counts.

        Example:
            >>> store.score_history(sid)[["label", "source"]].values.tolist()  # doctest: +SKIP
            [['circle', 'auto'], ['square', 'audit']]
        """
        where, params = "", []
        if scoring_id is not None:
            where, params = "WHERE scoring_id = ?", [io.check_scoring_id(scoring_id)]
        return self._df(
            "SELECT label_id, scoring_id, label, source, author, labelled_at, "
            "label_id = max(label_id) OVER (PARTITION BY scoring_id) AS is_latest "
            f"FROM user_scores {where} ORDER BY label_id",
            params,
        )

    # --- the comprehensive data set ---------------------------------------------------
    def matched(
        self,
        *,
        label: str | Sequence[str] | None = None,
        prediction: str | Sequence[str] | None = None,
        model_version: str | Sequence[str] | None = None,
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
            since: Keep clips received at or after this time.
            until: Keep clips received before this time.
            min_confidence: Keep predictions with ``confidence >= min_confidence``.
            max_confidence: Keep predictions with ``confidence <= max_confidence``.
            correct: ``True`` keeps labelled rows predicted right, ``False``
                labelled rows predicted wrong.
            tags: Keep rows carrying every one of these clip tags.
            scoring_ids: Keep these scoring ids.

        Returns:
            A DuckDB relation (``.df()``, ``.to_arrow_table()``, ``.fetchall()``)
            with the columns :data:`MATCHED_COLUMNS`.

        Example:
            >>> store.matched(model_version="shapes-v1", correct=False).df()  # doctest: +SKIP
        """
        filters = matched_filters(
            label=label, prediction=prediction, model_version=model_version, since=since, until=until,
            min_confidence=min_confidence, max_confidence=max_confidence, correct=correct, tags=tags,
            scoring_ids=scoring_ids,
        )  # fmt: skip
        sql, params = matched_query(filters, media_root=f"{self.path}/")
        with self._mapped_errors():
            return self._cursor("read").sql(sql, params=params)

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
        from the query result. Partitions written again are replaced.

        Args:
            out_dir: The folder to write (created when missing).
            **matched_filters: Filters as :meth:`matched` takes them.

        Example:
            >>> store.export_parquet("exports/matched")  # doctest: +SKIP
            PosixPath('exports/matched')
        """
        import pyarrow.dataset as ds

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        rel = self.matched(**matched_filters)
        with self._mapped_errors():
            table = rel.to_arrow_table()
        dates = pa.compute.strftime(table.column("received_at"), format="%Y-%m-%d")
        table = table.append_column("received_date", dates)
        if table.num_rows:
            ds.write_dataset(
                table, out, format="parquet", partitioning=["model_version", "received_date"],
                partitioning_flavor="hive", existing_data_behavior="delete_matching",
                basename_template="part-{i}.parquet",
            )  # fmt: skip
        return out

    # --- idempotent inserts ------------------------------------------------------------
    def _unique_in_batch(
        self, table: str, key: tuple[str, ...], cols: dict[str, list[Any]], payload: tuple[str, ...]
    ) -> list[int]:
        """Indices of the first row of each key; a key repeated with another payload raises."""
        keys = list(zip(*(cols[k] for k in key), strict=True))
        first: dict[tuple[Any, ...], int] = {}
        keep: list[int] = []
        for i, k in enumerate(keys):
            j = first.setdefault(k, i)
            if j == i:
                keep.append(i)
            elif not _same_payload([cols[p][i] for p in payload], [cols[p][j] for p in payload]):
                raise DuplicateScoringId(_dup_message(table, k, "twice in this batch with different payloads"))
        return keep

    def _not_stored(
        self, table: str, key: tuple[str, ...], cols: dict[str, list[Any]], payload: tuple[str, ...], keep: list[int]
    ) -> list[int]:
        """The ``keep`` rows whose key is not stored yet; replays are dropped, a changed payload raises.

        Runs under the write lock, so no other thread inserts between this
        check and the insert that follows.
        """
        keys = [tuple(cols[k][i] for k in key) for i in keep]
        stored = self._stored(table, key, payload, keys)
        fresh = []
        for i, k in zip(keep, keys, strict=True):
            old = stored.get(k)
            if old is None:
                fresh.append(i)
            elif not _same_payload(list(old), [cols[p][i] for p in payload]):
                raise DuplicateScoringId(_dup_message(table, k, "already logged with a different payload"))
        return fresh

    def _insert_keyed(
        self,
        table: str,
        types: dict[str, pa.DataType],
        key: tuple[str, ...],
        cols: dict[str, list[Any]],
        payload: tuple[str, ...],
    ) -> None:
        """Insert rows idempotently: optimistically in one statement, checking stored keys only on a clash.

        The primary key refuses a batch that holds a stored key as a whole;
        then the stored payloads are compared, replays dropped and the rest
        inserted, or :class:`DuplicateScoringId` raised with nothing written.
        """
        keep = self._unique_in_batch(table, key, cols, payload)
        with self._write_lock:
            try:
                self._insert(table, types, cols, keep)
            except duckdb.ConstraintException:
                self._insert(table, types, cols, self._not_stored(table, key, cols, payload, keep))

    def _stored(
        self, table: str, key: tuple[str, ...], payload: tuple[str, ...], keys: list[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        """The stored payloads of the given keys (the ones that exist)."""
        if not keys:
            return {}
        wanted = ", ".join(f"t.{c}" for c in (*key, *payload))
        cursor = self._cursor()
        with self._mapped_errors():
            if len(keys) <= _SMALL_BATCH:  # IN (?, ...) on the key column can use its index
                ids = sorted({k[0] for k in keys})
                marks = ", ".join("?" for _ in ids)
                sql = f"SELECT {wanted} FROM {table} t WHERE t.scoring_id IN ({marks})"
                found = cursor.execute(sql, ids).fetchall()
            else:
                batch = pa.table({k: pa.array([kk[n] for kk in keys], pa.string()) for n, k in enumerate(key)})
                cursor.register("_dl_keys", batch)
                try:
                    on = " AND ".join(f"t.{k} = b.{k}" for k in key)
                    found = cursor.execute(f"SELECT {wanted} FROM {table} t JOIN _dl_keys b ON {on}").fetchall()
                finally:
                    cursor.unregister("_dl_keys")
        wanted_keys = set(keys)
        n = len(key)
        return {tuple(r[:n]): tuple(r[n:]) for r in found if tuple(r[:n]) in wanted_keys}

    def _insert(self, table: str, types: dict[str, pa.DataType], cols: dict[str, list[Any]], keep: list[int]) -> None:
        """Insert the ``keep`` rows of ``cols`` in one statement (values or an Arrow table)."""
        if not keep:
            return
        names = list(types)
        cursor = self._cursor()
        everything = len(keep) == len(cols[names[0]])
        with self._mapped_errors():
            if len(keep) <= _SMALL_BATCH:
                marks = "(" + ", ".join("?" for _ in names) + ")"
                params = [cols[c][i] for i in keep for c in names]
                cursor.execute(
                    f"INSERT INTO {table} ({', '.join(names)}) VALUES {', '.join(marks for _ in keep)}", params
                )
                return
            arrays = [pa.array(cols[c] if everything else [cols[c][i] for i in keep], types[c]) for c in names]
            batch = pa.Table.from_arrays(arrays, names=names)
            cursor.register("_dl_batch", batch)
            try:
                cursor.execute(f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(names)} FROM _dl_batch")
            finally:
                cursor.unregister("_dl_batch")


# --- helpers ---------------------------------------------------------------------------
def _rows_of(rows: object, where: str) -> list[Mapping[str, Any]]:
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
        raise ConfigError(f"{where} takes a list of dicts, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ConfigError(f"row {i} of {where} must be a dict, got {type(row).__name__}")
    return list(rows)  # type: ignore[arg-type]


def _check_column(values: list[Any], check: Callable[[Any], Any]) -> None:
    """Run ``check`` on each value, once per distinct string."""
    seen: set[str] = set()
    for v in values:
        if type(v) is str:
            if v in seen:
                continue
            seen.add(v)
        check(v)


def _floats(value: object, what: str) -> list[float]:
    if type(value) is list and all(type(v) is float for v in value):
        return value  # type: ignore[return-value]
    return io.float_list(value, what=what)


def _number(value: object, what: str) -> float:
    if type(value) is float and value == value:
        return value
    return io.finite_float(value, what=what)  # type: ignore[return-value]


def _meta_number(meta: Mapping[str, Any], key: str, kind: type, sid: str) -> Any:  # noqa: ANN401
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ConfigError(f"metadata[{key!r}] of {sid} must be a number, got {type(value).__name__}")
    try:
        return kind(value)
    except (ValueError, OverflowError):
        raise ConfigError(f"metadata[{key!r}] of {sid} must be a finite number, got {value!r}") from None


def _same_payload(old: list[Any], new: list[Any]) -> bool:
    for a, b in zip(old, new, strict=True):
        if isinstance(a, list) or isinstance(b, list):
            if a is None or b is None:
                return a is b
            x, y = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
            if x.shape != y.shape or not np.array_equal(x, y, equal_nan=True):
                return False
        elif a != b:
            return False
    return True


def _dup_message(table: str, key: tuple[Any, ...], what: str) -> str:
    ident = key[0] if len(key) == 1 else f"{key[0]} (model version {key[1]})"
    return (
        f"scoring id {ident} is {what} in {table}; nothing of this batch was written. "
        "Replaying the same record is fine; for a new payload use a new id (store.new_scoring_id())."
    )
