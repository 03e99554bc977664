"""Large prediction batches go through the columnar (Arrow) checks: same rules, same errors as small ones."""

from __future__ import annotations

import numpy as np
import pytest

import dlabel_lab as dl
from dlabel_lab.store import PayloadStore, new_scoring_id

N = 40  # over writes.SMALL_BATCH: the Arrow path


@pytest.fixture
def store(tmp_path):
    with PayloadStore(tmp_path / "store") as s:
        yield s


def batch(n: int = N, overrides: dict | None = None) -> list[dict]:
    rows = [{"scoring_id": new_scoring_id(), "model_version": "big-v1", "label": "circle",
             "probabilities": [0.25, 0.75], "confidence": 0.75, "latency_ms": 1.0} for _ in range(n)]  # fmt: skip
    for (i, key), value in (overrides or {}).items():
        rows[i][key] = value
    return rows


def stored(store) -> list[tuple]:
    return store._rows("SELECT scoring_id, probabilities FROM predictions ORDER BY scoring_id")


@pytest.mark.parametrize("n", [3, N])
def test_numbers_of_any_kind_are_stored_as_float_lists(store, n):
    rows = batch(n, {(0, "probabilities"): np.array([0.5, 0.5]), (1, "probabilities"): [1, 0],
                     (2, "probabilities"): (0.125, "0.875")})  # fmt: skip
    store.log_prediction_many(rows)
    probs = dict(stored(store))
    assert [probs[r["scoring_id"]] for r in rows[:3]] == [[0.5, 0.5], [1.0, 0.0], [0.125, 0.875]]
    assert len(probs) == n


@pytest.mark.parametrize("n", [3, N])
@pytest.mark.parametrize(
    ("where", "value", "error", "match"),
    [
        ("scoring_id", "not-a-uuid", dl.ConfigError, "'not-a-uuid'"),
        ("scoring_id", new_scoring_id() + "\n", dl.ConfigError, "lower-case UUID"),
        ("scoring_id", None, dl.ConfigError, "None"),
        ("probabilities", [0.5, None], dl.ConfigError, "probabilities"),
        ("probabilities", "0.5", dl.ConfigError, "probabilities"),
        ("confidence", float("nan"), dl.ConfigError, "NaN"),
    ],
)
def test_a_bad_value_anywhere_raises_the_same_typed_error_and_writes_nothing(store, n, where, value, error, match):
    with pytest.raises(error, match=match):
        store.log_prediction_many(batch(n, {(n - 1, where): value}))
    assert stored(store) == []


def test_a_key_repeated_in_a_large_batch_is_one_row_or_an_error(store):
    rows = batch()
    store.log_prediction_many([*rows, dict(rows[7])])  # the same row twice: one row
    assert len(stored(store)) == N
    fresh = batch()
    with pytest.raises(dl.DuplicateScoringId, match="twice in this batch"):
        store.log_prediction_many([*fresh, dict(fresh[3], label="square")])
    store.log_prediction_many([*rows[:5], *fresh[:2]])  # replays dropped, new rows kept (a subset of the Arrow rows)
    assert len(stored(store)) == N + 2
