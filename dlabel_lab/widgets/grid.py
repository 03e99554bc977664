"""The data grid of the ``DatasetBrowser``: matched rows in a sortable, filterable grid, selections, bulk relabelling.

ipydatagrid (BSD-3) does the heavy lifting: sorting and filtering happen in
the browser, from each column header's menu; the kernel learns of them
through the grid's synced ``_transforms`` (what is sorted and filtered) and
``_visible_rows`` (the rows left, as positions in the data, in view order),
and of the selected rows through ``selections`` (rectangles in view
coordinates). This module keeps the glue: the frame the grid shows (short
ids and clip file names, so rows can be told apart), the rows a selection
stands for, a line that says which filters are on, column widths that fit
their text (:func:`column_widths`: the grid draws on a canvas and cuts what
does not fit), and :func:`relabel`, the bulk action (one append-only user
score per clip, with its author, through ``store.log_score_many``).

Example:
    >>> frame = grid_frame(pd.DataFrame({"scoring_id": ["0190aaaa-0000-7000-8000-00000000a1b2"],
    ...                                  "source_name": ["/x/cam1.mp4"]}))
    >>> frame[["id", "clip"]].values.tolist()
    [['0190aaaa…a1b2', 'cam1.mp4']]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from functools import lru_cache
from pathlib import PurePath
from typing import Any

import pandas as pd
from ipydatagrid import DataGrid
from matplotlib import font_manager
from PIL import ImageFont

from ..labeling.relabel import BULK_SOURCE, relabel  # re-exported: the browser's bulk action
from ._common import short_ids

__all__ = [
    "GRID_COLUMNS",
    "COLUMN_WIDTHS",
    "BULK_SOURCE",
    "grid_frame",
    "grid_rows",
    "make_grid",
    "selected_positions",
    "shown_positions",
    "grid_filters_text",
    "relabel",
    "column_widths",
    "text_width",
    "grid_ids",
]

#: The grid's columns, in order: short id, clip file name, then what the model and the people said.
GRID_COLUMNS = (
    "id",
    "clip",
    "model",
    "label",
    "prediction",
    "confidence",
    "verdict",
    "label source",
    "tags",
    "received",
)
#: Least pixel widths of the columns; :func:`column_widths` widens them to fit their text (the grid's own
#: auto-fit measures the first rows it is given, and a browser starts empty).
COLUMN_WIDTHS = {"id": 110, "clip": 110, "model": 90, "label source": 100, "tags": 120, "received": 185}
#: Widest a column gets (longer text is cut with "…"; the selection details show it whole).
MAX_COLUMN_WIDTH = 300
GRID_FONT_PX = 12  # ipydatagrid's TextRenderer default, "12px sans-serif" (DejaVu Sans on Debian's Chromium)
CELL_PADDING = 2 * 8 + 6  # the renderer's horizontal padding on both sides, and a little air
HEADER_MENU = 24  # the filter/sort menu icon at the right of every column header
RECEIVED_TEXT = "2026-01-31T23:59:59.000Z"  # how the grid writes a ``received`` time: its widest form

_OPERATORS = {
    "=": "=",
    "!=": "≠",
    "<": "<",
    ">": ">",
    "<=": "≤",
    ">=": "≥",
    "empty": "is empty",
    "notempty": "is not empty",
    "in": "is one of",
    "between": "between",
    "startswith": "starts with",
    "endswith": "ends with",
    "stringContains": "contains",
    "contains": "contains",
}


def _verdict(correct: Any) -> str:  # noqa: ANN401 - True, False, None or a missing value
    if correct is None or pd.isna(correct):
        return "unlabelled"
    return "right" if bool(correct) else "wrong"


def grid_ids(scoring_ids: Iterable[str], *, head: int = 8, min_tail: int = 4) -> dict[str, str]:
    """Each scoring id's short form for the grid: its first ``head`` characters, "…", its shortest unique tail.

    The head is the time the id was made (UUIDv7: ids of one minute share it),
    the tail its random part, at least ``min_tail`` characters and as long as
    it takes to tell every id apart (see
    :func:`~dlabel_lab.widgets._common.short_ids`). Short ids stay as they are.

    Example:
        >>> list(grid_ids(["0190aaaa-0000-7000-8000-00000000a1b2", "0190aaaa-0000-7000-8000-00000001a1b2"]).values())
        ['0190aaaa…0a1b2', '0190aaaa…1a1b2']
    """
    tails = short_ids((str(s) for s in scoring_ids), min_len=min_tail)
    return {
        sid: (sid[:head] + tail if tail.startswith("…") and len(sid) > head + len(tail) else sid)
        for sid, tail in tails.items()
    }


@lru_cache(maxsize=4096)
def _char_width(char: str) -> float:
    return _grid_font().getlength(char)


@lru_cache(maxsize=1)
def _grid_font() -> ImageFont.FreeTypeFont:
    path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"), fallback_to_default=True)
    return ImageFont.truetype(path, GRID_FONT_PX)


def text_width(text: str) -> float:
    """Pixels ``text`` takes in the grid's font (DejaVu Sans, 12 px; the font matplotlib ships).

    Example:
        >>> 80 < text_width("clip_0000.mp4") < 95
        True
    """
    return sum(_char_width(c) for c in str(text))


def _cell_text(value: Any) -> str:  # noqa: ANN401 - any cell
    if isinstance(value, (date, pd.Timestamp)):
        return RECEIVED_TEXT
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


def column_widths(frame: pd.DataFrame) -> dict[str, int]:
    """Pixel widths that fit every column's header and its widest cell (at most :data:`MAX_COLUMN_WIDTH`).

    Widths never fall below :data:`COLUMN_WIDTHS`, so a column keeps its
    place when a filter leaves short text or no rows.

    Example:
        >>> widths = column_widths(grid_frame(pd.DataFrame({"scoring_id": ["0190aaaa-0000-7000-8000-00000000a1b2"],
        ...                                                 "source_name": ["/x/a_rather_long_clip_name.mp4"]})))
        >>> widths["clip"] >= text_width("a_rather_long_clip_name.mp4") + CELL_PADDING
        True
    """
    widths = {}
    for column in frame.columns:
        cells = {_cell_text(v) for v in frame[column].tolist()}
        need = max([text_width(str(column)) + HEADER_MENU, *(text_width(c) for c in cells)]) + CELL_PADDING
        widths[str(column)] = int(min(MAX_COLUMN_WIDTH, max(COLUMN_WIDTHS.get(str(column), 0), math.ceil(need))))
    return widths


def grid_frame(records: pd.DataFrame) -> pd.DataFrame:
    """What the grid shows for matched rows: :data:`GRID_COLUMNS`, one row per record, in the records' order.

    ``id`` is the scoring id's head and the shortest tail that tells the
    ids apart (:func:`grid_ids`; the whole id is in the selection details),
    ``clip`` the uploaded clip's file name, ``verdict`` right, wrong or unlabelled.

    Example:
        >>> grid_frame(pd.DataFrame({"scoring_id": ["0190-a1"], "correct": [False]}))["verdict"].tolist()
        ['wrong']
    """
    n = len(records)

    def col(name: str, default: Any = None) -> list:  # noqa: ANN401
        return list(records[name]) if name in records else [default] * n

    short = grid_ids(str(s) for s in col("scoring_id", ""))
    return pd.DataFrame(
        {
            "id": [short[str(s)] for s in col("scoring_id", "")],
            "clip": [PurePath(str(s)).name if s is not None and not pd.isna(s) else "" for s in col("source_name")],
            "model": [str(v or "") for v in col("model_version")],
            "label": [str(v) if v is not None and not pd.isna(v) else "" for v in col("user_label")],
            "prediction": [str(v or "") for v in col("predicted_label")],
            "confidence": [
                round(float(v), 3) if v is not None and not pd.isna(v) else float("nan") for v in col("confidence")
            ],
            "verdict": [_verdict(v) for v in col("correct")],
            "label source": [str(v) if v is not None and not pd.isna(v) else "" for v in col("label_source")],
            "tags": [
                ", ".join(str(t) for t in v) if isinstance(v, Iterable) and not isinstance(v, str) else ""
                for v in col("tags", ())
            ],
            "received": pd.to_datetime(pd.Series(col("received_at"), dtype=object)).dt.floor("s"),
        },
        columns=list(GRID_COLUMNS),
    )


def make_grid(frame: pd.DataFrame) -> DataGrid:
    """A row-selecting ``ipydatagrid.DataGrid`` over ``frame``, columns sized to their text, index hidden.

    Set ``grid.column_widths = column_widths(new_frame)`` with new data (the
    ``DatasetBrowser`` does).

    Example:
        >>> make_grid(grid_frame(pd.DataFrame({"scoring_id": ["a"]}))).selection_mode
        'row'
    """
    return DataGrid(
        frame,
        selection_mode="row",
        header_visibility="column",
        column_widths=column_widths(frame),
        base_row_size=22,
        base_column_size=90,
        horizontal_stripes=True,
        layout={"height": "320px", "width": "100%"},
    )


def grid_rows(grid: DataGrid) -> int:
    """How many rows the grid holds (before the browser's filtering).

    Example:
        >>> grid_rows(make_grid(pd.DataFrame({"a": [1, 2]})))
        2
    """
    return len(grid._data.get("data", ()))  # the synced table; DataGrid.data would rebuild a frame


def shown_positions(grid: DataGrid) -> list[int]:
    """The data rows the grid shows, in view order, after the browser's sorting and filtering.

    Before the browser has reported its view (no frontend yet), every row in data order.

    Example:
        >>> shown_positions(make_grid(pd.DataFrame({"a": [1, 2]})))
        [0, 1]
    """
    n = grid_rows(grid)
    filtered = any(t.get("type") == "filter" for t in grid._transforms)
    visible = [int(r) for r in grid._visible_rows if 0 <= int(r) < n]
    return visible if visible or filtered else list(range(n))


def selected_positions(grid: DataGrid) -> list[int]:
    """The data rows (positions in the grid's frame) the selection covers, in view order, each once.

    Selections are rectangles over the rows as the browser shows them
    (sorted, filtered); they are mapped back through :func:`shown_positions`.

    Example:
        >>> grid = make_grid(pd.DataFrame({"a": [1, 2, 3]}))
        >>> grid.set_state({"selections": [{"r1": 0, "c1": 0, "r2": 1, "c2": 0}]})
        >>> selected_positions(grid)
        [0, 1]
    """
    shown = shown_positions(grid)
    rows = sorted({r for rect in grid.selections for r in range(int(rect["r1"]), int(rect["r2"]) + 1)})
    return [shown[r] for r in rows if 0 <= r < len(shown)]


def _transform_text(t: Mapping[str, Any]) -> str:
    column = t.get("column", f"column {t.get('columnIndex')}")
    if t.get("type") == "sort":
        return f"sorted by {column} ({'descending' if t.get('desc') else 'ascending'})"
    op = str(t.get("operator", ""))
    value = t.get("value")
    if op in ("empty", "notempty"):
        return f"{column} {_OPERATORS[op]}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = (" and " if op == "between" else ", ").join(str(v) for v in value)
    return f"{column} {_OPERATORS.get(op, op)} {value}"


def grid_filters_text(transforms: Sequence[Mapping[str, Any]]) -> str:
    """The grid's own sorting and filtering (its ``_transforms``) in words; ``""`` when there is none.

    Example:
        >>> grid_filters_text([{"type": "filter", "column": "confidence", "operator": ">", "value": 0.5},
        ...                    {"type": "sort", "column": "confidence", "desc": True}])
        'confidence > 0.5; sorted by confidence (descending)'
    """
    filters = [_transform_text(t) for t in transforms if t.get("type") == "filter"]
    sorts = [_transform_text(t) for t in transforms if t.get("type") == "sort"]
    return "; ".join(filters + sorts)
