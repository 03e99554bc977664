"""Fixtures shared by the widget tests: tiny shape clips and a store with a tiny trained v1 behind the endpoints."""

from __future__ import annotations

import pytest

import dlabel_lab as dl
from dlabel_lab.loop import train_initial
from dlabel_lab.serving.endpoints import deploy_version
from dlabel_lab.store import PayloadStore


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return dl.read_manifest(dl.make_shape_clips(tmp_path_factory.mktemp("clips"), 9, frames=8, size=32, seed=0))


@pytest.fixture
def loop(tmp_path, clips):
    """A fresh store with a tiny trained v1 deployed behind the endpoints."""
    store = PayloadStore(tmp_path / "store")
    manifest = dl.make_shape_clips(tmp_path / "train", 6, frames=8, size=32, seed=1)
    v1 = train_initial(
        store,
        manifest,
        name="shapes",
        classes=["circle", "square", "triangle"],
        spec=dl.ClipSpec(frames=4, size=32),
        epochs=1,
        progress=False,
    )
    ingest = deploy_version(store, v1.version)
    yield store, ingest, v1.version
    store.close()
