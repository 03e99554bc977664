"""Torch's thread count while scoring (set, then restored) and score_many's one-batch-ahead decoding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.serving import threads

CLASSES = ["circle", "square", "triangle"]
SPEC = dl.ClipSpec(frames=4, size=32)


@pytest.fixture
def torch_at_3():
    """torch set to 3 threads (the user's setting) for the test, the previous count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)


def deployed(store, **kwargs) -> dl.IngestEndpoint:
    torch.manual_seed(0)
    model = dl.ClipClassifier(classes=CLASSES, backbone="tiny3d", spec=SPEC, embed_dim=16)
    return dl.deploy(model, store, classes=CLASSES, name="shapes", **kwargs)


def spy_threads(ingest, monkeypatch) -> list[int]:
    """The torch thread count seen by each forward pass."""
    seen: list[int] = []
    model = ingest.model_endpoint.model
    forward = model.logits_and_embedding

    def spy(x):
        seen.append(torch.get_num_threads())
        return forward(x)

    monkeypatch.setattr(model, "logits_and_embedding", spy)
    return seen


def staging(store) -> list[Path]:
    folder = Path(store.path) / "media" / "staging"
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize(("num_threads", "cores", "expected"), [(1, 8, 1), (2, 8, 2), (None, 2, 1), (None, 8, 3)])
def test_scoring_runs_with_the_setting_and_restores_the_users(store, shape_rows, monkeypatch, torch_at_3,
                                                              num_threads, cores, expected):
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    ingest = deployed(store, batch_size=2, num_threads=num_threads)
    seen = spy_threads(ingest, monkeypatch)
    paths, labels = [r["path"] for r in shape_rows], [r["label"] for r in shape_rows]
    assert all(r.ok for r in ingest.score_many(paths, labels, progress=False))
    assert seen == [expected] * 3 and torch.get_num_threads() == 3
    ingest.score(paths[0])
    assert seen[-1] == expected and torch.get_num_threads() == 3


def test_the_count_is_restored_when_scoring_raises(store, shape_rows, tmp_path, monkeypatch, torch_at_3):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    ingest = deployed(store, batch_size=2, num_threads=1)
    with pytest.raises(dl.UnsupportedMedia):
        ingest.score_many([shape_rows[0]["path"], shape_rows[1]["path"], bad], progress=False)
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize(("torch_threads", "cores", "expected"), [(2, 2, 1), (1, 1, 1), (16, 16, 15), (8, 16, 8)])
def test_the_default_rule_leaves_one_core_and_keeps_a_lower_user_setting(monkeypatch, torch_threads, cores,
                                                                          expected):
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    monkeypatch.setattr(torch, "get_num_threads", lambda: torch_threads)
    assert threads.default_num_threads() == expected


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_num_threads_must_be_a_positive_int(store, bad):
    with pytest.raises(dl.ConfigError, match="num_threads"):
        deployed(store, num_threads=bad)
    assert store.model_versions().empty  # refused before anything was registered


def test_a_bad_clip_in_a_later_batch_keeps_the_earlier_batches_and_leaves_nothing_staged(store, shape_rows, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    ingest = deployed(store, batch_size=2)
    paths = [r["path"] for r in shape_rows[:4]] + [bad, shape_rows[4]["path"]]
    with pytest.raises(dl.UnsupportedMedia):
        ingest.score_many(paths, progress=False)
    assert len(store.matched().fetchall()) == 4 and staging(store) == []
    failures: list = []
    results = ingest.score_many(paths, on_error="stop", failures=failures, progress=False)
    assert len(results) == 4 and [i for i, _ in failures] == [4]
    assert len(store.matched().fetchall()) == 8 and staging(store) == []
    results = ingest.score_many(paths, on_error="skip", progress=False)
    assert [r.sha256 for r in results] == [r.sha256 for r in ingest.score_many(paths[:4] + paths[5:], progress=False)]


def test_a_failure_while_logging_discards_the_batch_decoded_ahead(store, shape_rows, monkeypatch):
    ingest = deployed(store, batch_size=2)
    log_raw_many, calls = store.log_raw_many, []

    def failing(rows):
        calls.append(len(rows))
        if len(calls) == 2:
            raise dl.StoreError("disk full (simulated)")
        return log_raw_many(rows)

    monkeypatch.setattr(store, "log_raw_many", failing)
    with pytest.raises(dl.StoreError, match="simulated"):
        ingest.score_many([r["path"] for r in shape_rows], progress=False)
    assert calls == [2, 2] and len(store.matched().fetchall()) == 2
    assert staging(store) == []  # the failed batch and the one decoded ahead of it
