"""Fixtures of the serving tests: a real store and a tiny tiny3d model deployed behind both endpoints."""

from __future__ import annotations

import pytest
import torch

import dlabel_lab as dl

CLASSES = ["circle", "square", "triangle"]
SPEC = dl.ClipSpec(frames=4, size=32)


@pytest.fixture
def store(tmp_path):
    with dl.PayloadStore(tmp_path / "store") as s:
        yield s


@pytest.fixture
def ingest(store):
    torch.manual_seed(0)
    model = dl.ClipClassifier(classes=CLASSES, backbone="tiny3d", spec=SPEC, embed_dim=16)
    return dl.deploy(model, store, classes=CLASSES, name="shapes", batch_size=4)
