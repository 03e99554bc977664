"""The stabilising-predictions stopping rule on a real store with hand-set predictions."""

from __future__ import annotations

import pytest

import dlabel_lab as dl
from dlabel_lab.labeling.stopping import stabilising_kappas, stopping_decision


def _predict(store, sid, version, label):
    probs = [0.9, 0.1] if label == "a" else [0.1, 0.9]
    store.log_transformed(sid, model_version=version, record={}, tensor_digest="d", embedding=[0.0], objects=[])
    store.log_prediction(sid, model_version=version, label=label, probabilities=probs, confidence=0.9,
                         latency_ms=1.0)


@pytest.fixture
def store(tmp_path):
    with dl.PayloadStore(tmp_path / "s") as s:
        ids = []
        for i in range(8):
            sid = s.new_scoring_id()
            s.log_raw(sid, f"c{i}".encode() * 4)
            ids.append(sid)
        rounds = {  # the stop set's predictions by version: v1 -> v2 move a lot, then they settle
            "m-v1": list("aaaaaaaa"),
            "m-v2": list("abababab"),
            "m-v3": list("abababbb"),
            "m-v4": list("abababbb"),
            "m-v5": list("abababbb"),
        }
        for version, labels in rounds.items():
            for sid, label in zip(ids, labels, strict=True):
                _predict(s, sid, version, label)
        s.stop_ids = ids
        yield s


def test_kappas_between_successive_versions():
    assert stabilising_kappas([list("ab"), list("ab")]) == [1.0]
    assert stabilising_kappas([list("aabb"), list("bbaa")]) == [-1.0]
    with pytest.raises(dl.ConfigError, match="same clips"):
        stabilising_kappas([list("ab"), list("abc")])


def test_stop_only_after_a_window_of_stable_rounds(store):
    versions = ["m-v1", "m-v2", "m-v3", "m-v4", "m-v5"]
    early = stopping_decision(store, versions[:3], store.stop_ids, window=2)
    assert not early.should_stop and early.kappas[0] == 0.0 and "still move" in early.reason
    late = stopping_decision(store, versions, store.stop_ids, window=2)
    assert late.should_stop and late.kappas[-2:] == [1.0, 1.0] and late.n_stop_set == 8
    strict = stopping_decision(store, versions, store.stop_ids, window=3)
    assert not strict.should_stop  # v2 -> v3 changed one clip


def test_stopping_needs_every_version_to_have_scored_the_stop_set(store):
    other = store.new_scoring_id()
    store.log_raw(other, b"x" * 10)
    with pytest.raises(dl.UnknownRecord, match="has not scored 1 stop-set clip"):
        stopping_decision(store, ["m-v1", "m-v2"], [*store.stop_ids, other])
    with pytest.raises(dl.ConfigError, match="at least two"):
        stopping_decision(store, ["m-v1"], store.stop_ids)
