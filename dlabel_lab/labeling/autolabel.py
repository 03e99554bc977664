"""Auto-labelling above a trusted confidence, with a human audit that can take it back.

The PowerAI Vision workflow: label a few, train, let the model label the
rest where its *calibrated* confidence clears a threshold, have people audit
a random sample of those labels, and raise the threshold when the audit
says the labels are worse than promised.

1. :func:`choose_threshold` (pure) picks the lowest confidence at which the
   labelled validation clips above it reach the target precision, with at
   least ``min_support`` of them, and reports the exact (Clopper–Pearson)
   interval of that precision (scipy's ``binomtest``).
2. :func:`autolabel` calibrates the version (temperature scaling, see
   :mod:`.calibration`), logs a user score with ``source="auto"`` and the
   model version as author for every pool clip at or above the threshold,
   and draws a random audit sample of them for people; all recorded in one
   ``autolabel`` run.
3. People label the audit sample with ``source="audit"`` (e.g.
   ``store.log_score(sid, label, source="audit")``).
   :func:`audit_report` estimates the auto-labels' precision from the
   audits with its exact interval; when the interval's lower bound falls
   below the target, the threshold rises above the most confident audited
   error, and every auto-label at or below it is flagged (clip tag
   ``autolabel_flagged``) and listed, never silently kept.

Example:
    >>> result = autolabel(store, "shapes-v2", target_precision=0.95, audit_rate=0.1)  # doctest: +SKIP
    >>> for sid in result.audit["scoring_id"]: ...  # people label these with source="audit"  # doctest: +SKIP
    >>> audit_report(store, "shapes-v2").summary()  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import ConfigError, UnknownRecord
from ..serving.client import ServiceClient
from .calibration import _calibrate, apply_temperature, stack_column

__all__ = ["AuditReport", "AutoLabelResult", "audit_report", "autolabel", "choose_threshold", "exact_interval"]

FLAG_TAG = "autolabel_flagged"


def exact_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper–Pearson interval of a proportion (``(0, 1)`` when ``n == 0``).

    Example:
        >>> [round(v, 3) for v in exact_interval(19, 20)]
        [0.751, 0.999]
    """
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def choose_threshold(confidence: Sequence[float], correct: Sequence[bool], *, target_precision: float = 0.95,
                     min_support: int = 10) -> tuple[float | None, dict]:
    """The lowest confidence threshold whose validation precision reaches the target.

    Args:
        confidence: Calibrated confidence of each labelled validation clip.
        correct: Whether its prediction matches its user label.
        target_precision: The precision auto-labels must have.
        min_support: At least this many validation clips must lie above the threshold.

    Returns:
        ``(threshold or None, stats)``; ``None`` when no threshold reaches the
        target with enough support. ``stats`` holds ``n_above``,
        ``precision``, ``ci_low``, ``ci_high`` and ``coverage`` (share of
        the validation clips above the threshold).

    Example:
        >>> t, stats = choose_threshold([0.99] * 12 + [0.6] * 4, [True] * 12 + [False] * 4, min_support=10)
        >>> t, stats["precision"]
        (0.99, 1.0)
    """
    if not 0 < target_precision < 1:
        raise ConfigError(f"target_precision must be in (0, 1), got {target_precision!r}")
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if conf.shape != ok.shape or conf.ndim != 1:
        raise ConfigError("confidence and correct must be two 1-D sequences of the same length")
    best: tuple[float | None, dict] = (None, {"n_above": 0, "precision": None, "ci_low": None, "ci_high": None,
                                              "coverage": 0.0})
    for t in np.unique(conf)[::-1]:  # from the most confident down: keep the lowest that still qualifies
        above = conf >= t
        n = int(above.sum())
        k = int(ok[above].sum())
        if n >= min_support and k / n >= target_precision:
            low, high = exact_interval(k, n)
            best = (float(t), {"n_above": n, "precision": k / n, "ci_low": low, "ci_high": high,
                               "coverage": n / len(conf)})
    return best


@dataclass(frozen=True)
class AutoLabelResult:
    """What :func:`autolabel` did.

    Attributes:
        run_id: The ``autolabel`` run in the execution log.
        model_version: The labelling version.
        threshold: Calibrated confidence at or above which clips were labelled.
        temperature: The calibration used.
        target_precision: The precision asked for.
        validation: Precision (with its exact interval), support and coverage
            of the threshold on the labelled validation clips.
        labelled: Auto-labelled clips: ``scoring_id``, ``label``, ``confidence``.
        audit: The random audit sample for people: ``scoring_id``, ``auto_label``, ``confidence``.
        pool_size: Clips that could be auto-labelled.
    """

    run_id: str
    model_version: str
    threshold: float | None
    temperature: float
    target_precision: float
    validation: dict
    labelled: pd.DataFrame
    audit: pd.DataFrame
    pool_size: int

    @property
    def coverage(self) -> float:
        """Share of the pool labelled without a person."""
        return len(self.labelled) / self.pool_size if self.pool_size else 0.0


def autolabel(store, model_version: str, *, target_precision: float = 0.95, audit_rate: float = 0.1,
              pool: Sequence[str] | None = None, min_support: int = 10, seed: int = 0) -> AutoLabelResult:
    """Label the pool where the calibrated model is trusted, and draw an audit sample.

    Args:
        store: The payload store.
        model_version: The version whose logged predictions label the pool.
        target_precision: The precision auto-labels must reach on labelled validation clips.
        audit_rate: Fraction of the auto-labels sent to people (at least one when any).
        pool: Scoring ids to consider (default: every clip the version scored without a user score).
        min_support: Validation clips needed above the threshold.
        seed: Seeds the audit sample.

    Raises:
        ConfigError: Bad arguments, or too few labelled clips to calibrate.

    Example:
        >>> autolabel(store, "shapes-v2", target_precision=0.95).coverage  # doctest: +SKIP
        0.62
    """
    if isinstance(store, ServiceClient):  # run by the service that owns the store
        from .remote import autolabel_via

        return autolabel_via(store, model_version, target_precision=target_precision, audit_rate=audit_rate,
                             pool=pool, min_support=min_support, seed=seed)
    if not 0 <= audit_rate <= 1:
        raise ConfigError(f"audit_rate must be in [0, 1], got {audit_rate!r}")
    scored = store.matched(model_version=model_version).df()
    cal = _calibrate(store, model_version, scored, scoring_ids=None, save=True, n_bins=10)
    val = scored[scored["scoring_id"].isin(set(cal.scoring_ids))]
    val_probs = apply_temperature(stack_column(val, "probabilities"), cal.temperature)
    threshold, stats = choose_threshold(val_probs.max(axis=1), (val["predicted_label"] == val["user_label"]),
                                        target_precision=target_precision, min_support=min_support)
    if pool is None:
        candidates = scored[scored["user_label"].isna()]
    else:
        wanted = set(map(str, pool))
        candidates = scored[scored["scoring_id"].isin(wanted) & scored["user_label"].isna()]
    candidates = candidates.sort_values("scoring_id").reset_index(drop=True)
    conf = apply_temperature(stack_column(candidates, "probabilities"), cal.temperature).max(axis=1)
    take = conf >= threshold if threshold is not None else np.zeros(len(candidates), dtype=bool)
    labelled = pd.DataFrame({"scoring_id": candidates["scoring_id"][take].to_numpy(),
                             "label": candidates["predicted_label"][take].to_numpy(), "confidence": conf[take]})
    n_audit = 0 if labelled.empty else max(1, int(round(audit_rate * len(labelled))))
    rng = np.random.default_rng(seed)
    audit_idx = np.sort(rng.choice(len(labelled), size=n_audit, replace=False)) if n_audit else np.zeros(0, int)
    audit = labelled.iloc[audit_idx].rename(columns={"label": "auto_label"}).reset_index(drop=True)
    params = {"model_version": model_version, "target_precision": target_precision, "audit_rate": audit_rate,
              "min_support": min_support, "seed": seed, "temperature": cal.temperature, "pool_size": len(candidates)}
    run_id = store.start_run("autolabel", params, model_version=model_version)
    try:
        if len(labelled):
            store.log_score_many([{"scoring_id": s, "label": lab, "source": "auto", "author": model_version}
                                  for s, lab in zip(labelled["scoring_id"], labelled["label"], strict=True)])
    except BaseException as error:
        store.finish_run(run_id, status="failed", error=error)
        raise
    store.finish_run(run_id, result={
        "threshold": threshold, "validation": stats, "auto_labelled": labelled["scoring_id"].tolist(),
        "confidence": [float(c) for c in labelled["confidence"]], "audit": audit["scoring_id"].tolist(),
    })
    return AutoLabelResult(run_id, model_version, threshold, cal.temperature, target_precision, stats, labelled,
                           audit, len(candidates))


@dataclass(frozen=True)
class AuditReport:
    """What the audits say of the latest auto-labelling of a version.

    Attributes:
        model_version: The labelling version.
        run_id: The ``autolabel`` run audited.
        n_audited: Auto-labels people have audited so far.
        n_agree: Audits that confirmed the auto-label.
        precision: ``n_agree / n_audited`` (``None`` before any audit).
        ci_low: Lower bound of the exact 95 % interval.
        ci_high: Upper bound.
        target_precision: The precision promised.
        threshold_before: The threshold used.
        threshold_after: The raised threshold when the audit failed (else the same).
        flagged: Auto-labels at or below the raised threshold (tagged ``autolabel_flagged``).
    """

    model_version: str
    run_id: str
    n_audited: int
    n_agree: int
    precision: float | None
    ci_low: float
    ci_high: float
    target_precision: float
    threshold_before: float | None
    threshold_after: float | None
    flagged: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The interval's lower bound clears the target."""
        return self.n_audited > 0 and self.ci_low >= self.target_precision

    def summary(self) -> str:
        """One paragraph for people."""
        if not self.n_audited:
            return f"{self.model_version}: no auto-label audited yet; label the audit sample with source='audit'"
        text = (f"{self.model_version}: {self.n_agree} of {self.n_audited} audited auto-labels confirmed, "
                f"precision {self.precision:.3f} (95 % CI {self.ci_low:.3f}-{self.ci_high:.3f}), "
                f"target {self.target_precision:.2f}")
        if self.flagged:
            text += (f"; threshold raised from {self.threshold_before:.3f} to {self.threshold_after:.3f} and "
                     f"{len(self.flagged)} auto-label(s) flagged for people")
        return text


def audit_report(store, model_version: str) -> AuditReport:
    """Compare audit labels (``source="audit"``) with the latest auto-labelling of a version.

    When the lower bound of the precision's exact interval is below the
    target and audits found errors, the threshold rises just above the most
    confident audited error and every auto-label at or below it is flagged.

    Raises:
        UnknownRecord: The version never auto-labelled.

    Example:
        >>> print(audit_report(store, "shapes-v2").summary())  # doctest: +SKIP
    """
    if isinstance(store, ServiceClient):  # run by the service that owns the store
        from .remote import audit_report_via

        return audit_report_via(store, model_version)
    runs = store.runs("autolabel")
    runs = runs[(runs["model_version"] == model_version) & (runs["status"] == "ok")]
    if runs.empty:
        raise UnknownRecord(f"{model_version} has not auto-labelled anything; run autolabel() first")
    run = runs.iloc[-1]
    result = run["result"]
    result = json.loads(result) if isinstance(result, str) else dict(result)
    params = run["params"]
    params = json.loads(params) if isinstance(params, str) else dict(params)
    auto = dict(zip(result["auto_labelled"], result["confidence"], strict=True))
    history = store.score_history()
    auto_labels = history[(history["source"] == "auto") & (history["author"] == model_version)
                          & history["scoring_id"].isin(auto)].drop_duplicates("scoring_id", keep="last")
    audits = history[(history["source"] == "audit") & history["scoring_id"].isin(auto)]
    audits = audits.drop_duplicates("scoring_id", keep="last")
    merged = audits.merge(auto_labels[["scoring_id", "label"]], on="scoring_id", suffixes=("_audit", "_auto"))
    n, k = len(merged), int((merged["label_audit"] == merged["label_auto"]).sum())
    low, high = exact_interval(k, n)
    target = float(params["target_precision"])
    before = result.get("threshold")
    after, flagged = before, []
    wrong = merged[merged["label_audit"] != merged["label_auto"]]
    if n and low < target and not wrong.empty:
        after = float(max(auto[s] for s in wrong["scoring_id"]))
        flagged = sorted(s for s, c in auto.items() if c <= after)
        store.log_clip_tags(model_version, [{"scoring_id": s, "tag": FLAG_TAG, "score": float(auto[s])}
                                            for s in flagged])
    return AuditReport(model_version, str(run["run_id"]), n, k, (k / n) if n else None, low, high, target, before,
                       after, flagged)
