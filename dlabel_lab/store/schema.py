"""The payload store's DuckDB schema and its migrations.

Each migration is a list of statements that takes the schema from version
``n - 1`` to ``n``; :func:`migrate` runs the missing ones in one transaction
and records each in ``schema_version``. A step may also be a function of the
connection and the store folder (a data migration with bound parameters).
Tables are append-only: a new label is a new ``user_scores`` row, the end of
a run is a new ``run_ends`` row; only migrations rewrite stored rows.

Example:
    >>> import duckdb
    >>> con = duckdb.connect()
    >>> migrate(con)
    4
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SchemaVersionError
from . import io

if TYPE_CHECKING:
    import duckdb

__all__ = ["SCHEMA_VERSION", "content_hash", "current_version", "migrate", "relative_checkpoint"]

Step = str | Callable[..., None]  # a statement, or f(con, store_dir) for a data migration

_V1 = [
    """CREATE TABLE schema_version (
        version INTEGER NOT NULL, migrated_at TIMESTAMP NOT NULL DEFAULT current_timestamp::TIMESTAMP, note VARCHAR)""",
    # the native clip: content-addressed file under media/, plus what the container said
    """CREATE TABLE raw_payloads (
        scoring_id VARCHAR PRIMARY KEY, received_at TIMESTAMP NOT NULL, sha256 VARCHAR NOT NULL,
        media_relpath VARCHAR NOT NULL, size_bytes BIGINT NOT NULL, source_name VARCHAR NOT NULL,
        fps DOUBLE, frame_count BIGINT, width INTEGER, height INTEGER, codec VARCHAR, metadata VARCHAR NOT NULL)""",
    # what the model saw: the preprocessing record, the tensor's digest, the embedding and what it identified
    """CREATE TABLE transformed_payloads (
        scoring_id VARCHAR NOT NULL, model_version VARCHAR NOT NULL, record VARCHAR NOT NULL,
        tensor_digest VARCHAR NOT NULL, embedding FLOAT[], objects VARCHAR NOT NULL, transformed_at TIMESTAMP NOT NULL,
        PRIMARY KEY (scoring_id, model_version))""",
    """CREATE TABLE predictions (
        scoring_id VARCHAR NOT NULL, model_version VARCHAR NOT NULL, label VARCHAR NOT NULL, probabilities FLOAT[],
        confidence DOUBLE, latency_ms DOUBLE, predicted_at TIMESTAMP NOT NULL,
        PRIMARY KEY (scoring_id, model_version))""",
    # labels: several per scoring id over time; the highest label_id is the latest and wins
    """CREATE TABLE user_scores (
        label_id BIGINT PRIMARY KEY, scoring_id VARCHAR NOT NULL, label VARCHAR NOT NULL, source VARCHAR NOT NULL,
        author VARCHAR, labelled_at TIMESTAMP NOT NULL)""",
    # the execution log: a run starts (runs) and ends (run_ends)
    """CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, params VARCHAR NOT NULL, scoring_id VARCHAR,
        model_version VARCHAR, started_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE run_ends (
        run_id VARCHAR PRIMARY KEY, finished_at TIMESTAMP NOT NULL, status VARCHAR NOT NULL, error VARCHAR,
        result VARCHAR)""",
    """CREATE TABLE dataset_versions (
        dataset_version VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, n INTEGER NOT NULL, created_at TIMESTAMP NOT NULL,
        filters VARCHAR NOT NULL, n_members BIGINT NOT NULL, content_hash VARCHAR NOT NULL)""",
    """CREATE TABLE dataset_members (
        dataset_version VARCHAR NOT NULL, scoring_id VARCHAR NOT NULL, label_id BIGINT NOT NULL,
        label VARCHAR NOT NULL, sha256 VARCHAR NOT NULL, PRIMARY KEY (dataset_version, scoring_id))""",
    """CREATE TABLE model_versions (
        model_version VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, n INTEGER NOT NULL, created_at TIMESTAMP NOT NULL,
        checkpoint_path VARCHAR NOT NULL, checkpoint_sha256 VARCHAR NOT NULL, parent VARCHAR, dataset_version VARCHAR,
        params VARCHAR NOT NULL, metrics VARCHAR NOT NULL, classes VARCHAR[] NOT NULL, spec VARCHAR NOT NULL)""",
]

_V2 = [
    # filled by the attribution work and the loop
    """CREATE TABLE neuron_functions (
        model_version VARCHAR NOT NULL, layer VARCHAR NOT NULL, neuron INTEGER NOT NULL, class_label VARCHAR,
        factor VARCHAR, corr DOUBLE, extra VARCHAR NOT NULL, logged_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE clip_tags (
        model_version VARCHAR NOT NULL, scoring_id VARCHAR NOT NULL, tag VARCHAR NOT NULL, score DOUBLE,
        logged_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE transformation_params (
        params_version VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, n INTEGER NOT NULL, model_version VARCHAR,
        params VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE attributions (
        model_version VARCHAR NOT NULL, scoring_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, attr_values FLOAT[],
        attr_json VARCHAR, logged_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE model_metrics (
        model_version VARCHAR NOT NULL, split VARCHAR NOT NULL, metrics VARCHAR NOT NULL, scoring_ids VARCHAR[],
        logged_at TIMESTAMP NOT NULL)""",
]


def content_hash(pairs: list[tuple[str, str]]) -> str:
    """The content hash of a data set: sha256 over the sorted multiset of (clip sha256, label) pairs.

    The same clips with the same labels give the same hash whatever their
    scoring ids, label rows or order; a clip twice counts twice.

    Example:
        >>> content_hash([("b", "x"), ("a", "y")]) == content_hash([("a", "y"), ("b", "x")])
        True
    """
    digest = hashlib.sha256()
    for sha, label in sorted(pairs):
        digest.update(f"{sha}\t{label}\n".encode())
    return digest.hexdigest()


def relative_checkpoint(path: str, store_dir: Path) -> str:
    """``path`` relative to the store folder (POSIX text) when it lies inside it, else unchanged.

    Example:
        >>> relative_checkpoint("/s/models/m.safetensors", Path("/s"))
        'models/m.safetensors'
        >>> relative_checkpoint("/elsewhere/m.safetensors", Path("/s"))
        '/elsewhere/m.safetensors'
    """
    p = Path(path)
    if not p.is_absolute():
        return path
    try:
        return p.relative_to(store_dir).as_posix()
    except ValueError:
        return path


def _v3_data(con: duckdb.DuckDBPyConnection, store_dir: Path | None) -> None:
    """Checkpoint paths under the store folder become relative; data set hashes become (sha256, label) hashes.

    A checkpoint path outside the store stays absolute, except when the store
    was moved before this migration: an old ``<old store>/models/<file>``
    whose file also lies in this store's ``models/`` with the recorded sha256
    is taken as this store's own file.
    """
    if store_dir is not None:
        root = Path(store_dir)
        rows = con.execute("SELECT model_version, checkpoint_path, checkpoint_sha256 FROM model_versions").fetchall()
        for version, path, sha in rows:
            new = relative_checkpoint(path, root)
            here = root / "models" / Path(path).name
            if new == path and Path(path).is_absolute() and Path(path).parent.name == "models" and here.is_file():
                try:
                    if io.sha256_file(here) == sha:
                        new = f"models/{here.name}"
                except OSError:
                    pass
            if new != path:
                con.execute("UPDATE model_versions SET checkpoint_path = ? WHERE model_version = ?", [new, version])
    versions = [r[0] for r in con.execute("SELECT dataset_version FROM dataset_versions").fetchall()]
    for version in versions:
        pairs = con.execute("SELECT sha256, label FROM dataset_members WHERE dataset_version = ?", [version]).fetchall()
        con.execute("UPDATE dataset_versions SET content_hash = ? WHERE dataset_version = ?",
                    [content_hash([(a, b) for a, b in pairs]), version])  # fmt: skip


_V3: list[Step] = [
    # the result of store.verify() per media file, appended at every verify; the latest row counts
    """CREATE TABLE media_checks (
        sha256 VARCHAR NOT NULL, status VARCHAR NOT NULL, checked_at TIMESTAMP NOT NULL, run_id VARCHAR)""",
    _v3_data,
]

_V4 = [
    # what a detector identified in a clip, one row per box (frame, box in pixels, class, score, track)
    """CREATE TABLE objects (
        scoring_id VARCHAR NOT NULL, model_version VARCHAR NOT NULL, object_n INTEGER NOT NULL,
        frame_index INTEGER NOT NULL, timestamp DOUBLE, x1 DOUBLE NOT NULL, y1 DOUBLE NOT NULL, x2 DOUBLE NOT NULL,
        y2 DOUBLE NOT NULL, label VARCHAR NOT NULL, score DOUBLE, track_id BIGINT, logged_at TIMESTAMP NOT NULL,
        PRIMARY KEY (scoring_id, model_version, object_n))""",
    # what people said about objects: boxes they drew, missed objects they marked, fixes and verdicts on
    # model objects (refers_to = "<model_version>#<object_n>"); append-only like user_scores
    """CREATE TABLE object_labels (
        object_label_id BIGINT PRIMARY KEY, scoring_id VARCHAR NOT NULL, frame_index INTEGER NOT NULL,
        x1 DOUBLE, y1 DOUBLE, x2 DOUBLE, y2 DOUBLE, label VARCHAR, track_id BIGINT, kind VARCHAR NOT NULL,
        refers_to VARCHAR, source VARCHAR NOT NULL, author VARCHAR, task_id VARCHAR, labelled_at TIMESTAMP NOT NULL)""",
    # labelling pipelines: a declarative graph of machine steps and human micro-tasks
    """CREATE TABLE pipelines (
        pipeline_id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, n INTEGER NOT NULL, spec VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE tasks (
        task_id VARCHAR PRIMARY KEY, pipeline_id VARCHAR NOT NULL, step VARCHAR NOT NULL, kind VARCHAR NOT NULL,
        scoring_id VARCHAR NOT NULL, payload VARCHAR NOT NULL, instruction VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE task_assignments (
        task_id VARCHAR NOT NULL, author VARCHAR NOT NULL, assigned_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE task_answers (
        answer_id BIGINT PRIMARY KEY, task_id VARCHAR NOT NULL, scoring_id VARCHAR NOT NULL, step VARCHAR NOT NULL,
        author VARCHAR NOT NULL, answer VARCHAR NOT NULL, source VARCHAR NOT NULL, answered_at TIMESTAMP NOT NULL)""",
]

MIGRATIONS: list[tuple[str, list[Step]]] = [
    ("payloads, labels, versions and the execution log", _V1),  # type: ignore[list-item]
    ("neuron functions, clip tags, transformation parameters, attributions, model metrics", _V2),  # type: ignore[list-item]
    ("relative checkpoint paths, (sha256, label) content hashes, media checks", _V3),
    ("objects identified by detectors, object labels, labelling pipelines, tasks, assignments and answers", _V4),  # type: ignore[list-item]
]
SCHEMA_VERSION = len(MIGRATIONS)


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()
    return {r[0] for r in rows}


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version of the open database; 0 when it is empty.

    Raises:
        SchemaVersionError: The database holds tables but no ``schema_version``
            table, so it is not a payload store.

    Example:
        >>> import duckdb
        >>> current_version(duckdb.connect())
        0
    """
    tables = _tables(con)
    if "schema_version" not in tables:
        if tables:
            raise SchemaVersionError(
                f"store.duckdb holds tables ({', '.join(sorted(tables)[:5])}) but no schema_version table, so it "
                "is not a dlabel_lab payload store. Point PayloadStore at a new folder."
            )
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchall()[0]
    return int(row[0] or 0)


def migrate(con: duckdb.DuckDBPyConnection, *, target: int = SCHEMA_VERSION, store_dir: Path | None = None) -> int:
    """Bring the schema up to ``target`` in one transaction; the version reached.

    ``store_dir`` is the store folder (resolved), which data migrations need
    (version 3 makes checkpoint paths inside it relative); without it those
    paths stay as they are.

    Raises:
        SchemaVersionError: The store was written by a newer schema than this
            package knows.

    Example:
        >>> import duckdb
        >>> migrate(duckdb.connect(), target=1)
        1
    """
    found = current_version(con)
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(newer_message(found))
    if found >= target:
        return found
    con.execute("BEGIN TRANSACTION")
    try:
        for version in range(found + 1, target + 1):
            note, statements = MIGRATIONS[version - 1]
            for statement in statements:
                if callable(statement):
                    statement(con, store_dir)
                else:
                    con.execute(statement)
            con.execute("INSERT INTO schema_version (version, note) VALUES (?, ?)", [version, note])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return target


def newer_message(found: int) -> str:
    """The message for a store whose schema is newer than this package's.

    Example:
        >>> "version 9" in newer_message(9)
        True
    """
    return (
        f"store.duckdb has schema version {found}, newer than the version {SCHEMA_VERSION} this dlabel_lab "
        "understands. Upgrade dlabel_lab to open it, or use store.export_parquet() from the newer version."
    )
