"""Which clips a person should label next: a query over the store, recorded in the execution log.

``suggest`` reads what the model endpoint logged for a model version
(probabilities and embeddings of every scored clip), takes the clips that
have no user score yet as the pool (or the ids given), runs a query strategy
(:mod:`dlabel_lab.labeling.strategies`) and records the query as a
``suggest`` run (strategy, version, pool size, budget, seed, chosen ids), so
that every label given from the queue can be traced to the query that asked
for it. BALD uses the MC-dropout passes the model endpoint logged (``deploy(...,
mc_passes=T)``) or, when they are missing, runs them over the pool clips,
rebuilt exactly from the store. The suggestion also says whether labelling
can stop (``should_stop``, with the evidence): the stabilising-predictions
rule of Bloodgood and Vijay-Shanker over the version's lineage on a fixed
stop set (see :mod:`dlabel_lab.labeling.stopping`).

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
from ..serving.client import ServiceClient
from .calibration import stack_column
from .stopping import StopDecision, stopping_decision
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
        stop: The stopping rule's decision with its evidence (kappas between
            successive versions of the lineage on the stop set, the reason).
    """

    run_id: str
    strategy: str
    model_version: str
    pool_size: int
    table: pd.DataFrame
    stop: StopDecision | None = None

    @property
    def should_stop(self) -> bool:
        """Whether the stopping rule says labelling can stop (see :attr:`stop` for why)."""
        return bool(self.stop is not None and self.stop.should_stop)

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
    stop_set: Sequence[str] | None = None,
    stop_threshold: float = 0.99,
    stop_window: int = 3,
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
        mc_passes: MC-dropout passes for ``strategy="bald"`` when the endpoint
            logged none for the pool clips.
        stop_set: Scoring ids of a fixed set of clips for the stopping rule;
            default: the clips every version of the lineage scored that have
            no user score (at most 2,000, sorted by id). Score it with every
            round's version (``IngestEndpoint.shadow_score``).
        stop_threshold: Cohen's kappa successive versions must reach on it.
        stop_window: How many successive comparisons in a row must reach it.

    Returns:
        A :class:`Suggestion`.

    Raises:
        ConfigError: Unknown strategy, a bad budget, or an empty pool.
        UnknownRecord: ``pool`` names ids the version did not score.

    Example:
        >>> suggest(store, "shapes-v1", 10, strategy="entropy").scoring_ids  # doctest: +SKIP
    """
    if isinstance(store, ServiceClient):  # run by the service that owns the store
        from .remote import suggest_via

        return suggest_via(store, model_version, budget, strategy=strategy, pool=pool, seed=seed,
                           mc_passes=mc_passes, stop_set=stop_set, stop_threshold=stop_threshold,
                           stop_window=stop_window)
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
    mc, mc_source = (_mc_probabilities(store, model_version, candidates, mc_passes, seed) if strategy == "bald"
                     else (None, None))
    stop = _stop_decision(store, model_version, scored, stop_set, stop_threshold, stop_window)
    params = {"strategy": strategy, "model_version": model_version, "budget": int(budget), "pool": pool_desc,
              "pool_size": len(candidates), "seed": seed,
              **({"mc_passes": int(mc.shape[0]), "mc_source": mc_source} if mc is not None else {})}
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
    stop_result = None if stop is None else {
        "should_stop": stop.should_stop, "kappas": stop.kappas, "versions": stop.versions,
        "threshold": stop.threshold, "window": stop.window, "n_stop_set": stop.n_stop_set, "reason": stop.reason}
    store.finish_run(run_id, result={"scoring_ids": table["scoring_id"].tolist(),
                                     "scores": [float(s) for s in sel.scores], "stop": stop_result})
    return Suggestion(run_id, strategy, model_version, len(candidates), table, stop)


def _stop_decision(store, model_version: str, scored: pd.DataFrame, stop_set, threshold: float,
                   window: int) -> StopDecision:
    """The stabilising-predictions rule over the lineage (oldest first) on the stop set."""
    if not 0 < threshold <= 1 or isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"stop_threshold must be in (0, 1] and stop_window an int >= 1, got {threshold!r} and "
                          f"{window!r}")
    versions = list(reversed(store.lineage(model_version)["chain"]))
    if stop_set is None:
        ids = set(scored.loc[scored["user_label"].isna(), "scoring_id"])
        for version in versions[:-1]:
            if ids:
                ids &= set(store.matched(model_version=version, scoring_ids=sorted(ids)).df()["scoring_id"])
        ids = sorted(ids)[:2000]
    else:
        ids = sorted(set(map(str, stop_set)))
    if len(versions) < 2 or not ids:
        why = ("the lineage has one version: the rule compares successive versions; retrain and score the stop set "
               "with every version" if len(versions) < 2 else
               "no clip was scored by every version of the lineage without a user score: shadow-score a fixed stop "
               "set with each version")
        return StopDecision(False, [], versions, threshold, window, len(ids), why)
    return stopping_decision(store, versions, ids, threshold=threshold, window=window)


def _mc_probabilities(store, model_version: str, rows: pd.DataFrame, passes: int,
                      seed: int) -> tuple[np.ndarray, str]:
    """MC-dropout probabilities ``(T, N, K)`` of the pool clips: as logged by the endpoint, else recomputed."""
    import torch

    logged = store.attributions(model_version, kind="mc_dropout")
    if len(logged):
        by_id = dict(zip(logged["scoring_id"], logged["values"], strict=True))  # the latest per clip wins
        got = [by_id.get(sid) for sid in rows["scoring_id"]]
        shapes = {np.shape(v) for v in got if v is not None}
        if all(v is not None for v in got) and len(shapes) == 1 and len(next(iter(shapes))) == 2:
            return np.stack([np.asarray(v, dtype=np.float64) for v in got], axis=1), "logged by the endpoint"

    from ..media.video import read_checked_file, spec_from_record, to_tensor
    from ..models.mc_dropout import mc_dropout_probabilities
    from ..models.registry import load_version

    model = load_version(store, model_version)
    tensors = []
    for sid, record in zip(rows["scoring_id"], rows["record"], strict=True):
        spec = spec_from_record(json.loads(record) if isinstance(record, str) else record)
        clip = read_checked_file(store.verified_raw_path(sid), spec, name=f"clip {sid}")
        tensors.append(to_tensor(clip, spec)[0])
    return mc_dropout_probabilities(model, torch.stack(tensors), passes=passes, seed=seed), "recomputed"
