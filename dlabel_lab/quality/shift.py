"""Lab vs operational shift: two-sample tests with effect sizes, per clip factor and on embeddings.

:func:`factor_shift` compares each clip factor (the :func:`~dlabel_lab.clip_stats`
columns: brightness, contrast, motion, blur, noise, object scale) between lab
and operational clips: the 5/50/95 % quantiles of both (as the loop's
parameter derivation reads them), the standardised mean difference, Cliff's
delta, the two-sided Mann-Whitney U and Kolmogorov-Smirnov p-values and a
Holm adjustment over the factors. :func:`embedding_shift` tests whether the
two embedding clouds differ at all: the unbiased squared MMD with a Gaussian
kernel (median-distance bandwidth) and a permutation p-value, and the
cross-validated AUC of a logistic regression told to separate them (a
classifier two-sample test; 0.5 means indistinguishable) as the effect size.

Example:
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> lab = pd.DataFrame({"brightness": rng.normal(0.5, 0.1, 50)})
    >>> ops = pd.DataFrame({"brightness": rng.normal(0.3, 0.1, 50)})
    >>> bool(factor_shift(lab, ops).loc[0, "cliffs_delta"] < -0.7)
    True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError

__all__ = ["FACTORS", "cliffs_delta", "embedding_shift", "factor_shift", "holm"]

#: The clip factors compared (the fields of :class:`~dlabel_lab.ClipStats`).
FACTORS = ("brightness", "contrast", "motion", "blur", "noise", "object_scale")


def cliffs_delta(a, b) -> float:
    """Cliff's delta of ``b`` over ``a``: P(b > a) - P(b < a), in [-1, 1] (0: neither tends larger).

    Example:
        >>> cliffs_delta([1, 2, 3], [4, 5, 6])
        1.0
    """
    from scipy.stats import mannwhitneyu

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not len(x) or not len(y):
        return float("nan")
    u = mannwhitneyu(y, x, alternative="two-sided").statistic  # pairs with y > x, ties counting one half
    return float(2.0 * u / (len(x) * len(y)) - 1.0)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of p-values (NaN stays NaN).

    Example:
        >>> holm([0.01, 0.04, 0.03]).round(2).tolist()
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="mergesort")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def _quantiles(v: np.ndarray, prefix: str) -> dict[str, float]:
    if not len(v):
        return {f"{prefix}_q05": np.nan, f"{prefix}_q50": np.nan, f"{prefix}_q95": np.nan}
    q = np.quantile(v, [0.05, 0.5, 0.95])
    return {f"{prefix}_q05": float(q[0]), f"{prefix}_q50": float(q[1]), f"{prefix}_q95": float(q[2])}


def factor_shift(lab: pd.DataFrame, ops: pd.DataFrame, factors: Sequence[str] | None = None) -> pd.DataFrame:
    """Per factor: quantiles of both groups, effect sizes and two-sample tests, largest shift first.

    Args:
        lab: Lab clips, one row each, a column per factor.
        ops: Operational clips, the same columns.
        factors: Columns to compare (default: :data:`FACTORS` present in both).

    Returns:
        One row per factor: ``factor``, ``n_lab``, ``n_ops``, ``lab_q05``,
        ``lab_q50``, ``lab_q95``, ``ops_q05``, ``ops_q50``, ``ops_q95``,
        ``smd`` (operational minus lab mean over the pooled standard
        deviation), ``cliffs_delta`` (P(ops > lab) - P(ops < lab)),
        ``mannwhitney_p``, ``ks_statistic``, ``ks_p``, ``p_holm`` (Holm over
        the factors, from the Mann-Whitney p-values); sorted by
        ``|cliffs_delta|``, NaN last. NaN values are skipped.

    Raises:
        ConfigError: A factor is missing from either table.

    Example:
        >>> factor_shift(pd.DataFrame({"blur": [0.1, 0.2]}), pd.DataFrame({"blur": [0.1, 0.2]})).cliffs_delta.tolist()
        [0.0]
    """
    from scipy.stats import ks_2samp, mannwhitneyu

    if factors is None:
        factors = [f for f in FACTORS if f in lab.columns and f in ops.columns]
    missing = [f for f in factors if f not in lab.columns or f not in ops.columns]
    if missing:
        raise ConfigError(f"factor_shift: both tables need the factors {missing}")
    rows = []
    for name in factors:
        a = pd.to_numeric(lab[name], errors="coerce").to_numpy(dtype=np.float64)
        b = pd.to_numeric(ops[name], errors="coerce").to_numpy(dtype=np.float64)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        row = {"factor": name, "n_lab": len(a), "n_ops": len(b), **_quantiles(a, "lab"), **_quantiles(b, "ops"),
               "smd": np.nan, "cliffs_delta": np.nan, "mannwhitney_p": np.nan, "ks_statistic": np.nan, "ks_p": np.nan}
        if len(a) and len(b):
            row["cliffs_delta"] = cliffs_delta(a, b)
            diff = float(b.mean() - a.mean())
            dof = len(a) + len(b) - 2
            if dof > 0:
                pooled = math.sqrt((((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()) / dof)
                row["smd"] = diff / pooled if pooled > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                row["mannwhitney_p"] = float(mannwhitneyu(b, a, alternative="two-sided").pvalue)
                ks = ks_2samp(b, a)
                row["ks_statistic"], row["ks_p"] = float(ks.statistic), float(ks.pvalue)
        rows.append(row)
    out = pd.DataFrame(rows, columns=["factor", "n_lab", "n_ops", "lab_q05", "lab_q50", "lab_q95", "ops_q05",
                                      "ops_q50", "ops_q95", "smd", "cliffs_delta", "mannwhitney_p", "ks_statistic",
                                      "ks_p"])
    out["p_holm"] = holm(out["mannwhitney_p"]) if len(out) else []
    order = out["cliffs_delta"].abs().sort_values(ascending=False, kind="mergesort", na_position="last").index
    return out.loc[order].reset_index(drop=True)


def _rbf(z: np.ndarray) -> tuple[np.ndarray, float]:
    sq = (z * z).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    off = d2[np.triu_indices(len(z), 1)]
    positive = off[off > 0]
    h2 = float(np.median(positive)) if len(positive) else 1.0  # median heuristic on squared distances
    return np.exp(-d2 / h2), math.sqrt(h2)


def _mmd2(k: np.ndarray, a: np.ndarray) -> float:
    """Unbiased MMD^2 for group indicator ``a`` (1: first sample) on a kernel matrix with unit diagonal."""
    b = 1.0 - a
    n, m = a.sum(), b.sum()
    kxx = (a @ k @ a - n) / (n * (n - 1))
    kyy = (b @ k @ b - m) / (m * (m - 1))
    kxy = (a @ k @ b) / (n * m)
    return float(kxx + kyy - 2.0 * kxy)


def embedding_shift(lab, ops, *, n_permutations: int = 200, max_per_group: int = 1000, seed: int = 0) -> dict:
    """Whether lab and operational embeddings come from one distribution: MMD with permutations, and a C2ST AUC.

    Args:
        lab: ``(n, D)`` lab embeddings.
        ops: ``(m, D)`` operational embeddings.
        n_permutations: Label permutations of the MMD test.
        max_per_group: Larger groups are subsampled (seeded) to this many rows.
        seed: Seed of the subsample, the permutations and the folds.

    Returns:
        ``n_lab``, ``n_ops``, ``mmd2`` (unbiased squared MMD, Gaussian kernel
        on standardised embeddings), ``bandwidth``, ``mmd_p_value`` ((1 + #
        permutations at least as large) / (1 + n_permutations)),
        ``n_permutations``, ``c2st_auc`` (cross-validated ROC AUC of a
        logistic regression separating the groups; 0.5: indistinguishable)
        and ``c2st_folds``.

    Raises:
        ConfigError: Fewer than 2 rows in a group, or different widths.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> out = embedding_shift(rng.normal(size=(40, 4)), rng.normal(1.0, size=(40, 4)), n_permutations=50)
        >>> bool(out["mmd_p_value"] < 0.05 and out["c2st_auc"] > 0.8)
        True
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = np.asarray(lab, dtype=np.float64), np.asarray(ops, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or len(x) < 2 or len(y) < 2:
        raise ConfigError(f"embedding_shift needs two (n >= 2, D) arrays of one width, got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ConfigError("embedding_shift: the embeddings hold NaN or infinite values")
    rng = np.random.default_rng(seed)
    if len(x) > max_per_group:
        x = x[np.sort(rng.choice(len(x), max_per_group, replace=False))]
    if len(y) > max_per_group:
        y = y[np.sort(rng.choice(len(y), max_per_group, replace=False))]
    z = np.vstack([x, y])
    scale = z.std(axis=0)
    z = (z - z.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    k, bandwidth = _rbf(z)
    a = np.r_[np.ones(len(x)), np.zeros(len(y))]
    observed = _mmd2(k, a)
    at_least = sum(_mmd2(k, rng.permutation(a)) >= observed - 1e-12 for _ in range(n_permutations))
    folds = int(min(5, len(x), len(y)))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = cross_val_predict(model, z, a.astype(int), cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                              method="predict_proba")[:, 1]
    return {"n_lab": len(x), "n_ops": len(y), "mmd2": observed, "bandwidth": bandwidth,
            "mmd_p_value": (1 + at_least) / (1 + n_permutations), "n_permutations": int(n_permutations),
            "c2st_auc": float(roc_auc_score(a, p)), "c2st_folds": folds}
