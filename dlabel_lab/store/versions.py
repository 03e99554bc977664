"""Versions, lineage, the execution log and the attribution tables of the payload store.

:class:`VersionsMixin` is part of :class:`dlabel_lab.PayloadStore`: data set
snapshots (members with the exact label row each used), model versions (with
the checkpoint's sha256), transformation parameters, metrics, runs, neuron
functions, clip tags and attributions. Version ids are ``f"{name}-v{n}"``,
counting per name. Data set versions are content-addressed (the same clips
with the same labels give the same version back), checkpoint paths inside the
store are kept relative to it (a moved or copied store uses its own files),
and :class:`~dlabel_lab.store.verify.VerifyMixin` re-hashes media and checkpoints.

Example:
    >>> ds = store.snapshot_dataset("shapes")  # doctest: +SKIP
    >>> v1 = store.register_model(name="shapes", checkpoint_path="m.ckpt", classes=["a", "b"],
    ...                           spec={}, dataset_version=ds)  # doctest: +SKIP
    >>> store.lineage(v1)["dataset"]["n_members"]  # doctest: +SKIP
    12
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import CheckpointError, ConfigError, StoreError, UnknownRecord
from . import io
from .queries import LATEST_SCORES, matched_filters
from .schema import content_hash, relative_checkpoint

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["VersionsMixin"]

_TS = pa.timestamp("us")
_RUN_STATUSES = ("ok", "failed", "cancelled")
_MODEL_FILTERS = ("prediction", "model_version", "min_confidence", "max_confidence", "correct", "tags")
_MEMBER_COLUMNS = {"dataset_version": pa.string(), "scoring_id": pa.string(), "label_id": pa.int64(),
                   "label": pa.string(), "sha256": pa.string()}  # fmt: skip


def _as_dict(value: object, what: str) -> dict[str, Any]:
    """A dict from a dict or an object with ``to_dict()`` (ClipSpec, TransformationParams)."""
    if value is None:
        return {}
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a dict (or have .to_dict()), got {type(value).__name__}")
    return dict(value)


def _error_text(error: object) -> str | None:
    if error is None:
        return None
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}"
    return io.check_text(str(error), what="error", allow_empty=True)


class VersionsMixin:
    """Versions, lineage and the execution log; mixed into :class:`~dlabel_lab.PayloadStore`."""

    # provided by PayloadStore
    path: Path
    _write_lock: Any
    _writable: Any
    _rows: Any
    _df: Any
    _insert: Any
    _check_process: Any
    read_only: bool
    matched: Any

    def _next_n(self, table: str, name: str) -> int:
        return int(self._rows(f"SELECT coalesce(max(n), 0) + 1 FROM {table} WHERE name = ?", [name])[0][0])

    def _exists(self, table: str, column: str, value: str) -> bool:
        return bool(self._rows(f"SELECT count(*) FROM {table} WHERE {column} = ?", [value])[0][0])

    # --- the execution log ---------------------------------------------------------
    def start_run(
        self,
        kind: str,
        params: Mapping[str, Any] | None = None,
        *,
        scoring_id: str | None = None,
        model_version: str | None = None,
    ) -> str:
        """Record the start of a run (ingest, score, retrain, loop iteration, ...); its run id.

        Example:
            >>> run_id = store.start_run("retrain", {"epochs": 3}, model_version="shapes-v1")  # doctest: +SKIP
        """
        self._writable()
        kind = io.check_text(kind, what="run kind")  # type: ignore[assignment]
        text = io.canonical_json(_as_dict(params, "params"), what="run params")
        sid = None if scoring_id is None else io.check_scoring_id(scoring_id)
        version = io.check_text(model_version, what="model_version", optional=True)
        run_id = io.new_scoring_id()
        with self._write_lock:
            self._rows(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)", [run_id, kind, text, sid, version, io.utc_now()]
            )
        return run_id

    def finish_run(
        self,
        run_id: str,
        *,
        status: str = "ok",
        error: str | BaseException | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> None:
        """Record the end of a run: ``status`` ``"ok"``, ``"failed"`` or ``"cancelled"``, the error, a result.

        Raises:
            UnknownRecord: No run has this id.
            StoreError: The run has already finished.

        Example:
            >>> store.finish_run(run_id, status="failed", error="TruncatedMedia: clip.mp4 ...")  # doctest: +SKIP
        """
        self._writable()
        if status not in _RUN_STATUSES:
            raise ConfigError(f"status must be one of {_RUN_STATUSES}, got {status!r}")
        text = io.canonical_json(_as_dict(result, "result"), what="run result")
        with self._write_lock:
            if not self._exists("runs", "run_id", run_id):
                raise UnknownRecord(f"no run {run_id!r} was started; use start_run() first")
            if self._exists("run_ends", "run_id", run_id):
                raise StoreError(f"run {run_id} has already finished; start a new run to record more")
            self._rows(
                "INSERT INTO run_ends VALUES (?, ?, ?, ?, ?)", [run_id, io.utc_now(), status, _error_text(error), text]
            )

    @contextlib.contextmanager
    def run(
        self,
        kind: str,
        params: Mapping[str, Any] | None = None,
        *,
        scoring_id: str | None = None,
        model_version: str | None = None,
    ) -> Iterator[str]:
        """A run around a block: ``ok`` when it ends, ``failed`` with the error when it raises (then re-raised).

        Example:
            >>> with store.run("ingest", {"path": "clip.mp4"}, scoring_id=sid) as run_id:  # doctest: +SKIP
            ...     ...
        """
        run_id = self.start_run(kind, params, scoring_id=scoring_id, model_version=model_version)
        try:
            yield run_id
        except BaseException as error:
            self.finish_run(run_id, status="failed", error=error)
            raise
        self.finish_run(run_id, status="ok")

    def runs(self, kind: str | None = None) -> pd.DataFrame:
        """The execution log, oldest first; ``status`` is ``"running"`` until the run finishes.

        Example:
            >>> store.runs("retrain")[["run_id", "status", "error"]]  # doctest: +SKIP
        """
        where, params = ("WHERE s.kind = ?", [kind]) if kind is not None else ("", [])
        return self._df(
            "SELECT s.run_id, s.kind, s.params, s.scoring_id, s.model_version, s.started_at, e.finished_at, "
            "coalesce(e.status, 'running') AS status, e.error, e.result "
            f"FROM runs s LEFT JOIN run_ends e ON e.run_id = s.run_id {where} ORDER BY s.started_at, s.run_id",
            params,
        )

    # --- data set versions -------------------------------------------------------------
    def snapshot_dataset(
        self, name: str, *, scoring_ids: Sequence[str] | None = None, **matched_filters_: Any
    ) -> str:
        """Record a data set version: labelled clips with the label row each uses; its id (``name-vN``).

        Members are raw payloads with a user score, narrowed by ``scoring_ids``
        and the :meth:`matched` filters (``label``, ``since`` and ``until`` work
        without predictions; model filters select from :meth:`matched`). Each
        member keeps the ``label_id`` of its latest label at snapshot time, so
        later relabelling does not change the version.

        Versions are content-addressed: the content hash is the sha256 over
        the sorted multiset of (clip sha256, label) pairs, so the same clips
        with the same labels hash the same whatever their scoring ids, label
        rows or filters. When a version of this ``name`` with the same content
        hash exists, its id is returned and nothing is written; a changed
        label or clip mints ``name-v{n+1}``.

        Raises:
            UnknownRecord: A given scoring id has no raw payload or no label.
            ConfigError: Nothing matches.

        Example:
            >>> store.snapshot_dataset("shapes", label=["circle", "square"])  # doctest: +SKIP
            'shapes-v1'
        """
        self._writable()
        name = io.check_name(name, what="data set name")
        filters = matched_filters(**matched_filters_)
        ids = None if scoring_ids is None else [io.check_scoring_id(s) for s in scoring_ids]
        conditions, params = [], []
        if any(key in filters for key in _MODEL_FILTERS):
            rel = self.matched(**matched_filters_, scoring_ids=ids)
            conditions.append("list_contains(CAST(? AS VARCHAR[]), r.scoring_id)")
            params.append(sorted({row[0] for row in rel.select("scoring_id").fetchall()}))
        elif ids is not None:
            conditions.append("list_contains(CAST(? AS VARCHAR[]), r.scoring_id)")
            params.append(ids)
        for key, condition in (("label", "list_contains(CAST(? AS VARCHAR[]), l.user_label)"),
                               ("label_source", "list_contains(CAST(? AS VARCHAR[]), l.label_source)"),
                               ("label_author", "list_contains(CAST(? AS VARCHAR[]), l.label_author)"),
                               ("since", "r.received_at >= ?"), ("until", "r.received_at < ?")):  # fmt: skip
            if key in filters:
                conditions.append(condition)
                params.append(filters[key])
        where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
        with self._write_lock:
            rows = self._rows(
                f"WITH latest AS ({LATEST_SCORES}) SELECT r.scoring_id, l.label_id, l.user_label, r.sha256 "
                f"FROM raw_payloads r JOIN latest l ON l.scoring_id = r.scoring_id {where} ORDER BY r.scoring_id",
                params,
            )
            if ids is not None and not any(key in filters for key in ("label", "since", "until", *_MODEL_FILTERS)):
                lacking = sorted(set(ids) - {r[0] for r in rows})
                if lacking:
                    raise UnknownRecord(
                        f"{len(lacking)} scoring id(s) have no raw payload or no user score, e.g. {lacking[:3]}; "
                        "log them (log_raw, log_score) or leave them out"
                    )
            if not rows:
                raise ConfigError(f"no labelled clip matches {filters or 'the store'}; log user scores first")
            digest = content_hash([(sha, label) for _, _, label, sha in rows])
            same = self._rows("SELECT dataset_version FROM dataset_versions WHERE name = ? AND content_hash = ? "
                              "ORDER BY n LIMIT 1", [name, digest])  # fmt: skip
            if same:
                return str(same[0][0])
            version = f"{name}-v{self._next_n('dataset_versions', name)}"
            recorded = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in filters.items()}
            if ids is not None:
                recorded["scoring_ids"] = ids
            self._rows(
                "INSERT INTO dataset_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                [version, name, int(version.rsplit("-v", 1)[1]), io.utc_now(),
                 io.canonical_json(recorded, what="filters"), len(rows), digest],
            )  # fmt: skip
            cols = {"dataset_version": [version] * len(rows), "scoring_id": [r[0] for r in rows],
                    "label_id": [r[1] for r in rows], "label": [r[2] for r in rows],
                    "sha256": [r[3] for r in rows]}  # fmt: skip
            self._insert("dataset_members", _MEMBER_COLUMNS, cols, list(range(len(rows))))
        return version

    def dataset_members(self, dataset_version: str) -> pd.DataFrame:
        """The members of a data set version with the label each used and where its clip is.

        Columns: ``scoring_id``, ``label``, ``label_id``, ``label_source``,
        ``labelled_at``, ``sha256``, ``media_path``, ``source_name``,
        ``received_at``.

        Raises:
            UnknownRecord: No such data set version.

        Example:
            >>> store.dataset_members("shapes-v1").label.value_counts()  # doctest: +SKIP
        """
        if not self._exists("dataset_versions", "dataset_version", dataset_version):
            raise UnknownRecord(f"no data set version {dataset_version!r}; see snapshot_dataset()")
        return self._df(
            "SELECT m.scoring_id, m.label, m.label_id, s.source AS label_source, s.labelled_at, m.sha256, "
            "CAST(? AS VARCHAR) || r.media_relpath AS media_path, r.source_name, r.received_at "
            "FROM dataset_members m JOIN raw_payloads r ON r.scoring_id = m.scoring_id "
            "JOIN user_scores s ON s.label_id = m.label_id WHERE m.dataset_version = ? ORDER BY m.scoring_id",
            [f"{self.path}/", dataset_version],
        )

    # --- model versions ------------------------------------------------------------------
    def register_model(
        self,
        *,
        name: str,
        checkpoint_path: str | Path,
        classes: Sequence[str],
        spec: Mapping[str, Any] | Any,  # noqa: ANN401 - a dict or a ClipSpec
        parent: str | None = None,
        dataset_version: str | None = None,
        params: Mapping[str, Any] | Any | None = None,  # noqa: ANN401 - a dict or TransformationParams
        metrics: Mapping[str, Any] | None = None,
    ) -> str:
        """Record a model version; its id, ``f"{name}-v{n}"`` with ``n`` counting per name.

        The store computes the checkpoint file's sha256 itself. A checkpoint
        inside the store folder (``register_version`` writes to
        ``<store>/models/``) is recorded relative to it, so a moved or copied
        store uses its own file; one outside stays an absolute path.

        Args:
            name: The model's name.
            checkpoint_path: The checkpoint file.
            classes: Class names in output order.
            spec: The clip spec it was trained with (dict or ``ClipSpec``).
            parent: The model version it was retrained from.
            dataset_version: The data set version it was trained on.
            params: Transformation parameters applied in training.
            metrics: Metrics at registration (e.g. validation accuracy).

        Raises:
            CheckpointError: The checkpoint file does not exist.
            UnknownRecord: ``parent`` or ``dataset_version`` is not in the store.

        Example:
            >>> store.register_model(name="shapes", checkpoint_path="m.ckpt", classes=["a", "b"],
            ...                      spec={"frames": 8}, dataset_version="shapes-v1")  # doctest: +SKIP
            'shapes-v1'
        """
        self._writable()
        name = io.check_name(name, what="model name")
        ckpt = Path(checkpoint_path).expanduser().resolve()
        if not ckpt.is_file():
            raise CheckpointError(f"checkpoint {ckpt} does not exist or is not a file; save the model first")
        if isinstance(classes, str) or not classes:
            raise ConfigError("classes must be a non-empty list of class names")
        names = [io.check_text(c, what="class name") for c in classes]
        if len(set(names)) != len(names):
            raise ConfigError(f"classes must be distinct, got {names}")
        texts = [io.canonical_json(_as_dict(v, what), what=what)
                 for v, what in ((params, "params"), (metrics, "metrics"), (spec, "spec"))]  # fmt: skip
        sha = io.sha256_file(ckpt)
        with self._write_lock:
            for value, table, column in ((parent, "model_versions", "model_version"),
                                         (dataset_version, "dataset_versions", "dataset_version")):  # fmt: skip
                if value is not None and not self._exists(table, column, value):
                    raise UnknownRecord(f"{column.replace('_', ' ')} {value!r} is not in the store; register it first")
            n = self._next_n("model_versions", name)
            version = f"{name}-v{n}"
            self._rows(
                "INSERT INTO model_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [version, name, n, io.utc_now(), relative_checkpoint(str(ckpt), self.path), sha, parent,
                 dataset_version, *texts[:2], names, texts[2]],
            )
        return version

    def log_metrics(
        self,
        model_version: str,
        metrics: Mapping[str, Any],
        *,
        split: str = "holdout",
        scoring_ids: Sequence[str] | None = None,
    ) -> None:
        """Append metrics of a model version on a split (and the clips they were measured on).

        Raises:
            UnknownRecord: The model version is not registered.

        Example:
            >>> store.log_metrics("shapes-v2", {"accuracy": 0.91}, split="operational")  # doctest: +SKIP
        """
        self._writable()
        text = io.canonical_json(_as_dict(metrics, "metrics"), what="metrics")
        split = io.check_text(split, what="split")  # type: ignore[assignment]
        ids = None if scoring_ids is None else [io.check_scoring_id(s) for s in scoring_ids]
        with self._write_lock:
            if not self._exists("model_versions", "model_version", model_version):
                raise UnknownRecord(f"model version {model_version!r} is not registered; use register_model()")
            self._rows("INSERT INTO model_metrics VALUES (?, ?, ?, ?, ?)",
                       [model_version, split, text, ids, io.utc_now()])  # fmt: skip

    def model_versions(self) -> pd.DataFrame:
        """Every registered model version, oldest first (JSON columns as text).

        ``checkpoint_path`` is the absolute path of the file as of this store's
        current folder.

        Example:
            >>> store.model_versions()[["model_version", "parent", "dataset_version"]]  # doctest: +SKIP
        """
        frame = self._df("SELECT * FROM model_versions ORDER BY created_at, model_version")
        frame["checkpoint_path"] = [str(self.checkpoint_file(p)) for p in frame["checkpoint_path"]]
        return frame

    def checkpoint_file(self, recorded: str) -> Path:
        """The file a recorded checkpoint path names: relative ones are resolved against the store folder.

        Example:
            >>> store.checkpoint_file("models/shapes-3f1c.safetensors")  # doctest: +SKIP
            PosixPath('/runs/store/models/shapes-3f1c.safetensors')
        """
        self._check_process()
        path = Path(recorded)
        return path if path.is_absolute() else self.path / path

    def get_model(self, version: str) -> dict[str, Any]:
        """One model version as a dict (``params``, ``metrics`` and ``spec`` parsed; ``checkpoint_path`` absolute).

        Raises:
            UnknownRecord: The model version is not registered.

        Example:
            >>> store.get_model("shapes-v1")["checkpoint_sha256"]  # doctest: +SKIP
        """
        frame = self._df("SELECT * FROM model_versions WHERE model_version = ?", [version])
        if frame.empty:
            raise UnknownRecord(f"model version {version!r} is not registered; see model_versions()")
        out = frame.iloc[0].to_dict()
        out["checkpoint_path"] = str(self.checkpoint_file(out["checkpoint_path"]))
        for key in ("params", "metrics", "spec"):
            out[key] = json.loads(out[key])
        out["classes"] = [str(c) for c in out["classes"]]
        out["n"] = int(out["n"])
        out["created_at"] = out["created_at"].to_pydatetime()
        return out

    def lineage(self, model_version: str) -> dict[str, Any]:
        """Which clips and labels trained a model version, with which parameters, and how it scored.

        Returns:
            A dict with ``model_version``; ``model`` (see :meth:`get_model`);
            ``chain`` (this version, its parent, ... back to the root);
            ``parents`` (the ancestors' model dicts, nearest first);
            ``dataset`` (``None`` or ``version``, ``name``, ``content_hash``,
            ``n_members``, ``members`` DataFrame, ``label_counts``);
            ``params`` (transformation parameters); ``metrics`` (at
            registration); ``evaluations`` (every :meth:`log_metrics` entry);
            ``saved_params`` (parameter versions saved for it); ``runs``.

        Raises:
            UnknownRecord: The model version is not registered.

        Example:
            >>> store.lineage("shapes-v2")["chain"]  # doctest: +SKIP
            ['shapes-v2', 'shapes-v1']
        """
        model = self.get_model(model_version)
        chain, parents = [model_version], []
        parent = model["parent"]
        while parent is not None and parent not in chain:
            ancestor = self.get_model(parent)
            parents.append(ancestor)
            chain.append(parent)
            parent = ancestor["parent"]
        dataset = None
        if model["dataset_version"] is not None:
            info = self._rows("SELECT name, content_hash, filters FROM dataset_versions WHERE dataset_version = ?",
                              [model["dataset_version"]])[0]  # fmt: skip
            members = self.dataset_members(model["dataset_version"])
            dataset = {
                "version": model["dataset_version"], "name": info[0], "content_hash": info[1],
                "filters": json.loads(info[2]), "n_members": len(members), "members": members,
                "label_counts": {str(k): int(v) for k, v in sorted(members["label"].value_counts().items())},
            }  # fmt: skip
        evaluations = [
            {"split": s, "metrics": json.loads(m), "n_scoring_ids": None if ids is None else len(ids), "logged_at": t}
            for s, m, ids, t in self._rows(
                "SELECT split, metrics, scoring_ids, logged_at FROM model_metrics WHERE model_version = ? "
                "ORDER BY logged_at", [model_version])
        ]  # fmt: skip
        saved = [
            {"params_version": v, "params": json.loads(p)}
            for v, p in self._rows("SELECT params_version, params FROM transformation_params WHERE model_version = ? "
                                   "ORDER BY created_at", [model_version])
        ]  # fmt: skip
        runs = self.runs()
        return {
            "model_version": model_version, "model": model, "chain": chain, "parents": parents, "dataset": dataset,
            "params": model["params"], "metrics": model["metrics"], "evaluations": evaluations,
            "saved_params": saved, "runs": runs[runs["model_version"] == model_version].reset_index(drop=True),
        }  # fmt: skip

    # --- transformation parameters ---------------------------------------------------------
    def save_params(self, params: Mapping[str, Any] | Any, *, model_version: str | None = None, name: str = "") -> str:  # noqa: ANN401
        """Save transformation parameters (a dict or ``TransformationParams``); their version id.

        Example:
            >>> store.save_params({"brightness": [0.6, 1.4]}, name="shapes")  # doctest: +SKIP
            'shapes-v1'
        """
        self._writable()
        name = io.check_name(name or "params", what="params name")
        text = io.canonical_json(_as_dict(params, "params"), what="params")
        version_of = io.check_text(model_version, what="model_version", optional=True)
        with self._write_lock:
            n = self._next_n("transformation_params", name)
            version = f"{name}-v{n}"
            self._rows("INSERT INTO transformation_params VALUES (?, ?, ?, ?, ?, ?)",
                       [version, name, n, version_of, text, io.utc_now()])  # fmt: skip
        return version

    def get_params(self, params_version: str) -> dict[str, Any]:
        """The transformation parameters saved under ``params_version``.

        Raises:
            UnknownRecord: No such parameter version.

        Example:
            >>> store.get_params("shapes-v1")["brightness"]  # doctest: +SKIP
            [0.6, 1.4]
        """
        found = self._rows("SELECT params FROM transformation_params WHERE params_version = ?", [params_version])
        if not found:
            raise UnknownRecord(f"no transformation parameters {params_version!r}; see save_params()")
        return json.loads(found[0][0])

    def list_params(self, *, model_version: str | None = None) -> pd.DataFrame:
        """The saved params versions, newest first (what ``retrain(store, v, params=<id>)`` can use).

        Args:
            model_version: Keep the versions saved for this model version
                (``save_params(..., model_version=)``); ``None`` keeps all.

        Returns:
            Columns ``params_version``, ``name``, ``model_version``,
            ``author`` (who saved it when the run that saved it names one,
            e.g. the reviewer of ``save_reviewed_params``; else ``None``),
            ``created_at`` (UTC) and ``n_params`` (how many parameters change
            something: see :func:`_n_params`).

        Raises:
            ConfigError: ``model_version`` is not text.

        Example:
            >>> store.list_params(model_version="shapes-v1")[["params_version", "author"]]  # doctest: +SKIP
                     params_version author
            0  shapes-v1-reviewed-v1    ana
        """
        version_of = io.check_text(model_version, what="model_version", optional=True)
        where, params = ("WHERE p.model_version = ?", [version_of]) if version_of is not None else ("", [])
        frame = self._df(_LIST_PARAMS.format(where=where), params)
        frame["n_params"] = [_n_params(json.loads(text)) for text in frame.pop("params")]
        return frame


# who saved a params version: the author named by the (last) run whose result names it
_LIST_PARAMS = """
WITH saved_by AS (
    SELECT json_extract_string(e.result, '$.params_version') AS params_version,
           arg_max(json_extract_string(s.params, '$.author'), e.finished_at) AS author
    FROM runs s JOIN run_ends e ON e.run_id = s.run_id
    WHERE e.status = 'ok' AND json_extract_string(e.result, '$.params_version') IS NOT NULL
      AND json_extract_string(s.params, '$.author') IS NOT NULL
    GROUP BY ALL
)
SELECT p.params_version, p.name, p.model_version, a.author, p.created_at, p.params
FROM transformation_params p LEFT JOIN saved_by a ON a.params_version = p.params_version
{where}
ORDER BY p.created_at DESC, p.name, p.n DESC"""

# entries of a saved params dict that configure rather than change the clips (TransformationParams.to_dict)
_PARAMS_BOOKKEEPING = frozenset({"evidence", "p", "seed", "schema"})


def _n_params(params: Mapping[str, Any]) -> int:
    """How many entries of a saved params dict change something: set, not empty, not bookkeeping.

    Counts what ``TransformationParams.is_empty`` looks at (a ``frame_stride``
    of 1 changes nothing) and, for any other dict, every set entry.

    Example:
        >>> _n_params({"blur": [0.5, 1.0], "noise": None, "frame_stride": 1, "class_weights": {}, "p": 0.8})
        1
    """
    changes = {k: v for k, v in params.items() if k not in _PARAMS_BOOKKEEPING and v not in (None, [], {}, ())}
    return len(changes) - (changes.get("frame_stride") == 1)
