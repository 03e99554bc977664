"""Budget planning: how many labels each estimator needs for an interval of a given width.

From a pilot (the human labels already given) and the pseudo-oracle on
every clip, :func:`unit_variances` estimates each design's variance per
label, and :func:`labels_needed` turns it into the ``n`` whose normal
interval ``2 z sqrt(V / n + extra)`` is no wider than asked:

- ``srs``: ``p (1 - p)`` with the pilot's accuracy, Laplace-smoothed so that
  a flawless pilot does not promise a zero-width interval;
- ``ppi``: the variance of ``y - lam f`` on the pilot (PPI++'s ``lam``), plus
  ``lam^2 var(f) / N`` from the population that no label reduces;
- ``stratified``: Neyman's ``(sum_h W_h S_h)^2`` with each stratum's
  (smoothed) pilot accuracy;
- ``weighted``: the Hansen-Hurwitz per-draw variance
  ``(1/N) sum_i d_i^2 / (N p_i) - mean(d)^2`` of the failure-seeking design,
  ``d = y - f``, estimated on the pilot.

Every figure treats the pilot as a random sample of the population; a pilot
chosen otherwise (e.g. labels given at ingestion for other reasons) makes the
plan a rough guide, and a small pilot makes it a noisy one.

Example:
    >>> labels_needed(0.25, 0.1)
    385
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .estimators import ppi_lambda
from .samplers import draw_probabilities, score_strata

__all__ = ["LabelPlan", "labels_needed", "plan_labels", "unit_variances"]


def labels_needed(unit_variance: float, width: float, *, confidence: float = 0.95,
                  extra_variance: float = 0.0) -> int | None:
    """The smallest ``n >= 2`` with ``2 z sqrt(unit_variance / n + extra_variance) <= width``.

    Returns:
        ``n``, or ``None`` when no number of labels reaches the width (the
        population-side variance alone is too large).

    Example:
        >>> labels_needed(0.09, 0.04), labels_needed(0.09, 0.08)
        (865, 217)
    """
    from scipy.stats import norm

    if not (isinstance(width, (int, float)) and 0 < width <= 1):
        raise ConfigError(f"width must be in (0, 1], e.g. 0.04 for +-2 points; got {width!r}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    if unit_variance < 0 or extra_variance < 0:
        raise ConfigError("variances must be >= 0")
    z = float(norm.ppf(1 - (1 - confidence) / 2))
    room = (width / (2 * z)) ** 2 - extra_variance
    if room <= 0:
        return None
    return max(2, math.ceil(unit_variance / room - 1e-9))


def unit_variances(correct, pilot_positions, oracle_population, *, n_strata: int = 4,
                   uniform_share: float = 0.2) -> pd.DataFrame:
    """Each estimator's variance per label, from a pilot; one row per estimator.

    Args:
        correct: 0/1 of the pilot clips.
        pilot_positions: Their positions in the population.
        oracle_population: The pseudo-oracle's score of every population clip.
        n_strata: Strata of the stratified design.
        uniform_share: Uniform share of the failure-seeking design.

    Returns:
        Columns ``method``, ``sampler``, ``unit_variance``, ``extra_variance``.

    Example:
        >>> t = unit_variances([1, 1, 0, 1], [0, 1, 2, 3], [0.9, 0.8, 0.3, 0.9, 0.7, 0.6])
        >>> t["method"].tolist()
        ['srs', 'ppi', 'stratified', 'weighted']
    """
    y = np.asarray(correct, dtype=np.float64).ravel()
    pos = np.asarray(pilot_positions, dtype=np.int64).ravel()
    f = np.asarray(oracle_population, dtype=np.float64).ravel()
    if y.size < 2 or y.size != pos.size:
        raise ConfigError("the pilot needs at least 2 labelled clips and one position per label")
    if pos.min() < 0 or pos.max() >= f.size or not np.all(np.isfinite(f)):
        raise ConfigError("pilot positions must index the population, whose oracle scores must be finite")
    big_n = f.size
    fp = f[pos]

    def smoothed(k: float, m: float) -> float:
        q = (k + 1) / (m + 2)
        return q * (1 - q)

    v_srs = smoothed(y.sum(), y.size)
    lam = ppi_lambda(y, fp, f)
    v_ppi = float(np.var(y - lam * fp, ddof=1))
    extra_ppi = float(lam**2 * np.var(f, ddof=1) / big_n)
    strata = score_strata(f, n_strata)
    h = strata[pos]
    sizes = np.bincount(strata, minlength=n_strata)
    s_h = np.array([np.sqrt(smoothed(y[h == k].sum(), (h == k).sum())) if (h == k).any() else np.sqrt(v_srs)
                    for k in range(n_strata)])
    v_strat = float((sizes / big_n) @ s_h) ** 2
    p = draw_probabilities(np.clip(1 - f, 0, None), uniform_share=uniform_share)
    d = y - fp
    v_weighted = max(float(np.mean(d**2 / (big_n * p[pos])) - np.mean(d) ** 2), 0.0)
    return pd.DataFrame({
        "method": ["srs", "ppi", "stratified", "weighted"],
        "sampler": ["srs", "srs", "stratified", "failure-seeking"],
        "unit_variance": [v_srs, v_ppi, v_strat, v_weighted],
        "extra_variance": [0.0, extra_ppi, 0.0, 0.0],
    })


@dataclass(frozen=True)
class LabelPlan:
    """How many labels each estimator needs for the target width.

    Attributes:
        model_version: The version.
        width: The interval width asked for.
        confidence: Nominal coverage.
        oracle: The pseudo-oracle the designs lean on.
        pilot_size: Human labels the plan rests on.
        population_size: Clips of the population.
        table: ``method``, ``sampler``, ``unit_variance``, ``extra_variance``,
            ``labels_needed`` (``None``: unreachable), ``pilot_accuracy``.
    """

    model_version: str
    width: float
    confidence: float
    oracle: str
    pilot_size: int
    population_size: int
    table: pd.DataFrame

    def labels(self, method: str) -> int | None:
        """Labels needed by one estimator.

        Example:
            >>> plan.labels("ppi")  # doctest: +SKIP
            212
        """
        row = self.table[self.table["method"] == method]
        if row.empty:
            raise ConfigError(f"no estimator {method!r} in the plan; choose one of {self.table['method'].tolist()}")
        value = row.iloc[0]["labels_needed"]
        return None if pd.isna(value) else int(value)


def plan_labels(store, model_version: str, width: float = 0.04, *, confidence: float = 0.95,
                oracle: str = "confidence", n_strata: int = 4, uniform_share: float = 0.2,
                min_pilot: int = 10) -> LabelPlan:
    """How many labels each estimator needs for an interval ``width`` wide, from the labels already given.

    Args:
        store: The payload store.
        model_version: The deployed version.
        width: Target interval width (``0.04``: about +-2 points).
        confidence: Nominal coverage.
        oracle: The pseudo-oracle the designs lean on (see :data:`~dlabel_lab.estimate.oracles.ORACLES`).
        n_strata: Strata of the stratified design.
        uniform_share: Uniform share of the failure-seeking design.
        min_pilot: Fewest human labels to plan from.

    Raises:
        ConfigError: Fewer than ``min_pilot`` human labels among the
            version's operational clips.

    Example:
        >>> plan_labels(store, "shapes-v1", width=0.04).table[["method", "labels_needed"]]  # doctest: +SKIP
    """
    from ..labeling.calibration import stack_column
    from .oracles import oracle_scores, stored_temperature
    from .population import load_population

    pop = load_population(store, model_version)
    labelled = pop.labelled
    if labelled.sum() < min_pilot:
        raise ConfigError(f"planning needs a pilot of at least {min_pilot} human labels among {model_version}'s "
                          f"operational clips; found {int(labelled.sum())}. Label a small random sample first, e.g. "
                          f"estimate_accuracy(store, {model_version!r}, budget={min_pilot}, method='srs').")
    f = oracle_scores(store, model_version, pop.ids, oracle, probabilities=stack_column(pop.frame, "probabilities"),
                      temperature=stored_temperature(store, model_version))
    pos = np.flatnonzero(labelled)
    y = pop.correct[pos]
    table = unit_variances(y, pos, f, n_strata=n_strata, uniform_share=uniform_share)
    table["labels_needed"] = pd.array(
        [labels_needed(v, width, confidence=confidence, extra_variance=e)
         for v, e in zip(table["unit_variance"], table["extra_variance"], strict=True)], dtype="Int64")
    table["pilot_accuracy"] = float(y.mean())
    return LabelPlan(model_version, float(width), float(confidence), oracle, int(pos.size), pop.size, table)
