"""The retraining recipe: schedule, best-epoch selection, early stopping, determinism; generic augmentation."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

import dlabel_lab as dl
from dlabel_lab.train.augment import chain_augments, generic_augment
from dlabel_lab.train.training import _lr_factor, train_model
from dlabel_lab.train.transforms import TransformationParams

SPEC = dl.ClipSpec(frames=4, size=16)


def _data(seed: int, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, 4, 16, 16, generator=g) * 0.3 + (y.float() - 0.5).view(-1, 1, 1, 1, 1)
    return TensorDataset(x, y)


def _model():
    torch.manual_seed(0)
    return dl.ClipClassifier(classes=["a", "b"], spec=SPEC, embed_dim=8, lr=3e-3)


def test_cosine_schedule_warms_up_and_anneals():
    assert _lr_factor(0, 10, "cosine") == pytest.approx(1 / 3)
    assert _lr_factor(1, 10, "cosine") == pytest.approx(1.0)
    assert _lr_factor(9, 10, "cosine") == pytest.approx(0.05)
    assert _lr_factor(5, 10, "constant") == 1.0 and _lr_factor(1, 2, "cosine") == 1.0


def test_same_data_and_seed_give_the_same_model(tmp_path):
    states, selections = [], []
    for _ in range(2):
        sel: dict = {}
        model, history, _ = train_model(_model(), _data(0), val=_data(1, 8), epochs=3, batch_size=4, seed=5,
                                        root_dir=tmp_path, progress=False, selection=sel)
        states.append(model.state_dict())
        selections.append(sel)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert selections[0] == selections[1]
    assert set(selections[0]) >= {"best_epoch", "val_acc", "val_loss", "epochs_run"}
    assert 0 <= selections[0]["best_epoch"] < 3 and selections[0]["epochs_run"] == 3
    assert "val_acc" in history.columns  # selection scores are logged per epoch


def test_a_model_in_eval_mode_still_trains_in_training_mode(tmp_path):
    import pytorch_lightning as pl

    class Modes(pl.Callback):
        def __init__(self):
            self.seen = set()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.seen.add((pl_module.training, all(m.training for m in pl_module.modules())))

    modes = Modes()
    model = _model().eval()  # e.g. a model an earlier train_model call returned, fine-tuned again
    model, _, _ = train_model(model, _data(0), epochs=1, batch_size=4, seed=0, root_dir=tmp_path, progress=False,
                              callbacks=[modes])
    assert modes.seen == {(True, True)} and not model.training


def test_the_selected_epoch_is_returned_and_patience_stops(tmp_path):
    sel: dict = {}
    model, _, _ = train_model(_model(), _data(0), val=_data(1, 8), epochs=8, batch_size=4, seed=0,
                              root_dir=tmp_path, progress=False, patience=1, selection=sel)
    assert 4 <= sel["epochs_run"] <= 8 and sel["best_epoch"] >= 3 and sel["epochs_run"] - 1 - sel["best_epoch"] <= 1
    x, y = _data(1, 8).tensors
    with torch.no_grad():
        acc = float((model(x).argmax(-1) == y).float().mean())
    assert acc == pytest.approx(sel["val_acc"])  # the returned weights are the selected (precise-BN) ones
    with pytest.raises(dl.ConfigError):
        train_model(_model(), _data(0), epochs=1, patience=0, progress=False, root_dir=tmp_path)
    with pytest.raises(dl.ConfigError):
        train_model(_model(), _data(0), epochs=1, schedule="step", progress=False, root_dir=tmp_path)


def test_generic_augmentation_is_seeded_and_keeps_shape():
    x = torch.randn(3, 4, 16, 16)
    for variant in ("affine", "crop"):
        a, b = generic_augment(size=(16, 16), variant=variant, seed=1), generic_augment(size=(16, 16),
                                                                                      variant=variant, seed=1)
        out = a(x)
        assert out.shape == x.shape and torch.equal(out, b(x)) and not torch.equal(out, x)
    with pytest.raises(dl.ConfigError):
        generic_augment(size=(16, 16), variant="mixup")


def test_chained_augmentations_apply_in_order():
    assert chain_augments(None) is None
    add = chain_augments(lambda t: t + 1, None, lambda t: t * 2)
    assert torch.equal(add(torch.zeros(1)), torch.full((1,), 2.0))


def test_operational_part_keeps_invariances_and_says_why():
    params = TransformationParams(brightness=(0.4, 1.0), contrast=(0.6, 1.5), noise=(0.0, 0.1),
                                  hue=(-0.1, 0.1), translate=(0.1, 0.1))
    kept, why = params.for_operational()
    assert (kept.brightness, kept.noise) == (None, None)
    assert kept.contrast == (0.6, 1.5) and kept.hue == (-0.1, 0.1) and kept.translate == (0.1, 0.1)
    assert sorted(why) == ["brightness", "noise"]


def test_colour_parameters_validate_and_round_trip():
    params = TransformationParams(saturation=(0.5, 1.5), hue=(-0.2, 0.0), p=1.0)
    assert TransformationParams.from_json(params.to_json()) == params
    assert params.build_augment(seed=0)(torch.zeros(3, 2, 8, 8)).shape == (3, 2, 8, 8)
    with pytest.raises(dl.ConfigError):
        TransformationParams(hue=(-0.7, 0.0))
    with pytest.raises(dl.ConfigError):
        TransformationParams(saturation=(1.5, 0.5))
    assert TransformationParams.from_dict({"schema": 1, "brightness": [0.5, 1.0]}).brightness == (0.5, 1.0)
