"""Re-timing training clips: speed indices, the dataset's speed range, and the parameter's rules."""

from __future__ import annotations

import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.errors import ConfigError
from dlabel_lab.media.video import ClipSpec
from dlabel_lab.train.datasets import ClipDataset
from dlabel_lab.train.transforms import TransformationParams, speed_indices

CLASSES = ["circle", "square", "triangle"]


def test_speed_one_gives_the_models_own_frames_and_faster_spreads_them():
    assert speed_indices(16, 4, 1.0) == [0, 5, 10, 15]
    assert speed_indices(16, 4, 1.0, start=0.9) == [0, 5, 10, 15]  # no room to move: the span is the clip
    assert speed_indices(16, 4, 2.5) == [0, 13, 5, 8]  # 12.5 frames apart, reflected at the end
    assert speed_indices(16, 4, 0.5) == [0, 3, 5, 8]  # slower: the first half of the clip
    assert speed_indices(16, 4, 0.5, start=1.0) == [8, 10, 13, 15]
    assert speed_indices(1, 3, 2.0) == [0, 0, 0]


@pytest.mark.parametrize("args", [(0, 4, 1.0), (16, 0, 1.0), (16, 4, 0.0), (16, 4, float("nan"))])
def test_speed_indices_refuse_bad_arguments(args):
    with pytest.raises(ConfigError):
        speed_indices(*args)


def test_speed_is_a_validated_serialised_training_only_parameter():
    p = TransformationParams(speed=[1.0, 3.0])
    assert p.speed == (1.0, 3.0) and not p.is_empty()
    assert TransformationParams.from_json(p.to_json()) == p
    assert p.describe()["parameter"].tolist() == ["speed"]
    kept, why = p.for_operational()  # one-sided: maps lab clips into the operational regime
    assert kept.speed is None and "speed" in why
    assert TransformationParams(speed=(0.8, 1.5)).for_operational()[0].speed == (0.8, 1.5)
    for bad in [(0.0, 2.0), (2.0, 1.0), (1.0, 9.0)]:
        with pytest.raises(ConfigError, match="speed"):
            TransformationParams(speed=bad)
    assert TransformationParams.from_dict({"schema": 2, "blur": [0.5, 1.0]}).speed is None  # older files read


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return dl.read_manifest(dl.make_shape_clips(tmp_path_factory.mktemp("speed"), 3, seed=4, frames=16, size=32))


def test_dataset_retimes_from_the_dense_clip_and_keeps_validation_plain(rows):
    spec = ClipSpec(frames=4, size=16)
    same = ClipDataset(rows, classes=CLASSES, spec=spec, speed=(1.0, 1.0))
    assert torch.equal(same[0][0], same.tensor(0))  # speed 1: exactly the un-timed frames
    fast = ClipDataset(rows, classes=CLASSES, spec=spec, speed=(2.2, 2.4))
    dense = fast.dense_tensor(0)
    assert dense.shape == (3, 16, 16, 16)
    torch.manual_seed(0)
    x, y = fast[0]
    assert x.shape == (3, 4, 16, 16) and int(y) == CLASSES.index(rows[0]["label"])
    assert not torch.equal(x, fast.tensor(0))
    assert any(torch.equal(x[:, 1], dense[:, j]) for j in range(16))  # every frame is one of the clip's own
    assert torch.equal(fast.without_augment()[0][0], fast.tensor(0))  # validation and precise BN: no re-timing
    never = ClipDataset(rows, classes=CLASSES, spec=spec, speed=(2.0, 3.0), speed_p=0.0)
    assert torch.equal(never[0][0], never.tensor(0))


def test_dataset_refuses_speed_with_strided_sampling(rows):
    with pytest.raises(ConfigError, match="uniform"):
        ClipDataset(rows, classes=CLASSES, spec=ClipSpec(frames=4, size=16, sampling="stride", stride=2),
                    speed=(1.0, 2.0))
    with pytest.raises(ConfigError, match="speed"):
        ClipDataset(rows, classes=CLASSES, spec=ClipSpec(frames=4, size=16), speed=(0.0, 2.0))
