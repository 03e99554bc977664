"""evaluate_manifest: a version's accuracy on held-out lab clips, with nothing logged to the store."""

from __future__ import annotations

import csv

import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.errors import ConfigError

SPEC = dl.ClipSpec(frames=4, size=32)


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory):
    root = tmp_path_factory.mktemp("tutorial")
    sets = dl.make_tutorial_clips(root / "data", fast=True, seed=3)
    store = dl.PayloadStore(root / "store")
    v1 = dl.train_initial(store, sets["train"], name="t", spec=SPEC, epochs=1, progress=False)
    yield store, v1, sets
    store.close()


def test_tutorial_sets_have_their_sizes_and_repeat_exactly(tutorial, tmp_path):
    _, _, sets = tutorial
    counts = {k: len(dl.read_manifest(v)) for k, v in sets.items()}
    assert counts == dl.media.samples.TUTORIAL_SIZES["fast"] == {"train": 24, "lab_test": 12, "operational": 24}
    again = dl.make_tutorial_clips(tmp_path, fast=True, seed=3)
    for name, manifest in sets.items():
        assert again[name].read_bytes() == manifest.read_bytes()
        first = sorted(p.name for p in manifest.parent.glob("*.mp4"))
        assert [(manifest.parent / f).read_bytes() for f in first[:2]] == [
            (again[name].parent / f).read_bytes() for f in first[:2]]
    with open(sets["operational"], newline="") as f:  # the operational set is darker than the lab
        ops = [float(r["brightness"]) for r in csv.DictReader(f)]
    with open(sets["lab_test"], newline="") as f:
        lab = [float(r["brightness"]) for r in csv.DictReader(f)]
    assert max(ops) < min(lab) or sum(ops) / len(ops) < 0.6 * sum(lab) / len(lab)


def test_evaluate_manifest_scores_every_clip_and_logs_nothing(tutorial):
    store, v1, sets = tutorial
    runs_before = len(store.runs())
    ev = dl.evaluate_manifest(store, v1.version, sets["lab_test"])
    assert ev.n == 12 and 0.0 <= ev.accuracy <= 1.0
    assert sorted(ev.classes) == ["circle", "square", "triangle"]
    assert store.matched().fetchall() == [] and len(store.runs()) == runs_before
    model = dl.load_version(store, v1.version)  # the same numbers as the model's own forward pass
    rows = dl.read_manifest(sets["lab_test"])
    ds = dl.ClipDataset(rows, classes=model.classes, spec=model.spec)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    predicted = model.predict_proba(x).argmax(1).tolist()
    truth = [model.classes.index(r["label"]) for r in rows]
    assert ev.accuracy == pytest.approx(sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(rows))


def test_evaluate_manifest_refuses_labels_the_model_does_not_know(tutorial, tmp_path):
    store, v1, sets = tutorial
    bad = dl.make_shape_clips(tmp_path / "bad", 3, classes=("circle", "hexagon"), frames=4, size=32)
    with pytest.raises(ConfigError, match="hexagon"):
        dl.evaluate_manifest(store, v1.version, bad)
    with pytest.raises(ConfigError, match="batch_size"):
        dl.evaluate_manifest(store, v1.version, sets["lab_test"], batch_size=0)
