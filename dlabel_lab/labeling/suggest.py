"""Which clips a person should label next: a query over the store, recorded in the execution log.

``suggest`` reads what the model endpoint logged for a model version
(probabilities and embeddings of every scored clip), takes the clips that
have no user score yet as the pool (or the ids given), runs a query strategy
(:mod:`dlabel_lab.labeling.strategies`) and records the query as a
``suggest`` run (strategy, version, pool size, budget, seed, chosen ids), so
that every label given from the queue can be traced to the query that asked
for it. BALD runs MC-dropout passes of the model over the pool clips, rebuilt
exactly from the store.

Example:
    >>> queue = suggest(store, "shapes-v1", 20, strategy="margin")  # doctest: +SKIP
    >>> queue.table[["scoring_id", "score", "reason"]].head()  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ConfigError, UnknownRecord
from .calibration import stack_column
from .strategies import STRATEGIES, select

__all__ = ["Suggestion", "suggest"]


@dataclass(frozen=True)
class Suggestion:
    """The clips to label next.

    Attributes:
        run_id: The ``suggest`` run in the execution log.
        strategy: The query strategy.
        model_version: The version whose outputs were used.
        pool_size: Clips that could have been chosen.
        table: One row per chosen clip, best first: ``rank``, ``scoring_id``,
            ``score``, ``reason``, ``predicted_label``, ``confidence``, ``media_path``.
    """

    run_id: str
    strategy: str
    model_version: str
    pool_size: int
    table: pd.DataFrame

    @property
    def scoring_ids(self) -> list[str]:
        """The chosen ids, best first."""
        return self.table["scoring_id"].tolist()


def suggest(
    store,
    model_version: str,
    budget: int,
    *,
    strategy: str = "margin",
    pool: Sequence[str] | None = None,
    seed: int = 0,
    mc_passes: int = 8,
) -> Suggestion:
    """Choose ``budget`` clips for people to label next, and record the query.

    Args:
        store: The payload store.
        model_version: A version that scored the pool (its probabilities and
            embeddings are read from the store).
        budget: How many clips to choose.
        strategy: One of :data:`~dlabel_lab.labeling.strategies.STRATEGIES`.
        pool: Scoring ids to choose from (default: every clip the version
            scored that has no user score yet).
        seed: Random state of the strategy.
        mc_passes: MC-dropout passes for ``strategy="bald"``.

    Returns:
        A :class:`Suggestion`.

    Raises:
        ConfigError: Unknown strategy, a bad budget, or an empty pool.
        UnknownRecord: ``pool`` names ids the version did not score.

    Example:
        >>> suggest(store, "shapes-v1", 10, strategy="entropy").scoring_ids  # doctest: +SKIP
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose one of {sorted(STRATEGIES)}")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ConfigError(f"budget must be a positive int, got {budget!r}")
    scored = store.matched(model_version=model_version).df()
    if scored.empty:
        raise ConfigError(f"{model_version} has scored no clips in this store; deploy it and score clips first")
    if pool is None:
        candidates = scored[scored["user_label"].isna()]
        pool_desc = "unlabelled"
    else:
        wanted = list(dict.fromkeys(str(s) for s in pool))
        unknown = sorted(set(wanted) - set(scored["scoring_id"]))
        if unknown:
            raise UnknownRecord(f"{len(unknown)} pool id(s) were not scored by {model_version} (e.g. {unknown[0]}); "
                                "score them with this version first (IngestEndpoint.shadow_score)")
        candidates = scored.set_index("scoring_id").loc[wanted].reset_index()
        pool_desc = f"{len(wanted)} given ids"
    if candidates.empty:
        raise ConfigError(f"the pool is empty: every clip {model_version} scored has a user score; score new clips")
    candidates = candidates.sort_values("scoring_id").reset_index(drop=True)
    labelled = scored[scored["user_label"].notna()]
    probs = stack_column(candidates, "probabilities")
    emb = stack_column(candidates, "embedding")
    lab_emb = stack_column(labelled, "embedding") if len(labelled) else None
    mc = _mc_probabilities(store, model_version, candidates, mc_passes, seed) if strategy == "bald" else None
    params = {"strategy": strategy, "model_version": model_version, "budget": int(budget), "pool": pool_desc,
              "pool_size": len(candidates), "seed": seed, **({"mc_passes": mc_passes} if mc is not None else {})}
    run_id = store.start_run("suggest", params, model_version=model_version)
    try:
        sel = select(strategy, int(budget), probabilities=probs, mc_probabilities=mc, embeddings=emb,
                     labelled_embeddings=lab_emb, seed=seed)
    except BaseException as error:
        store.finish_run(run_id, status="failed", error=error)
        raise
    chosen = candidates.iloc[sel.indices]
    table = pd.DataFrame({
        "rank": np.arange(1, len(sel.indices) + 1), "scoring_id": chosen["scoring_id"].to_numpy(),
        "score": sel.scores, "reason": sel.reasons, "predicted_label": chosen["predicted_label"].to_numpy(),
        "confidence": chosen["confidence"].to_numpy(), "media_path": chosen["media_path"].to_numpy(),
    })
    store.finish_run(run_id, result={"scoring_ids": table["scoring_id"].tolist(),
                                     "scores": [float(s) for s in sel.scores]})
    return Suggestion(run_id, strategy, model_version, len(candidates), table)


def _mc_probabilities(store, model_version: str, rows: pd.DataFrame, passes: int, seed: int) -> np.ndarray:
    """MC-dropout probabilities of the pool clips, rebuilt from their raw clips and logged records."""
    import torch

    from ..media.video import read_checked_file, spec_from_record, to_tensor
    from ..models.registry import load_version
    from .mc_dropout import mc_dropout_probabilities

    model = load_version(store, model_version)
    tensors = []
    for sid, record in zip(rows["scoring_id"], rows["record"], strict=True):
        spec = spec_from_record(json.loads(record) if isinstance(record, str) else record)
        clip = read_checked_file(store.verified_raw_path(sid), spec, name=f"clip {sid}")
        tensors.append(to_tensor(clip, spec)[0])
    return mc_dropout_probabilities(model, torch.stack(tensors), passes=passes, seed=seed)
