"""Both scoring endpoints on a real store, real clips and a real (tiny) model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import dlabel_lab as dl

CLASSES = ["circle", "square", "triangle"]
SPEC = dl.ClipSpec(frames=4, size=32)


def _counts(store) -> tuple[int, int, int]:
    matched = len(store.matched().df())
    missing = len(store.unmatched())
    scores = len(store.score_history())
    return matched, missing, scores


def test_score_logs_every_part(ingest, store, shape_rows):
    row = shape_rows[0]
    result = ingest.score(row["path"], label=row["label"])
    assert isinstance(result, dl.ScoringResult) and result.ok
    assert result.predicted_label in CLASSES
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    m = store.matched(scoring_ids=[result.scoring_id]).df()
    assert len(m) == 1
    rec = m.iloc[0]
    assert rec["user_label"] == row["label"] and rec["predicted_label"] == result.predicted_label
    assert rec["model_version"] == ingest.model_version
    assert len(rec["embedding"]) == 16 and len(rec["probabilities"]) == 3
    assert (rec["fps"], rec["frame_count"], rec["codec"]) == (12.0, 16, "mp4v")
    data = Path(row["path"]).read_bytes()
    assert hashlib.sha256(store.raw_bytes(result.scoring_id)).hexdigest() == hashlib.sha256(data).hexdigest()
    assert rec["sha256"] == result.sha256 == hashlib.sha256(data).hexdigest()


def test_score_many_batches_and_orders_ids(ingest, store, shape_rows):
    results = ingest.score_many([r["path"] for r in shape_rows], [r["label"] for r in shape_rows], progress=False)
    assert len(results) == 6 and all(r.ok for r in results)
    ids = [r.scoring_id for r in results]
    assert ids == sorted(ids)  # time-ordered ids
    assert len(store.matched().df()) == 6
    assert [r.label for r in results] == [r["label"] for r in shape_rows]


def test_bytes_source(ingest, store, mp4_path):
    result = ingest.score(Path(mp4_path).read_bytes(), label="circle")
    assert result.ok and len(store.matched().df()) == 1


def test_unknown_label_logs_nothing(ingest, store, shape_rows):
    with pytest.raises(dl.UnknownLabel, match="hexagon"):
        ingest.score_many([r["path"] for r in shape_rows[:2]], ["circle", "hexagon"], progress=False)
    assert _counts(store) == (0, 0, 0)


def test_bad_media_logs_nothing(ingest, store, tmp_path, shape_rows):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(dl.UnsupportedMedia):
        ingest.score(bad, label="circle")
    with pytest.raises(dl.UnsafeSource):
        ingest.score("http://127.0.0.1:9/clip.mp4", label="circle")
    assert _counts(store) == (0, 0, 0)
    results = ingest.score_many([shape_rows[0]["path"], bad], ["circle", "square"], on_error="skip", progress=False)
    assert len(results) == 1 and _counts(store)[0] == 1


def test_model_failure_is_logged_and_rescored(ingest, store, shape_rows, monkeypatch):
    model = ingest.model_endpoint.model

    def broken(x):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(model, "logits_and_embedding", broken)
    results = ingest.score_many([r["path"] for r in shape_rows[:3]], [r["label"] for r in shape_rows[:3]],
                                progress=False)
    assert all(not r.ok and "simulated" in r.error for r in results)
    missing = store.unmatched()
    assert set(missing["scoring_id"]) == {r.scoring_id for r in results}
    assert all("prediction" in list(m) for m in missing["missing"])
    assert all("simulated" in str(e) for e in missing["error"])
    assert len(store.matched().df()) == 0
    monkeypatch.undo()
    done = ingest.rescore_unmatched(progress=False)
    assert len(done) == 3 and all(r.ok for r in done)
    assert len(store.unmatched()) == 0
    m = store.matched().df()
    assert sorted(m["user_label"]) == sorted(r["label"] for r in shape_rows[:3])  # scores kept, not duplicated
    assert len(store.score_history()) == 3


def test_replay_rebuilds_the_exact_tensor(ingest, store, shape_rows):
    result = ingest.score(shape_rows[1]["path"], label="square")
    x, ok = dl.replay(store, result.scoring_id, result.model_version)
    assert ok and x.shape == (3, 4, 32, 32)


def test_deploy_version_from_the_store(ingest, store, shape_rows):
    first = ingest.score(shape_rows[2]["path"])
    again = dl.deploy_version(store, ingest.model_version).score(shape_rows[2]["path"])
    assert again.model_version == first.model_version
    assert again.probabilities == pytest.approx(first.probabilities, abs=1e-6)


def test_deploy_refuses_other_classes(store):
    model = dl.ClipClassifier(classes=CLASSES, spec=SPEC, embed_dim=8)
    with pytest.raises(dl.ConfigError, match="differ"):
        dl.deploy(model, store, classes=["a", "b", "c"])
