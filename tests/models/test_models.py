"""Tests for dlabel_lab.models, dlabel_lab.models.backbones and dlabel_lab.models.checkpoint."""

from __future__ import annotations

import os
import pickle
import urllib.request

import pytest
import pytorch_lightning as pl
import safetensors.torch
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from dlabel_lab.errors import CheckpointError, ConfigError, UnknownLabel, WeightsUnavailable
from dlabel_lab.media.video import ClipSpec
from dlabel_lab.models.backbones import BACKBONES, build_backbone
from dlabel_lab.models.checkpoint import file_sha256, read_checkpoint_metadata, write_checkpoint
from dlabel_lab.models.classifier import ClipClassifier

# torchvision models need more than a few pixels/frames; keep every forward cheap.
SHAPES = {
    "tiny3d": (1, 3, 4, 32, 32),
    "frame2d": (1, 3, 4, 32, 32),
    "r3d_18": (1, 3, 4, 64, 64),
    "mc3_18": (1, 3, 4, 64, 64),
    "r2plus1d_18": (1, 3, 4, 64, 64),
    "s3d": (1, 3, 8, 32, 32),
    "swin3d_t": (1, 3, 4, 64, 64),
}
DIMS = {"tiny3d": 64, "frame2d": 64, "s3d": 1024, "swin3d_t": 768}


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No test may reach the network or a real hub cache."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def _clips(n_per_class: int = 8, frames: int = 4, size: int = 32, seed: int = 0):
    """Dark (class 0) and bright (class 1) noisy clips."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(2 * n_per_class, 3, frames, size, size, generator=g)
    y = torch.arange(2).repeat_interleave(n_per_class)
    x = x + torch.where(y == 1, 1.0, -1.0).view(-1, 1, 1, 1, 1)
    return x, y


def _trainer(tmp_path, **kw) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kw,
    )


# --- backbones ------------------------------------------------------------------------
@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_runs_one_clip(name):
    torch.manual_seed(0)
    model = ClipClassifier(3, backbone=name).eval()
    seen = {}
    handle = model.last_conv.register_forward_hook(lambda m, i, o: seen.setdefault("map", o))
    x = torch.randn(SHAPES[name])
    with torch.no_grad():
        logits, emb = model.logits_and_embedding(x)
    handle.remove()
    assert logits.shape == (1, 3)
    assert emb.shape == (1, DIMS.get(name, 512))
    assert seen["map"].dim() == 5 and seen["map"].shape[:2] == (1, DIMS.get(name, 512))
    torch.testing.assert_close(model.embed(x), emb)
    proba = model.predict_proba(x)
    torch.testing.assert_close(proba.sum(-1), torch.ones(1))
    assert not model.training


def test_predict_proba_restores_training_mode():
    model = ClipClassifier(2)
    assert model.training
    model.predict_proba(torch.zeros(2, 3, 4, 32, 32))
    assert model.training


def test_build_backbone_unknown_name_lists_choices():
    with pytest.raises(ConfigError, match="tiny3d.*r3d_18"):
        build_backbone("resnet9000")


def test_build_backbone_feature_dim_follows_embed_dim():
    net, dim = build_backbone("tiny3d", embed_dim=24)
    assert dim == 24 and net(torch.zeros(2, 3, 4, 32, 32)).shape == (2, 24)


def test_tiny3d_accepts_a_single_frame():
    net, _ = build_backbone("tiny3d")
    assert net(torch.zeros(1, 3, 1, 32, 32)).shape == (1, 64)


def test_forward_does_not_modify_input():
    model = ClipClassifier(2)
    x = torch.randn(2, 3, 4, 32, 32)
    before = x.clone()
    model(x).sum().backward()
    assert torch.equal(x, before)


# --- construction ------------------------------------------------------------------------
def test_classes_and_spec_defaults():
    model = ClipClassifier(3)
    assert model.classes == ["class_0", "class_1", "class_2"]
    assert model.backbone_name == "tiny3d"
    assert model.spec == ClipSpec(frames=8, size=64)


def test_spec_is_honoured_as_object_or_dict():
    spec = ClipSpec(frames=4, size=32, mean=(0.5, 0.5, 0.5))
    assert ClipClassifier(classes=["a", "b"], spec=spec).spec == spec
    assert ClipClassifier(classes=["a", "b"], spec=spec.to_dict()).spec == spec


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, ConfigError),
        ({"num_classes": 1}, ConfigError),
        ({"num_classes": 3, "classes": ["a", "b"]}, ConfigError),
        ({"classes": ["a", "a"]}, ConfigError),
        ({"classes": "ab"}, ConfigError),
        ({"num_classes": 2, "lr": 0}, ConfigError),
        ({"num_classes": 2, "spec": 112}, ConfigError),
        ({"num_classes": 2, "augment": 3}, ConfigError),
        ({"num_classes": 2, "class_weights": [1.0]}, ConfigError),
        ({"classes": ["a", "b"], "class_weights": {"c": 2.0}}, UnknownLabel),
        ({"num_classes": 2, "weights": "DEFAULT"}, ConfigError),  # tiny3d has no published weights
        ({"num_classes": 2, "backbone": "r3d_18", "weights": "IMAGENET_V9"}, ConfigError),
    ],
)
def test_bad_arguments_raise_typed_errors(kwargs, error):
    with pytest.raises(error):
        ClipClassifier(**kwargs)


# --- loss -------------------------------------------------------------------------------------
def test_loss_matches_cross_entropy_with_class_and_sample_weights():
    torch.manual_seed(0)
    logits, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    plain = ClipClassifier(3)
    torch.testing.assert_close(plain._loss(logits, y, None), F.cross_entropy(logits, y))
    weighted = ClipClassifier(classes=["a", "b", "c"], class_weights={"b": 3.0})
    assert weighted.hparams.class_weights == [1.0, 3.0, 1.0]
    cw = torch.tensor([1.0, 3.0, 1.0])
    torch.testing.assert_close(weighted._loss(logits, y, None), F.cross_entropy(logits, y, weight=cw))
    w = torch.tensor([1.0, 0.0, 2.0, 1.0, 0.5])
    per = F.cross_entropy(logits, y, reduction="none")
    expected = (per * cw[y] * w).sum() / (cw[y] * w).sum()
    torch.testing.assert_close(weighted._loss(logits, y, w), expected)


# --- training -----------------------------------------------------------------------------------
def test_tiny3d_learns_bright_vs_dark(tmp_path):
    pl.seed_everything(0, verbose=False)
    x, y = _clips(n_per_class=8)
    xv, yv = _clips(n_per_class=4, seed=1)
    model = ClipClassifier(classes=["dark", "bright"], spec=ClipSpec(frames=4, size=32), lr=1e-2)
    trainer = _trainer(tmp_path, max_epochs=5)
    train = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    val = DataLoader(TensorDataset(xv, yv), batch_size=8)
    trainer.fit(model, train, val)
    assert trainer.current_epoch == 5
    m = trainer.callback_metrics
    assert {"train_loss", "train_acc", "val_loss", "val_acc"} <= set(m)
    assert m["train_acc"].item() == 1.0 and m["val_acc"].item() == 1.0
    assert m["val_loss"].item() < 0.3
    proba = torch.cat(trainer.predict(model, DataLoader(TensorDataset(xv), batch_size=8)))
    assert proba.shape == (8, 2)
    assert torch.equal(proba.argmax(-1), yv)


def test_fast_dev_run_with_sample_weights_and_augment(tmp_path):
    pl.seed_everything(0, verbose=False)
    calls = []

    def augment(clip):
        calls.append(tuple(clip.shape))
        return clip.flip(-1)

    x, y = _clips(n_per_class=3)
    w = torch.tensor([1.0, 0.5, 2.0, 1.0, 1.0, 0.0])
    model = ClipClassifier(2, spec=ClipSpec(frames=4, size=32), augment=augment)
    loader = DataLoader(TensorDataset(x, y, w), batch_size=6)
    trainer = _trainer(tmp_path, fast_dev_run=True)
    trainer.fit(model, loader, loader)
    assert calls == [(3, 4, 32, 32)] * 6  # one training batch; validation does not augment
    assert "val_acc" in trainer.callback_metrics


def test_bad_batch_raises_config_error():
    model = ClipClassifier(2)
    with pytest.raises(ConfigError, match="batches"):
        model.training_step(torch.zeros(2, 3, 4, 32, 32), 0)


# --- checkpoints ---------------------------------------------------------------------------------
def _trained_like_model() -> ClipClassifier:
    torch.manual_seed(0)
    model = ClipClassifier(
        classes=["circle", "square", "triangle"],
        spec=ClipSpec(frames=4, size=32),
        embed_dim=16,
        class_weights=[1.0, 2.0, 1.0],
        lr=3e-3,
    )
    model.train()
    model(torch.randn(4, 3, 4, 32, 32))  # move the BatchNorm running statistics
    return model.eval()


def test_checkpoint_round_trip_is_exact(tmp_path):
    model = _trained_like_model()
    path = tmp_path / "m.safetensors"
    sha = model.save_checkpoint(path)
    assert sha == file_sha256(path) and len(sha) == 64
    loaded = ClipClassifier.load_checkpoint(path)
    assert not loaded.training
    assert loaded.classes == ["circle", "square", "triangle"]
    assert loaded.spec == ClipSpec(frames=4, size=32)
    assert loaded.hparams.lr == 3e-3 and loaded.hparams.class_weights == [1.0, 2.0, 1.0]
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
        assert torch.equal(model.embed(x), loaded.embed(x))
    meta = read_checkpoint_metadata(path)
    assert meta["format_version"] == 1 and meta["backbone"] == "tiny3d" and meta["hparams"]["embed_dim"] == 16
    assert model.save_checkpoint(tmp_path / "again.safetensors") == sha  # deterministic bytes


def test_checkpoint_refuses_pickles_and_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"state_dict": Evil()}))
    with pytest.raises(CheckpointError, match="safetensors or weights-only"):
        ClipClassifier.load_checkpoint(evil)
    assert not marker.exists()
    full = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), full)  # a whole pickled module, not a state dict
    with pytest.raises(CheckpointError, match="safetensors or weights-only"):
        ClipClassifier.load_checkpoint(full)


@pytest.mark.parametrize("path", ["https://example.com/m.safetensors", "s3://bucket/m.safetensors"])
def test_checkpoint_refuses_urls(path):
    with pytest.raises(CheckpointError, match="URL"):
        ClipClassifier.load_checkpoint(path)


def test_checkpoint_refuses_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        ClipClassifier.load_checkpoint(tmp_path / "nope.safetensors")


def test_checkpoint_refuses_wrong_keys_and_shapes(tmp_path):
    model = _trained_like_model()
    meta = model.checkpoint_metadata()
    state = model.state_dict()
    dropped = {k: v for k, v in state.items() if k != "head.bias"}
    write_checkpoint(tmp_path / "missing.safetensors", dropped, meta)
    with pytest.raises(CheckpointError, match=r"missing \['head.bias'\]"):
        ClipClassifier.load_checkpoint(tmp_path / "missing.safetensors")
    two_classes = dict(meta, classes=["a", "b"], hparams=dict(meta["hparams"], class_weights=None))
    write_checkpoint(tmp_path / "shape.safetensors", state, two_classes)
    with pytest.raises(CheckpointError, match="wrong shape"):
        ClipClassifier.load_checkpoint(tmp_path / "shape.safetensors")
    safetensors.torch.save_file({"w": torch.zeros(2)}, tmp_path / "bare.safetensors")
    with pytest.raises(CheckpointError, match="without dlabel_lab metadata"):
        ClipClassifier.load_checkpoint(tmp_path / "bare.safetensors")


def test_weights_only_torch_checkpoint_with_metadata_loads(tmp_path):
    model = _trained_like_model()
    path = tmp_path / "m.pt"
    torch.save({"state_dict": model.state_dict(), "metadata": model.checkpoint_metadata()}, path)
    loaded = ClipClassifier.load_checkpoint(path)
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="metadata"):
        ClipClassifier.load_checkpoint(tmp_path / "plain.pt")


# --- pretrained weights ------------------------------------------------------------------------------
def test_default_weights_offline_raise_before_any_download(tmp_path):
    assert torch.hub.get_dir().startswith(str(tmp_path))
    with pytest.raises(WeightsUnavailable, match="no network") as info:
        ClipClassifier(2, backbone="r3d_18", weights="DEFAULT")
    assert "r3d_18-b3b3357e.pth" in str(info.value) and "weights=" in str(info.value)
    with pytest.raises(WeightsUnavailable):
        ClipClassifier(2, backbone="mc3_18", weights="KINETICS400_V1")
    with pytest.raises(WeightsUnavailable, match="URL"):
        ClipClassifier(2, backbone="r3d_18", weights="https://download.pytorch.org/models/r3d_18-b3b3357e.pth")


def test_default_weights_load_from_hub_cache_and_set_normalisation(tmp_path):
    torch.manual_seed(0)
    import torchvision.models.video as tvv

    reference = tvv.s3d()  # stands in for the published file, same names incl. the classifier
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / "s3d-d76dad2f.pth")
    model = ClipClassifier(2, backbone="s3d", weights="DEFAULT", spec=ClipSpec(frames=8, size=32))
    assert torch.equal(model.backbone.net.features[0][0][0].weight, reference.features[0][0][0].weight)
    assert model.spec.mean == (0.43216, 0.394666, 0.37645) and model.spec.out_size == (32, 32)
    assert model.weights_source == "torchvision:S3D_Weights.KINETICS400_V1"
    assert ClipClassifier(2, backbone="s3d", weights="KINETICS400_V1").spec.out_size == (224, 224)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file_loads_into_backbone(tmp_path, suffix):
    torch.manual_seed(1)
    net, _ = build_backbone("tiny3d", embed_dim=16)
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".pth":
        torch.save(net.state_dict(), path)
    else:
        safetensors.torch.save_file(net.state_dict(), path)
    model = ClipClassifier(2, embed_dim=16, weights=str(path))
    for k, v in net.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v)
    with pytest.raises(CheckpointError, match="do not fit"):
        ClipClassifier(2, embed_dim=8, weights=path)
    with pytest.raises(CheckpointError, match="does not exist"):
        ClipClassifier(2, weights=tmp_path / "absent.pth")


# --- captum ---------------------------------------------------------------------------------------------
def test_captum_hooks_on_last_conv_and_embedding_layer():
    from captum.attr import LayerGradCam, NeuronGradient

    torch.manual_seed(0)
    model = ClipClassifier(2, spec=ClipSpec(frames=4, size=32)).eval()
    x = torch.randn(1, 3, 4, 32, 32, requires_grad=True)
    cam = LayerGradCam(model, model.last_conv).attribute(x, target=1)
    assert cam.shape == (1, 1, 2, 4, 4)
    grad = NeuronGradient(model, model.embedding_layer).attribute(x, neuron_selector=3)
    assert grad.shape == x.shape and grad.abs().sum() > 0
