"""Samplers that choose which clips people label to estimate accuracy, each with its design recorded.

Pure functions over population positions ``0..N-1`` and pseudo-oracle
scores; each returns a :class:`Sample` holding what the matching estimator
needs to stay unbiased (inclusion or draw probabilities, strata and their
sizes). Every sampler is seeded, and a larger budget with the same seed
extends the smaller sample (nested samples), so labels already given are
reused when the budget grows.

- :func:`srs_sample`: simple random sampling without replacement
  (a prefix of one seeded permutation).
- :func:`stratified_sample`: strata cut at quantiles of a pseudo-oracle score
  (:func:`score_strata`), the budget split by Neyman allocation
  (:func:`neyman_allocation`: ``n_h`` proportional to ``N_h S_h``), a simple
  random sample inside each stratum.
- :func:`failure_seeking_sample`: DeepEST-style weighted sampling (Guerriero,
  Pietrantuono and Russo 2021): draws with replacement with probability
  proportional to the failure-proneness ``1 - score``, mixed with a uniform
  share so that no clip's weight explodes (defensive importance sampling,
  Hesterberg 1995). The Hansen-Hurwitz estimator keeps it unbiased.

Example:
    >>> s = srs_sample(10, 3, seed=0)
    >>> len(s.indices), s.inclusion_probabilities.tolist()
    (3, [0.3, 0.3, 0.3])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = ["SAMPLERS", "Sample", "draw_probabilities", "failure_seeking_sample", "neyman_allocation",
           "score_strata", "srs_sample", "stratified_sample"]

#: Sampler name -> the estimators that stay unbiased with it (the first is the default).
SAMPLERS = {"srs": ("ppi", "srs"), "stratified": ("stratified",), "failure-seeking": ("weighted",)}


@dataclass(frozen=True)
class Sample:
    """A drawn sample and its design.

    Attributes:
        design: ``"srs"``, ``"stratified"`` or ``"failure-seeking"``.
        indices: Population positions in draw order (with replacement a
            position may repeat: it counts once per draw).
        inclusion_probabilities: ``P(clip in the sample)`` of each drawn position.
        population_size: ``N``.
        draw_probabilities: Per-draw selection probability ``p`` of each
            drawn position (with-replacement designs), else ``None``.
        strata: Stratum of each drawn position (stratified), else ``None``.
        stratum_sizes: ``N_h`` (stratified), else ``None``.
    """

    design: str
    indices: np.ndarray
    inclusion_probabilities: np.ndarray
    population_size: int
    draw_probabilities: np.ndarray | None = None
    strata: np.ndarray | None = None
    stratum_sizes: np.ndarray | None = None

    @property
    def unique(self) -> np.ndarray:
        """The distinct positions, in order of first draw (the clips people label).

        Example:
            >>> Sample("x", np.array([3, 1, 3]), np.ones(3), 5).unique.tolist()
            [3, 1]
        """
        _, first = np.unique(self.indices, return_index=True)
        return self.indices[np.sort(first)]


def _count(value: object, what: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{what} must be an int >= {minimum}, got {value!r}")
    return int(value)


def srs_sample(population_size: int, n: int, *, seed: int = 0) -> Sample:
    """A simple random sample of ``n`` of ``N`` positions, without replacement.

    Example:
        >>> srs_sample(100, 5, seed=1).indices.tolist() == srs_sample(100, 9, seed=1).indices[:5].tolist()
        True
    """
    big_n = _count(population_size, "population_size")
    n = _count(n, "budget")
    if n > big_n:
        raise ConfigError(f"budget {n} exceeds the population of {big_n} clips; label them all instead")
    indices = np.random.default_rng(seed).permutation(big_n)[:n]
    return Sample("srs", indices, np.full(n, n / big_n), big_n)


def score_strata(scores, n_strata: int) -> np.ndarray:
    """Equal-count strata by rank of a pseudo-oracle score (0 = lowest scores); ties split by position.

    Example:
        >>> score_strata([0.9, 0.1, 0.5, 0.7], 2).tolist()
        [1, 0, 0, 1]
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    h = _count(n_strata, "n_strata")
    if s.size < h:
        raise ConfigError(f"{s.size} clips cannot fill {h} strata; use fewer strata")
    if not np.all(np.isfinite(s)):
        raise ConfigError("scores must be finite; fill clips without a pseudo-oracle score first")
    ranks = np.empty(s.size, dtype=np.int64)
    ranks[np.argsort(s, kind="stable")] = np.arange(s.size)
    return (ranks * h) // s.size


def neyman_allocation(stratum_sizes, stratum_sds, n: int, *, minimum: int = 2) -> np.ndarray:
    """Split a budget over strata in proportion to ``N_h S_h`` (Neyman), at least ``minimum`` and at most ``N_h`` each.

    Largest-remainder rounding keeps the total at ``n``. When every ``S_h``
    is zero the split is proportional to ``N_h``.

    Args:
        stratum_sizes: ``N_h``.
        stratum_sds: ``S_h``, the standard deviation of correctness expected
            in each stratum (e.g. ``sqrt(q (1 - q))`` of its mean calibrated confidence ``q``).
        n: The budget.
        minimum: Labels every stratum gets first (2 lets each stratum's
            variance be estimated).

    Raises:
        ConfigError: The budget is below ``minimum`` per stratum or above the population.

    Example:
        >>> neyman_allocation([100, 100, 200], [0.1, 0.3, 0.2], 40, minimum=0).tolist()
        [5, 15, 20]
    """
    sizes = np.asarray(stratum_sizes, dtype=np.int64).ravel()
    sds = np.asarray(stratum_sds, dtype=np.float64).ravel()
    n = _count(n, "budget")
    if sizes.size != sds.size or sizes.size == 0 or np.any(sizes < 1) or np.any(~np.isfinite(sds)) \
            or np.any(sds < 0):
        raise ConfigError("stratum_sizes (positive) and stratum_sds (finite, >= 0) must be non-empty and match")
    if n > sizes.sum():
        raise ConfigError(f"budget {n} exceeds the population of {int(sizes.sum())} clips")
    base = np.minimum(sizes, minimum)
    if base.sum() > n:
        raise ConfigError(f"budget {n} is below {minimum} labels for each of {sizes.size} strata; raise the "
                          "budget or use fewer strata")
    alloc = base.astype(np.float64)
    weight = sizes * sds if np.any(sizes * sds > 0) else sizes.astype(np.float64)
    left = float(n - base.sum())
    open_ = sizes > alloc
    while left > 1e-9 and open_.any():  # water-filling: strata that hit N_h pass their share on
        w = np.where(open_, weight, 0.0)
        if w.sum() <= 0:
            w = np.where(open_, sizes.astype(np.float64), 0.0)
        share = left * w / w.sum()
        room = sizes - alloc
        take = np.minimum(share, room)
        alloc += take
        left -= take.sum()
        open_ = sizes - alloc > 1e-9
    out = np.floor(alloc + 1e-9).astype(np.int64)
    rest = n - int(out.sum())
    order = np.argsort(-(alloc - out), kind="stable")
    for i in order:
        if rest <= 0:
            break
        if out[i] < sizes[i]:
            out[i] += 1
            rest -= 1
    return out


def oracle_stratum_sds(scores, strata, n_strata: int, *, trust: float = 0.95) -> np.ndarray:
    """Neyman's ``S_h`` per stratum from a pseudo-oracle: ``sqrt(q (1 - q))`` of the stratum's mean score ``q``.

    ``q`` is clipped to ``[1 - trust, trust]``: a stratum where the oracle is
    sure would otherwise get ``S_h = 0``, only the minimum of labels and an
    understated variance.

    Example:
        >>> oracle_stratum_sds([1.0, 1.0, 0.5, 0.5], [0, 0, 1, 1], 2).round(3).tolist()
        [0.218, 0.5]
    """
    f = np.asarray(scores, dtype=np.float64).ravel()
    s = np.asarray(strata).ravel()
    if f.size != s.size or not 0.5 <= trust < 1:
        raise ConfigError(f"oracle_stratum_sds needs one stratum per score and trust in [0.5, 1), got {f.size} "
                          f"scores, {s.size} strata, trust {trust!r}")
    q = np.array([f[s == k].mean() if np.any(s == k) else 0.5 for k in range(n_strata)])
    q = np.clip(q, 1 - trust, trust)
    return np.sqrt(q * (1 - q))


def stratified_sample(strata, n: int, *, stratum_sds=None, seed: int = 0, minimum: int = 2) -> Sample:
    """A stratified random sample: Neyman allocation, then a simple random sample inside each stratum.

    Args:
        strata: Stratum index (``0..H-1``) of every population position.
        n: The budget.
        stratum_sds: ``S_h`` for the allocation (default: equal, i.e.
            proportional allocation).
        seed: Random state (each stratum draws from its own seeded stream, so
            samples nest as the budget grows).
        minimum: Labels every stratum gets first.

    Example:
        >>> s = stratified_sample([0, 0, 0, 1, 1, 1], 4, seed=0)
        >>> s.stratum_sizes.tolist(), sorted(s.strata.tolist())
        ([3, 3], [0, 0, 1, 1])
    """
    h = np.asarray(strata).ravel()
    if h.size == 0 or not np.issubdtype(h.dtype, np.integer) or h.min() < 0:
        raise ConfigError("strata must be non-negative integer indices, one per population clip")
    sizes = np.bincount(h)
    if np.any(sizes == 0):
        raise ConfigError("every stratum index 0..H-1 must have at least one clip")
    sds = np.ones(sizes.size) if stratum_sds is None else stratum_sds
    alloc = neyman_allocation(sizes, sds, n, minimum=minimum)
    picked, probs, labels = [], [], []
    for k, n_k in enumerate(alloc):
        members = np.flatnonzero(h == k)
        chosen = np.random.default_rng([seed, k]).permutation(members)[:n_k]
        picked.append(chosen)
        probs.append(np.full(n_k, n_k / sizes[k]))
        labels.append(np.full(n_k, k))
    return Sample("stratified", np.concatenate(picked), np.concatenate(probs), int(h.size),
                  strata=np.concatenate(labels), stratum_sizes=sizes)


def draw_probabilities(failure_scores, *, uniform_share: float = 0.2) -> np.ndarray:
    """Per-draw probabilities of the failure-seeking sampler: ``(1-e) f / sum(f) + e / N``.

    ``f`` is the failure-proneness (e.g. ``1 -`` calibrated confidence);
    ``e = uniform_share`` bounds every weight ``1 / (N p)`` by ``1 / e``.

    Example:
        >>> draw_probabilities([0.0, 1.0], uniform_share=0.5).tolist()
        [0.25, 0.75]
    """
    f = np.asarray(failure_scores, dtype=np.float64).ravel()
    if f.size == 0 or not np.all(np.isfinite(f)) or np.any(f < 0):
        raise ConfigError("failure scores must be finite and >= 0, one per population clip")
    if not 0 < uniform_share <= 1:
        raise ConfigError(f"uniform_share must be in (0, 1], got {uniform_share!r}")
    share = f / f.sum() if f.sum() > 0 else np.full(f.size, 1 / f.size)
    p = (1 - uniform_share) * share + uniform_share / f.size
    return p / p.sum()


def failure_seeking_sample(failure_scores, n: int, *, seed: int = 0, uniform_share: float = 0.2) -> Sample:
    """``n`` draws with replacement, likelier where a misprediction is likelier (DeepEST-style).

    Args:
        failure_scores: Failure-proneness of every population clip (``1 -``
            the pseudo-oracle's score).
        n: Draws (the distinct clips to label can be fewer).
        seed: Random state (draws nest as the budget grows).
        uniform_share: Share of the uniform mixture, see :func:`draw_probabilities`.

    Example:
        >>> s = failure_seeking_sample([0.01] * 98 + [0.9, 0.9], 10, seed=0)
        >>> s.draw_probabilities.shape, bool((s.indices >= 98).sum() >= 3)
        ((10,), True)
    """
    p = draw_probabilities(failure_scores, uniform_share=uniform_share)
    n = _count(n, "budget")
    indices = np.random.default_rng(seed).choice(p.size, size=n, replace=True, p=p)
    inclusion = 1 - (1 - p[indices]) ** n
    return Sample("failure-seeking", indices, inclusion, int(p.size), draw_probabilities=p[indices])
