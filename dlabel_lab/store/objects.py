"""Objects in clips: what detectors identified (``objects``) and what people said about them (``object_labels``).

:class:`ObjectsMixin` is part of :class:`dlabel_lab.PayloadStore`. A detector's
objects are logged per scoring id and model version, one row per box (frame
index and timestamp, box ``x1, y1, x2, y2`` in pixels of the native frame,
class, score, track id); a replay of the same boxes adds nothing, different
boxes under a logged (scoring id, version) raise. :meth:`~ObjectsMixin.objects`
reads them back one row each, filtered by model name or version, class,
confidence range, track and frame range — every value bound as a parameter.

People's boxes are append-only rows in ``object_labels``: ``kind`` says what
the row is (``"box"`` drawn from scratch, ``"missed"`` an object the model
missed, ``"fixed"`` a corrected model box, ``"verified"``/``"rejected"`` a
verdict on a model object, ``"relabelled"`` a model object given another
class); ``refers_to`` names the judged model object as
``"<model_version>#<object_n>"``.

Example:
    >>> rows = [{"frame_index": 0, "box": [10, 12, 40, 44], "label": "circle", "score": 0.9, "track_id": 1}]
    >>> store.log_objects(sid, model_version="objects-v1", rows=rows)  # doctest: +SKIP
    1
    >>> store.objects(model="objects", min_confidence=0.5, frame_range=(0, 10)).df()  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import ConfigError, DuplicateScoringId
from . import io

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

__all__ = ["OBJECT_COLUMNS", "OBJECT_LABEL_KINDS", "ObjectsMixin", "parse_ref"]

_TS = pa.timestamp("us")
_OBJECT_TYPES = {
    "scoring_id": pa.string(), "model_version": pa.string(), "object_n": pa.int32(), "frame_index": pa.int32(),
    "timestamp": pa.float64(), "x1": pa.float64(), "y1": pa.float64(), "x2": pa.float64(), "y2": pa.float64(),
    "label": pa.string(), "score": pa.float64(), "track_id": pa.int64(), "logged_at": _TS,
}  # fmt: skip
_LABEL_TYPES = {
    "object_label_id": pa.int64(), "scoring_id": pa.string(), "frame_index": pa.int32(), "x1": pa.float64(),
    "y1": pa.float64(), "x2": pa.float64(), "y2": pa.float64(), "label": pa.string(), "track_id": pa.int64(),
    "kind": pa.string(), "refers_to": pa.string(), "source": pa.string(), "author": pa.string(),
    "task_id": pa.string(), "labelled_at": _TS,
}  # fmt: skip
OBJECT_COLUMNS = ("scoring_id", "model_version", "model_name", "object_n", "frame_index", "timestamp", "x1", "y1",
                  "x2", "y2", "width", "height", "label", "score", "track_id", "logged_at")  # fmt: skip
OBJECT_LABEL_KINDS = ("box", "missed", "fixed", "verified", "rejected", "relabelled")
_NEEDS_BOX = ("box", "missed", "fixed")
MAX_OBJECTS_PER_CLIP = 1_000_000


def _box(row: Mapping[str, Any], where: str, *, optional: bool = False) -> tuple[float, ...] | None:
    box = row.get("box")
    if box is None and all(k in row for k in ("x1", "y1", "x2", "y2")):
        box = [row["x1"], row["y1"], row["x2"], row["y2"]]
    if box is None:
        if optional:
            return None
        raise ConfigError(f"{where} has no box: give box=[x1, y1, x2, y2] (pixels of the native frame)")
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: box must be four numbers [x1, y1, x2, y2], got {box!r}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{where}: box must be four finite numbers [x1, y1, x2, y2], got {box!r}")
    x1, y1, x2, y2 = values
    if x2 < x1 or y2 < y1 or min(values) < 0:
        raise ConfigError(f"{where}: box {list(values)} needs 0 <= x1 <= x2 and 0 <= y1 <= y2")
    return values


def _int(value: object, what: str, *, optional: bool = False, minimum: int | None = 0) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ConfigError(f"{what} must be an int, got {value!r}")
    v = int(value)  # type: ignore[call-overload]
    if minimum is not None and v < minimum:
        raise ConfigError(f"{what} must be >= {minimum}, got {v}")
    return v


class _Filters:
    """A ``WHERE`` clause built from checked values, every one bound as a parameter."""

    def __init__(self) -> None:
        self.where: list[str] = []
        self.params: list[Any] = []

    @property
    def sql(self) -> str:
        return f" WHERE {' AND '.join(self.where)}" if self.where else ""

    def add(self, clause: str, *params: Any) -> None:  # noqa: ANN401
        self.where.append(clause)
        self.params.extend(params)

    def values(self, values: list[Any], column: str, what: str) -> None:
        if not values:
            raise ConfigError(f"{what} must not be an empty list")
        self.add(f"{column} IN ({', '.join('?' for _ in values)})", *values)

    def texts(self, value: str | Sequence[str] | None, column: str, what: str) -> None:
        if value is not None:
            values = [value] if isinstance(value, str) else list(value)
            self.values([io.check_text(v, what=what) for v in values], column, what)

    def scoring_ids(self, value: str | Sequence[str] | None, column: str) -> None:
        if value is not None:
            sids = [io.check_scoring_id(s) for s in ([value] if isinstance(value, str) else value)]
            if sids:
                self.add(f"{column} IN ({', '.join('?' for _ in sids)})", *sids)
            else:
                self.add("FALSE")


def parse_ref(ref: str) -> tuple[str, int]:
    """Split an object reference ``"<model_version>#<object_n>"``.

    Example:
        >>> parse_ref("objects-v1#3")
        ('objects-v1', 3)
    """
    version, sep, n = str(ref).rpartition("#")
    if not sep or not version or not n.isdigit():
        raise ConfigError(f"an object reference is '<model_version>#<object_n>', got {ref!r}")
    return version, int(n)


class ObjectsMixin:
    """Objects identified by detectors and object labels by people; mixed into :class:`~dlabel_lab.PayloadStore`."""

    # provided by PayloadStore
    _write_lock: Any
    _writable: Any
    _rows: Any
    _df: Any
    _insert: Any
    _cursor: Any
    _mapped_errors: Any
    _check_process: Any

    # --- what detectors identified ---------------------------------------------------------
    def log_objects(
        self,
        scoring_id: str,
        *,
        model_version: str,
        rows: Sequence[Mapping[str, Any]],
        logged_at: datetime | None = None,
    ) -> int:
        """Log the objects a detector version identified in one clip; the number of rows written.

        Each row needs ``frame_index``, ``box`` ``[x1, y1, x2, y2]`` (or ``x1``..``y2``) and
        ``label`` (the class name); ``timestamp`` (seconds), ``score`` and ``track_id`` are
        optional. Rows are numbered ``object_n`` 0, 1, ... in the order given. Logging the same
        rows again writes nothing (0); other rows under a logged (scoring id, version) raise.
        A clip with no objects logs nothing and returns 0.

        Raises:
            ConfigError: A row lacks a field or holds a bad value (nothing is written).
            DuplicateScoringId: Different objects are already logged for this id and version.

        Example:
            >>> store.log_objects(sid, model_version="objects-v1",
            ...                   rows=[{"frame_index": 3, "box": [1, 2, 30, 40], "label": "square"}])  # doctest: +SKIP
            1
        """
        self._writable()
        sid = io.check_scoring_id(scoring_id)
        version = io.check_name(model_version, what="model_version")
        if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence):
            raise ConfigError(f"rows must be a list of dicts, got {type(rows).__name__}")
        if len(rows) > MAX_OBJECTS_PER_CLIP:
            raise ConfigError(f"{len(rows)} objects for one clip is more than {MAX_OBJECTS_PER_CLIP}; "
                              "raise the detector's score threshold")
        now = io.utc_naive(logged_at, what="logged_at") or io.utc_now()
        cols: dict[str, list[Any]] = {k: [] for k in _OBJECT_TYPES}
        for n, row in enumerate(rows):
            where = f"object {n} of {sid}"
            if not isinstance(row, Mapping):
                raise ConfigError(f"{where} must be a dict, got {type(row).__name__}")
            if "frame_index" not in row or "label" not in row:
                raise ConfigError(f"{where} needs frame_index and label")
            box = _box(row, where)
            assert box is not None
            cols["scoring_id"].append(sid)
            cols["model_version"].append(version)
            cols["object_n"].append(n)
            cols["frame_index"].append(_int(row["frame_index"], f"{where}: frame_index"))
            cols["timestamp"].append(io.finite_float(row.get("timestamp"), what=f"{where}: timestamp", optional=True))
            for k, v in zip(("x1", "y1", "x2", "y2"), box, strict=True):
                cols[k].append(v)
            cols["label"].append(io.check_text(row["label"], what=f"{where}: label"))
            score = io.finite_float(row.get("score"), what=f"{where}: score", optional=True)
            if score is not None and not 0 <= score <= 1:
                raise ConfigError(f"{where}: score must lie in [0, 1], got {score}")
            cols["score"].append(score)
            cols["track_id"].append(_int(row.get("track_id"), f"{where}: track_id", optional=True, minimum=None))
            cols["logged_at"].append(now)
        payload = ("frame_index", "timestamp", "x1", "y1", "x2", "y2", "label", "score", "track_id")
        given = [tuple(cols[k][i] for k in payload) for i in range(len(rows))]
        with self._write_lock:
            stored = self._rows(
                f"SELECT {', '.join(payload)} FROM objects WHERE scoring_id = ? AND model_version = ? "
                "ORDER BY object_n",
                [sid, version],
            )
            if stored:
                if _same(stored, given):
                    return 0
                raise DuplicateScoringId(
                    f"objects of {sid} by {version} are already logged ({len(stored)} rows) and differ from these "
                    f"{len(given)}; objects are logged once per clip and model version. Score the clip with a new "
                    "model version, or add people's corrections with log_object_labels"
                )
            if given:
                self._insert("objects", _OBJECT_TYPES, cols, list(range(len(given))))
        return len(given)

    def objects(
        self,
        *,
        model: str | Sequence[str] | None = None,
        model_version: str | Sequence[str] | None = None,
        label: str | Sequence[str] | None = None,
        min_confidence: float | None = None,
        max_confidence: float | None = None,
        track_id: int | Sequence[int] | None = None,
        frame_range: tuple[int, int] | None = None,
        scoring_ids: Sequence[str] | None = None,
    ) -> duckdb.DuckDBPyRelation:
        """Identified objects, one row each: the relation beside :meth:`matched`.

        Args:
            model: Model name(s) (``"objects"`` keeps ``objects-v1``, ``objects-v2``, ...).
            model_version: Model version(s).
            label: Class name(s).
            min_confidence: Keep ``score >= min_confidence``.
            max_confidence: Keep ``score <= max_confidence``.
            track_id: Track id(s).
            frame_range: ``(first, last)`` native frame indices, both included.
            scoring_ids: Keep these clips.

        Returns:
            A DuckDB relation with the columns :data:`OBJECT_COLUMNS`, ordered by scoring id,
            model version, frame and object number.

        Raises:
            ConfigError: A filter value has the wrong type or range.

        Example:
            >>> store.objects(model="objects", label="circle", min_confidence=0.8).df()  # doctest: +SKIP
        """
        self._check_process()
        f = _Filters()
        f.texts(model, "m.name", "model")
        f.texts(model_version, "o.model_version", "model_version")
        f.texts(label, "o.label", "label")
        for value, op, what in ((min_confidence, ">=", "min_confidence"), (max_confidence, "<=", "max_confidence")):
            if value is not None:
                f.add(f"o.score {op} ?", io.finite_float(value, what=what))
        if track_id is not None:
            ids = [track_id] if not isinstance(track_id, Sequence) else list(track_id)
            f.values([_int(t, "track_id", minimum=None) for t in ids], "o.track_id", "track_id")
        if frame_range is not None:
            if not isinstance(frame_range, Sequence) or len(frame_range) != 2:
                raise ConfigError(f"frame_range must be (first, last), got {frame_range!r}")
            lo, hi = (_int(v, "frame_range", minimum=0) for v in frame_range)
            if hi < lo:  # type: ignore[operator]
                raise ConfigError(f"frame_range's last frame {hi} is before its first {lo}")
            f.add("o.frame_index BETWEEN ? AND ?", lo, hi)
        f.scoring_ids(scoring_ids, "o.scoring_id")
        sql = (
            "SELECT o.scoring_id, o.model_version, m.name AS model_name, o.object_n, o.frame_index, o.timestamp, "
            "o.x1, o.y1, o.x2, o.y2, o.x2 - o.x1 AS width, o.y2 - o.y1 AS height, o.label, o.score, o.track_id, "
            "o.logged_at FROM objects o LEFT JOIN model_versions m ON m.model_version = o.model_version"
            + f.sql
            + " ORDER BY o.scoring_id, o.model_version, o.frame_index, o.object_n"
        )
        with self._mapped_errors():
            return self._cursor("read").sql(sql, params=f.params)

    def objects_df(self, **filters: Any) -> pd.DataFrame:
        """:meth:`objects` as a pandas DataFrame, read now.

        Example:
            >>> store.objects_df(track_id=3).shape  # doctest: +SKIP
            (17, 16)
        """
        rel = self.objects(**filters)
        with self._mapped_errors():
            return rel.df()

    # --- what people said about objects -------------------------------------------------
    def log_object_labels(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        source: str = "human",
        author: str | None = None,
        task_id: str | None = None,
    ) -> list[int]:
        """Append people's object labels; their ``object_label_id``s in order.

        Each row needs ``scoring_id``, ``frame_index`` and ``kind`` (one of
        :data:`OBJECT_LABEL_KINDS`); ``"box"``, ``"missed"`` and ``"fixed"`` rows need ``box``
        and ``label``; ``"verified"``, ``"rejected"``, ``"relabelled"`` and ``"fixed"`` rows may
        name the model object they judge in ``refers_to`` (``"<model_version>#<object_n>"``).
        ``track_id``, and per-row ``source``/``author``/``task_id`` are optional.

        Raises:
            ConfigError: A row lacks a field or holds a bad value (nothing is written).

        Example:
            >>> store.log_object_labels([{"scoring_id": sid, "frame_index": 4, "kind": "missed",
            ...                           "box": [3, 4, 12, 14], "label": "circle"}], author="ana")  # doctest: +SKIP
            [0]
        """
        self._writable()
        if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence):
            raise ConfigError(f"rows must be a list of dicts, got {type(rows).__name__}")
        now = io.utc_now()
        cols: dict[str, list[Any]] = {k: [] for k in _LABEL_TYPES}
        for i, row in enumerate(rows):
            where = f"object label {i}"
            if not isinstance(row, Mapping):
                raise ConfigError(f"{where} must be a dict, got {type(row).__name__}")
            kind = row.get("kind")
            if kind not in OBJECT_LABEL_KINDS:
                raise ConfigError(f"{where}: kind must be one of {', '.join(OBJECT_LABEL_KINDS)}, got {kind!r}")
            try:
                cols["scoring_id"].append(io.check_scoring_id(row["scoring_id"]))
                cols["frame_index"].append(_int(row["frame_index"], f"{where}: frame_index"))
            except KeyError as missing:
                raise ConfigError(f"{where} lacks {missing}") from None
            box = _box(row, where, optional=kind not in _NEEDS_BOX)
            for k, v in zip(("x1", "y1", "x2", "y2"), box or (None,) * 4, strict=True):
                cols[k].append(v)
            label = row.get("label")
            if kind in (*_NEEDS_BOX, "relabelled") and label is None:
                raise ConfigError(f"{where}: a {kind!r} object label needs label=<class name>")
            cols["label"].append(io.check_text(label, what=f"{where}: label", optional=True))
            cols["track_id"].append(_int(row.get("track_id"), f"{where}: track_id", optional=True, minimum=None))
            cols["kind"].append(kind)
            ref = row.get("refers_to")
            if ref is not None:
                parse_ref(ref)
            elif kind in ("verified", "rejected", "relabelled"):
                raise ConfigError(f"{where}: a {kind!r} object label needs refers_to='<model_version>#<object_n>'")
            cols["refers_to"].append(None if ref is None else str(ref))
            cols["source"].append(io.check_text(row.get("source", source), what="source"))
            cols["author"].append(io.check_text(row.get("author", author), what="author", optional=True))
            cols["task_id"].append(io.check_text(row.get("task_id", task_id), what="task_id", optional=True))
            cols["labelled_at"].append(now)
        n = len(cols["kind"])
        with self._write_lock:
            first = int(self._rows("SELECT coalesce(max(object_label_id) + 1, 0) FROM object_labels")[0][0])
            cols["object_label_id"] = list(range(first, first + n))
            self._insert("object_labels", _LABEL_TYPES, cols, list(range(n)))
        return cols["object_label_id"]

    def object_labels(
        self,
        *,
        kind: str | Sequence[str] | None = None,
        source: str | Sequence[str] | None = None,
        author: str | Sequence[str] | None = None,
        scoring_ids: Sequence[str] | None = None,
        task_id: str | None = None,
    ) -> pd.DataFrame:
        """People's object labels, oldest first, filtered by kind, source, author, clips or task.

        The missed objects people marked, a training set of their own:
        ``store.object_labels(kind="missed")``.

        Example:
            >>> store.object_labels(kind="missed")[["scoring_id", "frame_index", "label"]]  # doctest: +SKIP
        """
        f = _Filters()
        for value, column in ((kind, "kind"), (source, "source"), (author, "author")):
            f.texts(value, column, column)
        f.scoring_ids(scoring_ids, "scoring_id")
        if task_id is not None:
            f.add("task_id = ?", io.check_text(task_id, what="task_id"))
        return self._df(f"SELECT {', '.join(_LABEL_TYPES)} FROM object_labels{f.sql} ORDER BY object_label_id",
                        f.params)


def _same(stored: list[tuple[Any, ...]], given: list[tuple[Any, ...]]) -> bool:
    if len(stored) != len(given):
        return False
    for a, b in zip(stored, given, strict=True):
        for x, y in zip(a, b, strict=True):
            if isinstance(x, float) or isinstance(y, float):
                if x is None or y is None or not math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif x != y:
                return False
    return True
