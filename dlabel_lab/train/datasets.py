"""Datasets and a LightningDataModule over matched store records.

Rows come from ``store.dataset_members(version)`` or ``store.matched()``:
each has a ``scoring_id``, the clip's ``media_path`` and a label. The split
into training and held-out ids is a deterministic function of the scoring id
(a salted hash), so an id stays on its side as the data set grows.

Example:
    >>> dm = StoreDataModule(store, classes=["circle", "square", "triangle"], spec=spec)  # doctest: +SKIP
    >>> trainer.fit(model, datamodule=dm)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace

import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigError, MediaError, UnknownLabel
from ..media.video import ClipSpec, read_clip, to_tensor
from .transforms import speed_indices

__all__ = ["ClipDataset", "StoreDataModule", "split_ids", "labelled_rows", "lineage_training_rows"]


def lineage_training_rows(store, model_version: str, *, limit: int | None = None) -> list[dict]:
    """The labelled lab clips (manifest rows) the root of a version's lineage was trained on.

    Returns an empty list when the lineage records no training manifest or the
    manifest is gone.

    Example:
        >>> rows = lineage_training_rows(store, "shapes-v2")  # doctest: +SKIP
    """
    import json

    from ..media.samples import read_manifest

    infos = [store.get_model(model_version), *store.lineage(model_version).get("parents", [])]
    for info in infos:
        params = info.get("params") or {}
        params = json.loads(params) if isinstance(params, str) else params
        manifest = (params.get("training") or {}).get("train_manifest")
        if manifest:
            try:
                rows = read_manifest(manifest)
            except (ConfigError, MediaError):  # the manifest is gone, changed or now refused
                return []
            return rows[:limit] if limit is not None else rows
    return []


def split_ids(ids: Sequence[str], *, holdout: float = 0.25, seed: int = 0,
              groups: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """Split scoring ids deterministically into (train, holdout), keeping each group on one side.

    A side depends only on the group key and the seed, never on the other
    ids, so adding clips never moves an old clip across the split. Pass the
    clips' sha256 digests as ``groups`` so that byte-identical copies of a clip
    (the same clip ingested twice) always fall on the same side: otherwise a
    copy in training and one held out inflate held-out accuracy. With few
    groups the holdout fraction is approximate; at least one group lands on
    each side when there are two or more.

    Args:
        ids: Scoring ids (repeats are dropped).
        holdout: Fraction of groups held out, in ``[0, 1)``.
        seed: Changes the split.
        groups: One key per id (e.g. its sha256); default: each id its own group.

    Example:
        >>> train, held = split_ids(["a", "b", "c", "d"], holdout=0.5, groups=["x", "x", "y", "z"])
        >>> ("a" in held) == ("b" in held)
        True
    """
    if not 0.0 <= holdout < 1.0:
        raise ConfigError(f"holdout must be in [0, 1), got {holdout!r}")
    ids = [str(i) for i in ids]
    keys = ids if groups is None else [str(g) for g in groups]
    if len(keys) != len(ids):
        raise ConfigError(f"split_ids got {len(keys)} groups for {len(ids)} ids; pass one group key per id")
    group_of = dict(zip(ids, keys, strict=True))  # the first group given for a repeated id
    ids = list(group_of)

    def score(key: str) -> float:
        h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    ranked = sorted(dict.fromkeys(group_of.values()), key=score)
    held = [k for k in ranked if score(k) < holdout]
    if holdout > 0 and len(ranked) >= 2 and not held:
        held = ranked[:1]
    if len(held) == len(ranked) and len(ranked) >= 2:
        held = held[:-1]
    held_set = set(held)
    return [i for i in ids if group_of[i] not in held_set], [i for i in ids if group_of[i] in held_set]


def labelled_rows(records: pd.DataFrame, *, label_column: str = "user_label") -> pd.DataFrame:
    """One row per scoring id with its media path and label (rows without a label dropped)."""
    if label_column not in records.columns:
        raise ConfigError(f"records need a {label_column!r} column; got {list(records.columns)}")
    df = records.dropna(subset=[label_column])
    df = df.drop_duplicates(subset=["scoring_id"]).reset_index(drop=True)
    cols = ["scoring_id", "media_path", "label"] + (["sha256"] if "sha256" in df.columns else [])
    return df.rename(columns={label_column: "label"})[cols]


class ClipDataset(Dataset):
    """Clips decoded from files into normalised tensors with class indices.

    Args:
        rows: Records with ``media_path`` (or ``path``) and ``label``.
        classes: Class names; labels index into this list.
        spec: How to sample and preprocess each clip.
        augment: Optional callable on the (C, T, H, W) tensor (training only).
        weights: Optional per-row sample weights; items become ``(x, y, w)``.
        cache: Keep decoded tensors in memory (augmentation still runs each time).
        speed: Playback speed range ``(lo, hi)`` (training only): with
            probability ``speed_p`` an item is read from the clip decoded
            ``dense_factor`` times as deep and re-timed by a speed drawn
            uniformly from the range (see
            :func:`~dlabel_lab.train.transforms.speed_indices`), before
            ``augment``. Needs ``spec.sampling == "uniform"`` and
            ``spec.frames``; the dense clips are cached too
            (``dense_factor`` times the memory).
        speed_p: Probability that an item is re-timed.
        dense_factor: How many times deeper than ``spec.frames`` to decode
            for re-timing.

    Example:
        >>> ds = ClipDataset(rows, classes=["a", "b"], spec=ClipSpec(frames=4, size=32))  # doctest: +SKIP
        >>> x, y = ds[0]  # doctest: +SKIP
    """

    def __init__(
        self,
        rows: Sequence[dict] | pd.DataFrame,
        *,
        classes: Sequence[str],
        spec: ClipSpec,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        weights: Sequence[float] | None = None,
        cache: bool = True,
        speed: tuple[float, float] | None = None,
        speed_p: float = 1.0,
        dense_factor: int = 4,
    ) -> None:
        if isinstance(rows, pd.DataFrame):
            rows = rows.to_dict("records")
        self.rows = [dict(r) for r in rows]
        self.classes = list(classes)
        self.spec = spec
        self.augment = augment
        self.weights = None if weights is None else [float(w) for w in weights]
        self.cache = cache
        self._cache: dict[int, torch.Tensor] = {}
        self._dense: dict[int, torch.Tensor] = {}
        self.speed = None
        if speed is not None:
            lo, hi = (float(v) for v in speed)
            if not 0 < lo <= hi <= 8 or not 0 <= speed_p <= 1 or dense_factor < 1:
                raise ConfigError(f"ClipDataset speed must satisfy 0 < lo <= hi <= 8 with speed_p in [0, 1] and "
                                  f"dense_factor >= 1; got {speed!r}, {speed_p!r}, {dense_factor!r}")
            if spec.sampling != "uniform" or spec.indices is not None or spec.frames is None:
                raise ConfigError("re-timing clips (speed) needs uniform frame sampling with a frame count; this "
                                  f"spec samples {spec.sampling!r} with frames={spec.frames!r}. Drop the speed range "
                                  "or the frame stride.")
            self.speed = (lo, hi)
        self.speed_p = float(speed_p)
        self.dense_factor = int(dense_factor)
        index = {c: i for i, c in enumerate(self.classes)}
        self._targets = []
        for r in self.rows:
            if r.get("label") not in index:
                raise UnknownLabel(f"label {r.get('label')!r} is not one of the classes {self.classes}")
            if not (r.get("media_path") or r.get("path")):
                raise ConfigError("every row needs a 'media_path' or 'path'")
            self._targets.append(index[r["label"]])
        if self.weights is not None and len(self.weights) != len(self.rows):
            raise ConfigError(f"{len(self.weights)} weights for {len(self.rows)} rows")

    def __len__(self) -> int:
        return len(self.rows)

    def without_augment(self) -> ClipDataset:
        """The same rows (sharing the decoded cache) without augmentation."""
        twin = object.__new__(ClipDataset)
        twin.__dict__.update(self.__dict__)
        twin.augment = None
        twin.speed = None
        return twin

    @property
    def targets(self) -> list[int]:
        """Class index of every row."""
        return list(self._targets)

    def tensor(self, i: int) -> torch.Tensor:
        """The preprocessed (un-augmented) tensor of row ``i``."""
        if i in self._cache:
            return self._cache[i]
        r = self.rows[i]
        x, _ = to_tensor(read_clip(r.get("media_path") or r["path"], self.spec), self.spec)
        if self.cache:
            self._cache[i] = x
        return x

    def dense_tensor(self, i: int) -> torch.Tensor:
        """Row ``i`` decoded ``dense_factor`` times as deep as the spec (for re-timing)."""
        if i in self._dense:
            return self._dense[i]
        r = self.rows[i]
        spec = replace(self.spec, frames=self.spec.frames * self.dense_factor)
        x, _ = to_tensor(read_clip(r.get("media_path") or r["path"], spec), spec)
        if self.cache:
            self._dense[i] = x
        return x

    def __getitem__(self, i: int):
        x = None
        if self.speed is not None:
            u = torch.rand(3).tolist()  # torch's RNG: seeded by the trainer, per worker by the DataLoader
            if u[0] < self.speed_p:
                dense = self.dense_tensor(i)
                speed = self.speed[0] + u[1] * (self.speed[1] - self.speed[0])
                x = dense[:, speed_indices(dense.shape[1], self.spec.frames, speed, start=u[2])]
        if x is None:
            x = self.tensor(i)
        if self.augment is not None:
            x = self.augment(x)
        y = torch.tensor(self._targets[i], dtype=torch.long)
        if self.weights is not None:
            return x, y, torch.tensor(self.weights[i], dtype=torch.float32)
        return x, y


class StoreDataModule(pl.LightningDataModule):
    """Training and held-out loaders over the labelled clips of a store.

    Args:
        store: A :class:`~dlabel_lab.PayloadStore`.
        classes: Class names.
        spec: Preprocessing of every clip.
        dataset_version: Use the members of this snapshot; default: every
            labelled clip of ``store.matched()``.
        holdout: Fraction of ids held out (deterministic by id).
        batch_size: Batch size of both loaders.
        augment: Training-only augmentation on each (C, T, H, W) tensor.
        sample_weights: Optional callable ``row -> weight``.
        seed: Salt of the split and the shuffling generator.

    Example:
        >>> dm = StoreDataModule(store, classes=classes, spec=spec, holdout=0.25)  # doctest: +SKIP
        >>> dm.setup(); len(dm.train_ids), len(dm.holdout_ids)  # doctest: +SKIP
    """

    def __init__(
        self,
        store,
        *,
        classes: Sequence[str],
        spec: ClipSpec,
        dataset_version: str | None = None,
        holdout: float = 0.25,
        batch_size: int = 8,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        sample_weights: Callable[[dict], float] | None = None,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.store = store
        self.classes = list(classes)
        self.spec = spec
        self.dataset_version = dataset_version
        self.holdout = holdout
        self.batch_size = batch_size
        self.augment = augment
        self.sample_weights = sample_weights
        self.seed = seed
        self.num_workers = num_workers
        self.train_ids: list[str] = []
        self.holdout_ids: list[str] = []

    def rows(self) -> pd.DataFrame:
        """The labelled rows this module draws from."""
        if self.dataset_version is not None:
            members = self.store.dataset_members(self.dataset_version)
            cols = ["scoring_id", "media_path", "label"] + (["sha256"] if "sha256" in members.columns else [])
            return members[cols].drop_duplicates("scoring_id")
        return labelled_rows(self.store.matched().df())

    def setup(self, stage: str | None = None) -> None:
        rows = self.rows()
        if rows.empty:
            raise ConfigError("the store has no labelled clips to train on; score clips with labels first")
        self.train_ids, self.holdout_ids = split_ids(
            rows["scoring_id"].tolist(), holdout=self.holdout, seed=self.seed,
            groups=rows["sha256"].tolist() if "sha256" in rows.columns else None)
        by_id = rows.set_index("scoring_id")
        self._train_rows = by_id.loc[self.train_ids].reset_index()
        self._holdout_rows = by_id.loc[self.holdout_ids].reset_index()
        weights = None
        if self.sample_weights is not None:
            weights = [self.sample_weights(r) for r in self._train_rows.to_dict("records")]
        self.train_set = ClipDataset(self._train_rows, classes=self.classes, spec=self.spec,
                                     augment=self.augment, weights=weights)
        self.holdout_set = ClipDataset(self._holdout_rows, classes=self.classes, spec=self.spec)

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=g,
                          num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.holdout_set, batch_size=self.batch_size, num_workers=self.num_workers)
