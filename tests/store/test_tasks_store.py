"""The store's pipeline, task, assignment and answer rows: written once, claimed under a lease, answered atomically."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

import dlabel_lab as dl

SPEC = [{"name": "prelabel", "kind": "detect", "objects_from": "imp-v1"}]
T0 = datetime(2025, 1, 1, 12, 0, 0)


@pytest.fixture
def store(tmp_path):
    with dl.PayloadStore(tmp_path / "store") as s:
        yield s


def _tasks(store, pid: str, n: int, sid: str) -> list[dict]:
    return [{"task_id": f"{pid}/missed/{sid}/f{k:07d}", "pipeline_id": pid, "step": "missed", "kind": "mark_missed",
             "scoring_id": sid, "payload": {"frame_indices": [k]}, "instruction": "Box what has no box.",
             "created_at": T0 + timedelta(seconds=k)} for k in range(n)]  # fmt: skip


def test_pipelines_are_versioned_per_name(store):
    assert store.log_pipeline("boxes", SPEC) == "boxes-p1"
    assert store.log_pipeline("boxes", SPEC) == "boxes-p1"
    assert store.log_pipeline("boxes", [{**SPEC[0], "score_threshold": 0.5}]) == "boxes-p2"
    assert store.log_pipeline("other", SPEC) == "other-p1"
    assert store.pipeline("boxes-p2")["spec"] == [{**SPEC[0], "score_threshold": 0.5}]
    assert store.pipelines().pipeline_id.tolist() == ["boxes-p1", "boxes-p2", "other-p1"]
    with pytest.raises(dl.UnknownRecord, match="define_pipeline"):
        store.pipeline("boxes-p9")
    with pytest.raises(dl.ConfigError, match="list of step dicts"):
        store.log_pipeline("boxes", {"name": "x"})


def test_tasks_are_written_once(store):
    pid = store.log_pipeline("boxes", SPEC)
    sid = store.new_scoring_id()
    rows = _tasks(store, pid, 3, sid)
    assert store.log_tasks(rows) == [r["task_id"] for r in rows]
    assert store.log_tasks(rows) == []  # a replay adds nothing
    with pytest.raises(dl.DuplicateScoringId):
        store.log_tasks([{**rows[0], "payload": {"frame_indices": [9]}}])
    with pytest.raises(dl.UnknownRecord, match="define_pipeline"):
        store.log_tasks([{**rows[0], "task_id": "x", "pipeline_id": "nope-p1"}])
    with pytest.raises(dl.ConfigError, match="lacks instruction"):
        store.log_tasks([{k: v for k, v in {**rows[0], "task_id": "y"}.items() if k != "instruction"}])
    got = store.tasks(pipeline_id=pid)
    assert got.task_id.tolist() == [r["task_id"] for r in rows] and got.payload.iloc[2] == {"frame_indices": [2]}
    assert store.task(rows[1]["task_id"])["payload"] == {"frame_indices": [1]}


def test_claims_respect_mine_first_leases_skips_and_answers(store):
    pid = store.log_pipeline("boxes", SPEC)
    ids = store.log_tasks(_tasks(store, pid, 3, store.new_scoring_id()))
    assert store.claim_task(pid, author="ana", now=T0) == ids[0]
    assert store.claim_task(pid, author="bob", now=T0 + timedelta(seconds=10)) == ids[1]
    assert store.claim_task(pid, author="bob", now=T0 + timedelta(seconds=20)) == ids[1]  # his comes first
    assert store.claim_task(pid, author="carl", now=T0 + timedelta(seconds=30), lease_s=600) == ids[2]
    assert store.claim_task(pid, author="dora", now=T0 + timedelta(seconds=40), lease_s=600) is None
    assert store.claim_task(pid, author="dora", now=T0 + timedelta(seconds=700), lease_s=600) == ids[0]
    store.log_task_answer(ids[0], {"verdict": "skip"}, author="dora")
    store.log_task_answer(ids[1], {"boxes": []}, author="bob")
    later = T0 + timedelta(hours=1)
    assert store.claim_task(pid, author="dora", now=later) == ids[2]  # skipped by her, answered by bob
    # a skip leaves the task open for others
    assert store.claim_task(pid, author="eve", now=later + timedelta(seconds=1), lease_s=0) == ids[0]
    assert store.task_assignments(pipeline_id=pid).author.tolist() == ["ana", "bob", "bob", "carl", "dora", "dora",
                                                                        "eve"]  # fmt: skip
    with pytest.raises(dl.ConfigError, match="lease_s"):
        store.claim_task(pid, author="eve", lease_s=-1)


def test_answers_append_and_latest_non_skip_wins(store):
    pid = store.log_pipeline("boxes", SPEC)
    sid = store.new_scoring_id()
    (tid,) = store.log_tasks(_tasks(store, pid, 1, sid))
    label = {"scoring_id": sid, "frame_index": 0, "kind": "missed", "box": [1, 2, 3, 4], "label": "circle"}
    assert store.log_task_answer(tid, {"boxes": ["a"]}, author="ana", object_labels=[label]) == 0
    assert store.log_task_answer(tid, {"boxes": []}, author="bob") == 1
    assert store.log_task_answer(tid, {"verdict": "skip"}, author="carl") == 2
    latest = store.task_answers(pipeline_id=pid, latest=True)
    assert latest[["answer_id", "author"]].values.tolist() == [[1, "bob"]] and latest.answer.iloc[0] == {"boxes": []}
    assert len(store.task_answers(task_ids=[tid])) == 3
    (row,) = store.object_labels(task_id=tid).to_dict("records")
    assert (row["source"], row["author"], row["kind"]) == ("pipeline", "ana", "missed")
    with pytest.raises(dl.UnknownRecord):
        store.log_task_answer("nope", {"verdict": "skip"}, author="ana")


def test_an_answer_and_its_object_labels_commit_together(store, monkeypatch):
    pid = store.log_pipeline("boxes", SPEC)
    sid = store.new_scoring_id()
    (tid,) = store.log_tasks(_tasks(store, pid, 1, sid))
    label = {"scoring_id": sid, "frame_index": 0, "kind": "missed", "box": [1, 2, 3, 4], "label": "circle"}
    with pytest.raises(dl.ConfigError, match="needs label"):  # a bad label row: no answer either
        store.log_task_answer(tid, {"boxes": []}, author="ana", object_labels=[{**label, "label": None}])
    rows = store._rows

    def failing(sql, params=None):
        if sql.startswith("INSERT INTO task_answers"):
            raise RuntimeError("disk gone")
        return rows(sql, params)

    monkeypatch.setattr(store, "_rows", failing)
    with pytest.raises(RuntimeError, match="disk gone"):  # the labels were inserted, then rolled back
        store.log_task_answer(tid, {"boxes": []}, author="ana", object_labels=[label])
    monkeypatch.undo()
    assert store.task_answers().empty and store.object_labels().empty
    store.log_task_answer(tid, {"boxes": []}, author="ana", object_labels=[label])
    assert len(store.object_labels()) == 1 and len(store.task_answers()) == 1


def test_clip_facts_and_read_only(store, tmp_path):
    sid = store.new_scoring_id()
    store.log_raw(sid, b"not really a clip", source_name="c.mp4", metadata={"fps": 12.0, "width": 96, "height": 72})
    facts = store.clip_facts([sid]).iloc[0]
    assert (facts.width, facts.height, facts.fps) == (96, 72, 12.0) and facts.media_path == str(store.raw_path(sid))
    with pytest.raises(dl.UnknownRecord, match="no raw clip"):
        store.clip_facts([store.new_scoring_id()])
    store.close()
    with dl.PayloadStore(tmp_path / "store", read_only=True) as ro, pytest.raises(dl.StoreError, match="read-only"):
        ro.log_pipeline("boxes", SPEC)


def test_a_skip_releases_the_lease_at_once(store):
    pid = store.log_pipeline("boxes", SPEC)
    (tid,) = store.log_tasks(_tasks(store, pid, 1, store.new_scoring_id()))
    assert store.claim_task(pid, author="ana") == tid
    assert store.claim_task(pid, author="bob") is None  # ana holds the lease
    store.log_task_answer(tid, {"verdict": "skip"}, author="ana")
    assert store.claim_task(pid, author="bob") == tid  # no 10-minute wait after her skip
    assert store.claim_task(pid, author="ana") is None  # and ana is not handed it again
