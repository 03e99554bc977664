"""Labelling pipelines in the payload store: their specs, the micro-tasks they create, who got a task, what people said.

:class:`TasksMixin` is part of :class:`dlabel_lab.PayloadStore`. It keeps rows only; what a
pipeline's steps mean lives in :mod:`dlabel_lab.labeling.pipelines`.

- ``pipelines``: a named, versioned spec (``f"{name}-p{n}"``, JSON text); the same spec under the
  same name again gives the existing id back.
- ``tasks``: one micro-task each, with a JSON payload (frames, region, boxes shown); a task id is
  written once, a replay with the same payload adds nothing.
- ``task_assignments``: who was handed a task, when; :meth:`~TasksMixin.claim_task` picks the next
  task and records the assignment under the write lock, so two people never claim one task within
  a lease.
- ``task_answers``: append-only; a later answer to a task supersedes the earlier ones (latest
  wins), a skip (``{"verdict": "skip"}``) is recorded but leaves the task open for others.
  :meth:`~TasksMixin.log_task_answer` writes the answer and its ``object_labels`` rows in one
  transaction.

Example:
    >>> pid = store.log_pipeline("boxes", [{"name": "prelabel", "kind": "detect", ...}])  # doctest: +SKIP
    >>> store.claim_task(pid, author="ana")  # doctest: +SKIP
    'boxes-p1/verify/0190.../track000000003'
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import ConfigError, UnknownRecord
from . import io, writes

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TasksMixin", "SKIP_ANSWER"]

#: The canonical JSON text of a skip: recorded, but the task stays open for others.
SKIP_ANSWER = '{"verdict":"skip"}'
_TS = pa.timestamp("us")
_TASK_TYPES = {
    "task_id": pa.string(), "pipeline_id": pa.string(), "step": pa.string(), "kind": pa.string(),
    "scoring_id": pa.string(), "payload": pa.string(), "instruction": pa.string(), "created_at": _TS,
}  # fmt: skip
_TASK_PAYLOAD = ("pipeline_id", "step", "kind", "scoring_id", "payload", "instruction")
MAX_TASK_ID = 400


def _ids(values: str | Sequence[str], what: str, check) -> list[str]:  # noqa: ANN001 - a checker function
    items = [values] if isinstance(values, str) else list(values)
    return [check(v, what) for v in items]


def _text(value: object, what: str) -> str:
    text = io.check_text(value, what=what)
    assert text is not None
    if not text.strip():
        raise ConfigError(f"{what} must not be empty")
    return text


def _sid(value: object, what: str) -> str:
    return io.check_scoring_id(value, where=what)


class TasksMixin:
    """Pipelines, micro-tasks, assignments and answers; mixed into :class:`~dlabel_lab.PayloadStore`."""

    # provided by PayloadStore
    path: Any
    _write_lock: Any
    _writable: Any
    _rows: Any
    _df: Any
    _insert: Any
    _cursor: Any
    _mapped_errors: Any
    _check_process: Any
    log_object_labels: Any

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction on this thread's cursor (the caller holds the write lock)."""
        cursor = self._cursor()
        with self._mapped_errors():
            cursor.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                cursor.execute("ROLLBACK")
            raise
        with self._mapped_errors():
            cursor.execute("COMMIT")

    # --- pipelines -----------------------------------------------------------------------------
    def log_pipeline(self, name: str, spec: Sequence[Mapping[str, Any]]) -> str:
        """Record a pipeline spec (a list of step dicts, validated by the caller); its id ``f"{name}-p{n}"``.

        The same spec (as canonical JSON) as the newest pipeline of this name returns that
        pipeline's id; another spec gets the next ``n``.

        Raises:
            ConfigError: A bad name, or a spec that is not a list of JSON-ready dicts.

        Example:
            >>> spec = [{"name": "prelabel", "kind": "detect", "objects_from": "imp-v1"}]
            >>> store.log_pipeline("boxes", spec)  # doctest: +SKIP
            'boxes-p1'
        """
        self._writable()
        name = io.check_name(name, what="pipeline name")
        if isinstance(spec, (str, bytes, Mapping)) or not isinstance(spec, Sequence):
            raise ConfigError(f"a pipeline spec is a list of step dicts, got {type(spec).__name__}")
        text = io.canonical_json(list(spec), what="pipeline spec")
        with self._write_lock:
            last = self._rows("SELECT pipeline_id, spec FROM pipelines WHERE name = ? ORDER BY n DESC LIMIT 1", [name])
            if last and last[0][1] == text:
                return str(last[0][0])
            n = int(self._rows("SELECT coalesce(max(n), 0) + 1 FROM pipelines WHERE name = ?", [name])[0][0])
            pipeline_id = f"{name}-p{n}"
            self._rows("INSERT INTO pipelines VALUES (?, ?, ?, ?, ?)", [pipeline_id, name, n, text, io.utc_now()])
        return pipeline_id

    def pipeline(self, pipeline_id: str) -> dict[str, Any]:
        """One pipeline: ``pipeline_id``, ``name``, ``n``, ``spec`` (the list of steps) and ``created_at``.

        Raises:
            UnknownRecord: No pipeline has this id.

        Example:
            >>> [s["name"] for s in store.pipeline("boxes-p1")["spec"]]  # doctest: +SKIP
            ['prelabel', 'route', 'verify']
        """
        found = self._rows("SELECT pipeline_id, name, n, spec, created_at FROM pipelines WHERE pipeline_id = ?",
                           [_text(pipeline_id, "pipeline_id")])  # fmt: skip
        if not found:
            raise UnknownRecord(f"pipeline {pipeline_id!r} is not in the store; define it with define_pipeline()")
        pid, name, n, spec, created = found[0]
        return {"pipeline_id": pid, "name": name, "n": int(n), "spec": json.loads(spec), "created_at": created}

    def pipelines(self) -> pd.DataFrame:
        """Every pipeline, oldest first (``spec`` as JSON text).

        Example:
            >>> store.pipelines()[["pipeline_id", "name", "n"]]  # doctest: +SKIP
        """
        return self._df("SELECT * FROM pipelines ORDER BY created_at, pipeline_id")

    # --- tasks -----------------------------------------------------------------------------------
    def log_tasks(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Write micro-tasks once; the ids of those written now (replays add nothing).

        Each row needs ``task_id``, ``pipeline_id`` (a stored pipeline), ``step``, ``kind``,
        ``scoring_id``, ``payload`` (a JSON-ready dict) and ``instruction``; ``created_at`` is
        optional. Rows are written in the order given, all or none.

        Raises:
            ConfigError: A row lacks a field or holds a bad value (nothing is written).
            UnknownRecord: A row names a pipeline that is not stored.
            DuplicateScoringId: A task id is stored with another payload.

        Example:
            >>> store.log_tasks([{"task_id": "boxes-p1/missed/0190.../f0000000-tile0000",
            ...                   "pipeline_id": "boxes-p1", "step": "missed", "kind": "mark_missed",
            ...                   "scoring_id": sid, "payload": {"frame_indices": [0]},
            ...                   "instruction": "Box every object."}])  # doctest: +SKIP
            ['boxes-p1/missed/0190.../f0000000-tile0000']
        """
        self._writable()
        if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence):
            raise ConfigError(f"rows must be a list of dicts, got {type(rows).__name__}")
        now = io.utc_now()
        cols: dict[str, list[Any]] = {k: [] for k in _TASK_TYPES}
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ConfigError(f"task row {i} must be a dict, got {type(row).__name__}")
            missing = [k for k in _TASK_TYPES if k != "created_at" and k not in row]
            if missing:
                raise ConfigError(f"task row {i} lacks {', '.join(missing)}")
            task_id = _text(row["task_id"], f"task row {i}: task_id")
            if len(task_id) > MAX_TASK_ID:
                raise ConfigError(f"task row {i}: task_id is longer than {MAX_TASK_ID} characters")
            cols["task_id"].append(task_id)
            for k in ("pipeline_id", "step", "kind", "instruction"):
                cols[k].append(_text(row[k], f"task row {i}: {k}"))
            cols["scoring_id"].append(_sid(row["scoring_id"], f"task row {i}: scoring_id"))
            if not isinstance(row["payload"], Mapping):
                raise ConfigError(f"task row {i}: payload must be a dict, got {type(row['payload']).__name__}")
            cols["payload"].append(io.canonical_json(dict(row["payload"]), what=f"task row {i}: payload"))
            cols["created_at"].append(io.utc_naive(row.get("created_at"), what="created_at") or now)
        keep = writes.unique_in_batch("tasks", ("task_id",), cols, _TASK_PAYLOAD)
        with self._write_lock:
            for pid in sorted(set(cols["pipeline_id"])):
                if not self._rows("SELECT count(*) FROM pipelines WHERE pipeline_id = ?", [pid])[0][0]:
                    raise UnknownRecord(f"pipeline {pid!r} is not in the store; define it with define_pipeline()")
            with self._mapped_errors():
                keep = writes.not_stored(self._cursor(), "tasks", ("task_id",), cols, _TASK_PAYLOAD, keep)
            self._insert("tasks", _TASK_TYPES, cols, keep)
        return [cols["task_id"][i] for i in keep]

    def tasks(
        self,
        *,
        pipeline_id: str | None = None,
        step: str | Sequence[str] | None = None,
        scoring_ids: str | Sequence[str] | None = None,
        task_ids: str | Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Micro-tasks, oldest first, ``payload`` parsed into a dict.

        Example:
            >>> store.tasks(pipeline_id="boxes-p1", step="verify").shape[0]  # doctest: +SKIP
            12
        """
        where, params = [], []
        if pipeline_id is not None:
            where.append("pipeline_id = ?")
            params.append(_text(pipeline_id, "pipeline_id"))
        for value, column, check in ((step, "step", _text), (scoring_ids, "scoring_id", _sid),
                                     (task_ids, "task_id", _text)):  # fmt: skip
            if value is None:
                continue
            items = _ids(value, column, check)
            where.append(f"{column} IN ({', '.join('?' for _ in items)})" if items else "FALSE")
            params.extend(items)
        frame = self._df(
            f"SELECT {', '.join(_TASK_TYPES)} FROM tasks"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY created_at, task_id",
            params,
        )
        frame["payload"] = [json.loads(p) for p in frame["payload"]]
        return frame

    def task(self, task_id: str) -> dict[str, Any]:
        """One micro-task as a dict (``payload`` parsed).

        Raises:
            UnknownRecord: No task has this id.

        Example:
            >>> store.task(task_id)["kind"]  # doctest: +SKIP
            'verify_track'
        """
        frame = self.tasks(task_ids=[task_id])
        if frame.empty:
            raise UnknownRecord(f"task {task_id!r} is not in the store; get tasks with next_task() or store.tasks()")
        return frame.iloc[0].to_dict()

    # --- assignments ------------------------------------------------------------------------------
    def claim_task(
        self,
        pipeline_id: str,
        *,
        author: str,
        step: str | None = None,
        lease_s: float = 600.0,
        order: Sequence[str] = (),
        now: datetime | None = None,
    ) -> str | None:
        """Pick the next open task of a pipeline for ``author`` and record the assignment; its id, or ``None``.

        Open tasks have no answer but skips; tasks ``author`` skipped are left out, and an assignment
        its assignee skipped holds nobody else off (the task goes to the next person at once). A task whose
        latest assignment is ``author``'s comes first; then the oldest task that nobody else was
        handed less than ``lease_s`` seconds ago (ties: the steps in ``order``, then scoring id
        and task id). The choice and the assignment row are one step under the write lock.

        Raises:
            ConfigError: An empty author or a negative lease.

        Example:
            >>> store.claim_task("boxes-p1", author="ana", step="verify")  # doctest: +SKIP
            'boxes-p1/verify/0190.../track000000003'
        """
        self._writable()
        pid = _text(pipeline_id, "pipeline_id")
        who = _text(author, "author").strip()
        lease = io.finite_float(lease_s, what="lease_s")
        if lease is None or lease < 0:
            raise ConfigError(f"lease_s must be >= 0 seconds, got {lease_s!r}")
        at = io.utc_naive(now, what="now") or io.utc_now()
        steps = [_text(s, "step") for s in order]
        where, params = ["t.pipeline_id = ?"], [pid]
        if step is not None:
            where.append("t.step = ?")
            params.append(_text(step, "step"))
        sql = f"""
            WITH mine AS (SELECT task_id FROM tasks WHERE pipeline_id = ?),
            answered AS (
                SELECT a.task_id, bool_or(a.answer <> ?) AS done, bool_or(a.answer = ? AND a.author = ?) AS skipped
                FROM task_answers a JOIN mine USING (task_id) GROUP BY a.task_id),
            latest AS (
                SELECT s.task_id, arg_max(s.author, s.assigned_at) AS author, max(s.assigned_at) AS at
                FROM task_assignments s JOIN mine USING (task_id)
                WHERE NOT EXISTS (SELECT 1 FROM task_answers x WHERE x.task_id = s.task_id AND x.author = s.author
                                  AND x.answer = ? AND x.answered_at >= s.assigned_at)
                GROUP BY s.task_id)
            SELECT t.task_id FROM tasks t LEFT JOIN answered a USING (task_id) LEFT JOIN latest l USING (task_id)
            WHERE {' AND '.join(where)} AND NOT coalesce(a.done, FALSE) AND NOT coalesce(a.skipped, FALSE)
              AND (l.author IS NULL OR l.author = ? OR l.at < ?)
            ORDER BY coalesce(l.author = ?, FALSE) DESC, t.created_at,
                     coalesce(list_position(?::VARCHAR[], t.step), 0), t.scoring_id, t.task_id
            LIMIT 1"""
        args = [pid, SKIP_ANSWER, SKIP_ANSWER, who, SKIP_ANSWER, *params, who, at - timedelta(seconds=lease), who,
                steps]
        with self._write_lock:
            found = self._rows(sql, args)
            if not found:
                return None
            task_id = str(found[0][0])
            self._rows("INSERT INTO task_assignments VALUES (?, ?, ?)", [task_id, who, at])
        return task_id

    def task_assignments(self, *, pipeline_id: str | None = None, task_id: str | None = None) -> pd.DataFrame:
        """Assignments (``task_id``, ``author``, ``assigned_at``), oldest first.

        Example:
            >>> store.task_assignments(pipeline_id="boxes-p1").author.value_counts()  # doctest: +SKIP
        """
        where, params = [], []
        if pipeline_id is not None:
            where.append("task_id IN (SELECT task_id FROM tasks WHERE pipeline_id = ?)")
            params.append(_text(pipeline_id, "pipeline_id"))
        if task_id is not None:
            where.append("task_id = ?")
            params.append(_text(task_id, "task_id"))
        return self._df(
            "SELECT task_id, author, assigned_at FROM task_assignments"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY assigned_at, task_id",
            params,
        )

    # --- answers ---------------------------------------------------------------------------------
    def log_task_answer(
        self,
        task_id: str,
        answer: Mapping[str, Any],
        *,
        author: str,
        source: str = "human",
        object_labels: Sequence[Mapping[str, Any]] = (),
    ) -> int:
        """Append an answer to a task and its object labels in one transaction; the ``answer_id``.

        ``object_labels`` rows go through :meth:`~dlabel_lab.PayloadStore.log_object_labels`
        with ``task_id`` and ``author`` set (``source`` ``"pipeline"`` unless a row says
        otherwise); a bad row rolls the answer back too.

        Raises:
            ConfigError: A bad answer, author or object label (nothing is written).
            UnknownRecord: No task has this id.

        Example:
            >>> store.log_task_answer(task_id, {"verdict": "accept"}, author="ana")  # doctest: +SKIP
            7
        """
        self._writable()
        tid = _text(task_id, "task_id")
        who = _text(author, "author").strip()
        if not isinstance(answer, Mapping):
            raise ConfigError(f"an answer is a dict, got {type(answer).__name__}")
        text = io.canonical_json(dict(answer), what="answer")
        src = _text(source, "source")
        with self._write_lock:
            found = self._rows("SELECT scoring_id, step FROM tasks WHERE task_id = ?", [tid])
            if not found:
                raise UnknownRecord(f"task {tid!r} is not in the store; get tasks with next_task()")
            sid, step = found[0]
            with self._transaction():
                if object_labels:
                    self.log_object_labels(object_labels, source="pipeline", author=who, task_id=tid)
                answer_id = int(self._rows("SELECT coalesce(max(answer_id) + 1, 0) FROM task_answers")[0][0])
                self._rows("INSERT INTO task_answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           [answer_id, tid, sid, step, who, text, src, io.utc_now()])  # fmt: skip
        return answer_id

    def task_answers(
        self,
        *,
        pipeline_id: str | None = None,
        task_ids: str | Sequence[str] | None = None,
        latest: bool = False,
    ) -> pd.DataFrame:
        """Answers, oldest first, ``answer`` parsed into a dict; ``latest=True`` keeps each task's latest non-skip one.

        Example:
            >>> store.task_answers(pipeline_id="boxes-p1", latest=True)[["task_id", "answer"]]  # doctest: +SKIP
        """
        where, params = [], []
        if pipeline_id is not None:
            where.append("a.task_id IN (SELECT task_id FROM tasks WHERE pipeline_id = ?)")
            params.append(_text(pipeline_id, "pipeline_id"))
        if task_ids is not None:
            items = _ids(task_ids, "task_id", _text)
            where.append(f"a.task_id IN ({', '.join('?' for _ in items)})" if items else "FALSE")
            params.extend(items)
        if latest:
            where.append("a.answer <> ?")
            params.append(SKIP_ANSWER)
        sql = ("SELECT a.answer_id, a.task_id, a.scoring_id, a.step, a.author, a.answer, a.source, a.answered_at "
               "FROM task_answers a" + (f" WHERE {' AND '.join(where)}" if where else ""))
        if latest:
            sql += " QUALIFY row_number() OVER (PARTITION BY a.task_id ORDER BY a.answer_id DESC) = 1"
        frame = self._df(sql + " ORDER BY a.answer_id", params)
        frame["answer"] = [json.loads(a) for a in frame["answer"]]
        return frame

    # --- the clips tasks show ----------------------------------------------------------------------
    def clip_facts(self, scoring_ids: Sequence[str]) -> pd.DataFrame:
        """Per clip: ``scoring_id``, ``media_path`` (absolute), ``fps``, ``frame_count``, ``width``, ``height``.

        Values the container did not report at logging time are missing (NaN).

        Raises:
            UnknownRecord: A scoring id has no raw clip.

        Example:
            >>> store.clip_facts([sid])[["width", "height"]]  # doctest: +SKIP
        """
        sids = list(dict.fromkeys(_ids(scoring_ids, "scoring_id", _sid)))
        if not sids:
            return self._df("SELECT scoring_id, media_relpath AS media_path, fps, frame_count, width, height "
                            "FROM raw_payloads WHERE FALSE")  # fmt: skip
        frame = self._df(
            "SELECT scoring_id, media_relpath AS media_path, fps, frame_count, width, height FROM raw_payloads "
            "WHERE list_contains(?, scoring_id)",
            [sids],
        )
        unknown = sorted(set(sids) - set(frame["scoring_id"]))
        if unknown:
            raise UnknownRecord(f"{len(unknown)} scoring id(s) have no raw clip in the store (first: {unknown[0]}); "
                                "log the clips first (log_raw or an ingest endpoint)")
        frame["media_path"] = [str(self.path / p) for p in frame["media_path"]]
        order = {s: i for i, s in enumerate(sids)}
        return frame.sort_values("scoring_id", key=lambda c: c.map(order)).reset_index(drop=True)
