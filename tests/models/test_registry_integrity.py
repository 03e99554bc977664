"""The model registry against the store: checkpoints checked against their sha256, stores that move or are copied,
temp checkpoints a killed writer leaves.

Real stores under ``tmp_path`` and real (tiny, seeded) models.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.models import registry
from dlabel_lab.serving.endpoints import deploy_version

CLASSES = ["circle", "square", "triangle"]
SPEC = dl.ClipSpec(frames=4, size=32)


def _model(seed: int) -> dl.ClipClassifier:
    torch.manual_seed(seed)
    return dl.ClipClassifier(classes=CLASSES, backbone="tiny3d", spec=SPEC, embed_dim=16)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def registered(tmp_path):
    """A closed store with two versions of different weights: (folder, [(version, path, model)])."""
    root = tmp_path / "store"
    out = []
    with dl.PayloadStore(root) as store:
        for seed in (0, 1):
            model = _model(seed)
            version, path = dl.register_version(store, model, name="shapes")
            out.append((version, Path(path), model))
    return root, out


def test_load_and_deploy_refuse_an_overwritten_checkpoint(registered):
    root, [(v1, p1, m1), (v2, p2, _)] = registered
    want, bad = hashlib.sha256(p1.read_bytes()).hexdigest(), hashlib.sha256(p2.read_bytes()).hexdigest()
    with dl.PayloadStore(root) as store:
        assert _same_weights(dl.load_version(store, v1), m1)
        shutil.copyfile(p2, p1)  # another model's weights under v1's registered file
        for load in (dl.load_version, deploy_version):
            with pytest.raises(dl.CheckpointError) as caught:
                load(store, v1)
            text = str(caught.value)
            assert v1 in text and want in text and bad in text and str(p1) in text
            assert "re-register" in text and "Restore the file" in text
        assert dl.load_version(store, v2).model_version_ == v2  # the other version is untouched
        p1.unlink()
        with pytest.raises(dl.CheckpointError, match=f"checkpoint {p1} of model version {v1} is missing"):
            dl.load_version(store, v1)


def test_a_moved_store_deploys_from_its_new_folder(registered, tmp_path, shape_rows):
    root, [(v1, p1, m1), _] = registered
    new = tmp_path / "moved" / "store"
    new.parent.mkdir()
    shutil.move(root, new)
    with dl.PayloadStore(new) as store:
        assert store.get_model(v1)["checkpoint_path"] == str(new.resolve() / "models" / p1.name)
        assert _same_weights(dl.load_version(store, v1), m1)
        result = deploy_version(store, v1).score(shape_rows[0]["path"], label=shape_rows[0]["label"])
        assert result.ok and result.model_version == v1
        assert store.verify().ok


def test_a_copied_store_loads_its_own_checkpoints(registered, tmp_path):
    root, [(v1, p1, m1), (_, p2, _)] = registered
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    shutil.copyfile(p2, p1)  # the original's v1 file now holds other weights
    with dl.PayloadStore(copy) as store:
        assert _same_weights(dl.load_version(store, v1), m1)
        assert deploy_version(store, v1).model_version == v1
    p1.unlink()  # and now it is gone
    with dl.PayloadStore(copy) as store:
        assert _same_weights(dl.load_version(store, v1), m1)
    with dl.PayloadStore(root) as store, pytest.raises(dl.CheckpointError, match="missing"):
        dl.load_version(store, v1)


def test_a_temp_checkpoint_left_by_a_killed_register_is_removed_on_the_next_open(tmp_path, monkeypatch):
    root = tmp_path / "store"
    with dl.PayloadStore(root) as store:

        real = os.replace

        def killed(src, dst):  # the checkpoint's own temp file is renamed; the registry's final rename "dies"
            if Path(dst).name.startswith("shapes-"):
                raise KeyboardInterrupt("killed between writing and renaming")
            return real(src, dst)

        monkeypatch.setattr(registry.os, "replace", killed)
        with pytest.raises(KeyboardInterrupt):
            dl.register_version(store, _model(0), name="shapes")
        monkeypatch.undo()
        left = sorted(p.name for p in (root / "models").iterdir())
        assert len(left) == 1 and left[0].startswith(".shapes-") and left[0].endswith(".safetensors")
        assert store.model_versions().empty
    with dl.PayloadStore(root, read_only=True):
        assert len(os.listdir(root / "models")) == 1  # a reader leaves it
    with dl.PayloadStore(root) as store:
        assert os.listdir(root / "models") == []
        version, path = dl.register_version(store, _model(0), name="shapes")
        assert os.listdir(root / "models") == [Path(path).name] and version == "shapes-v1"
