"""The DatasetBrowser's data grid: what it shows, what a selection stands for, bulk relabelling into the store.

The grid's sorting, filtering and selecting happen in the browser; here the
browser's messages are replayed with ``grid.set_state`` (what the comm does
when the browser syncs ``selections``, ``_transforms`` and ``_visible_rows``).
"""

from __future__ import annotations

import pandas as pd
import pytest
from widget_helpers import score_all

from dlabel_lab.errors import ConfigError, UnknownLabel
from dlabel_lab.widgets import DatasetBrowser
from dlabel_lab.widgets.grid import (
    CELL_PADDING,
    GRID_COLUMNS,
    HEADER_MENU,
    MAX_COLUMN_WIDTH,
    column_widths,
    grid_filters_text,
    grid_frame,
    grid_ids,
    make_grid,
    relabel,
    selected_positions,
    shown_positions,
    text_width,
)


def test_grid_rows_tell_clips_apart():
    # time-ordered ids made together share their head: the tail tells them apart
    ids = [
        "01a22d78-e593-7486-ac71-7f41255a5bdb",
        "01a22d78-e593-7487-a397-7d13c15a5bdb",
        "01a22d78-e593-7487-a397-7d13c12e6019",
    ]
    records = pd.DataFrame(
        {
            "scoring_id": ids,
            "source_name": ["/cam/a.mp4", None, "b.mkv"],
            "model_version": ["m-v1"] * 3,
            "user_label": ["circle", None, "square"],
            "predicted_label": ["circle", "square", "circle"],
            "confidence": [0.91234, 0.5, 0.25],
            "correct": [True, None, False],
            "label_source": ["human", None, "auto"],
            "tags": [["dark", "small"], [], None],
            "received_at": pd.to_datetime(["2024-05-01 10:00"] * 3),
        }
    )
    frame = grid_frame(records)
    assert tuple(frame.columns) == GRID_COLUMNS
    # the head (when the id was made) and the shortest unique tail (at least 4 characters; here 7)
    assert frame["id"].tolist() == ["01a22d78…55a5bdb", "01a22d78…15a5bdb", "01a22d78…12e6019"]
    assert frame["clip"].tolist() == ["a.mp4", "", "b.mkv"]
    assert frame["verdict"].tolist() == ["right", "unlabelled", "wrong"]
    assert frame["confidence"].tolist() == [0.912, 0.5, 0.25] and frame["tags"].tolist() == ["dark, small", "", ""]
    assert frame["label"].tolist() == ["circle", "", "square"]
    widths = column_widths(frame)
    assert list(widths) == list(GRID_COLUMNS)
    for column in ("id", "clip", "tags", "label source"):  # the widest text and the header with its menu fit
        widest = max(text_width(v) for v in [*frame[column], ""])
        assert widths[column] >= max(widest, text_width(column) + HEADER_MENU) + CELL_PADDING, column
    assert widths["id"] >= text_width("01a22d78…55a5bdb") + CELL_PADDING > 130
    assert widths["received"] >= text_width("2024-05-01T10:00:00.000Z") + CELL_PADDING
    long = grid_frame(records.assign(source_name=["/cam/" + "x" * 200 + ".mp4"] * 3))
    assert column_widths(long)["clip"] == MAX_COLUMN_WIDTH  # at most this; the details show the whole name
    assert make_grid(frame).column_widths == widths


def test_grid_ids_keep_at_least_four_characters_of_tail():
    ids = ["0190aaaa-0000-7000-8000-00000000a1b2", "0190aaaa-0000-7000-8000-00000000c3d4"]
    assert list(grid_ids(ids).values()) == ["0190aaaa…a1b2", "0190aaaa…c3d4"]
    assert grid_ids(["short"]) == {"short": "short"}  # nothing to shorten


def test_a_selection_maps_through_the_browsers_sorting_and_filtering():
    grid = make_grid(pd.DataFrame({"x": [10, 20, 30, 40, 50]}))
    grid.set_state({"selections": [{"r1": 1, "c1": 0, "r2": 2, "c2": 0}, {"r1": 2, "c1": 0, "r2": 2, "c2": 0}]})
    assert shown_positions(grid) == [0, 1, 2, 3, 4] and selected_positions(grid) == [1, 2]  # no view reported yet
    # the browser sorts by x, descending, and keeps x > 15: it shows data rows 4, 3, 2, 1
    transforms = [
        {"type": "filter", "column": "x", "operator": ">", "value": 15},
        {"type": "sort", "column": "x", "desc": True},
    ]
    grid.set_state({"_transforms": transforms, "_visible_rows": [4, 3, 2, 1]})
    assert selected_positions(grid) == [3, 2]  # view rows 1 and 2
    grid.set_state({"selections": [{"r1": 3, "c1": 0, "r2": 9, "c2": 0}]})  # past the end: only what is there
    assert selected_positions(grid) == [1]
    grid.set_state({"_visible_rows": []})  # a filter that matches nothing
    assert shown_positions(grid) == [] and selected_positions(grid) == []
    assert grid_filters_text(transforms) == "x > 15; sorted by x (descending)"
    assert grid_filters_text(
        [
            {"type": "filter", "column": "clip", "operator": "between", "value": [1, 2]},
            {"type": "filter", "column": "tags", "operator": "empty"},
        ]
    ) == ("clip between 1 and 2; tags is empty")
    assert grid_filters_text([]) == ""


def test_relabel_selected_rows_in_one_action(loop, clips):
    store, ingest, version = loop
    results = score_all(ingest, clips)
    b = DatasetBrowser(store, author="ana")
    assert b.relabel_button.disabled and b.relabel_button.description == "Relabel 0 selected"
    assert list(b.relabel_to.options) == ["circle", "square", "triangle"]
    # the browser sorts by confidence (descending) and hides the least confident row
    order = b.records.sort_values("confidence", ascending=False, kind="stable").index.tolist()[:-1]
    transforms = [
        {"type": "filter", "column": "confidence", "operator": ">", "value": 0.0},
        {"type": "sort", "column": "confidence", "desc": True},
    ]
    b.grid.set_state({"_transforms": transforms, "_visible_rows": order})
    b.grid.set_state({"selections": [{"r1": 0, "c1": 0, "r2": 2, "c2": 9}]})  # three rows, as a shift-click does
    chosen = b.records.iloc[order[:3]]
    ids = chosen["scoring_id"].tolist()
    assert b.selected() == [(sid, version) for sid in ids]
    assert b.relabel_button.description == "Relabel 3 selected" and not b.relabel_button.disabled
    assert b.state.value == (
        f"<p>filters: model version {version} · grid: confidence &gt; 0.0; sorted by "
        f"confidence (descending) · {len(clips)} rows match · {len(clips) - 1} shown · "
        "3 selected</p>"
    )
    before = {r.scoring_id: r.label for r in results}

    b.relabel_to.value = "triangle"
    b.relabel_button.click()
    assert b.errors == []
    now = store.matched(scoring_ids=ids).df().set_index("scoring_id")
    assert now.loc[ids, "user_label"].tolist() == ["triangle"] * 3
    assert now.loc[ids, "label_source"].tolist() == ["human-bulk"] * 3
    assert sorted(store.matched(label_author="ana").df()["scoring_id"]) == sorted(ids)  # the author, per clip
    for sid in ids:  # append-only: the first label is still in the history
        history = store.score_history(sid)
        assert history[["label", "source", "author", "is_latest"]].values.tolist() == [
            [before[sid], "human", None, False],
            ["triangle", "human-bulk", "ana", True],
        ]
    others = store.matched().df().set_index("scoring_id").drop(index=ids)
    assert others["user_label"].to_dict() == {sid: lab for sid, lab in before.items() if sid not in ids}
    assert "relabelled 3 clips as triangle (by ana" in b.relabelled.value
    assert b.selected() == [] and b.relabel_button.description == "Relabel 0 selected"
    assert ("human-bulk", "human-bulk") in b.source.options
    b.source.value = "human-bulk"  # the relabelled rows are a filter of their own
    assert sorted(b.records["scoring_id"]) == sorted(ids)
    assert b.grid.column_widths == column_widths(grid_frame(b.records))  # sized to the rows shown now
    b.grid.set_state({"_transforms": []})  # the browser's own filter taken off again
    b.select_rows([0])
    assert f"<code>{b.selected()[0][0]}</code>" in b.details.value  # the whole id, for copying


def test_relabel_says_what_is_missing(loop, clips):
    store, ingest, _ = loop
    score_all(ingest, clips[:3])
    n_scores = len(store.score_history())
    b = DatasetBrowser(store, author=" ")
    b.grid.set_state({"selections": [{"r1": 0, "c1": 0, "r2": 0, "c2": 0}]})
    b.relabel_button.click()  # no author
    assert isinstance(b.errors[0], ConfigError) and "needs an author" in b.output.outputs[0]["text"]
    assert len(store.score_history()) == n_scores
    b.select_rows([2, 1])  # what clicking rows does
    assert b.selected() == list(zip(b.records["scoring_id"][1:3], b.records["model_version"][1:3], strict=True))
    assert b.relabel_button.description == "Relabel 2 selected" and b.grid.selections[0]["r1"] == 2
    with pytest.raises(ConfigError, match="select rows"):
        relabel(store, [], "circle", author="ana")
    with pytest.raises(UnknownLabel, match="'hexagon' is not one of"):
        relabel(store, [b.selected()[0][0]], "hexagon", author="ana", classes=["circle"])
    assert len(store.score_history()) == n_scores
