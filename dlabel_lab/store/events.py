"""Logging scoring events into the payload store: transformed payloads, predictions, user scores.

:class:`LoggingMixin` is part of :class:`dlabel_lab.PayloadStore` (raw clips are
logged by :class:`~dlabel_lab.store.raw.RawMixin`). Every
``log_*`` has a batch form ``log_*_many`` taking a list of dicts; a batch is
validated as a whole, then written in one statement (nothing of a batch that
fails is written). Raw, transformed and prediction rows are idempotent on
their key; user scores are append-only and the latest wins.

Example:
    >>> store.log_prediction(sid, model_version="shapes-v1", label="circle",
    ...                      probabilities=[0.8, 0.1, 0.1], confidence=0.8)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError
from . import io, writes

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LoggingMixin", "PREDICTION_COLUMNS", "SCORE_COLUMNS", "TRANSFORMED_COLUMNS"]

_TS = pa.timestamp("us")
_F32 = pa.list_(pa.float32())
TRANSFORMED_COLUMNS = {
    "scoring_id": pa.string(), "model_version": pa.string(), "record": pa.string(), "tensor_digest": pa.string(),
    "embedding": _F32, "objects": pa.string(), "transformed_at": _TS,
}  # fmt: skip
PREDICTION_COLUMNS = {
    "scoring_id": pa.string(), "model_version": pa.string(), "label": pa.string(), "probabilities": _F32,
    "confidence": pa.float64(), "latency_ms": pa.float64(), "predicted_at": _TS,
}  # fmt: skip
SCORE_COLUMNS = {
    "label_id": pa.int64(), "scoring_id": pa.string(), "label": pa.string(), "source": pa.string(),
    "author": pa.string(), "labelled_at": _TS,
}  # fmt: skip


class LoggingMixin:
    """The ``log_*`` methods of :class:`~dlabel_lab.PayloadStore` for transformed payloads, predictions and scores."""

    # provided by PayloadStore
    path: Path
    _write_lock: Any
    _next_label_id: int
    _writable: Any
    _rows: Any
    _df: Any
    _cursor: Any
    _insert: Any
    _mapped_errors: Any

    def _insert_keyed(
        self,
        table: str,
        types: dict[str, pa.DataType],
        key: tuple[str, ...],
        cols: dict[str, list[Any]],
        payload: tuple[str, ...],
        arrays: dict[str, pa.Array] | None = None,
    ) -> None:
        with self._write_lock, self._mapped_errors():
            writes.insert_keyed(self._cursor(), table, types, key, cols, payload, arrays)

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
        cols: dict[str, list[Any]] = {name: [] for name in TRANSFORMED_COLUMNS}
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
        self._insert_keyed("transformed_payloads", TRANSFORMED_COLUMNS, ("scoring_id", "model_version"), cols,
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
        arrays: dict[str, pa.Array] = {}
        if len(rows) > writes.SMALL_BATCH:  # large batches: checked as Arrow columns, which are then inserted
            arrays["scoring_id"] = _id_array(cols["scoring_id"])
            probabilities = _float_lists(cols["probabilities"])
            if probabilities is not None:
                arrays["probabilities"] = probabilities
        if "scoring_id" not in arrays:
            _check_column(cols["scoring_id"], io.check_scoring_id)
        _check_column(cols["model_version"], lambda v: io.check_name(v, what="model_version"))
        _check_column(cols["label"], lambda v: io.check_text(v, what="predicted label"))
        if "probabilities" not in arrays:
            cols["probabilities"] = [_floats(v, "probabilities") for v in cols["probabilities"]]
        cols["confidence"] = [_number(v, "confidence") for v in cols["confidence"]]
        cols["latency_ms"] = [None if v is None else _number(v, "latency_ms") for v in cols["latency_ms"]]
        cols["predicted_at"] = [now if v is None else io.utc_naive(v, what="predicted_at")
                                for v in cols["predicted_at"]]
        self._insert_keyed("predictions", PREDICTION_COLUMNS, ("scoring_id", "model_version"), cols,
                           ("label", "probabilities", "confidence", "latency_ms"), arrays)  # fmt: skip

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

    def log_score_many(self, rows: Sequence[Mapping[str, Any]], *, skip_replays: bool = False) -> list[int]:
        """Append several user scores in one statement; their ``label_id``s, in order.

        Args:
            rows: Mappings with ``scoring_id`` and ``label`` (optional
                ``source``, ``author``, ``labelled_at``).
            skip_replays: Treat a row equal to a stored one in every field
                (scoring id, label, source, author and ``labelled_at`` to the
                microsecond) as a retry of the same write: it is not appended
                again and the stored row's ``label_id`` is returned. This is how
                the scoring service makes label writes idempotent (its client
                stamps ``labelled_at`` once and sends the same row on a retry).

        Example:
            >>> store.log_score_many([{"scoring_id": sid, "label": "circle"}])  # doctest: +SKIP
            [1]
        """
        self._writable()
        now = io.utc_now()
        cols: dict[str, list[Any]] = {name: [] for name in SCORE_COLUMNS}
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
            ids: list[int | None] = [None] * n
            if skip_replays and n:
                ids = self._stored_label_ids(cols)
            fresh = [i for i in range(n) if ids[i] is None]
            first = self._next_label_id
            for k, i in enumerate(fresh):
                ids[i] = first + k
            cols["label_id"] = ids
            if fresh:
                self._insert("user_scores", SCORE_COLUMNS, cols, fresh)
            self._next_label_id = first + len(fresh)
        return [int(i) for i in ids]

    def _stored_label_ids(self, cols: Mapping[str, list[Any]]) -> list[int | None]:
        """The stored ``label_id`` of each row equal to a stored one in every field (``None`` for new rows)."""
        keys = ("scoring_id", "label", "source", "author", "labelled_at")
        found = self._rows(
            "SELECT scoring_id, label, source, author, labelled_at, min(label_id) FROM user_scores "
            "WHERE list_contains(CAST(? AS VARCHAR[]), scoring_id) GROUP BY ALL",
            [sorted(set(cols["scoring_id"]))],
        )
        stored = {tuple(row[:5]): int(row[5]) for row in found}
        return [stored.get(tuple(cols[k][i] for k in keys)) for i in range(len(cols["scoring_id"]))]

    def label_sources(self) -> list[str]:
        """The distinct sources of user scores (``"human"``, ``"auto"``, ``"audit"``, ...), sorted.

        Example:
            >>> store.label_sources()  # doctest: +SKIP
            ['audit', 'auto', 'human']
        """
        return [row[0] for row in self._rows("SELECT DISTINCT source FROM user_scores ORDER BY source")]

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


# --- helpers ---------------------------------------------------------------------------
def _rows_of(rows: object, where: str) -> list[Mapping[str, Any]]:
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
        raise ConfigError(f"{where} takes a list of dicts, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if type(row) is not dict and not isinstance(row, Mapping):  # the ABC check only for non-dicts
            raise ConfigError(f"row {i} of {where} must be a dict, got {type(row).__name__}")
    return list(rows)  # type: ignore[arg-type]


def _id_array(values: list[Any]) -> pa.Array:
    """Scoring ids as an Arrow string column, checked in one vectorised pass (a bad one is named by the slow check)."""
    try:
        column = pa.array(values, pa.string())
    except (pa.ArrowException, TypeError, ValueError):  # not a str (or not UTF-8): named below
        column = None
    if column is None or column.null_count or not pc.all(pc.match_substring_regex(column, io.UUID_PATTERN)).as_py():
        _check_column(values, io.check_scoring_id)  # raises, naming the first bad id
    return column


def _float_lists(values: list[Any]) -> pa.Array | None:
    """Lists of numbers as an Arrow ``FLOAT[]`` column, or ``None`` when some value needs the per-value check.

    Only Python lists qualify (tensors, arrays and tuples take the slow path,
    which converts or names them), and no value may be missing.
    """
    if not all(type(v) is list for v in values):
        return None
    try:
        column = pa.array(values, _F32)
    except (pa.ArrowException, TypeError, ValueError):
        return None
    return None if column.null_count or column.flatten().null_count else column


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
