"""Estimators of operational accuracy from a few human labels, each with a confidence interval.

Pure functions over arrays: ``correct`` (1 where the model's prediction
matched the human label) for the labelled clips of a sample, the
pseudo-oracle scores of those clips and of the whole population, and what
the sampling design recorded (strata, draw probabilities). Each returns an
:class:`Estimate` (point, interval, labels used, method, pseudo-oracle).

- :func:`srs_estimate`: a simple random sample; the share correct with the
  exact Clopper-Pearson interval (beta quantiles from SciPy).
- :func:`stratified_estimate`: a stratified sample; ``sum_h W_h p_h`` with
  the design variance (finite-population corrected) and Korn and Graubard's
  (1998) effective-sample-size Clopper-Pearson interval. With one stratum and
  no correction it is exactly :func:`srs_estimate`.
- :func:`ppi_estimate`: prediction-powered inference with power tuning
  (PPI++, Angelopoulos, Duchi and Zrnic 2023); ``ppi_py`` computes the point
  and interval, the tuning parameter is its own closed form, made explicit.
- :func:`hansen_hurwitz_estimate`: draws with replacement with known
  probabilities ``p_i`` (the failure-seeking sampler). The difference
  estimator ``mean(c) + mean_draws((y_i - c_i) / (N p_i))`` is exactly
  unbiased for any control ``c`` fixed before the draw; its variance
  estimate ``s^2 / n`` is unbiased too, and the interval is the
  effective-sample-size Clopper-Pearson one.

Example:
    >>> est = srs_estimate([1, 1, 1, 0, 1, 1, 1, 1, 1, 1])
    >>> est.point, [round(v, 3) for v in (est.low, est.high)]
    (0.9, [0.555, 0.997])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["Estimate", "clopper_pearson", "hansen_hurwitz_estimate", "ppi_estimate", "srs_estimate",
           "stratified_estimate"]


@dataclass(frozen=True)
class Estimate:
    """An accuracy estimate with its interval.

    Attributes:
        point: The estimate of the share of clips predicted right.
        low: Lower end of the interval.
        high: Upper end of the interval.
        confidence: The interval's nominal coverage (e.g. 0.95).
        labels_used: Distinct human-labelled clips it rests on.
        method: ``"srs"``, ``"stratified"``, ``"ppi"`` or ``"weighted"``.
        oracle: The pseudo-oracle it leaned on (``None`` when none).
        details: What else the method knows (PPI's ``lam``, the effective
            sample size, the number of draws, ...).
        model_version: The version estimated (store-level estimates).
        sampler: The design that chose the labelled clips (store-level).
        request_id: The ``estimation-sample`` run holding the sample (store-level).
    """

    point: float
    low: float
    high: float
    confidence: float
    labels_used: int
    method: str
    oracle: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    model_version: str | None = None
    sampler: str | None = None
    request_id: str | None = None

    ready = True  # an estimate, not a request for labels (see EstimationRequest)

    @property
    def width(self) -> float:
        """``high - low``."""
        return self.high - self.low

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what the store keeps with the version).

        Example:
            >>> srs_estimate([1, 0]).to_dict()["method"]
            'srs'
        """
        return asdict(self)


def _alpha(confidence: float) -> float:
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ConfigError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")
    return 1.0 - float(confidence)


def _indicator(correct, what: str = "correct") -> np.ndarray:
    y = np.asarray(correct, dtype=np.float64).ravel()
    if y.size == 0:
        raise ConfigError(f"{what} is empty: label some sampled clips first")
    if not np.all((y == 0) | (y == 1)):
        raise ConfigError(f"{what} must hold 0/1 (or booleans): 1 where the prediction matched the human label")
    return y


def _scores(values, n: int | None, what: str) -> np.ndarray:
    s = np.asarray(values, dtype=np.float64).ravel()
    if n is not None and s.size != n:
        raise ConfigError(f"{what} has {s.size} values, expected {n} (one per clip)")
    if not np.all(np.isfinite(s)):
        raise ConfigError(f"{what} must be finite numbers; fill or drop clips without a pseudo-oracle score")
    return s


def clopper_pearson(successes: float, n: float, *, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a proportion; non-integer counts allowed (Korn-Graubard).

    Args:
        successes: Clips predicted right (an effective count may be fractional).
        n: Clips labelled (or the effective sample size).
        confidence: Nominal coverage.

    Returns:
        ``(low, high)``; ``(0, 1)`` when ``n == 0``.

    Example:
        >>> [round(v, 3) for v in clopper_pearson(19, 20)]
        [0.751, 0.999]
    """
    from scipy.stats import beta

    alpha = _alpha(confidence)
    if n <= 0:
        return 0.0, 1.0
    x = min(max(float(successes), 0.0), float(n))
    low = 0.0 if x <= 0 else float(beta.ppf(alpha / 2, x, n - x + 1))
    high = 1.0 if x >= n else float(beta.ppf(1 - alpha / 2, x + 1, n - x))
    return low, high


def _effective_interval(point: float, variance: float, n: int, confidence: float) -> tuple[float, float, float]:
    """Korn-Graubard: Clopper-Pearson at the effective sample size ``p(1-p)/var``; ``(low, high, n_eff)``.

    When the variance is zero (or only round-off away from it: a Hansen-Hurwitz
    sample whose draws all agree) or the point sits on 0 or 1 (clipped), the
    effective size falls back to the number of labels, as Korn and Graubard do.
    """
    p = min(max(point, 0.0), 1.0)
    n_eff = p * (1 - p) / variance if variance > 1e-12 and 0 < p < 1 else float(n)
    low, high = clopper_pearson(n_eff * p, n_eff, confidence=confidence)
    return low, high, float(n_eff)


def srs_estimate(correct, *, confidence: float = 0.95) -> Estimate:
    """Accuracy of a simple random sample: the share correct with its exact interval.

    Unbiased under simple random sampling (with or without replacement); the
    Clopper-Pearson interval covers at least ``confidence`` for every true
    accuracy (conservative without replacement).

    Args:
        correct: 0/1 per labelled clip.
        confidence: Nominal coverage.

    Example:
        >>> srs_estimate([1, 1, 0, 1]).point
        0.75
    """
    y = _indicator(correct)
    k, n = int(y.sum()), y.size
    low, high = clopper_pearson(k, n, confidence=confidence)
    return Estimate(k / n, low, high, float(confidence), n, "srs", None, {"successes": k})


def stratified_estimate(correct, strata, stratum_sizes, *, confidence: float = 0.95,
                        finite_population: bool = True, oracle: str | None = None) -> Estimate:
    """Accuracy of a stratified sample: ``sum_h W_h p_h`` with an effective-sample-size exact interval.

    Unbiased when each stratum's sample is a simple random sample of it (the
    stratified sampler's design). The variance is
    ``sum_h W_h^2 (1 - n_h/N_h) p_h (1 - p_h) / n_h``; the interval is the
    Clopper-Pearson one at ``n_eff = p (1 - p) / var`` (Korn and Graubard).

    Args:
        correct: 0/1 per labelled clip.
        strata: Stratum index (``0..H-1``) of each labelled clip.
        stratum_sizes: ``N_h``, clips of the population in each stratum.
        confidence: Nominal coverage.
        finite_population: Apply the ``1 - n_h/N_h`` correction.
        oracle: The pseudo-oracle the strata were cut on (recorded only).

    Raises:
        ConfigError: A stratum of the population has no labelled clip, or
            lengths and indices do not fit.

    Example:
        >>> est = stratified_estimate([1, 1, 0, 1], [0, 0, 1, 1], [50, 50], finite_population=False)
        >>> est.point
        0.75
    """
    y = _indicator(correct)
    h = np.asarray(strata).ravel()
    sizes = np.asarray(stratum_sizes, dtype=np.float64).ravel()
    if h.size != y.size:
        raise ConfigError(f"strata has {h.size} values for {y.size} labels; give one stratum per labelled clip")
    if not np.issubdtype(h.dtype, np.integer) or h.min() < 0 or h.max() >= sizes.size:
        raise ConfigError(f"strata must be integer indices into stratum_sizes (0..{sizes.size - 1})")
    if np.any(sizes <= 0):
        raise ConfigError("every stratum size must be positive")
    n_h = np.bincount(h, minlength=sizes.size).astype(np.float64)
    if np.any(n_h == 0):
        empty = np.flatnonzero(n_h == 0).tolist()
        raise ConfigError(f"strata {empty} have no labelled clip; the stratified estimate needs every stratum "
                          "sampled (draw the sample with the stratified sampler)")
    if np.any(n_h > sizes):
        raise ConfigError("a stratum has more labelled clips than its size; check stratum_sizes")
    weights = sizes / sizes.sum()
    p_h = np.bincount(h, weights=y, minlength=sizes.size) / n_h
    fpc = 1 - n_h / sizes if finite_population else np.ones_like(n_h)
    point = float(weights @ p_h)
    variance = float(np.sum(weights**2 * fpc * p_h * (1 - p_h) / n_h))
    low, high, n_eff = _effective_interval(point, variance, y.size, confidence)
    return Estimate(point, low, high, float(confidence), y.size, "stratified", oracle,
                    {"variance": variance, "effective_n": n_eff, "stratum_accuracy": p_h.tolist(),
                     "stratum_labels": n_h.astype(int).tolist(), "stratum_sizes": sizes.astype(int).tolist()})


def ppi_lambda(correct, oracle_labelled, oracle_population) -> float:
    """PPI++'s power-tuning parameter for a mean, ``cov(y, f) / ((1 + n/N) var(f))`` clipped to [0, 1].

    The same closed form ``ppi_py`` computes internally (``lam=None``), made
    explicit so that the estimate can report it. ``0`` ignores the
    pseudo-oracle (the classical estimate), ``1`` is plain PPI.

    Example:
        >>> round(ppi_lambda([1, 0, 1, 1], [0.6, 0.5, 0.9, 0.4], [0.6, 0.5, 0.9, 0.4] * 25), 3)
        0.68
    """
    y = np.asarray(correct, dtype=np.float64).ravel()
    f = np.asarray(oracle_labelled, dtype=np.float64).ravel()
    fu = np.asarray(oracle_population, dtype=np.float64).ravel()
    n, big_n = y.size, fu.size
    var = float(np.var(np.concatenate([f, fu]), ddof=1)) if n + big_n > 1 else 0.0
    if var <= 0:
        return 0.0
    cov = float(np.mean((y - y.mean()) * (f - f.mean())))
    return float(np.clip(cov / ((1 + n / big_n) * var), 0.0, 1.0))


def ppi_estimate(correct, oracle_labelled, oracle_population, *, confidence: float = 0.95,
                 lam: float | None = None, oracle: str | None = None) -> Estimate:
    """Prediction-powered accuracy: the pseudo-oracle on every clip, rectified by the labelled ones (PPI++).

    ``point = lam * mean(f over the population) + mean(y - lam * f over the
    labelled)``. With the population as the unlabelled set and a simple random
    labelled sample, this is design-unbiased for any fixed ``lam``; tuned
    ``lam`` (the default) is consistent and never asymptotically worse than
    the classical estimate. ``ppi_py`` computes the point and the (CLT)
    interval; the interval is clipped to [0, 1].

    Args:
        correct: 0/1 per labelled clip.
        oracle_labelled: The pseudo-oracle's score (probability the
            prediction is right) of each labelled clip.
        oracle_population: The same score for every clip of the population.
        confidence: Nominal coverage.
        lam: Power-tuning parameter; ``None`` tunes it (PPI++), ``1`` is
            plain PPI, ``0`` the classical estimate.
        oracle: The pseudo-oracle's name (recorded).

    Example:
        >>> est = ppi_estimate([1, 0, 1, 1], [0.9, 0.2, 0.8, 0.9], [0.9, 0.2, 0.8, 0.9] * 25)
        >>> round(est.point, 3)
        0.75
    """
    from ppi_py import ppi_mean_ci, ppi_mean_pointestimate

    alpha = _alpha(confidence)
    y = _indicator(correct)
    if y.size < 2:
        raise ConfigError("PPI needs at least 2 labelled clips")
    f = _scores(oracle_labelled, y.size, "oracle_labelled")
    fu = _scores(oracle_population, None, "oracle_population")
    if fu.size < 2:
        raise ConfigError("PPI needs the pseudo-oracle on at least 2 population clips")
    if lam is None:
        lam = ppi_lambda(y, f, fu)
    elif not 0 <= lam <= 1:
        raise ConfigError(f"lam must be in [0, 1] or None (tuned), got {lam!r}")
    point = float(np.ravel(ppi_mean_pointestimate(y, f, fu, lam=lam))[0])
    low, high = (float(np.ravel(v)[0]) for v in ppi_mean_ci(y, f, fu, alpha=alpha, lam=lam))
    return Estimate(point, max(low, 0.0), min(high, 1.0), float(confidence), y.size, "ppi", oracle,
                    {"lam": float(lam), "population_size": int(fu.size), "half_width": (high - low) / 2})


def hansen_hurwitz_estimate(correct, draw_probabilities, *, population_size: int, control=0.0,
                            control_mean: float | None = None, labels_used: int | None = None,
                            confidence: float = 0.95, oracle: str | None = None) -> Estimate:
    """Accuracy from draws with replacement with known probabilities: the Hansen-Hurwitz difference estimator.

    Each draw ``i`` picked clip ``j`` with probability ``p_j``; with a
    control ``c`` (a pseudo-oracle score fixed before the draw, or a
    constant) ``z_i = mean(c) + (y_i - c_i) / (N p_i)`` has expectation
    exactly the population accuracy, so ``mean(z)`` is unbiased whatever
    ``p`` favours (failures, here), and ``var(z) / n`` is an unbiased
    estimate of its variance. A clip drawn twice counts twice.

    Args:
        correct: 0/1 per draw (repeat a clip's value for each time it was drawn).
        draw_probabilities: ``p_i`` of the clip of each draw (the whole
            population's ``p`` sums to 1).
        population_size: ``N``.
        control: ``c_i`` per draw, or one constant (``0``: plain
            Hansen-Hurwitz of the accuracy; ``1``: of the error rate).
        control_mean: Mean of ``c`` over the population (needed when
            ``control`` is an array).
        labels_used: Distinct clips labelled (default: the number of draws).
        confidence: Nominal coverage.
        oracle: The pseudo-oracle behind ``p`` and ``c`` (recorded).

    Example:
        >>> est = hansen_hurwitz_estimate([1, 0, 1], [0.5, 0.25, 0.25], population_size=3)
        >>> round(est.point, 4)
        0.6667
    """
    y = _indicator(correct)
    p = _scores(draw_probabilities, y.size, "draw_probabilities")
    if np.any(p <= 0) or np.any(p > 1):
        raise ConfigError("draw probabilities must be in (0, 1]")
    if isinstance(population_size, bool) or not isinstance(population_size, (int, np.integer)) \
            or population_size < 1:
        raise ConfigError(f"population_size must be a positive int, got {population_size!r}")
    if np.ndim(control) == 0:
        c = np.full(y.size, float(control))
        c_mean = float(control)
    else:
        c = _scores(control, y.size, "control")
        if control_mean is None:
            raise ConfigError("control_mean (the control's mean over the whole population) is needed with a "
                              "per-draw control")
        c_mean = float(control_mean)
    z = c_mean + (y - c) / (population_size * p)
    n = z.size
    point = float(z.mean())
    variance = float(z.var(ddof=1) / n) if n > 1 else float("inf")
    if np.isfinite(variance):
        low, high, n_eff = _effective_interval(point, variance, n, confidence)
    else:
        low, high, n_eff = 0.0, 1.0, 1.0
    used = n if labels_used is None else int(labels_used)
    return Estimate(point, low, high, float(confidence), used, "weighted", oracle,
                    {"draws": n, "variance": variance, "effective_n": n_eff, "control_mean": c_mean})
