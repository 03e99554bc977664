import json
import pickle

import pytest
import torch
from torchvision.transforms import v2

from dlabel_lab.errors import ConfigError, UnknownLabel
from dlabel_lab.media.video import ClipSpec
from dlabel_lab.train.transforms import Evidence, TransformationParams, class_weight_tensor

MEAN, STD = 0.45, 0.225


def normalise(x01: torch.Tensor) -> torch.Tensor:
    return (x01 - MEAN) / STD


def unnormalise(x: torch.Tensor) -> torch.Tensor:
    return x * STD + MEAN


def random_clip(t=4, size=16, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return normalise(0.2 + 0.6 * torch.rand(3, t, size, size, generator=g))


def square_clip(t=3, size=32, half=8) -> torch.Tensor:
    x = torch.zeros(3, t, size, size)
    c = size // 2
    x[:, :, c - half : c + half, c - half : c + half] = 1.0
    return normalise(x)


def laplacian_var(x01: torch.Tensor) -> float:
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    grey = x01.mean(0).unsqueeze(1)  # (T, 1, H, W)
    return torch.nn.functional.conv2d(grey, k).var().item()


FULL = TransformationParams(
    brightness=(0.6, 1.4),
    contrast=(0.7, 1.3),
    scale=(0.5, 1.1),
    blur=(0.1, 1.5),
    noise=(0.0, 0.05),
    translate=(0.1, 0.2),
    crop=(0.1, 0.0, 0.8, 1.0),
    frame_window=(0.25, 1.0),
    frame_stride=2,
    class_weights={"circle": 2.5, "square": 0.5},
    p=0.7,
    seed=3,
    evidence={
        "brightness": Evidence(
            source="attribution",
            neurons=["embedding:3", "last_conv:12"],
            factor="brightness",
            effect_size=1.23456789,
            quantiles={"q05": 0.1, "q50": 0.3333333333333333, "q95": 0.9},
            supported=True,
            note="dark operational clips",
        ),
        "blur": Evidence(source="sensitivity", factor="blur", effect_size=0.01, supported=False),
    },
)


# --- serialisation ----------------------------------------------------------------
def test_json_round_trip_is_exact_including_evidence():
    text = FULL.to_json()
    back = TransformationParams.from_json(text)
    assert back == FULL
    assert back.evidence["brightness"].neurons == ("embedding:3", "last_conv:12")
    assert back.to_json() == text
    assert TransformationParams.from_dict(json.loads(json.dumps(FULL.to_dict()))) == FULL


def test_lists_are_normalised_to_tuples_and_dict_evidence_accepted():
    params = TransformationParams(brightness=[0.5, 1], evidence={"brightness": {"source": "manual"}})
    assert params.brightness == (0.5, 1.0)
    assert isinstance(params.evidence["brightness"], Evidence)


def test_from_dict_refuses_typos_and_newer_schema():
    with pytest.raises(ConfigError, match="brigthness"):
        TransformationParams.from_dict({"brigthness": [0.5, 1.0]})
    with pytest.raises(ConfigError, match="Upgrade"):
        TransformationParams.from_dict({"schema": 99})
    with pytest.raises(ConfigError, match="JSON"):
        TransformationParams.from_json("{not json")


def test_is_empty_and_describe():
    assert TransformationParams().is_empty()
    assert TransformationParams(p=0.1, seed=1).is_empty()
    assert not TransformationParams(frame_stride=2).is_empty()
    df = FULL.describe()
    assert df["parameter"].tolist() == [
        "brightness", "contrast", "scale", "blur", "noise", "translate",
        "crop", "frame_window", "frame_stride", "class_weights",
    ]  # fmt: skip
    row = df.set_index("parameter").loc["brightness"]
    assert row["source"] == "attribution" and row["supported"] and row["effect_size"] == pytest.approx(1.23456789)
    # evidence for an unset parameter is reported, with no value
    rejected = TransformationParams(evidence={"noise": Evidence(source="sensitivity", supported=False)}).describe()
    assert rejected["parameter"].tolist() == ["noise"] and rejected["value"].iloc[0] is None
    assert TransformationParams().describe().empty


# --- validation -------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"brightness": (1.5, 0.5)},
        {"contrast": (-0.1, 1.0)},
        {"scale": (0.0, 1.0)},
        {"blur": (-1.0, 1.0)},
        {"blur": (0.0, 1.0)},
        {"noise": (0.1, 0.05)},
        {"noise": (0.0, float("nan"))},
        {"translate": (1.5, 0.0)},
        {"crop": (0.5, 0.0, 0.6, 1.0)},
        {"crop": (0.0, 0.0, 1.0)},
        {"frame_window": (0.8, 0.2)},
        {"frame_stride": 0},
        {"frame_stride": 1.5},
        {"class_weights": {0: 2.0}},
        {"class_weights": {"a": -1.0}},
        {"p": 1.5},
        {"evidence": {"gamma": Evidence()}},
        {"brightness": "bright"},
    ],
)
def test_bad_values_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        TransformationParams(**kwargs)


def test_bad_evidence_raises_config_error():
    with pytest.raises(ConfigError, match="layer:index"):
        Evidence(neurons=["12"])
    with pytest.raises(ConfigError):
        Evidence(effect_size=float("inf"))


# --- spec ---------------------------------------------------------------------------
def test_apply_to_spec_sets_crop_window_and_stride():
    spec = ClipSpec(frames=8, size=32, indices=(0, 1, 2, 3, 4, 5, 6, 7))
    out = FULL.apply_to_spec(spec)
    assert out.crop == (0.1, 0.0, 0.8, 1.0)
    assert out.window == (0.25, 1.0)
    assert out.sampling == "stride" and out.stride == 2 and out.indices is None
    assert out.frames == 8 and out.size == 32
    windowed = TransformationParams(frame_window=(0.0, 0.5)).apply_to_spec(ClipSpec(sampling="window"))
    assert windowed.sampling == "uniform" and windowed.window == (0.0, 0.5)
    spec2 = ClipSpec()
    assert TransformationParams(brightness=(0.5, 1.0)).apply_to_spec(spec2) is spec2


# --- augmentation ---------------------------------------------------------------
def test_empty_params_give_identity():
    x = random_clip()
    for params in (TransformationParams(), TransformationParams(crop=(0, 0, 0.5, 0.5)),
                   TransformationParams(brightness=(0.5, 1.5), p=0.0)):  # fmt: skip
        aug = params.build_augment()
        assert isinstance(aug, v2.Compose)
        assert torch.equal(aug(x), x)


def test_brightness_halves_mean_with_the_same_factor_on_every_frame():
    x = random_clip(t=5)
    out = TransformationParams(brightness=(0.5, 0.5), p=1.0).build_augment(seed=0)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert unnormalise(out).mean().item() == pytest.approx(unnormalise(x).mean().item() / 2, rel=1e-4)
    aug = TransformationParams(brightness=(0.3, 0.9), p=1.0).build_augment(seed=1)
    for _ in range(3):
        ratio = unnormalise(aug(x)).mean(dim=(0, 2, 3)) / unnormalise(x).mean(dim=(0, 2, 3))
        assert torch.allclose(ratio, ratio[0].expand_as(ratio), atol=1e-5)
        assert 0.3 - 1e-4 <= ratio[0].item() <= 0.9 + 1e-4


def test_scale_zooms_out_the_same_on_every_frame():
    x = square_clip(t=3, size=32, half=8)
    aug = TransformationParams(scale=(0.5, 0.5), translate=(0.2, 0.2), p=1.0).build_augment(seed=0)
    out = unnormalise(aug(x))
    area_before = (unnormalise(x)[0] > 0.75).sum(dim=(1, 2)).float()
    area_after = (out[0] > 0.75).sum(dim=(1, 2)).float()
    assert torch.all((area_before / area_after - 4).abs() < 0.6)
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 0], out[:, 2])
    # exposed border takes the clip's own background (black here), not a grey frame
    assert out[:, :, 0, 0].abs().max() < 1e-5


def test_zoom_out_fills_with_the_clip_background():
    x = square_clip(t=2, size=32, half=8)
    x01 = unnormalise(x) * 0.5 + 0.2  # background 0.2, square 0.7
    x = normalise(x01)
    out = unnormalise(TransformationParams(scale=(0.5, 0.5), p=1.0).build_augment(seed=0)(x))
    assert (out[:, :, 0, 0] - 0.2).abs().max() < 1e-4


def test_blur_reduces_laplacian_variance():
    x = random_clip(t=2, size=32)
    out = TransformationParams(blur=(1.5, 2.0), p=1.0).build_augment(seed=0)(x)
    assert laplacian_var(unnormalise(out)) < 0.25 * laplacian_var(unnormalise(x))


def test_noise_changes_std():
    x = normalise(torch.full((3, 2, 32, 32), 0.5))
    out = unnormalise(TransformationParams(noise=(0.05, 0.05), p=1.0).build_augment(seed=0)(x))
    assert out.std().item() == pytest.approx(0.05, rel=0.1)


def test_seeded_pipeline_is_reproducible_and_leaves_global_rng_alone():
    x = random_clip()
    state = torch.get_rng_state()
    a, b = FULL.build_augment(seed=7), FULL.build_augment(seed=7)
    outs_a = [a(x) for _ in range(3)]
    outs_b = [b(x) for _ in range(3)]
    assert all(torch.equal(u, v) for u, v in zip(outs_a, outs_b, strict=True))
    assert not torch.equal(outs_a[0], outs_a[1])  # parameters change from clip to clip
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(FULL.build_augment()(x), FULL.build_augment()(x))  # params.seed is the default


def test_pipeline_keeps_dtype_pickles_and_refuses_batches():
    aug = FULL.build_augment(seed=0)
    x = random_clip()
    assert torch.equal(pickle.loads(pickle.dumps(aug))(x), FULL.build_augment(seed=0)(x))
    assert aug(x.double()).dtype == torch.float64
    with pytest.raises(ConfigError, match="one at a time"):
        aug(x.unsqueeze(0))


# --- class weights --------------------------------------------------------------
def test_class_weight_tensor_orders_as_classes():
    w = class_weight_tensor(FULL, ["square", "triangle", "circle"])
    assert torch.equal(w, torch.tensor([0.5, 1.0, 2.5]))
    with pytest.raises(UnknownLabel, match="circle"):
        class_weight_tensor(FULL, ["square"])


def test_reject_resets_values_and_keeps_noted_evidence():
    ev = Evidence(source="sensitivity", factor="blur", note="fragile")
    p = TransformationParams(blur=(0.5, 1.0), noise=(0.0, 0.1), evidence={"blur": ev})
    r = p.reject(["blur", "contrast"])
    assert r.blur is None and r.noise == (0.0, 0.1) and r.contrast is None
    assert r.evidence["blur"].note == "fragile; rejected by a person"
    assert "blur" in set(r.describe().parameter)
    assert p.reject([]) == p


def test_supported_only_rejects_unsupported_parameters():
    p = TransformationParams(blur=(0.5, 1.0), noise=(0.0, 0.1), brightness=(0.5, 1.0),
                             evidence={"blur": Evidence(supported=False), "noise": Evidence(supported=True)})
    kept = p.supported_only()
    assert kept.blur is None and kept.noise == (0.0, 0.1) and kept.brightness == (0.5, 1.0)
    assert kept.evidence["blur"].note == "not supported"
