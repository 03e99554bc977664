"""Statistics the benchmarks share (imported by the scripts of ``bench/``; not a benchmark itself)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def bootstrap(values, n: int = 10_000, seed: int = 0, *, stat: Callable = np.mean) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of ``stat`` (default the mean) over ``values``.

    Non-finite values are left out; with fewer than two left the interval is ``(nan, nan)``. The
    resampling draws ``n`` index rows from one seeded generator, so the same values give the same interval.

    Example:
        >>> lo, hi = bootstrap([0.1, 0.2, 0.3, 0.4])
        >>> lo <= 0.25 <= hi
        True
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(v), size=(n, len(v)))
    boots = v[idx].mean(axis=1) if stat is np.mean else np.array([stat(v[i]) for i in idx])
    return float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))
