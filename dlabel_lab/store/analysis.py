"""The attribution work's tables in the payload store: neuron functions, clip tags, attributions.

:class:`AnalysisMixin` is part of :class:`dlabel_lab.PayloadStore`. Rows are
appended per model version; clip tags become the ``tags`` column of
:meth:`~dlabel_lab.PayloadStore.matched` and its ``tags=`` filter.

Example:
    >>> store.log_clip_tags("shapes-v1", [{"scoring_id": sid, "tag": "dark", "score": 0.8}])  # doctest: +SKIP
    >>> store.matched(tags="dark").df()  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import ConfigError
from . import io

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AnalysisMixin"]

_TS = pa.timestamp("us")
_NEURON_COLUMNS = {"model_version": pa.string(), "layer": pa.string(), "neuron": pa.int32(),
                   "class_label": pa.string(), "factor": pa.string(), "corr": pa.float64(), "extra": pa.string(),
                   "logged_at": _TS}  # fmt: skip
_TAG_COLUMNS = {"model_version": pa.string(), "scoring_id": pa.string(), "tag": pa.string(), "score": pa.float64(),
                "logged_at": _TS}  # fmt: skip
_ATTR_COLUMNS = {"model_version": pa.string(), "scoring_id": pa.string(), "kind": pa.string(),
                 "attr_values": pa.list_(pa.float32()), "attr_json": pa.string(), "logged_at": _TS}  # fmt: skip


class AnalysisMixin:
    """Neuron functions, clip tags and attributions; mixed into :class:`~dlabel_lab.PayloadStore`."""

    # provided by PayloadStore
    _write_lock: Any
    _writable: Any
    _df: Any
    _insert: Any

    # --- neuron functions, clip tags, attributions ---------------------------------------------
    def log_neuron_functions(self, model_version: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append neuron functions: ``layer``, ``neuron``, ``class_label``, ``factor``, ``corr`` and any extras.

        Example:
            >>> store.log_neuron_functions("shapes-v1", [{"layer": "embed", "neuron": 3, "class_label": "circle",
            ...                                            "factor": "brightness", "corr": 0.7}])  # doctest: +SKIP
        """
        self._writable()
        version = io.check_name(model_version, what="model_version")
        now = io.utc_now()
        cols: dict[str, list[Any]] = {k: [] for k in _NEURON_COLUMNS}
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping) or "layer" not in row or "neuron" not in row:
                raise ConfigError(f"neuron function row {i} must be a dict with 'layer' and 'neuron'")
            extra = {k: v for k, v in row.items() if k not in _NEURON_COLUMNS}
            cols["model_version"].append(version)
            cols["layer"].append(io.check_text(str(row["layer"]), what="layer"))
            cols["neuron"].append(int(row["neuron"]))
            cols["class_label"].append(io.check_text(row.get("class_label"), what="class_label", optional=True))
            cols["factor"].append(io.check_text(row.get("factor"), what="factor", optional=True))
            cols["corr"].append(io.finite_float(row.get("corr"), what="corr", optional=True))
            cols["extra"].append(io.canonical_json(extra, what="neuron function extras"))
            cols["logged_at"].append(now)
        with self._write_lock:
            self._insert("neuron_functions", _NEURON_COLUMNS, cols, list(range(len(cols["layer"]))))

    def neuron_functions(self, model_version: str) -> pd.DataFrame:
        """The neuron functions of a model version, extras as their own columns.

        Example:
            >>> store.neuron_functions("shapes-v1")[["neuron", "factor", "corr"]]  # doctest: +SKIP
        """
        frame = self._df(
            "SELECT layer, neuron, class_label, factor, corr, extra, logged_at FROM neuron_functions "
            "WHERE model_version = ? ORDER BY logged_at, layer, neuron",
            [model_version],
        )
        extras = [json.loads(text) for text in frame.pop("extra")]
        for key in sorted({k for extra in extras for k in extra}):
            frame[key] = [extra.get(key) for extra in extras]
        return frame

    def log_clip_tags(self, model_version: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append clip tags (``scoring_id``, ``tag``, ``score``); :meth:`matched` filters by them.

        Example:
            >>> store.log_clip_tags("shapes-v1", [{"scoring_id": sid, "tag": "dark", "score": 0.8}])  # doctest: +SKIP
        """
        self._writable()
        version = io.check_name(model_version, what="model_version")
        now = io.utc_now()
        cols: dict[str, list[Any]] = {k: [] for k in _TAG_COLUMNS}
        for row in rows:
            cols["model_version"].append(version)
            cols["scoring_id"].append(io.check_scoring_id(row.get("scoring_id")))
            cols["tag"].append(io.check_text(row.get("tag"), what="tag"))
            cols["score"].append(io.finite_float(row.get("score"), what="tag score", optional=True))
            cols["logged_at"].append(now)
        with self._write_lock:
            self._insert("clip_tags", _TAG_COLUMNS, cols, list(range(len(cols["tag"]))))

    def clip_tags(self, model_version: str | None = None) -> pd.DataFrame:
        """The clip tags (of one model version, or all).

        Example:
            >>> store.clip_tags("shapes-v1").tag.value_counts()  # doctest: +SKIP
        """
        where, params = ("WHERE model_version = ?", [model_version]) if model_version is not None else ("", [])
        return self._df(f"SELECT * FROM clip_tags {where} ORDER BY logged_at, scoring_id, tag", params)

    def log_attributions(self, model_version: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append attributions: ``scoring_id``, ``kind`` and ``values`` (flat numbers, or any JSON value).

        Example:
            >>> rows = [{"scoring_id": sid, "kind": "frame", "values": [0.1, 0.7]}]  # doctest: +SKIP
            >>> store.log_attributions("shapes-v1", rows)  # doctest: +SKIP
        """
        self._writable()
        version = io.check_name(model_version, what="model_version")
        now = io.utc_now()
        cols: dict[str, list[Any]] = {k: [] for k in _ATTR_COLUMNS}
        for row in rows:
            values = row.get("values")
            if hasattr(values, "tolist"):
                values = values.tolist()
            flat = isinstance(values, (list, tuple)) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
            )
            cols["model_version"].append(version)
            cols["scoring_id"].append(io.check_scoring_id(row.get("scoring_id")))
            cols["kind"].append(io.check_text(row.get("kind"), what="attribution kind"))
            cols["attr_values"].append([float(v) for v in values] if flat else None)  # type: ignore[union-attr]
            cols["attr_json"].append(None if flat else io.canonical_json(values, what="attribution values"))
            cols["logged_at"].append(now)
        with self._write_lock:
            self._insert("attributions", _ATTR_COLUMNS, cols, list(range(len(cols["kind"]))))

    def attributions(
        self, model_version: str, *, scoring_id: str | None = None, kind: str | None = None
    ) -> pd.DataFrame:
        """The attributions of a model version: ``scoring_id``, ``kind``, ``values``, ``logged_at``.

        Example:
            >>> store.attributions("shapes-v1", kind="frame").values  # doctest: +SKIP
        """
        conditions, params = ["model_version = ?"], [model_version]
        for column, value in (("scoring_id", scoring_id), ("kind", kind)):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        frame = self._df(
            "SELECT scoring_id, kind, attr_values, attr_json, logged_at FROM attributions "
            f"WHERE {' AND '.join(conditions)} ORDER BY logged_at, scoring_id, kind",
            params,
        )
        values = [list(v) if j is None else json.loads(j)
                  for v, j in zip(frame["attr_values"], frame["attr_json"], strict=True)]
        frame = frame.drop(columns=["attr_values", "attr_json"])
        frame.insert(2, "values", values)
        return frame
