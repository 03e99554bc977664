"""The widgets, driven without a browser: ``button.click()`` fires the handlers, then we look in the store."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

import dlabel_lab as dl
from dlabel_lab.loop import train_initial
from dlabel_lab.serving.endpoints import deploy_version
from dlabel_lab.store import PayloadStore
from dlabel_lab.train.transforms import Evidence, TransformationParams
from dlabel_lab.widgets import AttributionViewer, DatasetBrowser, RetrainPanel, ScoringWidget

PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return dl.read_manifest(dl.make_shape_clips(tmp_path_factory.mktemp("clips"), 9, frames=8, size=32, seed=0))


@pytest.fixture
def loop(tmp_path, clips):
    """A fresh store with a tiny trained v1 deployed behind the endpoints."""
    store = PayloadStore(tmp_path / "store")
    manifest = dl.make_shape_clips(tmp_path / "train", 6, frames=8, size=32, seed=1)
    v1 = train_initial(store, manifest, name="shapes", classes=["circle", "square", "triangle"],
                       spec=dl.ClipSpec(frames=4, size=32), epochs=1, progress=False)
    ingest = deploy_version(store, v1.version)
    yield store, ingest, v1.version
    store.close()


def _png(image) -> bool:
    return bytes(image.value).startswith(PNG)


def _score_all(ingest, clips):
    return ingest.score_many([c["path"] for c in clips], [c["label"] for c in clips], progress=False)


def _latest(store, sid):
    return store.matched(scoring_ids=[sid]).df()["user_label"].iloc[0]


def test_scoring_widget_scores_skips_and_undoes(loop, clips):
    store, ingest, version = loop
    w = ScoringWidget(ingest, clips[:4])
    assert list(w.buttons) == ingest.classes
    assert _png(w.frame) and _png(w.filmstrip)
    assert w.slider.max == w.play.max == 15
    w.slider.value = 3
    assert bytes(w.frame.value) == w._frames[3]
    assert "clip 1 of 4" in w.header.value

    w.buttons[clips[0]["label"]].click()
    assert w.position == 1 and len(w.results) == 1 and w.progress.value == 1
    first = w.results[0]
    assert _latest(store, first.scoring_id) == clips[0]["label"]
    assert f"predicted {first.predicted_label}" in w.answer.value

    w.skip_button.click()
    assert w.position == 2 and w.skipped == [1]
    assert len(store.matched().df()) == 1

    w.buttons[clips[2]["label"]].click()
    assert w.position == 3 and len(w.results) == 2
    sid = w.results[1].scoring_id

    w.undo_button.click()  # back to clip 3: the next click corrects its score
    assert w.position == 2 and "already scored" in w.answer.value
    other = next(c for c in ingest.classes if c != clips[2]["label"])
    w.buttons[other].click()
    history = store.score_history(sid)
    assert history["label"].tolist() == [clips[2]["label"], other]
    assert history["source"].tolist() == ["human", "human-correction"]
    assert _latest(store, sid) == other
    assert len(w.results) == 2 and w.results[1].label == other
    assert len(store.matched().df()) == 2  # corrected, not re-ingested

    w.undo_button.click()
    w.undo_button.click()  # back to the skipped clip 2
    assert w.position == 1 and w.skipped == []
    w.buttons[clips[1]["label"]].click()
    w.skip_button.click()  # clip 3 keeps its corrected score
    w.buttons[clips[3]["label"]].click()
    assert w.position == 4 and len(w.results) == 4 and w.skipped == []
    assert all(b.disabled for b in w.buttons.values()) and "all 4 clips done" in w.header.value
    assert len(store.matched().df()) == 4 and _latest(store, sid) == other
    assert w.errors == []


def test_dataset_browser_filters_through_matched(loop, clips):
    store, ingest, version = loop
    results = _score_all(ingest, clips)
    store.log_clip_tags(version, [{"scoring_id": r.scoring_id, "tag": "dark", "score": 0.9} for r in results[:3]])
    b = DatasetBrowser(store, max_rows=5)
    assert b.filters() == {"model_version": version}
    assert len(b.records) == len(clips) and f"{len(clips)} rows" in b.count.value
    assert len(b.select.options) == 5 and b.table.value.count("<tr") == 5 + 1
    assert "accuracy" in b.metrics.value and _png(b.confusion)

    cases = [
        ("correct", False, dict(correct=False)),
        ("correct", None, {}),
        ("label", "circle", dict(label="circle")),
        ("confidence", (0.3, 0.9), dict(label="circle", min_confidence=0.3, max_confidence=0.9)),
        ("label", None, dict(min_confidence=0.3, max_confidence=0.9)),
        ("confidence", (0.0, 1.0), {}),
        ("tag", "dark", dict(tags=["dark"])),
        ("prediction", results[0].predicted_label, dict(tags=["dark"], prediction=results[0].predicted_label)),
    ]
    for name, value, expected in cases:
        getattr(b, name).value = value
        assert b.filters() == {"model_version": version, **expected}
        want = store.matched(model_version=version, **expected).df()
        assert sorted(b.records["scoring_id"]) == sorted(want["scoring_id"]), name
        assert f"{len(want)} rows" in b.count.value

    b.tag.value = b.prediction.value = None
    b.select.value = b.select.options[0][1]
    assert _png(b.filmstrip) and "score history" in b.details.value

    orphan = store.new_scoring_id()
    store.log_score(orphan, "circle")  # a score without a clip: unmatched
    store.log_clip_tags(version, [{"scoring_id": results[-1].scoring_id, "tag": "bright", "score": 0.7}])
    b.reload_button.click()
    assert orphan in b.unmatched.value and ("bright", "bright") in b.tag.options
    assert b.errors == []


@dataclass
class FakeAnalysis:
    model_version: str
    scoring_ids: list
    labels: list
    predicted: list
    correct: np.ndarray
    frames: np.ndarray
    gradcam: np.ndarray
    frame_profile: np.ndarray
    functions: pd.DataFrame
    tags: pd.DataFrame
    factors: pd.DataFrame
    implicated_factors: pd.DataFrame


def _analysis(n=3, t=4, size=16):
    rng = np.random.default_rng(0)
    ids = [f"0190-{i}" for i in range(n)]
    profile = rng.random((n, t))
    return FakeAnalysis(
        model_version="shapes-v1", scoring_ids=ids, labels=["circle", "square", "circle"],
        predicted=["circle", "circle", "square"], correct=np.array([True, False, False]),
        frames=rng.integers(0, 255, (n, t, size, size, 3), dtype=np.uint8), gradcam=rng.random((n, t, size, size)),
        frame_profile=profile / profile.sum(axis=1, keepdims=True),
        functions=pd.DataFrame({"layer": ["embed"] * 2, "neuron": [0, 1], "class_label": ["circle", "square"],
                                "function": ["brightness+ (0.8)", "object_scale- (0.6)"]}),
        tags=pd.DataFrame({"scoring_id": [ids[1]], "tag": ["dark"], "score": [0.9], "source": ["neuron:0"]}),
        factors=pd.DataFrame({"scoring_id": ids, "brightness": [0.5, 0.2, 0.3], "motion": [0.1, 0.2, 0.3]}),
        implicated_factors=pd.DataFrame({"feature": ["brightness"], "cohens_d": [-1.2], "p_value": [0.04]}),
    )


def test_attribution_viewer_accepts_and_rejects_parameters():
    params = TransformationParams(
        brightness=(0.4, 1.2), scale=(0.5, 1.0), class_weights={"square": 2.0},
        evidence={"brightness": Evidence(source="attribution", factor="brightness", effect_size=-1.2, supported=True,
                                         neurons=("embed:0",)),
                  "scale": Evidence(source="sensitivity", factor="object_scale", supported=True),
                  "blur": Evidence(source="sensitivity", factor="blur", note="did not help")},
    )
    v = AttributionViewer(_analysis(), params)
    assert set(v.toggles) == {"brightness", "scale", "class_weights"}  # blur has evidence but no value
    assert [i for _, i in v.clip.options] == [1, 2, 0]  # wrong predictions first
    assert _png(v.overlay) and _png(v.frame_bars)
    assert "dark" in v.clip_info.value
    v.clip.value = 0
    assert "dark" not in v.clip_info.value
    assert v.accepted_params() == params

    v.toggles["brightness"].value = False
    kept = v.accepted_params()
    assert v.accepted() == ["scale", "class_weights"]
    assert kept.brightness is None and kept.scale == (0.5, 1.0) and kept.class_weights == {"square": 2.0}
    assert kept.evidence["scale"] == params.evidence["scale"]
    described = kept.describe().set_index("parameter")
    assert described.loc["brightness", "value"] is None and "rejected" in described.loc["brightness", "note"]
    assert TransformationParams.from_json(kept.to_json()) == kept
    assert v.errors == []


def test_retrain_panel_trains_a_new_version_live(loop, clips):
    store, ingest, version = loop
    _score_all(ingest, clips)
    params = TransformationParams(brightness=(0.8, 1.2), p=1.0)
    panel = RetrainPanel(store, version, params=params)
    assert "brightness" in panel.params_view.value
    panel.epochs.value = 1
    panel.retrain_button.click()
    assert panel.errors == []
    child = panel.last_version
    versions = store.model_versions().set_index("model_version")
    assert child.version in versions.index and versions.loc[child.version, "parent"] == version
    assert panel.progress.max == 1 and panel.progress.value == 1
    assert len(panel.callback.history) == 1 and "val_loss" in panel.callback.history[0]
    assert _png(panel.plot)
    assert "accuracy" in panel.comparison.value and child.version in panel.comparison.value
    assert panel.lineage["chain"] == [child.version, version] and "chain" in panel.lineage_view.value
    assert panel.version.value == child.version and not panel.retrain_button.disabled
