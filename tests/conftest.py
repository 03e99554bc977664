"""Shared fixtures: real clips written by OpenCV into temporary folders."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("PYTORCH_LIGHTNING_DISABLE_TIPS", "1")

import pytest  # noqa: E402

import dlabel_lab as dl  # noqa: E402


@pytest.fixture(scope="session")
def shape_manifest(tmp_path_factory):
    """Six clean shape clips (64x64, 16 frames, mp4v) and their manifest."""
    return dl.make_shape_clips(tmp_path_factory.mktemp("shapes"), 6, seed=0)


@pytest.fixture(scope="session")
def shape_rows(shape_manifest):
    return dl.read_manifest(shape_manifest)


@pytest.fixture(scope="session")
def mp4_path(shape_rows):
    return shape_rows[0]["path"]


@pytest.fixture(scope="session")
def avi_path(tmp_path_factory):
    manifest = dl.make_shape_clips(tmp_path_factory.mktemp("avi"), 1, seed=3, fmt="avi")
    return dl.read_manifest(manifest)[0]["path"]
