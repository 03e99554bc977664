"""PayloadStore: logging, idempotency, matched/unmatched, versions, lineage, export, schema, errors.

Every test uses a real DuckDB file under ``tmp_path``; the data are tiny and
the expected answers are written out by hand.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np
import pandas as pd
import pytest

import dlabel_lab as dl
from dlabel_lab.store import MATCHED_COLUMNS, PayloadStore, new_scoring_id, schema

T0 = datetime(2024, 1, 1)
DOC_COLUMNS = (
    "scoring_id, received_at, sha256, media_path (absolute), source_name, fps, frame_count, width, height, codec, "
    "metadata (JSON text), model_version, record (JSON text), tensor_digest, embedding FLOAT[], objects (JSON text), "
    "predicted_label, probabilities FLOAT[], confidence, latency_ms, predicted_at, user_label, label_source, "
    "label_author, labelled_at, correct BOOLEAN (NULL when no user label), tags VARCHAR[], media_ok BOOLEAN"
)
META = {"fps": 25.0, "frame_count": 16, "width": 64, "height": 48, "codec": "mp4v", "container": "mp4"}


@pytest.fixture
def store(tmp_path):
    with PayloadStore(tmp_path / "store") as s:
        yield s


def predict(store, sid, version, label, confidence, *, classes=("circle", "square", "triangle")):
    rest = (1.0 - confidence) / (len(classes) - 1)
    probs = [confidence if c == label else rest for c in classes]
    store.log_transformed(sid, model_version=version, record={"indices": [0, 4, 8], "size": [32, 32]},
                          tensor_digest=f"digest-{sid[-4:]}", embedding=[0.5, -1.25, 2.0],
                          objects=[{"label": label, "score": confidence}])  # fmt: skip
    store.log_prediction(sid, model_version=version, label=label, probabilities=probs, confidence=confidence,
                         latency_ms=2.5)  # fmt: skip


@pytest.fixture
def world(store):
    """Six clips: 0-3 scored by shapes-v1, 0-1 also by shapes-v2, 4 transformed only, 5 raw + label only."""
    ids = [new_scoring_id() for _ in range(6)]
    for i, sid in enumerate(ids):
        store.log_raw(sid, f"clip-{i}".encode() * 10, source_name=f"cam/{i}.mp4", metadata=META,
                      received_at=T0 + timedelta(hours=i))  # fmt: skip
    for i, (label, conf) in enumerate([("circle", 0.9), ("square", 0.6), ("circle", 0.3), ("triangle", 0.8)]):
        predict(store, ids[i], "shapes-v1", label, conf)
    predict(store, ids[0], "shapes-v2", "circle", 0.95)
    predict(store, ids[1], "shapes-v2", "circle", 0.7)
    store.log_transformed(ids[4], model_version="shapes-v1", record={}, tensor_digest="d4", embedding=[0.0],
                          objects=[])  # fmt: skip
    store.log_score(ids[0], "circle")
    store.log_score(ids[1], "circle", source="auto")
    store.log_score(ids[1], "square", source="audit", author="ana")
    store.log_score(ids[2], "square")
    store.log_score(ids[5], "circle")
    store.log_clip_tags("shapes-v1", [{"scoring_id": ids[0], "tag": "dark", "score": 0.9},
                                      {"scoring_id": ids[0], "tag": "small", "score": 0.4},
                                      {"scoring_id": ids[1], "tag": "dark", "score": 0.7}])  # fmt: skip
    return ids


def keys(rel, ids):
    """(clip index, model version) pairs of a matched relation, sorted."""
    pos = {sid: i for i, sid in enumerate(ids)}
    return sorted((pos[s], v) for s, v in rel.select("scoring_id, model_version").fetchall())


# --- ids and raw payloads -------------------------------------------------------------
def test_scoring_ids_are_time_ordered_uuid7():
    ids = [new_scoring_id() for _ in range(2000)]
    assert ids == sorted(ids) and len(set(ids)) == 2000
    for sid in ids[:50]:
        assert len(sid) == 36 and sid[14] == "7" and sid[19] in "89ab"
    ms = int(ids[0].replace("-", "")[:12], 16)
    assert abs(ms / 1000 - datetime.now(timezone.utc).timestamp()) < 5


def test_raw_bytes_are_content_addressed_once_with_an_extension(store):
    a, b, c = new_scoring_id(), new_scoring_id(), new_scoring_id()
    data = b"\x00\x00\x00\x18ftypisom" + bytes(range(256))
    sha = hashlib.sha256(data).hexdigest()
    assert store.log_raw(a, data, source_name="cam/clip.MP4") == sha
    assert store.log_raw(b, data, source_name="other.avi") == sha  # same bytes, same file
    store.log_raw(c, b"RIFF....AVI ", metadata={"container": "avi"})
    assert store.raw_path(a) == store.raw_path(b) == store.media_dir / sha[:2] / f"{sha}.mp4"
    assert store.raw_path(c).suffix == ".avi"
    files = sorted(p for p in store.media_dir.rglob("*") if p.is_file())
    assert len(files) == 2 and not any(p.name.startswith(".tmp-") for p in files)
    assert store.raw_bytes(b) == data


def test_raw_bytes_refuses_a_damaged_media_file(store):
    sid = new_scoring_id()
    store.log_raw(sid, b"original bytes")
    store.raw_path(sid).write_bytes(b"tampered bytes")
    with pytest.raises(dl.StoreCorrupt, match="no longer matches"):
        store.raw_bytes(sid)
    with pytest.raises(dl.UnknownRecord, match="no raw payload"):
        store.raw_path(new_scoring_id())


def test_metadata_fills_columns_and_bad_values_raise_typed_errors(store):
    sid = new_scoring_id()
    store.log_raw(sid, b"x", source_name="a.mp4", metadata=META | {"camera": "ATM-7"})
    row = store._rows("SELECT fps, frame_count, width, height, codec, metadata FROM raw_payloads")[0]
    assert row[:5] == (25.0, 16, 64, 48, "mp4v") and json.loads(row[5])["camera"] == "ATM-7"
    with pytest.raises(dl.ConfigError, match="UUID"):
        store.log_raw("clip-1", b"x")
    with pytest.raises(dl.ConfigError, match="bytes"):
        store.log_raw(new_scoring_id(), "not bytes")
    with pytest.raises(dl.ConfigError, match="JSON"):
        store.log_raw(new_scoring_id(), b"x", metadata={"f": float("nan")})
    with pytest.raises(dl.ConfigError, match="fps"):
        store.log_raw(new_scoring_id(), b"x", metadata={"fps": "fast"})
    assert store._rows("SELECT count(*) FROM raw_payloads")[0][0] == 1


# --- idempotency -------------------------------------------------------------------------
def counts(store):
    tables = ("raw_payloads", "transformed_payloads", "predictions", "user_scores")
    return {t: store._rows(f"SELECT count(*) FROM {t}")[0][0] for t in tables}


def test_replaying_records_adds_nothing(store, world):
    before = counts(store)
    store.log_raw(world[0], b"clip-0" * 10, source_name="cam/0.mp4", metadata=META, received_at=T0)
    predict(store, world[0], "shapes-v1", "circle", 0.9)
    assert counts(store) == before


def test_a_different_payload_under_a_known_id_raises_and_writes_nothing_of_the_batch(store, world):
    before = counts(store)
    fresh = new_scoring_id()
    with pytest.raises(dl.DuplicateScoringId, match=world[0]):
        store.log_raw_many([{"scoring_id": fresh, "data": b"new"}, {"scoring_id": world[0], "data": b"other"}])
    with pytest.raises(dl.DuplicateScoringId, match="shapes-v1"):
        store.log_prediction(world[0], model_version="shapes-v1", label="square", probabilities=[0.1, 0.9, 0.0],
                             confidence=0.9, latency_ms=2.5)  # fmt: skip
    with pytest.raises(dl.DuplicateScoringId, match="twice in this batch"):
        store.log_raw_many([{"scoring_id": fresh, "data": b"a"}, {"scoring_id": fresh, "data": b"b"}])
    assert counts(store) == before
    assert not (store.media_dir / hashlib.sha256(b"new").hexdigest()[:2]).exists()
    # the same clip under another model version is a new row, not a duplicate
    predict(store, world[0], "shapes-v3", "square", 0.5)
    assert counts(store)["predictions"] == before["predictions"] + 1


def test_large_batches_are_idempotent_too(store):
    rows = [{"scoring_id": new_scoring_id(), "model_version": "big-v1", "label": "circle",
             "probabilities": [0.25 * (i % 4), 1 - 0.25 * (i % 4)], "confidence": 0.5, "latency_ms": None}
            for i in range(300)]  # fmt: skip
    store.log_prediction_many(rows)
    store.log_prediction_many(rows[:150] + [dict(r, latency_ms=None) for r in rows[150:]])  # replay
    assert counts(store)["predictions"] == 300
    changed = [dict(r) for r in rows]
    changed[123]["probabilities"] = [0.3, 0.7]
    extra = {"scoring_id": new_scoring_id(), "model_version": "big-v1", "label": "x", "probabilities": [1.0],
             "confidence": 1.0}  # fmt: skip
    with pytest.raises(dl.DuplicateScoringId, match=rows[123]["scoring_id"]):
        store.log_prediction_many([*changed, extra])
    assert counts(store)["predictions"] == 300
    stored = store._rows("SELECT probabilities FROM predictions WHERE scoring_id = ?", [rows[5]["scoring_id"]])
    assert stored[0][0] == [0.25, 0.75]


# --- matched ----------------------------------------------------------------------------------
def test_matched_has_the_documented_columns_and_converts(store, world):
    assert list(MATCHED_COLUMNS) == [c.split(" ")[0] for c in DOC_COLUMNS.split(", ")]
    rel = store.matched()
    assert isinstance(rel, duckdb.DuckDBPyRelation) and rel.columns == list(MATCHED_COLUMNS)
    frame = rel.order("scoring_id, model_version").df()
    table = rel.to_arrow_table()
    assert len(frame) == table.num_rows == 6
    first = frame.iloc[0]
    assert first.scoring_id == world[0] and first.model_version == "shapes-v1"
    assert first.media_path == str(store.raw_path(world[0])) and first.media_path.startswith("/")
    assert json.loads(first.record) == {"indices": [0, 4, 8], "size": [32, 32]}
    assert list(first.embedding) == [0.5, -1.25, 2.0]
    assert json.loads(first.objects) == [{"label": "circle", "score": 0.9}]
    assert first.predicted_label == "circle" and first.user_label == "circle" and bool(first.correct)
    assert list(first.tags) == ["dark", "small"] and first.fps == 25.0 and first.codec == "mp4v"
    unlabelled = frame[frame.scoring_id == world[3]].iloc[0]
    assert pd.isna(unlabelled.user_label) and unlabelled.correct is pd.NA


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, [(0, "shapes-v1"), (0, "shapes-v2"), (1, "shapes-v1"), (1, "shapes-v2"), (2, "shapes-v1"),
              (3, "shapes-v1")]),
        ({"label": "circle"}, [(0, "shapes-v1"), (0, "shapes-v2")]),
        ({"label": ["square"]}, [(1, "shapes-v1"), (1, "shapes-v2"), (2, "shapes-v1")]),
        ({"prediction": "circle"}, [(0, "shapes-v1"), (0, "shapes-v2"), (1, "shapes-v2"), (2, "shapes-v1")]),
        ({"model_version": "shapes-v2"}, [(0, "shapes-v2"), (1, "shapes-v2")]),
        ({"since": T0 + timedelta(hours=2)}, [(2, "shapes-v1"), (3, "shapes-v1")]),
        ({"until": T0 + timedelta(hours=1)}, [(0, "shapes-v1"), (0, "shapes-v2")]),
        ({"since": datetime(2024, 1, 1, 2, tzinfo=timezone(timedelta(hours=1)))},  # 01:00 UTC
         [(1, "shapes-v1"), (1, "shapes-v2"), (2, "shapes-v1"), (3, "shapes-v1")]),
        ({"min_confidence": 0.8}, [(0, "shapes-v1"), (0, "shapes-v2"), (3, "shapes-v1")]),
        ({"max_confidence": 0.6}, [(1, "shapes-v1"), (2, "shapes-v1")]),
        ({"correct": True}, [(0, "shapes-v1"), (0, "shapes-v2"), (1, "shapes-v1")]),
        ({"correct": False}, [(1, "shapes-v2"), (2, "shapes-v1")]),
        ({"tags": "dark"}, [(0, "shapes-v1"), (1, "shapes-v1")]),
        ({"tags": ["dark", "small"]}, [(0, "shapes-v1")]),
        ({"prediction": "circle", "model_version": "shapes-v1", "min_confidence": 0.5}, [(0, "shapes-v1")]),
    ],
)  # fmt: skip
def test_matched_filters(store, world, filters, expected):
    assert keys(store.matched(**filters), world) == expected


def test_matched_filters_by_scoring_ids_and_refuses_unknown_filters(store, world):
    assert keys(store.matched(scoring_ids=[world[2], world[3], world[5]]), world) == [(2, "shapes-v1"),
                                                                                      (3, "shapes-v1")]
    assert keys(store.matched(scoring_ids=[]), world) == []
    with pytest.raises(dl.ConfigError, match="correct"):
        store.matched(correct="yes")
    with pytest.raises(dl.ConfigError, match="min_confidence"):
        store.matched(min_confidence="high")


def test_a_clip_with_a_score_but_no_prediction_is_unmatched_with_the_run_error(store, world):
    with pytest.raises(dl.TruncatedMedia), store.run("score", {"path": "cam/4.mp4"}, scoring_id=world[4]):
        raise dl.TruncatedMedia("cam/4.mp4 decodes 3 of 16 frames")
    assert world[5] not in {r[0] for r in store.matched().select("scoring_id").fetchall()}
    gaps = store.unmatched()
    assert list(gaps.columns) == ["scoring_id", "model_version", "missing", "error"]
    assert gaps.scoring_id.tolist() == [world[4], world[5]]
    assert gaps.model_version.tolist() == ["shapes-v1", None]
    assert gaps.missing.tolist() == [["prediction"], ["transformed", "prediction"]]
    assert gaps.error.tolist() == ["TruncatedMedia: cam/4.mp4 decodes 3 of 16 frames", None]


def test_a_prediction_without_a_raw_payload_is_unmatched(store):
    sid = new_scoring_id()
    predict(store, sid, "shapes-v1", "circle", 0.9)
    gaps = store.unmatched()
    assert gaps.scoring_id.tolist() == [sid] and gaps.missing.tolist() == [["raw"]]
    assert store.matched().df().empty


# --- labels -----------------------------------------------------------------------------------
def test_the_latest_label_wins_and_the_history_is_kept(store, world):
    row = store.matched(scoring_ids=[world[1]], model_version="shapes-v1").df().iloc[0]
    assert (row.user_label, row.label_source, bool(row.correct)) == ("square", "audit", True)
    history = store.score_history(world[1])
    assert history[["label", "source", "author"]].values.tolist() == [["circle", "auto", None],
                                                                       ["square", "audit", "ana"]]  # fmt: skip
    assert history.is_latest.tolist() == [False, True]
    assert store.log_score(world[1], "triangle") == 6  # five labels before, in the whole store
    assert store.matched(scoring_ids=[world[1]]).select("user_label").fetchall() == [("triangle",)] * 2
    assert len(store.score_history(world[1])) == 3 and len(store.score_history()) == 6


def test_matched_shows_the_latest_labels_author_after_its_source(store, world):
    store.log_score(world[3], "triangle", source="human", author="ann")
    store.log_score(world[3], "circle", source="human", author="bob")  # a correction by someone else
    rel = store.matched(scoring_ids=[world[3]])
    assert rel.columns.index("label_author") == rel.columns.index("label_source") + 1
    row = rel.df().iloc[0]
    assert (row.user_label, row.label_source, row.label_author) == ("circle", "human", "bob")
    assert keys(store.matched(label_author="bob"), world) == [(3, "shapes-v1")]
    assert keys(store.matched(label_author="ann"), world) == []  # only the latest label's author counts
    anonymous = store.matched(scoring_ids=[world[2]]).df().iloc[0]
    assert pd.isna(anonymous.label_author)  # its label was logged without an author


def test_labels_must_be_non_empty_text(store):
    sid = new_scoring_id()
    for bad in ("", None, 3, "a\ud800b"):
        with pytest.raises(dl.ConfigError):
            store.log_score(sid, bad)
    assert store.log_score_many([]) == []


# --- the execution log ----------------------------------------------------------------------------
def test_runs_record_start_end_status_and_error(store):
    run_id = store.start_run("retrain", {"epochs": 2}, model_version="shapes-v1")
    assert store.runs().status.tolist() == ["running"]
    store.finish_run(run_id, result={"accuracy": 0.75})
    with pytest.raises(dl.StoreError, match="already finished"):
        store.finish_run(run_id)
    with pytest.raises(dl.UnknownRecord):
        store.finish_run(new_scoring_id())
    with pytest.raises(ValueError, match="boom"), store.run("loop", {"iteration": 1}):
        raise ValueError("boom")
    runs = store.runs()
    assert runs.kind.tolist() == ["retrain", "loop"] and runs.status.tolist() == ["ok", "failed"]
    assert json.loads(runs.params[0]) == {"epochs": 2} and json.loads(runs.result[0]) == {"accuracy": 0.75}
    assert runs.error.tolist() == [None, "ValueError: boom"]
    assert store.runs("loop").run_id.tolist() == [runs.run_id[1]]


# --- versions and lineage --------------------------------------------------------------------
def test_snapshot_register_and_lineage(store, world, tmp_path):
    ds1 = store.snapshot_dataset("shapes")
    members = store.dataset_members(ds1)
    assert ds1 == "shapes-v1"
    assert members.scoring_id.tolist() == [world[i] for i in (0, 1, 2, 5)]
    assert members.label.tolist() == ["circle", "square", "square", "circle"]
    assert members.media_path[0] == str(store.raw_path(world[0]))
    ckpt = tmp_path / "v1.ckpt"
    ckpt.write_bytes(b"weights v1")
    v1 = store.register_model(name="shapes", checkpoint_path=ckpt, classes=["circle", "square", "triangle"],
                              spec={"frames": 8, "size": 32}, dataset_version=ds1,
                              params={"brightness": [0.8, 1.2]}, metrics={"val_accuracy": 0.5})  # fmt: skip
    assert v1 == "shapes-v1"
    store.log_score(world[2], "circle")  # relabel after the snapshot: the snapshot keeps its label rows
    assert store.dataset_members(ds1).label.tolist() == ["circle", "square", "square", "circle"]
    ds2 = store.snapshot_dataset("shapes", label="circle")
    assert ds2 == "shapes-v2" and store.dataset_members(ds2).scoring_id.tolist() == [world[0], world[2], world[5]]
    ckpt.write_bytes(b"weights v2")
    v2 = store.register_model(name="shapes", checkpoint_path=ckpt, classes=["circle", "square", "triangle"],
                              spec={"frames": 8}, parent=v1, dataset_version=ds2)  # fmt: skip
    store.log_metrics(v2, {"accuracy": 0.8}, split="operational", scoring_ids=world[:2])
    pid = store.save_params({"crop": [0, 0, 0.5, 0.5]}, model_version=v2, name="shapes")
    assert (v2, pid) == ("shapes-v2", "shapes-v1") and store.get_params(pid) == {"crop": [0, 0, 0.5, 0.5]}
    model = store.get_model(v2)
    assert model["checkpoint_sha256"] == hashlib.sha256(b"weights v2").hexdigest()
    assert model["parent"] == v1 and model["classes"] == ["circle", "square", "triangle"]
    assert store.model_versions().model_version.tolist() == [v1, v2]
    lineage = store.lineage(v2)
    assert lineage["chain"] == [v2, v1] and [p["model_version"] for p in lineage["parents"]] == [v1]
    assert lineage["parents"][0]["params"] == {"brightness": [0.8, 1.2]}
    assert lineage["dataset"]["version"] == ds2 and lineage["dataset"]["n_members"] == 3
    assert lineage["dataset"]["label_counts"] == {"circle": 3}
    assert lineage["evaluations"][0]["metrics"] == {"accuracy": 0.8} and lineage["evaluations"][0]["n_scoring_ids"] == 2
    assert lineage["saved_params"] == [{"params_version": "shapes-v1", "params": {"crop": [0, 0, 0.5, 0.5]}}]
    assert store.lineage(v1)["chain"] == [v1] and store.lineage(v1)["metrics"] == {"val_accuracy": 0.5}


def test_list_params_is_newest_first_with_the_reviewer_and_what_each_changes(store):
    from dlabel_lab.explain.review import save_reviewed_params
    from dlabel_lab.train.transforms import Evidence, TransformationParams

    assert store.list_params().empty and list(store.list_params().columns) == [
        "params_version", "name", "model_version", "author", "created_at", "n_params"]  # fmt: skip
    plain = store.save_params({"crop": [0, 0, 0.5, 0.5], "frame_stride": 1, "p": 0.8}, name="shapes")
    derived = TransformationParams(blur=(0.5, 1.0), noise=(0.0, 0.1), frame_stride=2,
                                   evidence={"hue": Evidence(note="candidate only")})  # fmt: skip
    loop = store.save_params(derived, model_version="shapes-v1", name="shapes-v1-params")
    reviewed = save_reviewed_params(store, derived, accepted=["blur"], author="ann", model_version="shapes-v1")
    listed = store.list_params()
    assert listed.params_version.tolist() == [reviewed, loop, plain]
    assert listed.author.tolist()[0] == "ann" and listed.author.isna().tolist()[1:] == [True, True]
    assert listed.n_params.tolist() == [1, 3, 1]  # reviewed: blur only; derived: blur, noise, frame_stride 2
    assert listed.created_at.is_monotonic_decreasing
    assert listed.model_version.tolist()[:2] == ["shapes-v1", "shapes-v1"] and pd.isna(listed.model_version[2])
    mine = store.list_params(model_version="shapes-v1")
    assert mine.params_version.tolist() == [reviewed, loop] and store.list_params(model_version="other-v1").empty
    with pytest.raises(dl.ConfigError, match="model_version"):
        store.list_params(model_version=3)


def test_version_errors_are_typed(store, world, tmp_path):
    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"w")
    with pytest.raises(dl.CheckpointError):
        store.register_model(name="m", checkpoint_path=tmp_path / "missing.ckpt", classes=["a"], spec={})
    with pytest.raises(dl.UnknownRecord, match="parent|model version"):
        store.register_model(name="m", checkpoint_path=ckpt, classes=["a"], spec={}, parent="m-v9")
    with pytest.raises(dl.UnknownRecord):
        store.register_model(name="m", checkpoint_path=ckpt, classes=["a"], spec={}, dataset_version="d-v1")
    with pytest.raises(dl.ConfigError):
        store.register_model(name="bad name/", checkpoint_path=ckpt, classes=["a"], spec={})
    for call in (lambda: store.get_model("m-v1"), lambda: store.lineage("m-v1"), lambda: store.get_params("p-v1"),
                 lambda: store.dataset_members("d-v1"), lambda: store.log_metrics("m-v1", {"a": 1})):  # fmt: skip
        with pytest.raises(dl.UnknownRecord):
            call()
    with pytest.raises(dl.UnknownRecord, match="no raw payload or no user score"):
        store.snapshot_dataset("d", scoring_ids=[world[0], world[3]])  # clip 3 has no label
    with pytest.raises(dl.ConfigError, match="no labelled clip"):
        store.snapshot_dataset("d", label="hexagon")


def test_attribution_tables_round_trip(store, world):
    store.log_neuron_functions("shapes-v1", [
        {"layer": "embed", "neuron": 3, "class_label": "circle", "factor": "brightness", "corr": 0.7, "n": 12},
        {"layer": "embed", "neuron": 5, "class_label": None, "factor": "motion", "corr": -0.2},
    ])  # fmt: skip
    nf = store.neuron_functions("shapes-v1")
    assert nf[["neuron", "factor", "corr"]].values.tolist() == [[3, "brightness", 0.7], [5, "motion", -0.2]]
    assert nf.n.tolist()[0] == 12 and store.neuron_functions("shapes-v2").empty
    store.log_attributions("shapes-v1", [{"scoring_id": world[0], "kind": "frame", "values": np.array([0.5, 0.25])},
                                         {"scoring_id": world[1], "kind": "map", "values": [[1, 2], [3, 4]]}])
    attr = store.attributions("shapes-v1")
    assert attr["values"].tolist() == [[0.5, 0.25], [[1, 2], [3, 4]]]
    assert store.attributions("shapes-v1", kind="map").scoring_id.tolist() == [world[1]]
    assert sorted(store.clip_tags("shapes-v1").tag) == ["dark", "dark", "small"]


# --- export --------------------------------------------------------------------------------
def test_export_parquet_is_hive_partitioned_and_reads_back(store, world, tmp_path):
    out = store.export_parquet(tmp_path / "export")
    parts = sorted(p.relative_to(out).parts[:2] for p in out.rglob("*.parquet"))
    assert ("model_version=shapes-v1", "received_date=2024-01-01") in parts and len(parts) == 2
    con = duckdb.connect()
    back = con.execute(
        "SELECT scoring_id, model_version, embedding, probabilities, user_label, received_date, tags FROM "
        f"read_parquet('{out}/**/*.parquet', hive_partitioning = true) ORDER BY scoring_id, model_version"
    ).fetchall()
    want = store.matched().order("scoring_id, model_version").select(
        "scoring_id, model_version, embedding, probabilities, user_label, tags").fetchall()
    assert [(r[0], r[1], r[2], r[3], r[4], r[6]) for r in back] == want
    assert {str(r[5]) for r in back} == {"2024-01-01"}
    store.export_parquet(out)  # again: partitions are replaced, not doubled
    assert con.execute(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet')").fetchall()[0][0] == 6


# --- external access -------------------------------------------------------------------------
def test_queries_run_without_external_file_access(store, world):
    rel = store.matched()
    with pytest.raises(duckdb.PermissionException):
        rel.query("m", "SELECT * FROM read_csv('/etc/hostname')").fetchall()
    with pytest.raises(duckdb.Error):
        store._cursor().execute("COPY raw_payloads TO '/tmp/dlabel_leak.csv'")


# --- schema versions, corruption, opening ------------------------------------------------------
def test_an_older_store_is_migrated_on_open(tmp_path):
    root = tmp_path / "old"
    root.mkdir()
    con = duckdb.connect(str(root / "store.duckdb"))
    assert schema.migrate(con, target=1) == 1
    sid = new_scoring_id()
    con.execute("INSERT INTO raw_payloads VALUES (?, ?, 'ab', 'media/ab/ab.bin', 1, 'x', NULL, NULL, NULL, NULL, "
                "NULL, '{}')", [sid, T0])  # fmt: skip
    con.close()
    with pytest.raises(dl.SchemaVersionError, match="without read_only"):
        PayloadStore(root, read_only=True)
    with PayloadStore(root) as store:
        assert store._rows("SELECT max(version) FROM schema_version")[0][0] == schema.SCHEMA_VERSION == 4
        assert store._rows("SELECT scoring_id FROM raw_payloads") == [(sid,)]
        store.log_neuron_functions("m-v1", [{"layer": "l", "neuron": 0}])  # a v2 table
    with PayloadStore(root, read_only=True) as store:
        assert len(store.neuron_functions("m-v1")) == 1


def test_a_newer_store_raises_schema_version_error(tmp_path):
    PayloadStore(tmp_path / "s").close()
    con = duckdb.connect(str(tmp_path / "s" / "store.duckdb"))
    con.execute("INSERT INTO schema_version (version, note) VALUES (99, 'from the future')")
    con.close()
    with pytest.raises(dl.SchemaVersionError, match="version 99"):
        PayloadStore(tmp_path / "s")
    with pytest.raises(dl.SchemaVersionError):  # not StoreLocked: the failed open released the lock
        PayloadStore(tmp_path / "s", read_only=True)


def test_a_foreign_duckdb_file_is_not_taken_for_a_store(tmp_path):
    (tmp_path / "s").mkdir()
    duckdb.connect(str(tmp_path / "s" / "store.duckdb")).execute("CREATE TABLE sales (x INT)").close()
    with pytest.raises(dl.SchemaVersionError, match="not a dlabel_lab payload store"):
        PayloadStore(tmp_path / "s")


def test_garbage_in_the_database_file_raises_store_corrupt(tmp_path):
    root = tmp_path / "s"
    root.mkdir()
    (root / "store.duckdb").write_bytes(np.random.default_rng(0).bytes(16_384))
    with pytest.raises(dl.StoreCorrupt, match="Restore store.duckdb from a backup"):
        PayloadStore(root)
    with pytest.raises(dl.StoreCorrupt):  # the lock was released: a second try says the same
        PayloadStore(root, read_only=True)


def test_a_truncated_database_file_raises_store_corrupt(tmp_path):
    root = tmp_path / "s"
    with PayloadStore(root) as store:
        store.log_score_many([{"scoring_id": new_scoring_id(), "label": "x" * 40} for _ in range(20_000)])
    db = root / "store.duckdb"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    with pytest.raises(dl.StoreCorrupt, match="read enough"), PayloadStore(root) as store:
        store.score_history()  # damage inside data blocks shows when they are read


def test_a_damaged_write_ahead_log_raises_store_corrupt(tmp_path):
    root = tmp_path / "s"
    PayloadStore(root).close()
    con = duckdb.connect(str(root / "store.duckdb"))
    con.execute("PRAGMA disable_checkpoint_on_shutdown")
    con.execute("SET checkpoint_threshold = '1GB'")
    con.execute("INSERT INTO user_scores SELECT range + 1, 'x', 'circle', 'human', NULL, now() FROM range(500)")
    con.close()
    wal = root / "store.duckdb.wal"
    data = bytearray(wal.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    wal.write_bytes(bytes(data))
    with pytest.raises(dl.StoreCorrupt, match="write-ahead log"):
        PayloadStore(root)


def test_read_only_and_closed_stores_refuse_writes(tmp_path, world, store):
    with pytest.raises(dl.StoreLocked, match="this process"):
        PayloadStore(store.path, read_only=True)
    store.close()
    with PayloadStore(store.path, read_only=True) as ro:
        assert len(ro.matched().df()) == 6
        with pytest.raises(dl.StoreError, match="read-only"):
            ro.log_score(world[0], "square")
    with pytest.raises(dl.StoreError, match="closed"):
        store.matched()
    with pytest.raises(dl.StoreError, match="no store.duckdb"):
        PayloadStore(tmp_path / "nowhere", read_only=True)
    assert not (tmp_path / "nowhere").exists()
