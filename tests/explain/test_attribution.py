"""Attribution, neuron functions, clip tags: hand-set models with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from captum.attr import NeuronConductance, NeuronGradient, NeuronIntegratedGradients
from scipy.stats import spearmanr
from torch import nn

from dlabel_lab.errors import ConfigError, UnknownLabel
from dlabel_lab.explain.attribution import (
    activations,
    attribution_cost_benchmark,
    frame_attribution,
    layer_map,
    neuron_attributions,
)
from dlabel_lab.explain.neurons import (
    attribution_geometry,
    compare_groups,
    neuron_functions,
    neuron_functions_long,
    tag_clips,
)
from dlabel_lab.media.video import clip_stats

C, T, H, W = 3, 4, 16, 16


class QuadrantFrameModel(nn.Module):
    """Embedding = Linear over the flat clip: neuron 0 = mean of the top-left
    quadrant (all channels and frames), neuron 1 = mean of frame 2."""

    def __init__(self) -> None:
        super().__init__()
        self.flat = nn.Flatten()
        self.embedding_layer = nn.Linear(C * T * H * W, 2, bias=False)
        self.head = nn.Linear(2, 3)
        w = torch.zeros(2, C, T, H, W)
        w[0, :, :, : H // 2, : W // 2] = 1.0 / (C * T * (H // 2) * (W // 2))
        w[1, :, 2] = 1.0 / (C * H * W)
        with torch.no_grad():
            self.embedding_layer.weight.copy_(w.reshape(2, -1))
            self.head.weight.copy_(torch.tensor([[1.0, 1.0], [2.0, 1.0], [1.0, 2.0]]))  # every class uses both
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.embedding_layer(self.flat(x)))


class LinearLogits(nn.Module):
    """logits[c] = sum(w[c] * x): Integrated Gradients is exactly x * w[c]."""

    def __init__(self, k: int = 2) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.w = nn.Parameter(torch.randn(k, C, T, H, W, generator=g))

    def forward(self, x):
        return torch.einsum("nctyx,kctyx->nk", x, self.w)


class PointConvModel(nn.Module):
    """1x1x1 conv (3 -> 2 channels, hand-set) -> global mean -> Linear (2 -> 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.last_conv = nn.Conv3d(3, 2, 1, bias=False)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.last_conv.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]]).view(2, 3, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[2.0, -1.0], [0.5, 1.0]]))

    def forward(self, x):
        return self.fc(self.last_conv(x).mean((2, 3, 4)))


class SmallCNN(nn.Module):
    """A random non-linear 3D CNN with an embedding layer."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.last_conv = nn.Conv3d(3, 4, 3, padding=1)
        self.embedding_layer = nn.Linear(4, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        z = torch.relu(self.last_conv(x)).mean((2, 3, 4))
        return self.head(torch.tanh(self.embedding_layer(z)))


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.randn(4, C, T, H, W)


# --- neuron attributions --------------------------------------------------------------
@pytest.mark.parametrize("method", ["gradient", "integrated_gradients", "conductance"])
def test_neuron_mass_and_frames_are_where_the_weights_are(x, method):
    res = neuron_attributions(QuadrantFrameModel(), x, method=method, n_steps=4, neuron_batch_size=2,
                              progress=False)
    assert res.mass_map.shape == (4, 2, H, W) and res.frame_profile.shape == (4, 2, T)
    assert res.neurons == (0, 1) and res.activations.shape == (4, 2)
    top_left = res.mass_map[:, 0, : H // 2, : W // 2].sum((1, 2))
    assert torch.allclose(top_left, torch.ones(4), atol=1e-6)
    assert res.mass_map[:, 0].sum((1, 2)).sub(1).abs().max() < 1e-6
    onehot = torch.zeros(4, T)
    onehot[:, 2] = 1
    assert torch.allclose(res.frame_profile[:, 1], onehot, atol=1e-6)


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients", "conductance"])
def test_batched_neurons_match_captum_one_neuron_at_a_time(x, method):
    model = SmallCNN().eval()
    res = neuron_attributions(model, x, neurons=[1, 3, 4], method=method, n_steps=5, target=2,
                              batch_size=3, neuron_batch_size=2, progress=False)
    cls = {"gradient": NeuronGradient, "integrated_gradients": NeuronIntegratedGradients,
           "conductance": NeuronConductance}[method]
    explainer = cls(model, model.embedding_layer)
    for k, j in enumerate([1, 3, 4]):
        kw = {} if method == "gradient" else {"n_steps": 5, "baselines": 0.0}
        if method == "conductance":
            kw["target"] = 2
        a = explainer.attribute(x.clone().requires_grad_(), neuron_selector=j, **kw).abs()
        mass = a.sum((1, 2))
        assert torch.allclose(res.mass_map[:, k], mass / mass.sum((1, 2), keepdim=True), atol=1e-6)
        prof = a.sum((1, 3, 4))
        assert torch.allclose(res.frame_profile[:, k], prof / prof.sum(1, keepdim=True), atol=1e-6)


def test_batchnorm_statistics_are_untouched_and_train_mode_restored(x):
    model = nn.Sequential(nn.Conv3d(3, 2, 1), nn.BatchNorm3d(2), nn.Flatten(), nn.Linear(2 * T * H * W, 2)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frame_attribution(model, x, n_steps=2, progress=False)
    layer_map(model, x, layer=model[1], progress=False)
    neuron_attributions(model, x, layer=model[3], method="conductance", n_steps=2, progress=False)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_activations_match_the_layer_output_and_mode_is_restored(x):
    model = SmallCNN().train()
    acts = activations(model, x, batch_size=3)
    with torch.no_grad():
        z = torch.relu(model.last_conv(x)).mean((2, 3, 4))
        assert torch.allclose(acts, model.embedding_layer(z), atol=1e-6)
    assert model.training


# --- frames and layer maps ------------------------------------------------------------
def test_frame_attribution_is_integrated_gradients_of_a_linear_model(x):
    model = LinearLogits()
    got = frame_attribution(model, x, target=[0, 1, 1, 0], n_steps=8, batch_size=3, progress=False)
    w = model.w.detach()[torch.tensor([0, 1, 1, 0])]
    per_frame = (x * w).abs().sum((1, 3, 4))  # IG = (x - 0) * w exactly for a linear model
    assert torch.allclose(got, per_frame / per_frame.sum(1, keepdim=True), atol=1e-5)
    assert torch.allclose(got.sum(1), torch.ones(4), atol=1e-6)


def test_layer_gradcam_gives_the_hand_computed_map(x):
    model = PointConvModel()
    got = layer_map(model, x, target=0, progress=False)
    a = model.last_conv(x).detach()  # (N, 2, T, H, W); d logit0 / d A_k = fc[0, k] / (T*H*W) everywhere
    alpha = model.fc.weight.detach()[0] / (T * H * W)
    want = torch.relu((alpha.view(1, 2, 1, 1, 1) * a).sum(1))
    assert got.shape == (4, T, H, W)
    assert torch.allclose(got, want, atol=1e-6)


def test_layer_map_predicted_target_conductance_and_upsample(x):
    model = SmallCNN()
    pooled = torch.nn.functional.avg_pool3d
    small = pooled(x, 2)
    up = layer_map(model, small, upsample=True, progress=False)
    assert up.shape == (4, T // 2, H // 2, W // 2)  # conv keeps size, so upsample is the identity here
    cond = layer_map(model, x, method="conductance", n_steps=4, progress=False)
    assert cond.shape == (4, T, H, W) and (cond >= 0).all()
    with pytest.raises(ConfigError, match="N, C, T', H', W'"):
        layer_map(model, x, layer=model.embedding_layer, progress=False)


def test_bad_inputs_raise_config_errors(x):
    model = QuadrantFrameModel()
    with pytest.raises(ConfigError, match="unsqueeze"):
        neuron_attributions(model, x[0], progress=False)
    with pytest.raises(ConfigError, match="method"):
        neuron_attributions(model, x, method="saliency", progress=False)
    with pytest.raises(ConfigError, match=r"\[0, 2\)"):
        neuron_attributions(model, x, neurons=[5], progress=False)
    with pytest.raises(ConfigError, match="layer="):
        layer_map(model, x, progress=False)
    with pytest.raises(ConfigError, match="one int or one per clip"):
        frame_attribution(model, x, target=[0, 1], progress=False)
    with pytest.raises(UnknownLabel):
        frame_attribution(model, x, target="circle", progress=False)


def test_cost_benchmark_reports_ratios(x):
    out = attribution_cost_benchmark(SmallCNN(), x, n_steps=2, repeats=1)
    assert {"ig_ratio", "neuron_ig_ratio", "reference_s_per_sample"} <= set(out)
    assert out["ig_ratio"] > 0


# --- geometry -------------------------------------------------------------------------
def test_attribution_geometry_of_known_maps():
    maps = np.zeros((3, 8, 8))
    maps[0, :4, :4] = 1.0  # top-left quadrant
    maps[1, 6, 2] = 5.0  # one pixel
    geo = attribution_geometry(torch.from_numpy(maps))
    q = geo.iloc[0]
    assert (q.centre_y, q.centre_x, q.object_scale, q.object_scale_50) == pytest.approx((0.25, 0.25, 0.5, 0.5))
    assert (q.bbox_top, q.bbox_left, q.bbox_h, q.bbox_w) == pytest.approx((0, 0, 0.5, 0.5))
    assert q.off_centre == pytest.approx(np.hypot(0.25, 0.25) / np.sqrt(0.5))
    p = geo.iloc[1]
    assert (p.centre_y, p.centre_x, p.spread) == pytest.approx((6.5 / 8, 2.5 / 8, 0.0))
    assert p.object_scale == pytest.approx(np.sqrt(1 / 64)) and p.bbox_h == pytest.approx(1 / 8)
    assert geo.iloc[2].isna().all()
    with pytest.raises(ConfigError, match="sum"):
        attribution_geometry(np.zeros((2, 2, 8, 8)))


# --- neuron functions and tags on clips whose factors are known ------------------------
class MeanAndPatternModel(nn.Module):
    """Neuron 0 = mean intensity; neuron 1 = shape patch minus a background patch."""

    def __init__(self) -> None:
        super().__init__()
        self.flat = nn.Flatten()
        self.embedding_layer = nn.Linear(C * T * H * W, 2, bias=False)
        self.head = nn.Linear(2, 2)
        w = torch.zeros(2, C, T, H, W)
        w[0] = 1.0 / w[0].numel()
        w[1, :, :, 4:8, 8:12] = 1.0 / (C * T * 16)
        w[1, :, :, 10:14, 2:6] = -1.0 / (C * T * 16)
        with torch.no_grad():
            self.embedding_layer.weight.copy_(w.reshape(2, -1))

    def forward(self, x):
        return self.head(self.embedding_layer(self.flat(x)))


@pytest.fixture
def brightness_clips():
    """12 uint8 clips identical but for brightness: background L, a square at L + 60."""
    clips = []
    for level in range(10, 190, 15):
        f = np.full((T, H, W, 3), level, np.uint8)
        f[:, 4:8, 8:12] = level + 60
        clips.append(f)
    factors = pd.DataFrame([clip_stats(c).as_dict() for c in clips])
    factors.insert(0, "scoring_id", [f"id{i:02d}" for i in range(12)])
    x = torch.stack([(torch.from_numpy(c).permute(3, 0, 1, 2).float() / 255 - 0.45) / 0.225 for c in clips])
    return x, factors


def test_neuron_functions_find_the_brightness_neuron(brightness_clips):
    x, factors = brightness_clips
    acts = activations(MeanAndPatternModel(), x)
    labels = ["dim"] * 6 + ["lit"] * 6
    fn = neuron_functions(acts, factors, labels, classes=["dim", "lit"], layer_name="emb")
    assert fn.loc[0, "corr_brightness"] == 1.0
    ref = spearmanr(acts[:, 0].numpy(), factors["brightness"]).statistic
    assert ref == pytest.approx(1.0)
    assert fn.loc[0, "top_factor"] == "brightness" and "brightness+" in fn.loc[0, "function"]
    assert fn.loc[0, "class_label"] == "lit" and fn.loc[0, "function"].startswith("evidence:lit")
    assert fn.loc[0, "class_selectivity"] > 1.0
    # contrast, motion and blur are constant (up to float noise): no correlation, no function
    assert (fn.loc[0, ["corr_contrast", "corr_motion", "corr_blur"]] == 0).all()
    assert fn.loc[1, "function"] == "unspecific" and (fn.filter(like="corr_").loc[1] == 0).all()
    assert "scoring_id" not in "".join(fn.columns)
    long = neuron_functions_long(fn)
    assert list(long.columns) == ["layer", "neuron", "class_label", "class_selectivity", "function",
                                  "factor", "corr"]
    assert len(long) == 2 * fn.filter(like="corr_").shape[1]
    assert long.loc[0, ["factor", "corr"]].tolist() == ["brightness", 1.0]


def test_tag_clips_tags_dark_and_bright(brightness_clips):
    x, factors = brightness_clips
    acts = activations(MeanAndPatternModel(), x)
    fn = neuron_functions(acts, factors, ["dim"] * 6 + ["lit"] * 6)
    tags = tag_clips(acts, fn, factors=factors)
    assert list(tags.columns) == ["scoring_id", "tag", "score", "source"]
    by_tag = tags.groupby("tag")["scoring_id"].apply(list).to_dict()
    assert by_tag["dark"] == ["id00", "id01", "id02"]
    assert by_tag["bright"] == ["id09", "id10", "id11"]
    assert by_tag["evidence:lit"] == ["id09", "id10", "id11"]
    assert set(by_tag) == {"dark", "bright", "evidence:lit"}  # constant factors tag nothing
    dark0 = tags[(tags.scoring_id == "id00") & (tags.tag == "dark")].iloc[0]
    assert dark0.score == 1.0 and dark0.source == "factor:brightness;neuron:0"
    # neuron-only tags (no factors), ids by position; deterministic
    plain = tag_clips(acts, fn)
    assert plain.columns[0] == "clip_index" and plain.equals(tag_clips(acts, fn))
    assert plain[plain.tag == "dark"]["clip_index"].tolist() == [0, 1, 2]


def test_tag_clips_negative_correlation_flips_the_ends():
    acts = np.array([[4.0], [3.0], [2.0], [1.0], [0.0]])
    fn = neuron_functions(acts, pd.DataFrame({"object_scale": [0.1, 0.2, 0.3, 0.4, 0.5]}))
    assert fn.loc[0, "top_corr"] == -1.0 and fn.loc[0, "function"] == "object_scale- (1.00)"
    tags = tag_clips(acts, fn, ids=list("abcde"))
    assert tags.set_index("scoring_id")["tag"].to_dict() == {"a": "small-object", "e": "large-object"}


def test_neuron_functions_validate():
    with pytest.raises(UnknownLabel, match="square"):
        neuron_functions(np.eye(3), None, ["circle", "square", None], classes=["circle"])
    with pytest.raises(ConfigError, match="one row per clip"):
        neuron_functions(np.eye(3), pd.DataFrame({"b": [1.0, 2.0]}))
    with pytest.raises(ConfigError, match="neuron_functions"):
        tag_clips(np.eye(3), pd.DataFrame({"neuron": [0]}))


# --- correct vs wrong -----------------------------------------------------------------
def test_compare_groups_sign_and_order():
    df = pd.DataFrame({
        "brightness": [0.6, 0.7, 0.8, 0.5, 0.1, 0.2, 0.15, 0.25],  # wrong clips are much darker
        "blur": [0.2, 0.3, 0.2, 0.3, 0.3, 0.4, 0.3, 0.4],  # wrong clips slightly blurrier
        "motion": [0.1, 0.2, 0.1, 0.2, 0.2, 0.1, 0.2, 0.1],  # no difference
        "label": list("abcdabcd"),  # ignored: not numeric
    })
    correct = np.array([True] * 4 + [False] * 4)
    out = compare_groups(df, correct)
    assert out.feature.tolist() == ["brightness", "blur", "motion"]
    b = out.iloc[0]
    assert b.cohens_d < -3 and b.mean_diff == pytest.approx(0.175 - 0.65) and b.p_value < 0.05
    assert out.iloc[1].cohens_d > 0 and abs(out.iloc[2].cohens_d) < 1e-9
    assert (out.n_correct == 4).all() and (out.n_wrong == 4).all()
    arr = compare_groups(torch.tensor(df[["motion", "brightness"]].to_numpy().copy()), correct)
    assert arr.feature.tolist() == [1, 0]
    with pytest.raises(ConfigError, match="user label"):
        compare_groups(df, [True, None] * 4)
