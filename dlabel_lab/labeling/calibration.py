"""Calibration of a model version by temperature scaling, fitted on held-out labelled clips.

A model's confidence is what auto-labelling thresholds and estimators lean
on, so it must mean what it says. Temperature scaling (Guo et al., 2017)
divides the logits by one scalar ``T`` fitted to minimise the negative log
likelihood of held-out labels; it never changes which class is predicted.
Because the store keeps each clip's softmax probabilities, the logits are
recovered as ``log p`` (up to a per-clip constant, which softmax ignores), so
calibrating needs no new forward pass. SciPy's bounded scalar minimiser fits
``log T``; the expected calibration error before and after comes from
:func:`dlabel_lab.evaluate` (torchmetrics).

Example:
    >>> cal = calibrate(store, "shapes-v1")  # doctest: +SKIP
    >>> cal.temperature, cal.ece_before, cal.ece_after  # doctest: +SKIP
    (2.31, 0.46, 0.05)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..evaluation import evaluate

__all__ = ["Calibration", "apply_temperature", "calibrate", "fit_temperature", "stack_column"]

_EPS = 1e-12


def stack_column(frame: pd.DataFrame, column: str, *, width: int = 1) -> np.ndarray:
    """A list column of ``matched()`` (``probabilities``, ``embedding``) as one ``(N, D)`` array.

    Example:
        >>> stack_column(pd.DataFrame({"p": [[0.2, 0.8], [0.5, 0.5]]}), "p").shape
        (2, 2)
    """
    if frame.empty:
        return np.zeros((0, width))
    return np.stack(frame[column].map(np.asarray).tolist())


def apply_temperature(probabilities, temperature: float) -> np.ndarray:
    """Softmax of ``log(p) / T`` per row: probabilities rescaled by a temperature.

    Example:
        >>> apply_temperature([[0.8, 0.2]], 1.0).round(2).tolist()
        [[0.8, 0.2]]
    """
    if not (np.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"temperature must be a positive number, got {temperature!r}")
    logp = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(probabilities, labels: Sequence[int], *, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature that minimises the negative log likelihood of ``labels``.

    Args:
        probabilities: ``(N, K)`` softmax outputs.
        labels: ``N`` class indices.
        bounds: The range searched for ``T``.

    Example:
        >>> p = [[0.99, 0.01], [0.99, 0.01], [0.01, 0.99], [0.99, 0.01]]
        >>> round(fit_temperature(p, [0, 1, 1, 0]), 1) > 1.0   # over-confident -> T > 1
        True
    """
    from scipy.optimize import minimize_scalar

    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if p.ndim != 2 or len(p) != len(y) or len(y) == 0:
        raise ConfigError(f"need (N, K) probabilities and N labels, got {p.shape} and {y.shape}")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ConfigError(f"labels must be class indices in [0, {p.shape[1]}), got {y.min()}..{y.max()}")

    def nll(log_t: float) -> float:
        q = apply_temperature(p, float(np.exp(log_t)))
        return float(-np.log(np.clip(q[np.arange(len(y)), y], _EPS, 1.0)).mean())

    res = minimize_scalar(nll, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-4})
    return float(np.exp(res.x))


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and what it did.

    Attributes:
        model_version: The calibrated version.
        temperature: ``T``; probabilities become ``softmax(log p / T)``.
        n: Labelled clips it was fitted on.
        ece_before: Expected calibration error of the raw probabilities.
        ece_after: The same after scaling (on the same clips: an in-sample
            figure; the benchmark reports out-of-sample ones).
        nll_before: Mean negative log likelihood before.
        nll_after: The same after.
        scoring_ids: The clips used.
    """

    model_version: str
    temperature: float
    n: int
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    scoring_ids: list[str]

    def to_dict(self) -> dict:
        """JSON-ready, without the ids."""
        return {k: getattr(self, k) for k in ("temperature", "n", "ece_before", "ece_after", "nll_before",
                                              "nll_after")}


def calibrate(store, model_version: str, *, scoring_ids: Sequence[str] | None = None, save: bool = True,
              n_bins: int = 10) -> Calibration:
    """Fit temperature scaling for a model version on labelled clips it did not train on.

    Args:
        store: The payload store.
        model_version: The version (its logged probabilities are used).
        scoring_ids: The clips to fit on (default: every clip the version
            scored that has a user score and is not among its training ids).
        save: Record the result with the version (``store.log_metrics``,
            split ``"calibration"``).
        n_bins: Bins of the calibration error.

    Raises:
        ConfigError: Fewer than 10 labelled held-out clips.

    Example:
        >>> calibrate(store, "shapes-v1").temperature  # doctest: +SKIP
        2.31
    """
    return _calibrate(store, model_version, store.matched(model_version=model_version).df(),
                      scoring_ids=scoring_ids, save=save, n_bins=n_bins)


def _calibrate(store, model_version: str, df: pd.DataFrame, *, scoring_ids: Sequence[str] | None, save: bool,
               n_bins: int) -> Calibration:
    """:func:`calibrate` on the version's ``matched()`` rows already read (auto-labelling reuses them)."""
    info = store.get_model(model_version)
    classes = json.loads(info["classes"]) if isinstance(info["classes"], str) else list(info["classes"])
    df = df[df["user_label"].notna() & df["user_label"].isin(classes)]
    if scoring_ids is not None:
        df = df[df["scoring_id"].isin(set(map(str, scoring_ids)))]
    else:
        params = info.get("params") or {}
        params = json.loads(params) if isinstance(params, str) else params
        df = df[~df["scoring_id"].isin(set(params.get("train_ids") or []))]
    if len(df) < 10:
        raise ConfigError(f"calibrating {model_version} needs at least 10 labelled clips it did not train on; "
                          f"found {len(df)}. Label more scored clips first.")
    probs = stack_column(df, "probabilities")
    y = df["user_label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    t = fit_temperature(probs, y)
    after = apply_temperature(probs, t)

    def nll(p: np.ndarray) -> float:
        return float(-np.log(np.clip(p[np.arange(len(y)), y], _EPS, 1.0)).mean())

    def ece(p: np.ndarray) -> float:
        frame = pd.DataFrame({"user_label": df["user_label"].to_numpy(),
                              "predicted_label": [classes[i] for i in p.argmax(axis=1)],
                              "probabilities": list(p), "confidence": p.max(axis=1)})
        return float(evaluate(frame, classes=classes, n_bins=n_bins).ece)

    cal = Calibration(model_version, t, len(df), ece(probs), ece(after), nll(probs), nll(after),
                      df["scoring_id"].tolist())
    if save:
        store.log_metrics(model_version, cal.to_dict(), split="calibration", scoring_ids=cal.scoring_ids)
    return cal
