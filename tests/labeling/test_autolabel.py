"""Auto-labelling with an audit on a real store with hand-set predictions (exact expectations)."""

from __future__ import annotations

import pytest

import dlabel_lab as dl
from dlabel_lab.labeling.autolabel import FLAG_TAG, audit_report, autolabel, choose_threshold, exact_interval

CLASSES = ["circle", "square"]


def _clip(store, i: int, *, predicted: str, confidence: float, label: str | None):
    sid = store.new_scoring_id()
    store.log_raw(sid, f"clip-{i}".encode() * 8, source_name=f"c{i}.mp4")
    other = [c for c in CLASSES if c != predicted][0]
    probs = {predicted: confidence, other: 1 - confidence}
    store.log_transformed(sid, model_version="m-v1", record={}, tensor_digest=f"d{i}", embedding=[float(i), 1.0],
                          objects=[])
    store.log_prediction(sid, model_version="m-v1", label=predicted, probabilities=[probs[c] for c in CLASSES],
                         confidence=confidence, latency_ms=1.0)
    if label is not None:
        store.log_score(sid, label)
    return sid


@pytest.fixture
def store(tmp_path):
    with dl.PayloadStore(tmp_path / "store") as s:
        ckpt = tmp_path / "m.safetensors"
        ckpt.write_bytes(b"not loaded by these tests")
        s.register_model(name="m", checkpoint_path=ckpt, classes=CLASSES, spec={})
        i = 0
        for _ in range(20):  # validation: confident and right
            _clip(s, i, predicted="circle", confidence=0.97, label="circle")
            i += 1
        for j in range(10):  # validation: unsure, half wrong
            _clip(s, i, predicted="square", confidence=0.6, label="square" if j % 2 else "circle")
            i += 1
        pool = []
        for _ in range(12):
            pool.append(_clip(s, i, predicted="circle", confidence=0.97, label=None))
            i += 1
        for _ in range(8):
            pool.append(_clip(s, i, predicted="square", confidence=0.6, label=None))
            i += 1
        s.pool_ids = pool
        yield s


def test_threshold_choice_and_exact_intervals():
    assert exact_interval(0, 0) == (0.0, 1.0)
    low, high = exact_interval(10, 10)
    assert low == pytest.approx(0.025 ** (1 / 10)) and high == 1.0  # two-sided exact bound
    t, stats = choose_threshold([0.9, 0.8, 0.7, 0.6], [True, True, True, False], target_precision=0.95,
                                min_support=2)
    assert t == 0.7 and stats["n_above"] == 3 and stats["coverage"] == 0.75
    assert choose_threshold([0.9, 0.8], [False, True], min_support=1)[0] is None  # the most confident is wrong
    t, _ = choose_threshold([0.9], [True], min_support=10)
    assert t is None  # not enough support: nothing is auto-labelled
    with pytest.raises(dl.ConfigError, match="target_precision"):
        choose_threshold([0.9], [True], target_precision=1.0)


def test_autolabel_labels_the_confident_pool_and_draws_an_audit(store):
    result = autolabel(store, "m-v1", target_precision=0.95, audit_rate=0.25, seed=0)
    assert result.pool_size == 20 and len(result.labelled) == 12 and result.coverage == pytest.approx(0.6)
    assert set(result.labelled["scoring_id"]) == set(store.pool_ids[:12])
    assert (result.labelled["label"] == "circle").all()
    assert result.validation["n_above"] == 20 and result.validation["precision"] == 1.0
    assert len(result.audit) == 3 and set(result.audit["scoring_id"]) <= set(result.labelled["scoring_id"])
    history = store.score_history()
    auto = history[history["source"] == "auto"]
    assert len(auto) == 12 and set(auto["author"]) == {"m-v1"}
    runs = store.runs("autolabel")
    assert len(runs) == 1 and runs.iloc[0]["status"] == "ok"


def test_a_failed_audit_raises_the_threshold_and_flags_the_auto_labels(store):
    result = autolabel(store, "m-v1", target_precision=0.95, audit_rate=0.25, seed=0)
    before = audit_report(store, "m-v1")
    assert before.n_audited == 0 and not before.ok and "no auto-label audited" in before.summary()
    audit = result.audit["scoring_id"].tolist()
    store.log_score(audit[0], "circle", source="audit")
    store.log_score(audit[1], "circle", source="audit")
    store.log_score(audit[2], "square", source="audit")  # the auto-label was wrong
    report = audit_report(store, "m-v1")
    assert (report.n_audited, report.n_agree) == (3, 2) and report.precision == pytest.approx(2 / 3)
    assert report.ci_low < 0.95 and not report.ok
    assert report.threshold_after >= report.threshold_before
    assert sorted(report.flagged) == sorted(result.labelled["scoring_id"])  # all share the erring confidence
    tagged = store.matched(model_version="m-v1", tags=[FLAG_TAG]).df()
    assert sorted(tagged["scoring_id"]) == sorted(report.flagged)
    assert "flagged for people" in report.summary()


def test_audits_that_agree_flag_nothing_but_do_not_overclaim(store):
    result = autolabel(store, "m-v1", target_precision=0.95, audit_rate=0.25, seed=0)
    for sid in result.audit["scoring_id"]:
        store.log_score(sid, "circle", source="audit")
    report = audit_report(store, "m-v1")
    assert report.precision == 1.0 and report.flagged == []
    assert not report.ok  # 3 of 3 cannot show a lower bound of 95 %


def test_audit_report_needs_an_autolabel_run(store):
    with pytest.raises(dl.UnknownRecord, match="autolabel"):
        audit_report(store, "m-v1")


def test_no_threshold_means_nothing_is_auto_labelled(store):
    result = autolabel(store, "m-v1", target_precision=0.99, min_support=25)
    assert result.threshold is None and result.labelled.empty and result.audit.empty
    assert not (store.score_history()["source"] == "auto").any()
    assert result.validation["precision"] is None and result.coverage == 0.0


def test_matched_and_snapshots_filter_by_label_source_and_author(store):
    result = autolabel(store, "m-v1", target_precision=0.95, audit_rate=0.25, seed=0)
    auto = store.matched(model_version="m-v1", label_source="auto").df()
    assert sorted(auto["scoring_id"]) == sorted(result.labelled["scoring_id"])
    assert len(store.matched(label_author="m-v1").df()) == 12
    humans = store.matched(model_version="m-v1", label_source="human").df()
    assert len(humans) == 30
    # training can exclude auto-labels: the snapshot (and so the lineage) holds only what was asked for
    human_only = store.snapshot_dataset("m-human", label_source=["human", "audit"])
    members = store.dataset_members(human_only)
    assert len(members) == 30 and set(members["label_source"]) == {"human"}
    with_auto = store.snapshot_dataset("m-all")
    assert len(store.dataset_members(with_auto)) == 42
