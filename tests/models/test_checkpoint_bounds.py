"""Checkpoint metadata is bounded and checked before anything is built or read in full."""

from __future__ import annotations

import json
import time

import pytest
import torch

import dlabel_lab as dl
from dlabel_lab.models.checkpoint import (
    MAX_JSON_DEPTH,
    read_checkpoint,
    read_checkpoint_metadata,
    write_checkpoint,
)
from dlabel_lab.models.classifier import ClipClassifier


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A real 2-class frame2d checkpoint (embed_dim 4): its state dict and metadata."""
    torch.manual_seed(0)
    model = ClipClassifier(classes=["a", "b"], backbone="frame2d", embed_dim=4)
    return model.state_dict(), model.checkpoint_metadata()


def _raw(path, header: bytes | str, data: bytes = b"", *, prefix: int | None = None):
    """A file laid out as safetensors: 8-byte little-endian header length, JSON header, data."""
    header = header.encode() if isinstance(header, str) else header
    n = len(header) if prefix is None else prefix
    path.write_bytes(n.to_bytes(8, "little") + header + data)
    return path


def _with(meta, **changes):
    out = json.loads(json.dumps(meta))
    for key, value in changes.items():
        if key in ("embed_dim", "lr", "dropout", "weight_decay", "class_weights"):
            out["hparams"][key] = value
        else:
            out[key] = value
    return out


def _fast(fn, *args, **kwargs):
    t0 = time.perf_counter()
    try:
        fn(*args, **kwargs)
    finally:
        assert time.perf_counter() - t0 < 3.0


# --- the file ---------------------------------------------------------------------------------
def test_file_size_cap_is_checked_before_reading(tmp_path, small):
    path = tmp_path / "m.safetensors"
    write_checkpoint(path, *small)
    size = path.stat().st_size
    with pytest.raises(dl.CheckpointError, match=rf"{size} bytes, more than the 100 bytes limit.*max_bytes="):
        read_checkpoint(path, max_bytes=100)
    with pytest.raises(dl.CheckpointError, match="max_bytes="):
        ClipClassifier.load_checkpoint(path, max_bytes=100)
    assert ClipClassifier.load_checkpoint(path, max_bytes=size).classes == ["a", "b"]
    huge = tmp_path / "huge.safetensors"
    with open(huge, "wb") as fh:  # sparse 9 GiB
        fh.truncate(9 * 2**30)
    with pytest.raises(dl.CheckpointError, match=r"8 GiB limit"):
        _fast(ClipClassifier.load_checkpoint, huge)


@pytest.mark.parametrize(
    ("prefix", "match"),
    [(2**40, r"header of 1099511627776 bytes.*larger than the file"), (10**6, "larger than the file")],
)
def test_header_length_prefix_is_checked_against_the_file(tmp_path, prefix, match):
    path = _raw(tmp_path / "m.safetensors", '{"__metadata__": {}}', prefix=prefix)
    with pytest.raises(dl.CheckpointError, match=match):
        read_checkpoint_metadata(path)
    with pytest.raises(dl.CheckpointError, match=match):
        ClipClassifier.load_checkpoint(path)


def test_header_over_the_cap_is_refused_unread(tmp_path):
    path = tmp_path / "m.safetensors"
    n = 64 * 2**20
    with open(path, "wb") as fh:
        fh.write(n.to_bytes(8, "little") + b"{")
        fh.truncate(8 + n + 16)  # sparse: the prefix fits the file but not the cap
    with pytest.raises(dl.CheckpointError, match=r"header of 67108864 bytes.*32 MiB"):
        _fast(read_checkpoint_metadata, path)


@pytest.mark.parametrize("where", ["outer", "inner"])
def test_deeply_nested_json_is_refused_without_recursion(tmp_path, where):
    deep = "[" * 100_000 + "]" * 100_000
    if where == "outer":
        header = '{"__metadata__": {"dlabel_lab": "{}"}, "x": ' + deep + "}"
    else:
        header = json.dumps({"__metadata__": {"dlabel_lab": '{"classes": ' + deep + "}"}})
    path = _raw(tmp_path / "m.safetensors", header)
    with pytest.raises(dl.CheckpointError, match=rf"nested deeper than {MAX_JSON_DEPTH}"):
        read_checkpoint_metadata(path)
    with pytest.raises(dl.CheckpointError, match="nested deeper"):
        ClipClassifier.load_checkpoint(path)


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path, small):
    state, meta = small
    path = tmp_path / "m.safetensors"
    write_checkpoint(path, state, _with(meta, classes=["[" * 200, "{\\\"" * 100]))
    assert ClipClassifier.load_checkpoint(path).classes == ["[" * 200, "{\\\"" * 100]


# --- the metadata --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"embed_dim": 2**34}, r"hparams\.embed_dim 17179869184 is outside \[1, 65536\]"),
        ({"embed_dim": "64"}, r"hparams\.embed_dim '64' is not an int"),
        ({"lr": float("nan")}, r"hparams\.lr nan is not a finite number"),
        ({"dropout": 5.0}, r"hparams\.dropout 5\.0 is outside \[0, 1\)"),
        ({"weight_decay": -1.0}, r"hparams\.weight_decay -1\.0 is outside"),
        ({"class_weights": [1.0] * 3}, r"hparams\.class_weights has 3 values for 2 classes"),
        ({"classes": [str(i) for i in range(100_001)]}, r"classes has 100001 names; the limit is 100000"),
        ({"classes": ["a", "b" * 1025]}, r"classes\[1\] is 1025 characters long; the limit is 1024"),
        ({"classes": ["a", 2]}, r"classes\[1\] is not a string"),
        ({"classes": "ab"}, r"classes must be a list of names"),
        ({"backbone": "resnet9000"}, r"backbone 'resnet9000' is not one of"),
        ({"hparams": ["lr"]}, r"hparams must be a JSON object"),
        ({"spec": {"frames": 10**9}}, r"spec\.frames 1000000000 is outside \[1, 4096\]"),
        ({"spec": {"size": [8, 10**6]}}, r"spec\.size \[8, 1000000\] is outside \[1, 8192\]"),
    ],
)
def test_metadata_out_of_bounds_is_refused_before_building(tmp_path, small, changes, match):
    state, meta = small
    path = tmp_path / "m.safetensors"
    write_checkpoint(path, state, _with(meta, **changes))
    with pytest.raises(dl.CheckpointError, match=match) as info:
        _fast(ClipClassifier.load_checkpoint, path)
    assert str(path) in str(info.value)


def test_in_range_metadata_that_does_not_fit_the_tensors_allocates_nothing(tmp_path, small):
    """embed_dim 65536 is in range, but a tiny3d of that width would need ~460 GB; the file holds width 4."""
    state, meta = small
    path = tmp_path / "m.safetensors"
    write_checkpoint(path, state, _with(meta, embed_dim=65536, backbone="tiny3d"))
    with pytest.raises(dl.CheckpointError, match=r"does not match a tiny3d ClipClassifier with 2 classes"):
        _fast(ClipClassifier.load_checkpoint, path)


def test_many_class_names_within_the_limit_fail_fast_on_the_head_shape(tmp_path, small):
    state, meta = small
    path = tmp_path / "m.safetensors"
    write_checkpoint(path, state, _with(meta, classes=[f"c{i}" for i in range(100_000)]))
    with pytest.raises(dl.CheckpointError, match="100000 classes"):
        _fast(ClipClassifier.load_checkpoint, path)


def test_a_good_checkpoint_still_round_trips(tmp_path, small):
    state, meta = small
    path = tmp_path / "m.safetensors"
    write_checkpoint(path, state, meta)
    model = ClipClassifier.load_checkpoint(path)
    assert model.classes == ["a", "b"] and model.hparams.embed_dim == 4
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
