"""Query strategies: which clips of a pool a person should label next.

Every strategy is a pure function of arrays the store already holds (or the
model endpoint can produce): predicted probabilities ``(N, K)``, MC-dropout
probabilities ``(T, N, K)``, embeddings ``(N, D)``. None calls a model or
the store. scikit-activeml does the heavy lifting where it has the strategy
(``uncertainty_scores`` for entropy, margin and least confidence,
``batch_bald`` for BALD/BatchBALD, ``k_greedy_center`` for core-set,
``TypiClust``); the glue here validates inputs, turns utilities into a
ranked selection with a reason per clip, and adds what no library offers
over raw arrays: *cluster-margin* (uncertainty-weighted clustering, the
hybrid: the most uncertain candidates are clustered on their embeddings and
the most uncertain clip of each cluster is taken) and class-balanced random
(the honest baseline: equal numbers per predicted class).

Example:
    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.6, 0.4]])
    >>> select("margin", 2, probabilities=probs).indices.tolist()
    [1, 2]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = ["Selection", "STRATEGIES", "select"]

#: Strategy name -> what it needs.
STRATEGIES = {
    "random": (),
    "balanced_random": ("probabilities",),
    "entropy": ("probabilities",),
    "margin": ("probabilities",),
    "least_confidence": ("probabilities",),
    "bald": ("mc_probabilities",),
    "coreset": ("embeddings",),
    "typiclust": ("embeddings",),
    "cluster_margin": ("probabilities", "embeddings"),
}

_SKACTIVEML_METHOD = {"entropy": "entropy", "margin": "margin_sampling", "least_confidence": "least_confident"}


@dataclass(frozen=True)
class Selection:
    """What a strategy chose.

    Attributes:
        strategy: Its name.
        indices: Positions in the pool, in the order chosen.
        scores: The strategy's utility of each chosen clip (higher = more wanted).
        reasons: One sentence per chosen clip saying why.
    """

    strategy: str
    indices: np.ndarray
    scores: np.ndarray
    reasons: list[str]


def _probabilities(p, what: str, ndim: int) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != ndim or arr.shape[-1] < 2 or arr.shape[-2] < 1:
        shape = "(N, K)" if ndim == 2 else "(T, N, K)"
        raise ConfigError(f"{what} must be an array of shape {shape} with K >= 2 classes, got shape {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ConfigError(f"{what} must be finite and non-negative")
    sums = arr.sum(axis=-1)
    if not np.allclose(sums, 1.0, atol=1e-3):
        raise ConfigError(f"{what} must sum to 1 over classes (softmax outputs); sums range "
                          f"{sums.min():.3f}..{sums.max():.3f}")
    return arr


def _embeddings(e, what: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(e, dtype=np.float64)
    if arr.ndim != 2 or (n is not None and arr.shape[0] != n):
        raise ConfigError(f"{what} must be an (N, D) array{'' if n is None else f' with N = {n}'}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{what} must be finite")
    return arr


def select(
    strategy: str,
    budget: int,
    *,
    probabilities: Sequence | np.ndarray | None = None,
    mc_probabilities: Sequence | np.ndarray | None = None,
    embeddings: Sequence | np.ndarray | None = None,
    labelled_embeddings: Sequence | np.ndarray | None = None,
    seed: int = 0,
    candidates_per_pick: int = 10,
) -> Selection:
    """Choose up to ``budget`` clips of a pool with a query strategy.

    Args:
        strategy: One of :data:`STRATEGIES`.
        budget: How many clips to choose (fewer when the pool is smaller).
        probabilities: ``(N, K)`` predicted class probabilities of the pool.
        mc_probabilities: ``(T, N, K)`` probabilities of T MC-dropout passes (``bald``).
        embeddings: ``(N, D)`` embeddings of the pool (``coreset``, ``typiclust``, ``cluster_margin``).
        labelled_embeddings: ``(M, D)`` embeddings of clips already labelled:
            core-set covers the pool around them, TypiClust avoids their clusters.
        seed: Random state (ties, random strategies, k-means).
        candidates_per_pick: ``cluster_margin`` clusters the ``budget x this``
            most uncertain clips.

    Returns:
        The :class:`Selection`.

    Raises:
        ConfigError: Unknown strategy, a missing or malformed input, a bad budget.

    Example:
        >>> select("entropy", 1, probabilities=[[0.5, 0.5], [0.9, 0.1]]).indices.tolist()
        [0]
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose one of {sorted(STRATEGIES)}")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ConfigError(f"budget must be a positive int, got {budget!r}")
    given = {"probabilities": probabilities, "mc_probabilities": mc_probabilities, "embeddings": embeddings}
    missing = [k for k in STRATEGIES[strategy] if given[k] is None]
    if missing:
        raise ConfigError(f"strategy {strategy!r} needs {', '.join(missing)}")
    probs = None if probabilities is None else _probabilities(probabilities, "probabilities", 2)
    mc = None if mc_probabilities is None else _probabilities(mc_probabilities, "mc_probabilities", 3)
    sizes = {a.shape[-2] for a in (probs, mc) if a is not None}
    emb = None if embeddings is None else _embeddings(embeddings, "embeddings", next(iter(sizes), None))
    if emb is not None:
        sizes.add(emb.shape[0])
    if len(sizes) > 1:
        raise ConfigError(f"the pool arrays disagree on the number of clips: {sorted(sizes)}")
    n = sizes.pop() if sizes else None
    if n is None:
        raise ConfigError("random selection needs the pool: pass probabilities or embeddings")
    k = int(min(budget, n))
    rng = np.random.default_rng(seed)
    if strategy == "random":
        idx = rng.permutation(n)[:k]
        return Selection(strategy, idx, np.zeros(k), ["drawn at random"] * k)
    if strategy == "balanced_random":
        return _balanced_random(probs, k, rng)
    if strategy in _SKACTIVEML_METHOD:
        return _uncertainty(strategy, probs, k, rng)
    if strategy == "bald":
        return _bald(mc, k, seed)
    if strategy == "coreset":
        return _coreset(emb, labelled_embeddings, k, seed)
    if strategy == "typiclust":
        return _typiclust(emb, labelled_embeddings, k, seed)
    return _cluster_margin(probs, emb, k, seed, candidates_per_pick)


def _top(utility: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the k highest utilities, ties broken at random (not by position)."""
    jitter = rng.random(len(utility))
    return np.lexsort((jitter, -utility))[:k]


def _uncertainty(strategy: str, probs: np.ndarray, k: int, rng: np.random.Generator) -> Selection:
    from skactiveml.pool import uncertainty_scores

    utility = np.asarray(uncertainty_scores(probs, method=_SKACTIVEML_METHOD[strategy]), dtype=np.float64)
    idx = _top(utility, k, rng)
    top2 = np.sort(probs[idx], axis=1)[:, ::-1][:, :2]
    reasons = [f"{strategy} {u:.3f}: top classes at {a:.2f} and {b:.2f}" for u, (a, b) in zip(utility[idx], top2,
                                                                                            strict=True)]
    return Selection(strategy, idx, utility[idx], reasons)


def _bald(mc: np.ndarray, k: int, seed: int) -> Selection:
    from skactiveml.pool import batch_bald

    utilities = np.asarray(batch_bald(mc, k, random_state=seed), dtype=np.float64)
    idx, scores = [], []
    for row in utilities:  # row i: joint mutual information of the first i picks plus each candidate
        row = row.copy()
        row[idx] = np.nan
        if np.isnan(row).all():
            break
        j = int(np.nanargmax(row))
        idx.append(j)
        scores.append(float(row[j]))
    gains = np.diff([0.0, *scores])
    reasons = [f"BatchBALD: adds {g:.3f} nats of information about the model's weights ({mc.shape[0]} MC passes)"
               for g in gains]
    return Selection("bald", np.array(idx, dtype=np.int64), gains, reasons)


def _joint(emb: np.ndarray, labelled) -> tuple[np.ndarray, np.ndarray, int]:
    """Pool and labelled embeddings stacked for scikit-activeml: (X, y with NaN for the pool, offset)."""
    lab = np.zeros((0, emb.shape[1])) if labelled is None else _embeddings(labelled, "labelled_embeddings")
    if lab.shape[1] != emb.shape[1]:
        raise ConfigError(f"labelled_embeddings have {lab.shape[1]} dimensions, the pool's {emb.shape[1]}")
    X = np.vstack([lab, emb])
    y = np.concatenate([np.zeros(len(lab)), np.full(len(emb), np.nan)])
    return X, y, len(lab)


def _coreset(emb: np.ndarray, labelled, k: int, seed: int) -> Selection:
    from skactiveml.pool import k_greedy_center

    X, y, offset = _joint(emb, labelled)
    picked, _ = k_greedy_center(X, y, batch_size=k, random_state=seed)
    idx = np.asarray(picked, dtype=np.int64) - offset
    chosen: list[int] = []
    dist = []
    for j in idx:
        others = np.vstack([X[:offset], emb[chosen]]) if offset or chosen else None
        dist.append(0.0 if others is None else float(np.min(np.linalg.norm(others - emb[j], axis=1))))
        chosen.append(int(j))
    reasons = [f"core-set: {d:.3f} from the nearest labelled or chosen clip" if d else "core-set: first centre"
               for d in dist]
    return Selection("coreset", idx, np.asarray(dist), reasons)


def _typiclust(emb: np.ndarray, labelled, k: int, seed: int) -> Selection:
    from skactiveml.pool import TypiClust

    X, y, offset = _joint(emb, labelled)
    neighbours = int(max(1, min(20, len(X) - 1)))
    try:
        picked, utilities = TypiClust(random_state=seed, k=neighbours).query(X, y, batch_size=k,
                                                                             return_utilities=True)
    except UnboundLocalError:
        # scikit-activeml 1.0.1 fails when k-means finds fewer distinct clusters than labelled clips plus the
        # budget (duplicate embeddings): every cluster is covered. Core-set still spreads the picks.
        fallback = _coreset(emb, labelled, k, seed)
        reasons = [f"{r} (TypiClust found too few distinct clusters: duplicate embeddings)" for r in fallback.reasons]
        return Selection("typiclust", fallback.indices, fallback.scores, reasons)
    picked = np.asarray(picked, dtype=np.int64)
    scores = np.array([utilities[i, j] for i, j in enumerate(picked)], dtype=np.float64)
    reasons = [f"TypiClust: the most typical clip (typicality {s:.3f}) of an uncovered cluster" for s in scores]
    return Selection("typiclust", picked - offset, scores, reasons)


def _cluster_margin(probs: np.ndarray, emb: np.ndarray, k: int, seed: int, per_pick: int) -> Selection:
    from skactiveml.pool import uncertainty_scores
    from sklearn.cluster import KMeans

    utility = np.asarray(uncertainty_scores(probs, method="margin_sampling"), dtype=np.float64)
    m = int(min(len(utility), max(k, k * per_pick)))
    rng = np.random.default_rng(seed)
    pool = _top(utility, m, rng)
    if m <= k:
        return Selection("cluster_margin", pool, utility[pool],
                         [f"cluster-margin: margin uncertainty {u:.3f} (pool smaller than the budget)"
                          for u in utility[pool]])
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(emb[pool])
    idx = []
    for c in range(k):
        members = pool[labels == c]
        idx.append(int(members[np.argmax(utility[members])]))
    idx_arr = np.array(sorted(idx, key=lambda j: -utility[j]), dtype=np.int64)
    reasons = [f"cluster-margin: the most uncertain clip (margin utility {utility[j]:.3f}) of one of {k} clusters "
               f"among the {m} most uncertain" for j in idx_arr]
    return Selection("cluster_margin", idx_arr, utility[idx_arr], reasons)


def _balanced_random(probs: np.ndarray, k: int, rng: np.random.Generator) -> Selection:
    predicted = probs.argmax(axis=1)
    by_class = {c: list(rng.permutation(np.flatnonzero(predicted == c))) for c in np.unique(predicted)}
    order = sorted(by_class)
    idx: list[int] = []
    while len(idx) < k:
        for c in order:
            if by_class[c] and len(idx) < k:
                idx.append(int(by_class[c].pop()))
    reasons = [f"class-balanced random: predicted class {int(predicted[j])}" for j in idx]
    return Selection("balanced_random", np.array(idx, dtype=np.int64), np.zeros(len(idx)), reasons)
