"""The payload store: one DuckDB file plus a content-addressed media folder, matched by scoring id.

Names load on first use (see :mod:`dlabel_lab.lazy`).
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "PayloadStore": ".payload_store",
    "new_scoring_id": ".payload_store",
    "MATCHED_COLUMNS": ".payload_store",
    "VerifyReport": ".payload_store",
    "StagedMedia": ".staging",
}

_SUBMODULES = ("payload_store", "schema", "io", "events", "queries", "writes", "versions", "analysis",
               "staging", "raw", "verify", "lock", "objects", "tasks")

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, submodules=_SUBMODULES)

__all__ = sorted(_EXPORTS)
