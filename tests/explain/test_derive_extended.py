"""The extended derivation: sweeps that follow the operational quantiles, colour, motion, label-distribution weights."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.explain import derive
from dlabel_lab.explain.derive import Analysis
from dlabel_lab.explain.sensitivity import _apply_axis, quantile_axes


class _DimModel(torch.nn.Module):
    """Class 1 when the mean normalised intensity is low: right on dim clips, wrong once they are brightened."""

    spec = dl.ClipSpec(frames=2, size=8)

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3, 4))
        return torch.stack([m + 0.5, -(m + 0.5)], dim=1)


def _analysis(*, ops, ref, labels, predicted, ref_y=None, motion=(0.01, 0.01)) -> Analysis:
    n, m = len(ops), len(ref)

    def frame(values, mot):
        return pd.DataFrame({"brightness": values, "contrast": [0.5 * b for b in values], "motion": [mot] * len(values),
                             "blur": [0.2] * len(values), "noise": [0.01] * len(values),
                             "object_scale": [0.3] * len(values)})

    factors = frame(ops, motion[0])
    factors.insert(0, "scoring_id", [f"id{i}" for i in range(n)])
    ref_x = torch.full((m, 3, 2, 8, 8), -1.6)  # dim reference clips (0.09 on the 0..1 scale) of class 1
    return Analysis(
        model_version="m-v1", scoring_ids=list(factors["scoring_id"]), labels=labels, predicted=predicted,
        correct=np.array([p == q for p, q in zip(predicted, labels, strict=True)]),
        frames=np.zeros((n, 2, 8, 8, 3), np.uint8), gradcam=np.ones((n, 2, 8, 8)),
        frame_profile=np.full((n, 2), 0.5), activations=np.zeros((n, 2)), factors=factors,
        functions=pd.DataFrame({"layer": ["emb"], "neuron": [0], "corr_brightness": [0.9]}),
        tags=pd.DataFrame(columns=["scoring_id", "tag", "score"]),
        implicated_factors=pd.DataFrame(columns=["feature", "cohens_d", "p_value"]),
        implicated_neurons=pd.DataFrame(columns=["feature", "cohens_d", "p_value"]),
        reference=frame(ref, motion[1]), classes=["a", "b"], reference_x=ref_x,
        reference_y=torch.ones(m, dtype=torch.long) if ref_y is None else ref_y,
    )


def test_sweep_values_follow_the_range_not_a_fixed_grid():
    axes = quantile_axes({"brightness": (1.0, 4.4), "contrast": (0.5, 1.6), "hue": (-0.2, 0.0)})
    assert max(axes["brightness"]) == 4.4 and 1.0 in axes["brightness"]
    assert min(axes["contrast"]) == 0.5 and max(axes["contrast"]) == 1.6  # both directions
    assert axes["hue"] == [-0.2, -0.1, 0.0]


def test_a_much_brighter_operation_is_swept_to_its_quantiles_and_supported(monkeypatch):
    monkeypatch.setattr(derive, "load_version", lambda store, version: _DimModel())
    a = _analysis(ops=[0.4] * 10, ref=[0.09] * 10, labels=["b"] * 10, predicted=["a"] * 10)
    params = dl.derive_transformation_params(None, "m-v1", analysis=a, save=False)
    lo, hi = params.brightness
    assert lo == 1.0 and hi > 4.0  # 4.4x the reference median: far beyond the old 1.25 grid
    ev = params.evidence["brightness"]
    assert ev.supported and any(k.startswith("sweep_acc@4.4") for k in ev.quantiles)


def test_motion_without_reference_clips_is_reported_not_applied():
    a = _analysis(ops=[0.2] * 10, ref=[0.2] * 10, labels=["a", "b"] * 5, predicted=["a", "b"] * 5,
                  motion=(0.05, 0.01))
    params = dl.derive_transformation_params(None, "m-v1", analysis=a, sensitivity=False, save=False)
    ev = params.evidence["speed"]
    assert params.speed is None and not ev.supported and "no reference clips" in ev.note


@pytest.fixture(scope="module")
def timed_store(tmp_path_factory):
    """A v1 trained briefly on clean lab clips (its lineage records them), and three operational sets."""
    root = tmp_path_factory.mktemp("timed")
    lab = dl.make_shape_clips(root / "lab", 12, seed=11, frames=16, size=48)
    with dl.PayloadStore(root / "store") as store:
        v1 = dl.train_initial(store, lab, name="shapes", spec=dl.ClipSpec(frames=4, size=32), epochs=1, seed=0,
                              progress=False)
    ops = {name: dl.read_manifest(dl.make_shape_clips(root / name, 16, seed=12, frames=16, size=48, drift=drift))
           for name, drift in (("fast", {"speed": 3.0}), ("noisy", {"noise": 0.12}))}
    return root, v1.version, ops


@pytest.mark.parametrize("drift", ["fast", "noisy"])
def test_faster_motion_becomes_a_speed_range_and_noise_does_not(timed_store, drift, tmp_path):
    root, version, ops = timed_store
    shutil.copytree(root / "store", tmp_path / "store")
    with dl.PayloadStore(tmp_path / "store") as store:
        rows = ops[drift]
        dl.deploy(dl.load_version(store, version), store, model_version=version).score_many(
            [r["path"] for r in rows], [r["label"] for r in rows], progress=False)
        params = dl.derive_transformation_params(store, version, require_support=False, save=False, progress=False)
    ev = params.evidence["speed"]
    assert {"motion@1", "motion@3.3", "sweep_acc@3.3"} <= set(ev.quantiles)
    if drift == "fast":  # 3x the lab's speed: the reference clips are re-timed up to the sweep's reach
        assert ev.effect_size > 1.5 and params.speed[0] == 1.0 and params.speed[1] >= 2.0
    else:  # pixel noise changes every frame but moves nothing
        assert params.speed is None and abs(ev.effect_size - 1.0) <= 0.25


def test_a_collapsed_model_gets_weights_from_the_operational_label_distribution():
    labels = ["a"] * 15 + ["b"] * 5  # operations see mostly "a"; the lab was balanced
    a = _analysis(ops=[0.2] * 20, ref=[0.2] * 20, labels=labels, predicted=["b"] * 20,
                  ref_y=torch.tensor([0, 1] * 10))
    params = dl.derive_transformation_params(None, "m-v1", analysis=a, sensitivity=False, save=False)
    assert params.class_weights["a"] > params.class_weights["b"]
    assert params.evidence["class_weights"].source == "label-distribution"


def test_colour_axes_are_exact_on_simple_clips():
    grey = torch.full((1, 3, 1, 4, 4), 0.5)
    assert torch.allclose(_apply_axis(grey, "saturation", 0.0), grey, atol=1e-3)
    red = torch.zeros(1, 3, 1, 4, 4)
    red[:, 0] = 1.0
    green = _apply_axis(red, "hue", 1 / 3)
    assert torch.allclose(green[:, 1], torch.ones(1, 1, 4, 4), atol=1e-4) and float(green[:, 0].max()) < 1e-4
