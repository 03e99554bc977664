"""The SQL of the comprehensive data set (``matched``) and of what is missing (``unmatched``).

Filters come from a fixed allow-list of SQL fragments; every user value is a
``?`` parameter, never text spliced into the statement.

Example:
    >>> sql, params = matched_query({"label": ["circle"]}, media_root="/store/")
    >>> params
    ['/store/', ['circle']]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from . import io

__all__ = ["MATCHED_COLUMNS", "LATEST_MEDIA_CHECKS", "LATEST_SCORES", "matched_filters", "matched_query",
           "unmatched_query"]

MATCHED_COLUMNS = (
    "scoring_id", "received_at", "sha256", "media_path", "source_name", "fps", "frame_count", "width", "height",
    "codec", "metadata", "model_version", "record", "tensor_digest", "embedding", "objects", "predicted_label",
    "probabilities", "confidence", "latency_ms", "predicted_at", "user_label", "label_source", "label_author",
    "labelled_at", "correct", "tags", "media_ok",
)  # fmt: skip

# filter name -> SQL condition with exactly one parameter
_FILTERS = {
    "label": "list_contains(CAST(? AS VARCHAR[]), l.user_label)",
    "label_source": "list_contains(CAST(? AS VARCHAR[]), l.label_source)",
    "label_author": "list_contains(CAST(? AS VARCHAR[]), l.label_author)",
    "prediction": "list_contains(CAST(? AS VARCHAR[]), p.label)",
    "model_version": "list_contains(CAST(? AS VARCHAR[]), p.model_version)",
    "scoring_ids": "list_contains(CAST(? AS VARCHAR[]), p.scoring_id)",
    "tags": "list_has_all(coalesce(g.tags, []::VARCHAR[]), CAST(? AS VARCHAR[]))",
    "since": "r.received_at >= CAST(? AS TIMESTAMP)",
    "until": "r.received_at < CAST(? AS TIMESTAMP)",
    "min_confidence": "p.confidence >= CAST(? AS DOUBLE)",
    "max_confidence": "p.confidence <= CAST(? AS DOUBLE)",
    "correct": "(p.label = l.user_label) = CAST(? AS BOOLEAN)",
}

LATEST_SCORES = """
    SELECT scoring_id, max(label_id) AS label_id, arg_max(label, label_id) AS user_label,
           arg_max(source, label_id) AS label_source, arg_max(labelled_at, label_id) AS labelled_at,
           arg_max(author, label_id) AS label_author
    FROM user_scores GROUP BY scoring_id"""

# the latest verify() result per media file: TRUE ok, FALSE missing or altered (no row: never verified)
LATEST_MEDIA_CHECKS = """
    SELECT sha256, arg_max(status = 'ok', checked_at) AS media_ok FROM media_checks GROUP BY sha256"""

_MATCHED = """
WITH latest AS ({latest}),
tagged AS (
    SELECT scoring_id, model_version, list(DISTINCT tag ORDER BY tag) AS tags FROM clip_tags GROUP BY ALL
),
checked AS ({checks})
SELECT r.scoring_id, r.received_at, r.sha256, CAST(? AS VARCHAR) || r.media_relpath AS media_path, r.source_name,
       r.fps, r.frame_count, r.width, r.height, r.codec, r.metadata, p.model_version, t.record, t.tensor_digest,
       t.embedding, t.objects, p.label AS predicted_label, p.probabilities, p.confidence, p.latency_ms,
       p.predicted_at, l.user_label, l.label_source, l.label_author, l.labelled_at,
       p.label = l.user_label AS correct,
       coalesce(g.tags, []::VARCHAR[]) AS tags, c.media_ok
FROM predictions p
JOIN raw_payloads r ON r.scoring_id = p.scoring_id
JOIN transformed_payloads t ON t.scoring_id = p.scoring_id AND t.model_version = p.model_version
LEFT JOIN latest l ON l.scoring_id = p.scoring_id
LEFT JOIN tagged g ON g.scoring_id = p.scoring_id AND g.model_version = p.model_version
LEFT JOIN checked c ON c.sha256 = r.sha256
{where}"""

_UNMATCHED = """
WITH keyed AS (
    SELECT scoring_id, model_version FROM transformed_payloads
    UNION SELECT scoring_id, model_version FROM predictions
), ids AS (
    SELECT scoring_id FROM raw_payloads UNION SELECT scoring_id FROM user_scores UNION SELECT scoring_id FROM keyed
), pairs AS (
    SELECT scoring_id, model_version FROM keyed
    UNION ALL
    SELECT scoring_id, NULL::VARCHAR AS model_version FROM ids
    WHERE scoring_id NOT IN (SELECT scoring_id FROM keyed)
), errors AS (
    SELECT s.scoring_id, arg_max(coalesce(e.error, 'run ' || s.run_id || ' failed'), e.finished_at) AS error
    FROM runs s JOIN run_ends e ON e.run_id = s.run_id
    WHERE e.status = 'failed' AND s.scoring_id IS NOT NULL GROUP BY s.scoring_id
)
SELECT p.scoring_id, p.model_version,
       list_filter([CASE WHEN r.scoring_id IS NULL THEN 'raw' END,
                    CASE WHEN t.scoring_id IS NULL THEN 'transformed' END,
                    CASE WHEN q.scoring_id IS NULL THEN 'prediction' END], lambda x: x IS NOT NULL) AS missing,
       e.error
FROM pairs p
LEFT JOIN raw_payloads r ON r.scoring_id = p.scoring_id
LEFT JOIN transformed_payloads t ON t.scoring_id = p.scoring_id AND t.model_version = p.model_version
LEFT JOIN predictions q ON q.scoring_id = p.scoring_id AND q.model_version = p.model_version
LEFT JOIN errors e ON e.scoring_id = p.scoring_id
WHERE r.scoring_id IS NULL OR t.scoring_id IS NULL OR q.scoring_id IS NULL
ORDER BY p.scoring_id, p.model_version NULLS FIRST"""


def matched_query(filters: dict[str, Any], *, media_root: str) -> tuple[str, list[Any]]:
    """The matched statement and its parameters for validated ``filters``.

    Args:
        filters: Filter name (a key of the allow-list) -> value to bind.
        media_root: The store folder with a trailing slash; ``media_path`` is
            this plus the row's relative media path.

    Example:
        >>> matched_query({}, media_root="/s/")[0].count("?")
        1
    """
    unknown = set(filters) - set(_FILTERS)
    if unknown:
        raise KeyError(f"not a matched() filter: {sorted(unknown)}")
    conditions = [_FILTERS[name] for name in _FILTERS if name in filters]
    params = [media_root, *(filters[name] for name in _FILTERS if name in filters)]
    where = ("WHERE " + "\n  AND ".join(conditions)) if conditions else ""
    return _MATCHED.format(latest=LATEST_SCORES, checks=LATEST_MEDIA_CHECKS, where=where), params


def unmatched_query() -> str:
    """The statement listing (scoring_id, model_version) pairs that lack a part.

    Example:
        >>> "missing" in unmatched_query()
        True
    """
    return _UNMATCHED


def _one_or_many(value: object, what: str) -> list[str] | None:
    if value is None:
        return None
    values = [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    return [io.check_text(v, what=what, allow_empty=True) for v in values]  # type: ignore[misc]


def matched_filters(**given: Any) -> dict[str, Any]:  # noqa: ANN401
    """Validated filter values, keyed by the allow-listed filter names of :func:`matched_query`.

    Example:
        >>> matched_filters(label="circle", correct=None)
        {'label': ['circle']}
    """
    unknown = set(given) - set(_FILTERS)
    if unknown:
        raise ConfigError(f"matched() has no filter {sorted(unknown)}; the filters are {sorted(_FILTERS)}")
    given = {name: given.get(name) for name in _FILTERS}
    out: dict[str, Any] = {}
    for name in ("label", "label_source", "label_author", "prediction", "model_version", "tags"):
        values = _one_or_many(given[name], name)
        if values is not None:
            out[name] = values
    if given["scoring_ids"] is not None:
        ids = given["scoring_ids"]
        if isinstance(ids, str):
            ids = [ids]
        out["scoring_ids"] = [io.check_text(v, what="scoring_ids", allow_empty=True) for v in ids]
    for name in ("since", "until"):
        if given[name] is not None:
            out[name] = io.utc_naive(given[name], what=name)
    for name in ("min_confidence", "max_confidence"):
        if given[name] is not None:
            out[name] = io.finite_float(given[name], what=name)
    if given["correct"] is not None:
        if not isinstance(given["correct"], (bool, np.bool_)):
            raise ConfigError(f"correct must be True, False or None, got {given['correct']!r}")
        out["correct"] = bool(given["correct"])
    return out
