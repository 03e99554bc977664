"""Tests for dlabel_lab.evaluation."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from dlabel_lab.errors import ConfigError
from dlabel_lab.evaluation import Evaluation, compare, evaluate


@pytest.fixture
def records() -> pd.DataFrame:
    """Six labelled rows (4 correct) and one without a user label."""
    return pd.DataFrame(
        {
            "user_label": ["a", "a", "b", "b", "c", "c", None],
            "predicted_label": ["a", "b", "b", "b", "c", "a", "a"],
            "confidence": [0.92, 0.63, 0.84, 0.71, 0.97, 0.55, 0.99],
            "camera": ["x", "x", "y", "y", "y", "x", "x"],
            "tags": [["dark"], ["dark", "small"], [], ["small"], ["dark"], ["small"], ["dark"]],
        }
    )


def test_accuracy_per_class_and_confusion_by_hand(records):
    ev = evaluate(records)
    assert ev.n == 6 and ev.dropped == 1
    assert ev.classes == ["a", "b", "c"]
    assert ev.accuracy == pytest.approx(4 / 6)
    np.testing.assert_array_equal(ev.confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert ev.per_class.index.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(ev.per_class["precision"], [1 / 2, 2 / 3, 1.0])
    np.testing.assert_allclose(ev.per_class["recall"], [1 / 2, 1.0, 1 / 2])
    np.testing.assert_allclose(ev.per_class["f1"], [1 / 2, 0.8, 2 / 3])
    assert ev.per_class["support"].tolist() == [2, 2, 2]
    assert ev.macro_f1 == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_ece_from_confidence_has_known_value(records):
    # one row per bin: |acc - conf| = .55, .63 (wrong), .29, .16, .08, .03 (right), each weighted 1/6
    ev = evaluate(records, n_bins=10)
    assert ev.ece_source == "confidence"
    assert ev.ece == pytest.approx(1.74 / 6, abs=1e-6)
    two_bins = pd.DataFrame(
        {"user_label": list("aaaabb"), "predicted_label": list("aaabaa"), "confidence": [0.85] * 4 + [0.25] * 2}
    )
    assert evaluate(two_bins, n_bins=4).ece == pytest.approx(4 / 6 * 0.1 + 2 / 6 * 0.25, abs=1e-6)


def test_ece_from_probabilities_when_classes_are_known(records):
    labelled = records.dropna(subset=["user_label"]).copy()
    order = ["a", "b", "c"]
    labelled["probabilities"] = [
        [c if k == p else (1 - c) / 2 for k in order]
        for p, c in zip(labelled["predicted_label"], labelled["confidence"], strict=True)
    ]
    ev = evaluate(labelled, classes=order)
    assert ev.ece_source == "probabilities"
    assert ev.ece == pytest.approx(1.74 / 6, abs=1e-6)
    assert evaluate(labelled).ece_source == "confidence"  # order unknown without classes
    labelled["probabilities"] = [[0.5, 0.5]] * len(labelled)  # does not match the classes: not trusted
    assert evaluate(labelled, classes=order).ece_source == "confidence"


def test_unknown_labels_join_the_classes(records):
    ev = evaluate(records, classes=["b", "a"])
    assert ev.classes == ["b", "a", "c"]
    assert ev.confusion.shape == (3, 3)
    assert ev.per_class.loc["c", "support"] == 2


def test_slices_by_scalar_and_list_columns(records):
    ev = evaluate(records, slices=["camera", "tags"])
    cam = ev.slices["camera"]
    assert cam.loc["x", "n"] == 3 and cam.loc["x", "accuracy"] == pytest.approx(1 / 3)
    assert cam.loc["y", "n"] == 3 and cam.loc["y", "accuracy"] == 1.0
    assert cam.loc["x", "mean_confidence"] == pytest.approx((0.92 + 0.63 + 0.55) / 3)
    tags = ev.slices["tags"]
    assert tags.loc["dark", "n"] == 3 and tags.loc["dark", "accuracy"] == pytest.approx(2 / 3)
    assert tags.loc["small", "n"] == 3 and tags.loc["small", "accuracy"] == pytest.approx(1 / 3)
    untagged = tags[tags.index.isna()]
    assert untagged["n"].tolist() == [1] and untagged["accuracy"].tolist() == [1.0]
    with pytest.raises(ConfigError, match="lack the columns"):
        evaluate(records, slices=["nope"])


def test_duckdb_relation_input_matches_dataframe(records):
    con = duckdb.connect()
    try:
        rel = con.from_df(records)
        ev = evaluate(rel, slices=["tags"])
        ref = evaluate(records, slices=["tags"])
    finally:
        con.close()
    assert ev.n == 6 and ev.accuracy == ref.accuracy and ev.ece == pytest.approx(ref.ece)
    np.testing.assert_array_equal(ev.confusion, ref.confusion)
    assert ev.slices["tags"]["n"].to_dict() == ref.slices["tags"]["n"].to_dict()


def test_to_dict_is_json_and_round_trips(records):
    ev = evaluate(records, slices=["camera", "tags"])
    d = json.loads(json.dumps(ev.to_dict(), allow_nan=False))
    back = Evaluation.from_dict(d)
    pd.testing.assert_frame_equal(back.table(), ev.table())
    pd.testing.assert_frame_equal(back.per_class, ev.per_class)
    np.testing.assert_array_equal(back.confusion, ev.confusion)
    assert back.slices["camera"]["n"].to_dict() == ev.slices["camera"]["n"].to_dict()
    assert list(ev.table().index) == ["n", "accuracy", "macro_f1", "ece", "recall[a]", "recall[b]", "recall[c]"]


def test_compare_reports_before_after_delta(records):
    before = evaluate(records)
    fixed = records.assign(predicted_label=records["user_label"].fillna("a"))
    after = evaluate(fixed)
    table = compare(before, after)
    assert list(table.columns) == ["before", "after", "delta"]
    assert table.loc["accuracy", "delta"] == pytest.approx(1 - 4 / 6)
    assert table.loc["recall[a]", "before"] == 0.5 and table.loc["recall[a]", "after"] == 1.0
    assert table.loc["macro_f1", "after"] == 1.0


@pytest.mark.parametrize(
    "bad",
    [
        pd.DataFrame({"user_label": [None, None], "predicted_label": ["a", "b"], "confidence": [0.5, 0.5]}),
        pd.DataFrame({"user_label": [], "predicted_label": [], "confidence": []}),
        pd.DataFrame({"predicted_label": ["a"]}),
        "not a table",
    ],
)
def test_empty_or_malformed_input_raises_config_error(bad):
    with pytest.raises(ConfigError):
        evaluate(bad)
