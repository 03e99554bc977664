"""The population an accuracy estimate speaks for: the clips a version scored in operation, as arrays.

:func:`load_population` reads, from :meth:`PayloadStore.matched`, every clip
the model version scored except those it was trained on (its ``train_ids``),
up to a point in time (``as_of``: a recorded sample keeps speaking for the
population it was drawn from), sorted by scoring id. A clip counts as
labelled when its latest user score is a person's: auto-labels (source
``"auto"``) are the model's own guesses and never ground truth.

Example:
    >>> pop = load_population(store, "shapes-v1")  # doctest: +SKIP
    >>> pop.size, int(pop.labelled.sum())  # doctest: +SKIP
    (480, 24)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from ..errors import ConfigError

__all__ = ["NOT_GROUND_TRUTH", "Population", "load_population"]

#: Label sources that are not a person's judgement.
NOT_GROUND_TRUTH = ("auto",)

_COLUMNS = ("scoring_id", "predicted_label", "confidence", "probabilities", "user_label", "label_source",
            "predicted_at", "media_path", "record")


@dataclass(frozen=True)
class Population:
    """A version's operational clips, one row each, sorted by scoring id.

    Attributes:
        model_version: The version.
        classes: Its classes, in output order.
        frame: ``scoring_id``, ``predicted_label``, ``confidence``,
            ``probabilities``, ``user_label``, ``label_source``,
            ``predicted_at``, ``media_path``, ``record``.
        as_of: The latest ``predicted_at`` it includes.
    """

    model_version: str
    classes: list[str]
    frame: pd.DataFrame
    as_of: datetime

    @property
    def size(self) -> int:
        """``N``."""
        return len(self.frame)

    @property
    def ids(self) -> list[str]:
        """Scoring ids in population order."""
        return self.frame["scoring_id"].tolist()

    @property
    def labelled(self) -> np.ndarray:
        """Whether each clip's latest user score is a person's."""
        f = self.frame
        return (f["user_label"].notna() & ~f["label_source"].isin(NOT_GROUND_TRUTH)).to_numpy()

    @property
    def correct(self) -> np.ndarray:
        """1.0 where a person's label matches the prediction, 0.0 where not, NaN where unlabelled."""
        f = self.frame
        hit = (f["user_label"] == f["predicted_label"]).to_numpy(dtype=np.float64)
        return np.where(self.labelled, hit, np.nan)

    @property
    def digest(self) -> str:
        """sha256 of the sorted scoring ids (checks a recorded sample's population is unchanged)."""
        return hashlib.sha256("\n".join(self.ids).encode()).hexdigest()

    def positions(self, scoring_ids) -> np.ndarray:
        """Population positions of scoring ids.

        Raises:
            ConfigError: An id is not in the population.
        """
        index = {sid: i for i, sid in enumerate(self.ids)}
        missing = [s for s in scoring_ids if s not in index]
        if missing:
            raise ConfigError(f"{len(missing)} id(s) are not in the population of {self.model_version} "
                              f"(e.g. {missing[0]}): clips it trained on or did not score")
        return np.array([index[s] for s in scoring_ids], dtype=np.int64)


def load_population(store, model_version: str, *, as_of: datetime | None = None,
                    scoring_ids: Sequence[str] | None = None) -> Population:
    """The clips ``model_version`` scored in operation (not its training clips), up to ``as_of``.

    Args:
        store: The payload store.
        model_version: The deployed version.
        as_of: Keep clips predicted at or before this time (default: all).
        scoring_ids: Keep only these clips (e.g. one site's or one week's);
            each must be an operational clip of the version.

    Raises:
        UnknownRecord: The version is not registered.
        ConfigError: It scored no operational clip (up to ``as_of``).

    Example:
        >>> load_population(store, "shapes-v1").size  # doctest: +SKIP
        480
    """
    info = store.get_model(model_version)
    train_ids = set((info.get("params") or {}).get("train_ids") or [])
    frame = store.matched(model_version=model_version).project(", ".join(_COLUMNS)).df()
    frame = frame[~frame["scoring_id"].isin(train_ids)]
    if scoring_ids is not None:
        wanted = list(dict.fromkeys(str(s) for s in scoring_ids))
        stray = sorted(set(wanted) - set(frame["scoring_id"]))
        if stray:
            raise ConfigError(f"{len(stray)} pool id(s) are not operational clips of {model_version} (e.g. "
                              f"{stray[0]}): clips it trained on or never scored; score them with it first")
        frame = frame[frame["scoring_id"].isin(set(wanted))]
    if as_of is not None:
        frame = frame[frame["predicted_at"] <= pd.Timestamp(as_of)]
    if frame.empty:
        raise ConfigError(f"{model_version} has scored no operational clip (outside its training set"
                          f"{'' if as_of is None else f' up to {as_of}'}); score clips with it first")
    frame = frame.sort_values("scoring_id").reset_index(drop=True)
    frame["label_source"] = frame["label_source"].astype(object)
    return Population(model_version, list(info["classes"]), frame, frame["predicted_at"].max().to_pydatetime())
