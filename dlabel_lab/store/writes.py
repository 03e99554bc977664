"""Idempotent batch inserts for the payload store.

Rows travel as columns (``dict[column, list]``) and go into DuckDB in one
statement: a parameterised ``VALUES`` list for a few rows, an Arrow table for
more (never ``executemany``). Keyed tables are inserted optimistically — the
primary key refuses a batch holding a stored or repeated key as a whole — and
only then are the payloads compared: replays are dropped, a changed payload
raises :class:`~dlabel_lab.DuplicateScoringId` with nothing written.

Callers hold the store's write lock, so no other thread inserts between a
check and the insert that follows it.

Example:
    >>> same_payload([[0.5, 0.25], "circle"], [(0.5, 0.25), "circle"])
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from ..errors import DuplicateScoringId

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["insert_keyed", "insert_rows", "not_stored", "same_payload", "unique_in_batch"]

SMALL_BATCH = 32  # up to this many rows go as one parameterised statement, more as an Arrow table

Columns = dict[str, list[Any]]


def insert_rows(
    cursor: duckdb.DuckDBPyConnection,
    table: str,
    types: dict[str, pa.DataType],
    cols: Columns,
    keep: Sequence[int],
    arrays: Mapping[str, pa.Array] | None = None,
) -> None:
    """Insert the ``keep`` rows of ``cols`` into ``table`` in one statement.

    ``arrays`` holds columns the caller already converted to Arrow (every row
    of ``cols``, in the column's type); they are used instead of the lists,
    and the batch then always goes as an Arrow table.

    Example:
        >>> insert_rows(cursor, "user_scores", types, cols, [0, 1])  # doctest: +SKIP
    """
    if not keep:
        return
    names = list(types)
    listed = ", ".join(names)
    if not arrays and len(keep) <= SMALL_BATCH:
        marks = "(" + ", ".join("?" for _ in names) + ")"
        params = [cols[c][i] for i in keep for c in names]
        cursor.execute(f"INSERT INTO {table} ({listed}) VALUES {', '.join(marks for _ in keep)}", params)
        return
    arrays = arrays or {}
    everything = len(keep) == len(cols[names[0]])
    rows = None if everything else pa.array(keep, pa.int64())
    columns = []
    for c in names:
        if c in arrays:
            columns.append(arrays[c] if rows is None else arrays[c].take(rows))
        else:
            columns.append(pa.array(cols[c] if rows is None else [cols[c][i] for i in keep], types[c]))
    cursor.register("_dl_batch", pa.Table.from_arrays(columns, names=names))
    try:
        cursor.execute(f"INSERT INTO {table} ({listed}) SELECT {listed} FROM _dl_batch")
    finally:
        cursor.unregister("_dl_batch")


def unique_in_batch(table: str, key: tuple[str, ...], cols: Columns, payload: tuple[str, ...]) -> list[int]:
    """Indices of the first row of each key; a key repeated with another payload raises.

    Example:
        >>> unique_in_batch("t", ("scoring_id",), {"scoring_id": ["a", "a"], "x": [1, 1]}, ("x",))
        [0]
    """
    first: dict[tuple[Any, ...], int] = {}
    keep: list[int] = []
    for i, k in enumerate(zip(*(cols[c] for c in key), strict=True)):
        j = first.setdefault(k, i)
        if j == i:
            keep.append(i)
        elif not same_payload([cols[p][i] for p in payload], [cols[p][j] for p in payload]):
            raise DuplicateScoringId(dup_message(table, k, "twice in this batch with different payloads"))
    return keep


def stored_payloads(
    cursor: duckdb.DuckDBPyConnection,
    table: str,
    key: tuple[str, ...],
    payload: tuple[str, ...],
    keys: list[tuple[Any, ...]],
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """The stored payload of each of ``keys`` that exists in ``table``.

    Example:
        >>> stored_payloads(cursor, "predictions", ("scoring_id", "model_version"), ("label",), keys)  # doctest: +SKIP
        {('0190...', 'shapes-v1'): ('circle',)}
    """
    if not keys:
        return {}
    wanted = ", ".join(f"t.{c}" for c in (*key, *payload))
    if len(keys) <= SMALL_BATCH:  # IN (?, ...) on the leading key column can use its index
        ids = sorted({k[0] for k in keys})
        sql = f"SELECT {wanted} FROM {table} t WHERE t.{key[0]} IN ({', '.join('?' for _ in ids)})"
        found = cursor.execute(sql, ids).fetchall()
    else:
        batch = pa.table({c: pa.array([k[n] for k in keys], pa.string()) for n, c in enumerate(key)})
        cursor.register("_dl_keys", batch)
        try:
            on = " AND ".join(f"t.{c} = b.{c}" for c in key)
            found = cursor.execute(f"SELECT {wanted} FROM {table} t JOIN _dl_keys b ON {on}").fetchall()
        finally:
            cursor.unregister("_dl_keys")
    wanted_keys, n = set(keys), len(key)
    return {tuple(r[:n]): tuple(r[n:]) for r in found if tuple(r[:n]) in wanted_keys}


def not_stored(
    cursor: duckdb.DuckDBPyConnection,
    table: str,
    key: tuple[str, ...],
    cols: Columns,
    payload: tuple[str, ...],
    keep: list[int],
) -> list[int]:
    """The ``keep`` rows whose key is not stored yet; replays are dropped, a changed payload raises.

    Example:
        >>> not_stored(cursor, "raw_payloads", ("scoring_id",), cols, ("sha256",), [0, 1])  # doctest: +SKIP
        [1]
    """
    keys = [tuple(cols[c][i] for c in key) for i in keep]
    stored = stored_payloads(cursor, table, key, payload, keys)
    fresh = []
    for i, k in zip(keep, keys, strict=True):
        old = stored.get(k)
        if old is None:
            fresh.append(i)
        elif not same_payload(list(old), [cols[p][i] for p in payload]):
            raise DuplicateScoringId(dup_message(table, k, "already logged with a different payload"))
    return fresh


def insert_keyed(
    cursor: duckdb.DuckDBPyConnection,
    table: str,
    types: dict[str, pa.DataType],
    key: tuple[str, ...],
    cols: Columns,
    payload: tuple[str, ...],
    arrays: Mapping[str, pa.Array] | None = None,
) -> None:
    """Insert rows idempotently: in one statement, comparing payloads only when the primary key refuses it.

    The primary key refuses a batch that holds a stored key or the same key
    twice, as a whole; only then are keys repeated in the batch and stored
    payloads compared (replays dropped, a changed payload raises), and the
    new rows inserted.

    Example:
        >>> key = ("scoring_id", "model_version")
        >>> insert_keyed(cursor, "predictions", types, key, cols, ("label",))  # doctest: +SKIP
    """
    everything = range(len(cols[key[0]]))
    try:
        insert_rows(cursor, table, types, cols, everything, arrays)
    except duckdb.ConstraintException:
        keep = unique_in_batch(table, key, cols, payload)
        insert_rows(cursor, table, types, cols, not_stored(cursor, table, key, cols, payload, keep), arrays)


def same_payload(old: Sequence[Any], new: Sequence[Any]) -> bool:
    """Whether two payloads are equal, float lists compared as the ``FLOAT[]`` they are stored as.

    Example:
        >>> same_payload([[0.1]], [[0.1000000001]])
        True
    """
    for a, b in zip(old, new, strict=True):
        if a is None or b is None:
            if a is not b:
                return False
        elif isinstance(a, (list, tuple, np.ndarray)) or isinstance(b, (list, tuple, np.ndarray)):
            x, y = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
            if x.shape != y.shape or not np.array_equal(x, y, equal_nan=True):
                return False
        elif a != b:
            return False
    return True


def dup_message(table: str, key: tuple[Any, ...], what: str) -> str:
    """The :class:`DuplicateScoringId` message for a key.

    Example:
        >>> dup_message("raw_payloads", ("0190...",), "already logged with a different payload")[:22]
        'scoring id 0190... is '
    """
    ident = key[0] if len(key) == 1 else f"{key[0]} (model version {key[1]})"
    return (
        f"scoring id {ident} is {what} in {table}; nothing of this batch was written. "
        "Replaying the same record is fine; for a new payload use a new id (store.new_scoring_id())."
    )
