"""Property tests of the payload store: any bytes and labels, a state machine, SQL injection through filters."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

import dlabel_lab as dl
from dlabel_lab.store import PayloadStore, new_scoring_id

# text with lone surrogates in the mix: those must raise a typed error, everything else must round-trip
ANY_TEXT = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=40)
LABELS = st.one_of(ANY_TEXT, st.just(""), st.just("a\x00b"), st.just("é" * 10_000), st.just("三" * 10_000))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    with PayloadStore(tmp_path_factory.mktemp("props") / "store") as store:
        yield store


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@PROPERTY
@given(data=st.binary(max_size=3000), name=ANY_TEXT, meta=st.dictionaries(st.text(max_size=8), JSON, max_size=4))
def test_any_bytes_and_metadata_round_trip_or_raise_a_typed_error(shared, data, name, meta):
    sid = new_scoring_id()
    try:
        shared.log_raw(sid, data, source_name=name, metadata={"extra": meta})
    except dl.DLabelError as error:
        assert isinstance(error, dl.ConfigError) and not encodable(name + json.dumps(meta, ensure_ascii=False))
        with pytest.raises(dl.UnknownRecord):
            shared.raw_path(sid)
        return
    assert shared.raw_bytes(sid) == data
    source, metadata = shared._rows("SELECT source_name, metadata FROM raw_payloads WHERE scoring_id = ?", [sid])[0]
    assert source == name and json.loads(metadata) == {"extra": meta}


@PROPERTY
@given(label=LABELS)
def test_any_label_round_trips_or_raises_a_typed_error(shared, label):
    sid = new_scoring_id()
    shared.log_raw(sid, b"clip")
    try:
        shared.log_transformed(sid, model_version="p-v1", record={"label": label}, tensor_digest="d",
                               embedding=[1.0], objects=[{"label": label, "score": 1.0}])  # fmt: skip
        shared.log_prediction(sid, model_version="p-v1", label=label, probabilities=[1.0], confidence=1.0)
        shared.log_score(sid, label)
    except dl.DLabelError as error:
        assert isinstance(error, dl.ConfigError) and (label == "" or not encodable(label))
        return
    row = shared.matched(scoring_ids=[sid]).select("predicted_label, user_label, correct, record, objects").fetchall()
    assert row[0][:3] == (label, label, True)
    assert json.loads(row[0][3]) == {"label": label} and json.loads(row[0][4])[0]["label"] == label
    assert shared.score_history(sid).label.tolist() == [label]
    assert shared.matched(label=label, scoring_ids=[sid]).select("scoring_id").fetchall() == [(sid,)]


# --- a state machine against a plain Python model ------------------------------------------------
MODEL_LABELS = st.sampled_from(["circle", "square", "三角 ✓"])
VERSIONS = st.sampled_from(["m-v1", "m-v2"])


class StoreMachine(RuleBasedStateMachine):
    """log / replay / conflict / predict / score / match / reopen, checked against dicts."""

    ids = Bundle("ids")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="dl-store-machine-"))
        self.store = PayloadStore(self.dir)
        self.raw: dict[str, bytes] = {}
        self.preds: dict[tuple[str, str], str] = {}
        self.scores: dict[str, list[str]] = {}

    @rule(target=ids, data=st.binary(max_size=32))
    def log_raw(self, data):
        sid = new_scoring_id()
        self.store.log_raw(sid, data, source_name="c.mp4")
        self.raw[sid] = data
        return sid

    @rule(sid=ids, data=st.binary(max_size=32))
    def log_raw_again(self, sid, data):
        if data == self.raw[sid]:
            self.store.log_raw(sid, data, source_name="c.mp4")  # a replay adds nothing
        else:
            with pytest.raises(dl.DuplicateScoringId):
                self.store.log_raw(sid, data, source_name="c.mp4")

    @rule(sid=ids, version=VERSIONS, label=MODEL_LABELS)
    def predict(self, sid, version, label):
        known = self.preds.get((sid, version))
        if known is not None and known != label:
            with pytest.raises(dl.DuplicateScoringId):
                self.store.log_prediction(sid, model_version=version, label=label, probabilities=[1.0], confidence=1.0)
            return
        self.store.log_transformed(sid, model_version=version, record={"v": version}, tensor_digest=sid,
                                   embedding=[0.5], objects=[])  # fmt: skip
        self.store.log_prediction(sid, model_version=version, label=label, probabilities=[1.0], confidence=1.0)
        self.preds[(sid, version)] = label

    @rule(sid=ids, label=MODEL_LABELS)
    def score(self, sid, label):
        self.store.log_score(sid, label)
        self.scores.setdefault(sid, []).append(label)

    @rule()
    def reopen(self):
        self.store.close()
        self.store = PayloadStore(self.dir)

    @rule(label=st.none() | MODEL_LABELS, version=st.none() | VERSIONS, correct=st.none() | st.booleans())
    def match(self, label, version, correct):
        expected = set()
        for (sid, v), predicted in self.preds.items():
            user = self.scores.get(sid, [None])[-1]
            if (label is not None and user != label) or (version is not None and v != version):
                continue
            if correct is not None and (user is None or (predicted == user) != correct):
                continue
            expected.add((sid, v, predicted, user))
        rel = self.store.matched(label=label, model_version=version, correct=correct)
        assert set(rel.select("scoring_id, model_version, predicted_label, user_label").fetchall()) == expected

    @invariant()
    def tables_agree_with_the_model(self):
        counts = self.store._rows(
            "SELECT (SELECT count(*) FROM raw_payloads), (SELECT count(*) FROM predictions), "
            "(SELECT count(*) FROM user_scores)"
        )[0]
        assert counts == (len(self.raw), len(self.preds), sum(map(len, self.scores.values())))
        gaps = self.store.unmatched()
        assert set(gaps.scoring_id) == set(self.raw) - {sid for sid, _ in self.preds}
        assert all(m == ["transformed", "prediction"] for m in gaps.missing)

    def teardown(self):
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


StoreMachine.TestCase.settings = settings(max_examples=8, stateful_step_count=20, deadline=None)
test_store_state_machine = StoreMachine.TestCase


# --- SQL injection through filter values --------------------------------------------------------
INJECTIONS = [
    "x' OR 1=1 --",
    "' UNION SELECT * FROM read_csv('/etc/hostname') --",
    "'; DROP TABLE raw_payloads; --",
    "circle' --",
    'circle" OR "1"="1',
    "$1",
    "?",
]


@pytest.fixture
def small(tmp_path):
    with PayloadStore(tmp_path / "s") as store:
        ids = [new_scoring_id() for _ in range(3)]
        for sid, label in zip(ids, ["circle", "square", "circle"], strict=True):
            store.log_raw(sid, sid.encode())
            store.log_transformed(sid, model_version="inj-v1", record={}, tensor_digest="d", embedding=[0.0],
                                  objects=[])  # fmt: skip
            store.log_prediction(sid, model_version="inj-v1", label=label, probabilities=[1.0], confidence=0.5)
            store.log_score(sid, label)
        store.log_clip_tags("inj-v1", [{"scoring_id": ids[0], "tag": "dark"}])
        yield store, ids


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("field", ["label", "prediction", "model_version", "tags", "scoring_ids"])
def test_filter_values_are_bound_not_spliced(small, field, value):
    store, ids = small
    real = {"label": "circle", "prediction": "circle", "model_version": "inj-v1", "tags": "dark",
            "scoring_ids": ids[0]}[field]  # fmt: skip
    assert store.matched(**{field: [value]}).fetchall() == []
    alone = sorted(store.matched(**{field: [real]}).select("scoring_id").fetchall())
    both = sorted(store.matched(**{field: [real, value]}).select("scoring_id").fetchall())
    assert alone != [] and both == ([] if field == "tags" else alone)  # tags: rows carrying every tag given
    # a relation read through query() has its values written in as literals: still only the literal
    assert store.matched(**{field: [value]}).query("m", "SELECT count(*) FROM m").fetchall() == [(0,)]
    assert store._rows("SELECT count(*) FROM raw_payloads")[0][0] == 3


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_text_is_stored_and_found_as_plain_text(small, value):
    store, ids = small
    store.log_score(ids[1], value)
    assert store.matched(label=value).select("scoring_id").fetchall() == [(ids[1],)]
    assert store.snapshot_dataset("inj", label=value) == "inj-v1"
    assert store.dataset_members("inj-v1").label.tolist() == [value]
