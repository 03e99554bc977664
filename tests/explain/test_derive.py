"""Derivation of transformation parameters from known factors, and the sensitivity sweep."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.explain.derive import Analysis, _apply_axis


def _analysis(*, ops_brightness, ref_brightness, predicted=None, labels=None) -> Analysis:
    n = len(ops_brightness)
    labels = labels or ["a", "b"] * (n // 2)
    predicted = predicted or list(labels)
    factors = pd.DataFrame({
        "scoring_id": [f"id{i}" for i in range(n)], "brightness": ops_brightness,
        "contrast": [0.5 * b for b in ops_brightness],  # same relative contrast: darker, not flatter
        "motion": [0.01] * n, "blur": [0.2] * n, "noise": [0.01] * n, "object_scale": [0.3] * n,
        "off_centre": [0.1] * n, "bbox_top": [0.0] * n, "bbox_left": [0.0] * n, "bbox_h": [1.0] * n,
        "bbox_w": [1.0] * n,
    })
    m = len(ref_brightness)
    reference = pd.DataFrame({"brightness": ref_brightness, "contrast": [0.5 * b for b in ref_brightness],
                              "motion": [0.01] * m,
                              "blur": [0.2] * m, "noise": [0.01] * m, "object_scale": [0.3] * m})
    correct = np.array([p == q for p, q in zip(predicted, labels, strict=True)])
    return Analysis(
        model_version="m-v1", scoring_ids=list(factors["scoring_id"]), labels=labels, predicted=predicted,
        correct=correct, frames=np.zeros((n, 4, 8, 8, 3), np.uint8), gradcam=np.ones((n, 4, 8, 8)),
        frame_profile=np.full((n, 4), 0.25), activations=np.zeros((n, 2)), factors=factors,
        functions=pd.DataFrame({"layer": ["emb", "emb"], "neuron": [0, 1], "corr_brightness": [0.9, 0.1]}),
        tags=pd.DataFrame(columns=["scoring_id", "tag", "score"]),
        implicated_factors=pd.DataFrame(columns=["feature", "cohens_d", "p_value"]),
        implicated_neurons=pd.DataFrame(columns=["feature", "cohens_d", "p_value"]),
        reference=reference, classes=["a", "b"],
    )


def test_darker_operations_give_a_brightness_range_with_evidence():
    ops = list(np.linspace(0.08, 0.12, 20))
    ref = list(np.linspace(0.18, 0.22, 20))
    params = dl.derive_transformation_params(None, "m-v1", analysis=_analysis(ops_brightness=ops, ref_brightness=ref),
                                             sensitivity=False, save=False)
    lo, hi = params.brightness
    assert hi == 1.0
    assert lo == pytest.approx(np.quantile(ops, 0.05) / np.median(ref), abs=1e-3)  # covers the operational q05
    ev = params.evidence["brightness"]
    assert ev.factor == "brightness" and ev.neurons == ("emb:0",)  # the neuron that tracks brightness
    assert ev.quantiles["ops_q50"] == pytest.approx(0.1, abs=1e-3)
    assert params.contrast is None and params.noise is None  # unchanged factors get no augmentation
    assert "no augmentation" in params.evidence["noise"].note
    assert params.crop is None and params.frame_window is None  # mass everywhere, frames uniform
    assert dl.TransformationParams.from_json(params.to_json()) == params


def test_unchanged_operations_give_no_parameters():
    same = list(np.linspace(0.18, 0.22, 20))
    params = dl.derive_transformation_params(None, "m-v1", analysis=_analysis(ops_brightness=same,
                                                                              ref_brightness=same),
                                             sensitivity=False, save=False)
    assert params.is_empty()


def test_collapsed_model_gets_no_class_weights():
    labels = ["a", "b"] * 10
    collapsed = _analysis(ops_brightness=[0.2] * 20, ref_brightness=[0.2] * 20, labels=labels, predicted=["a"] * 20)
    params = dl.derive_transformation_params(None, "m-v1", analysis=collapsed, sensitivity=False, save=False)
    assert params.class_weights == {} and not params.evidence["class_weights"].supported
    # a model that is wrong mostly on one class (not collapsed) does get weights
    predicted = ["a", "a"] * 4 + ["a", "b"] * 6  # 4 of 10 "b" wrong, no "a" wrong: 70 % "a", not collapsed
    uneven = _analysis(ops_brightness=[0.2] * 20, ref_brightness=[0.2] * 20, labels=labels, predicted=predicted)
    weights = dl.derive_transformation_params(None, "m-v1", analysis=uneven, sensitivity=False,
                                              save=False).class_weights
    assert weights["b"] > weights["a"]


class _BrightnessModel(torch.nn.Module):
    """Class 1 when the mean normalised intensity is above a threshold: fragile to darkening."""

    spec = dl.ClipSpec(frames=2, size=8)

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3, 4))
        return torch.stack([-(m - (-0.5)), m - (-0.5)], dim=1)


def test_sensitivity_sweep_finds_the_fragile_axis():
    x01 = torch.full((4, 3, 2, 8, 8), 0.6)
    x = (x01 - 0.45) / 0.225
    y = torch.ones(4, dtype=torch.long)
    sweep = dl.sensitivity_sweep(_BrightnessModel(), x, y, axes={"brightness": [0.3, 1.0], "blur": [0.0, 1.0]})
    acc = sweep.set_index(["axis", "value"])["accuracy"]
    assert acc[("brightness", 1.0)] == 1.0 and acc[("brightness", 0.3)] == 0.0  # darkening breaks it
    assert acc[("blur", 1.0)] == 1.0  # a flat clip does not care about blur


def test_axis_transforms_are_exact_on_simple_clips():
    x = torch.full((1, 3, 2, 8, 8), 0.5)
    assert torch.allclose(_apply_axis(x, "brightness", 0.5), torch.full_like(x, 0.25))
    assert torch.allclose(_apply_axis(x, "contrast", 0.0), x, atol=1e-3)  # towards the mean of a flat clip
    assert _apply_axis(x, "noise", 0.1).std() > 0.05
    with pytest.raises(dl.ConfigError):
        _apply_axis(x, "hue", 1.0)
