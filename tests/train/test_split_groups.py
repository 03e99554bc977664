"""Splits group byte-identical clips, so a copy of a held-out clip is never trained on."""

from __future__ import annotations

import pytest

import dlabel_lab as dl


def test_groups_keep_identical_content_on_one_side():
    ids = [f"id{i}" for i in range(200)]
    groups = [f"sha{i // 2}" for i in range(200)]  # every clip has one copy
    train, held = dl.split_ids(ids, holdout=0.3, seed=3, groups=groups)
    group_of = dict(zip(ids, groups, strict=True))
    assert {group_of[i] for i in train}.isdisjoint({group_of[i] for i in held})
    assert sorted(train + held) == sorted(ids)
    assert 0.2 < len(held) / len(ids) < 0.4


def test_without_groups_the_split_is_unchanged_by_id():
    ids = [f"id{i}" for i in range(50)]
    assert dl.split_ids(ids, holdout=0.25, seed=1) == dl.split_ids(ids, holdout=0.25, seed=1, groups=ids)


def test_a_group_key_per_id_is_required():
    with pytest.raises(dl.ConfigError, match="one group key per id"):
        dl.split_ids(["a", "b"], groups=["x"])
