"""Runs only where CUDA is available (marker ``gpu``); skipped on the CPU-only machines."""

from __future__ import annotations

import pytest
import torch

import dlabel_lab as dl

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CLASSES = ["circle", "square", "triangle"]
SPEC = dl.ClipSpec(frames=4, size=32)


def test_endpoint_scores_on_cuda_like_on_cpu(tmp_path, shape_rows):
    torch.manual_seed(0)
    model = dl.ClipClassifier(classes=CLASSES, spec=SPEC, embed_dim=16)
    with dl.PayloadStore(tmp_path / "store") as store:
        cpu = dl.deploy(model, store, name="cpu").score(shape_rows[0]["path"], label="circle")
        gpu = dl.deploy(model, store, name="gpu", device="cuda").score(shape_rows[0]["path"], label="circle")
    assert gpu.predicted_label == cpu.predicted_label
    assert gpu.probabilities == pytest.approx(cpu.probabilities, abs=1e-4)


def test_attribution_runs_on_cuda(shape_rows):
    torch.manual_seed(0)
    model = dl.ClipClassifier(classes=CLASSES, spec=SPEC, embed_dim=16).cuda().eval()
    x = torch.stack([dl.to_tensor(dl.read_clip(r["path"], SPEC))[0] for r in shape_rows[:2]]).cuda()
    profile = dl.frame_attribution(model, x, target=0, n_steps=4, progress=False)
    assert profile.shape == (2, 4) and torch.allclose(profile.sum(dim=1), torch.ones(2), atol=1e-4)
