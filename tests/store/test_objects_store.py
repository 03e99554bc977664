"""The store's objects relation and object labels, on a real DuckDB file."""

from __future__ import annotations

import pytest

import dlabel_lab as dl

ROWS = [
    {"frame_index": 0, "timestamp": 0.0, "box": [1, 2, 30, 40], "label": "circle", "score": 0.9, "track_id": 1},
    {"frame_index": 0, "timestamp": 0.0, "box": [50, 5, 60, 15], "label": "square", "score": 0.35, "track_id": 2},
    {"frame_index": 4, "timestamp": 0.5, "box": [3, 4, 33, 44], "label": "circle", "score": 0.7, "track_id": 1},
    {"frame_index": 9, "x1": 0, "y1": 0, "x2": 8, "y2": 8, "label": "triangle", "score": None, "track_id": None},
]


@pytest.fixture()
def store(tmp_path):
    with dl.PayloadStore(tmp_path / "store") as s:
        yield s


def _count(store, table):
    return store._rows(f"SELECT count(*) FROM {table}")[0][0]


def test_log_objects_numbers_rows_and_replays_add_nothing(store):
    sid = store.new_scoring_id()
    assert store.log_objects(sid, model_version="det-v1", rows=ROWS) == 4
    assert store.log_objects(sid, model_version="det-v1", rows=ROWS) == 0
    df = store.objects_df()
    assert df["object_n"].tolist() == [0, 1, 2, 3]
    assert df[["x1", "y1", "x2", "y2"]].iloc[3].tolist() == [0, 0, 8, 8]
    assert df["width"].tolist() == [29, 10, 30, 8] and df["height"].tolist() == [38, 10, 40, 8]
    assert df["track_id"].isna().tolist() == [False, False, False, True]
    with pytest.raises(dl.DuplicateScoringId, match="already logged"):
        store.log_objects(sid, model_version="det-v1", rows=ROWS[:2])
    assert _count(store, "objects") == 4
    # another version of the same clip is its own set
    assert store.log_objects(sid, model_version="det-v2", rows=ROWS[:1]) == 1


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"frame_index": 0, "box": [10, 0, 5, 5], "label": "a"}, "x1 <= x2"),
        ({"frame_index": 0, "box": [0, 0, 5], "label": "a"}, "four"),
        ({"frame_index": 0, "box": [0, 0, 5, float("nan")], "label": "a"}, "finite"),
        ({"frame_index": -1, "box": [0, 0, 5, 5], "label": "a"}, "frame_index"),
        ({"frame_index": 1.5, "box": [0, 0, 5, 5], "label": "a"}, "frame_index"),
        ({"frame_index": 0, "box": [0, 0, 5, 5], "label": "a", "score": 1.5}, r"\[0, 1\]"),
        ({"frame_index": 0, "box": [0, 0, 5, 5]}, "label"),
        ({"frame_index": 0, "label": "a"}, "no box"),
    ],
)
def test_bad_objects_are_refused_whole(store, bad, message):
    sid = store.new_scoring_id()
    with pytest.raises(dl.ConfigError, match=message):
        store.log_objects(sid, model_version="det-v1", rows=[ROWS[0], bad])
    assert _count(store, "objects") == 0


def test_objects_filters(store):
    a, b = store.new_scoring_id(), store.new_scoring_id()
    store.log_objects(a, model_version="det-v1", rows=ROWS)
    store.log_objects(b, model_version="other-v1", rows=ROWS[:2])

    def ns(**f):
        return [(r.scoring_id == a, r.model_version, r.object_n) for r in store.objects_df(**f).itertuples()]

    assert len(ns()) == 6
    assert ns(model_version="other-v1") == [(False, "other-v1", 0), (False, "other-v1", 1)]
    assert ns(label="square") == [(True, "det-v1", 1), (False, "other-v1", 1)]
    assert ns(model_version="det-v1", min_confidence=0.5) == [(True, "det-v1", 0), (True, "det-v1", 2)]
    assert ns(model_version="det-v1", max_confidence=0.5) == [(True, "det-v1", 1)]
    assert ns(model_version="det-v1", track_id=1) == [(True, "det-v1", 0), (True, "det-v1", 2)]
    assert ns(model_version="det-v1", frame_range=(1, 9)) == [(True, "det-v1", 2), (True, "det-v1", 3)]
    assert ns(scoring_ids=[b], label=["circle", "triangle"]) == [(False, "other-v1", 0)]
    assert ns(label="x' OR 1=1 --") == []  # values are bound, never spliced
    with pytest.raises(dl.ConfigError, match="before its first"):
        store.objects(frame_range=(5, 2))
    with pytest.raises(dl.ConfigError, match="empty"):
        store.objects(label=[])


def test_objects_filter_by_model_name(store, tmp_path):
    ckpt = tmp_path / "m.bin"
    ckpt.write_bytes(b"weights")
    v1 = store.register_model(name="det", checkpoint_path=ckpt, classes=["circle"], spec={"kind": "detector"})
    v2 = store.register_model(name="det", checkpoint_path=ckpt, classes=["circle"], spec={"kind": "detector"})
    sid = store.new_scoring_id()
    store.log_objects(sid, model_version=v1, rows=ROWS[:1])
    store.log_objects(sid, model_version=v2, rows=ROWS[:2])
    store.log_objects(sid, model_version="loose-v1", rows=ROWS[:3])
    df = store.objects_df(model="det")
    assert sorted(set(df["model_version"])) == ["det-v1", "det-v2"] and len(df) == 3
    assert set(df["model_name"]) == {"det"}


def test_object_labels_append_only_and_missed_set(store, tmp_path):
    sid = store.new_scoring_id()
    ids = store.log_object_labels(
        [
            {"scoring_id": sid, "frame_index": 2, "kind": "missed", "box": [1, 1, 9, 9], "label": "circle"},
            {"scoring_id": sid, "frame_index": 0, "kind": "verified", "refers_to": "det-v1#0"},
            {"scoring_id": sid, "frame_index": 0, "kind": "fixed", "box": [2, 2, 31, 41], "label": "circle",
             "refers_to": "det-v1#0", "author": "bo"},
        ],
        author="ana",
        task_id="t-1",
    )
    assert ids == [0, 1, 2]
    more = store.log_object_labels([{"scoring_id": sid, "frame_index": 3, "kind": "missed", "box": [0, 0, 4, 4],
                                     "label": "square"}], source="audit")  # fmt: skip
    assert more == [3]
    missed = store.object_labels(kind="missed")
    assert missed["label"].tolist() == ["circle", "square"] and missed["source"].tolist() == ["human", "audit"]
    assert store.object_labels(author="bo")["kind"].tolist() == ["fixed"]
    assert store.object_labels(task_id="t-1")["object_label_id"].tolist() == [0, 1, 2]
    for bad, message in (
        ({"scoring_id": sid, "frame_index": 0, "kind": "guess"}, "kind must be one of"),
        ({"scoring_id": sid, "frame_index": 0, "kind": "missed", "label": "circle"}, "no box"),
        ({"scoring_id": sid, "frame_index": 0, "kind": "missed", "box": [0, 0, 2, 2]}, "needs label"),
        ({"scoring_id": sid, "frame_index": 0, "kind": "rejected"}, "refers_to"),
        ({"scoring_id": sid, "frame_index": 0, "kind": "rejected", "refers_to": "det-v1"}, "object reference"),
        ({"scoring_id": "not-an-id", "frame_index": 0, "kind": "rejected", "refers_to": "det-v1#1"}, "scoring"),
    ):
        with pytest.raises(dl.ConfigError, match=message):
            store.log_object_labels([{"scoring_id": sid, "frame_index": 1, "kind": "verified",
                                      "refers_to": "det-v1#1"}, bad])  # fmt: skip
    assert len(store.object_labels()) == 4


def test_objects_survive_reopening(tmp_path):
    path = tmp_path / "store"
    with dl.PayloadStore(path) as s:
        sid = s.new_scoring_id()
        s.log_objects(sid, model_version="det-v1", rows=ROWS)
        s.log_object_labels([{"scoring_id": sid, "frame_index": 0, "kind": "rejected", "refers_to": "det-v1#1"}])
    with dl.PayloadStore(path, read_only=True) as s:
        assert len(s.objects_df()) == 4 and s.object_labels()["refers_to"].tolist() == ["det-v1#1"]
