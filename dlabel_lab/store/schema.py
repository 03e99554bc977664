"""The payload store's DuckDB schema and its migrations.

Each migration is a list of statements that takes the schema from version
``n - 1`` to ``n``; :func:`migrate` runs the missing ones in one transaction
and records each in ``schema_version``. Tables are append-only: a new label is
a new ``user_scores`` row, the end of a run is a new ``run_ends`` row.

Example:
    >>> import duckdb
    >>> con = duckdb.connect()
    >>> migrate(con)
    2
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import SchemaVersionError

if TYPE_CHECKING:
    import duckdb

__all__ = ["SCHEMA_VERSION", "current_version", "migrate"]

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

MIGRATIONS: list[tuple[str, list[str]]] = [
    ("payloads, labels, versions and the execution log", _V1),
    ("neuron functions, clip tags, transformation parameters, attributions, model metrics", _V2),
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


def migrate(con: duckdb.DuckDBPyConnection, *, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema up to ``target`` in one transaction; the version reached.

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
