"""A parameter review: every derived row can be accepted or rejected, saved with its author, retrained by id."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from widget_helpers import fake_analysis, score_all

from dlabel_lab.errors import ConfigError, UnknownRecord
from dlabel_lab.explain.derive import Analysis, derive_transformation_params
from dlabel_lab.explain.review import (
    candidate_quantiles,
    candidate_value,
    load_params,
    params_review,
    review_params,
    save_reviewed_params,
)
from dlabel_lab.train.transforms import Evidence, TransformationParams
from dlabel_lab.widgets import AttributionViewer, RetrainPanel
from dlabel_lab.widgets.retrain import GIVEN_PARAMS, NO_PARAMS

CLASSES = ["circle", "square", "triangle"]


def _params() -> TransformationParams:
    """Four set values, one candidate the derivation did not apply (noise), one with nothing to apply (blur)."""
    return TransformationParams(
        brightness=(0.5, 1.0),
        scale=(0.8, 1.2),
        crop=(0.0, 0.0, 0.75, 0.75),
        class_weights={"square": 2.0},
        p=1.0,
        evidence={
            "brightness": Evidence(source="factor-shift", factor="brightness", supported=True),
            "noise": Evidence(
                source="factor-shift",
                factor="noise",
                note="reported, not applied",
                quantiles={"ops_q50": 0.02, **candidate_quantiles((0.0, 0.04))},
            ),
            "blur": Evidence(source="factor-shift", factor="blur", note="no sensitivity check"),
        },
    )


def test_review_rejects_resets_and_applies_accepted_candidates():
    p = _params()
    assert candidate_value(p, "noise") == (0.0, 0.04) and candidate_value(p, "blur") is None
    assert candidate_value(p, "scale") == (0.8, 1.2)
    r = review_params(p, ["scale", "crop", "noise"], author="ana")
    assert (r.brightness, r.scale, r.crop, r.noise, r.blur, r.class_weights) == (
        None,
        (0.8, 1.2),
        (0.0, 0.0, 0.75, 0.75),
        (0.0, 0.04),
        None,
        {},
    )
    notes = r.describe().set_index("parameter")["note"]
    assert notes["brightness"] == "rejected by ana" and notes["noise"] == "reported, not applied; accepted by ana"
    assert notes["blur"] == "no sensitivity check; rejected by ana"
    assert notes["class_weights"] == "rejected by ana"  # turned down, still listed
    assert notes["scale"] == ""  # accepted without evidence: the review run records it
    with pytest.raises(ConfigError, match="'blur' has no value to accept"):
        review_params(p, ["blur"])
    with pytest.raises(ConfigError, match="cannot accept \\['hue'\\]"):
        review_params(p, ["hue"])
    # a recorded candidate that is no valid value counts as none
    bad = TransformationParams(evidence={"noise": Evidence(quantiles=candidate_quantiles((0.2, 0.1)))})
    assert candidate_value(bad, "noise") is None


def test_derived_candidates_can_be_accepted_in_review():
    n = 12
    labels = ["a", "b"] * (n // 2)
    factors = pd.DataFrame(
        {
            "scoring_id": [f"id{i}" for i in range(n)],
            "brightness": np.linspace(0.08, 0.12, n),
            "contrast": 0.5 * np.linspace(0.08, 0.12, n),
            "motion": [0.01] * n,
            "blur": [0.2] * n,
            "noise": [0.01] * n,
            "object_scale": [0.3] * n,
            "off_centre": [0.1] * n,
            "bbox_top": [0.0] * n,
            "bbox_left": [0.0] * n,
            "bbox_h": [1.0] * n,
            "bbox_w": [1.0] * n,
        }
    )
    reference = pd.DataFrame(
        {
            "brightness": np.linspace(0.18, 0.22, n),
            "contrast": 0.5 * np.linspace(0.18, 0.22, n),
            "motion": [0.01] * n,
            "blur": [0.2] * n,
            "noise": [0.01] * n,
            "object_scale": [0.3] * n,
        }
    )
    a = Analysis(
        model_version="m-v1",
        scoring_ids=list(factors["scoring_id"]),
        labels=labels,
        predicted=labels,
        correct=np.ones(n, bool),
        frames=np.zeros((n, 4, 8, 8, 3), np.uint8),
        gradcam=np.ones((n, 4, 8, 8)),
        frame_profile=np.full((n, 4), 0.25),
        activations=np.zeros((n, 2)),
        factors=factors,
        functions=pd.DataFrame({"layer": ["emb"], "neuron": [0], "corr_brightness": [0.9]}),
        tags=pd.DataFrame(columns=["scoring_id", "tag", "score"]),
        implicated_factors=pd.DataFrame(columns=["feature", "cohens_d", "p_value"]),
        implicated_neurons=pd.DataFrame(columns=["feature", "cohens_d", "p_value"]),
        reference=reference,
        classes=["a", "b"],
    )
    p = derive_transformation_params(None, "m-v1", analysis=a, sensitivity=False, save=False)
    assert p.noise is None and p.crop is None and p.frame_window is None  # reported, not applied
    # noise: operational q95 0.01 - reference median 0.01 = 0, so the candidate range is (0, 0)
    assert candidate_value(p, "noise") == (0.0, 0.0)
    assert candidate_value(p, "crop") == (0.0, 0.0, 1.0, 1.0)  # the attribution mass fills the frame
    assert candidate_value(p, "frame_window") == (0.0, 1.0)  # the evidence spreads over every frame
    assert candidate_value(p, "brightness") == p.brightness
    r = review_params(p, ["crop", "frame_window"])
    assert r.crop == (0.0, 0.0, 1.0, 1.0) and r.frame_window == (0.0, 1.0) and r.brightness is None


def test_viewer_saves_the_review_and_the_panel_retrains_with_exactly_it(loop, clips):
    store, ingest, version = loop
    score_all(ingest, clips)
    params = _params()
    panel = RetrainPanel(store, version, params=params, epochs=1)  # built before the review is saved
    assert [v for _, v in panel.params_menu.options] == [GIVEN_PARAMS, NO_PARAMS]
    assert panel.params_menu.value == GIVEN_PARAMS and panel.params is params
    assert "brightness=(0.5, 1.0)" in panel.params_view.value and "<details>" in panel.params_view.value
    v = AttributionViewer(fake_analysis(version), params, store=store, author="ana")
    assert list(v.toggles) == ["brightness", "scale", "blur", "noise", "crop", "class_weights"]
    assert v.accepted() == ["brightness", "scale", "crop", "class_weights"]  # what the derivation applied
    v.toggles["brightness"].value = False  # reject two
    v.toggles["class_weights"].value = False
    v.toggles["noise"].value = True  # accept a candidate the derivation only reported
    assert v.rejected() == ["brightness", "blur", "class_weights"]
    assert v.accepted() == ["scale", "noise", "crop"]
    assert "line-through" in v.review["class_weights"].value and "line-through" not in v.review["noise"].value
    assert not v.save_button.disabled
    v.save_button.click()
    assert v.errors == []
    pid = v.params_version
    assert pid == f"{version}-reviewed-v1" and pid in v.saved.value and "by ana" in v.saved.value

    loaded = load_params(store, pid)
    assert loaded == review_params(params, ["scale", "noise", "crop"], author="ana")
    described = loaded.describe()
    assert described.dropna(subset=["value"])["parameter"].tolist() == ["scale", "noise", "crop"]
    assert set(described["parameter"]) == set(v.toggles)  # the rejected ones stay listed
    review = params_review(store, pid)
    assert (review["author"], review["accepted"], review["rejected"], review["model_version"]) == (
        "ana",
        ["scale", "noise", "crop"],
        ["brightness", "blur", "class_weights"],
        version,
    )
    saved_row = store.runs("params-review").set_index("run_id").loc[review["run_id"]]
    assert saved_row["status"] == "ok" and review["reviewed_at"] == saved_row["finished_at"]

    # the panel offers the saved review once reloaded, with its reviewer; choosing it is what Retrain uses
    panel.params_reload.click()
    labels = dict((v, label) for label, v in panel.params_menu.options)
    assert list(labels) == [GIVEN_PARAMS, NO_PARAMS, pid] and f"{pid} (by ana, 3 set, " in labels[pid]
    panel.params_menu.value = NO_PARAMS
    assert panel.params is None and "plain fine-tuning" in panel.params_view.value
    panel.params_menu.value = pid
    assert panel.params == pid and panel.errors == []
    shown = panel.params_view.value
    assert f"transformation parameters {pid}: scale=(0.8, 1.2), noise=(0.0, 0.04), crop=" in shown
    assert "accepted by ana" in shown  # the evidence, folded under the summary
    panel.retrain_button.click()
    assert panel.errors == []
    child = panel.last_version
    assert child.params == loaded
    recorded = store.get_model(child.version)["params"]
    assert recorded["transformation_params"] == loaded.to_dict()
    assert recorded["training"]["params_version"] == pid
    run = store.runs("retrain").iloc[-1]
    assert json.loads(run["params"])["params_version"] == pid and run["status"] == "ok"
    assert panel.params_menu.value == pid  # still chosen after the retraining
    assert load_params(store, pid) == loaded  # a second review would be a new version, this one stays
    with pytest.raises(UnknownRecord):
        params_review(store, f"{version}-params-v1")
    again = RetrainPanel(store, version, params=pid)  # the panel takes the saved review by id too
    assert again.params_menu.value == pid and again.params == pid and again.given is None
    assert [v for _, v in again.params_menu.options] == [NO_PARAMS, pid]
    with pytest.raises(UnknownRecord):
        RetrainPanel(store, version, params=f"{version}-reviewed-v9")


def test_a_review_needs_an_author_and_says_so(loop):
    store, _, version = loop
    v = AttributionViewer(fake_analysis(version), _params(), store=store, author=" ")
    v.save_button.click()
    assert v.params_version is None and isinstance(v.errors[0], ConfigError)
    assert "needs an author" in v.output.outputs[0]["text"]
    assert store.runs("params-review").empty
    with pytest.raises(ConfigError, match="needs an author"):
        save_reviewed_params(store, _params(), accepted=[], author="")
