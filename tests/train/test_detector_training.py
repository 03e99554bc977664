"""Training detectors from annotation files; fine-tuning a registered version into a child version."""

from __future__ import annotations

import json

import pytest
import torch

import dlabel_lab as dl


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("detdata")
    a = dl.make_object_clips(root / "a", 2, frames=6, width=96, height=72, seed=5).parent / "annotations.json"
    b = dl.make_object_clips(root / "b", 1, frames=6, width=96, height=72, seed=6).parent / "annotations.json"
    return a, b


def _same(m1, m2) -> bool:
    return all(torch.equal(x, y) for x, y in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True))


def test_same_data_and_seed_same_detector(data):
    a, _ = data
    d1 = dl.train_detector(a, epochs=2, seed=1)
    d2 = dl.train_detector(a, epochs=2, seed=1)
    d3 = dl.train_detector(a, epochs=2, seed=2)
    assert d1.frame_size == (72, 96) and d1.classes == ["circle", "square", "triangle"] and not d1.training
    assert _same(d1, d2) and not _same(d1, d3)


def test_fine_tuning_copies_and_pools_files(data):
    a, b = data
    base = dl.train_detector(a, epochs=1, seed=0)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    tuned = dl.train_detector([a, b], detector=base, epochs=1, seed=0)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # the given detector is untouched
    assert not _same(base, tuned)


def test_retrain_detector_registers_a_child_with_its_annotations(data, tmp_path):
    a, b = data
    with dl.PayloadStore(tmp_path / "store") as store:
        v1, _ = dl.register_detector(store, dl.train_detector(a, epochs=1), name="objects")
        v2 = dl.retrain_detector(store, v1, [a, b], epochs=1, seed=3)
        info = store.get_model(v2)
        assert v2 == "objects-v2" and info["parent"] == v1
        params = json.loads(info["params"]) if isinstance(info["params"], str) else info["params"]
        assert [f["path"] for f in params["annotations"]] == [str(a), str(b)]
        assert params["annotations"][1]["sha256"] == dl.file_sha256(b) and params["fine_tuned_from"] == v1
        assert dl.load_detector(store, v2).classes == ["circle", "square", "triangle"]


def test_training_errors(data, tmp_path):
    a, _ = data
    other = dl.make_object_clips(tmp_path / "o", 1, frames=4, width=96, height=72, classes=("car", "bike"))
    with pytest.raises(dl.ConfigError, match="classes"):
        dl.train_detector([a, other.parent / "annotations.json"], epochs=1)
    with pytest.raises(dl.ConfigError, match="at least one"):
        dl.train_detector([], epochs=1)
    with pytest.raises(dl.ConfigError, match="epochs"):
        dl.train_detector(a, epochs=0)
    with pytest.raises(dl.ConfigError, match="differ"):
        dl.train_detector(a, detector=dl.ObjectDetector(["car", "bike"]), epochs=1)


def test_crops_add_tile_sized_views_and_stay_deterministic(data):
    a, _ = data
    d1 = dl.train_detector(a, epochs=1, seed=4, crops=(36, 48))
    d2 = dl.train_detector(a, epochs=1, seed=4, crops=(36, 48))
    plain = dl.train_detector(a, epochs=1, seed=4)
    assert _same(d1, d2) and not _same(d1, plain)
    with pytest.raises(dl.ConfigError, match="crops"):
        dl.train_detector(a, epochs=1, crops=(4, 4))
    with pytest.raises(dl.ConfigError, match="larger than"):
        dl.train_detector(a, epochs=1, crops=(100, 100))


def test_random_crop_keeps_boxes_mostly_inside_and_clips_them():
    import numpy as np

    from dlabel_lab.objects.tiling import random_crop

    class At:  # puts the crop at x 10, y 5
        def __init__(self):
            self.values = iter([5, 10])

        def integers(self, lo, hi):
            return next(self.values)

    target = {"boxes": torch.tensor([[12.0, 6, 20, 14], [45.0, 5, 60, 15], [0.0, 0, 8, 8]]),
              "labels": torch.tensor([1, 2, 3]), "image_id": 7}  # fmt: skip
    crop, t = random_crop(torch.arange(3 * 30 * 60, dtype=torch.float32).reshape(3, 30, 60), target, (20, 40), At())
    assert tuple(crop.shape) == (3, 20, 40) and crop[0, 0, 0].item() == 5 * 60 + 10
    # box 2 is 1/3 inside (x 45..50 of 45..60): dropped; box 3 lies outside; image_id is kept
    assert t["boxes"].tolist() == [[2.0, 1.0, 10.0, 9.0]] and t["labels"].tolist() == [1] and t["image_id"] == 7
    with pytest.raises(dl.ConfigError, match="fit"):
        random_crop(np.zeros((10, 10, 3)), target, (20, 20), At())
