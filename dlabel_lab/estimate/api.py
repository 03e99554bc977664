"""``estimate_accuracy``: a deployed version's operational accuracy with an interval, from few human labels.

The workflow is two calls around a labelling session:

1. ``estimate_accuracy(store, version, budget=..., sampler=...)`` draws a
   sample of the version's operational clips (:mod:`.samplers`) and records
   it as an ``estimation-sample`` run: the design, the chosen ids in draw
   order with their inclusion (and draw) probabilities, the strata, the
   pseudo-oracle values it leaned on, and a digest of the population. It
   returns an :class:`EstimationRequest` with the clips that still need a
   person's label (clips a person already labelled are reused);
   ``request.as_suggestion()`` feeds the same ``LabelQueue`` as active
   learning, and :func:`log_sample_labels` logs labels with
   ``source="estimation-sample"``.
2. The same call again finds the recorded sample (same version, design,
   budget and seed), and once every sampled clip has a person's label it
   computes the estimate (:mod:`.estimators`), stores it with the version
   (``store.log_metrics(version, ..., split="estimate:<method>")``) and
   returns the :class:`~dlabel_lab.estimate.estimators.Estimate`.

Unbiasedness comes from the design, fixed before any label is seen: the
estimator of each sampler uses exactly the probabilities recorded with the
sample, and a sample keeps speaking for the population it was drawn from
(clips scored later are not in it). Auto-labels never count as ground truth.

Example:
    >>> req = estimate_accuracy(store, "shapes-v1", budget=40, sampler="failure-seeking")  # doctest: +SKIP
    >>> LabelQueue(store, req.as_suggestion(), classes=classes)  # people label req.scoring_ids  # doctest: +SKIP
    >>> est = estimate_accuracy(store, "shapes-v1", budget=40, sampler="failure-seeking")  # doctest: +SKIP
    >>> est.point, est.low, est.high  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, UnknownLabel
from ..labeling.calibration import stack_column
from ..labeling.suggest import Suggestion
from ..serving.client import ServiceClient
from .estimators import Estimate, hansen_hurwitz_estimate, ppi_estimate, srs_estimate, stratified_estimate
from .oracles import ORACLES, oracle_scores, stored_temperature
from .population import Population, load_population
from .samplers import (
    SAMPLERS,
    Sample,
    failure_seeking_sample,
    oracle_stratum_sds,
    score_strata,
    srs_sample,
    stratified_sample,
)

__all__ = ["LABEL_SOURCE", "REQUEST_KIND", "EstimationRequest", "estimate_accuracy", "estimate_history",
           "log_sample_labels"]

#: The execution-log kind of a recorded sample.
REQUEST_KIND = "estimation-sample"
#: The user-score source of labels given for an estimation sample.
LABEL_SOURCE = "estimation-sample"
_SPLIT = "estimate:"


@dataclass(frozen=True)
class EstimationRequest:
    """A recorded estimation sample that still lacks labels.

    Attributes:
        run_id: The ``estimation-sample`` run holding the sample.
        model_version: The version estimated.
        sampler: The design.
        budget: Clips (draws) asked for.
        seed: Random state of the draw.
        oracle: The pseudo-oracle the design leaned on.
        population_size: Clips of the population it speaks for.
        table: One row per distinct sampled clip, in draw order:
            ``scoring_id``, ``draws``, ``inclusion_probability``,
            ``draw_probability``, ``stratum``, ``labelled``,
            ``predicted_label``, ``confidence``, ``media_path``.
        label_source: The source labels for it should carry.
    """

    run_id: str
    model_version: str
    sampler: str
    budget: int
    seed: int
    oracle: str
    population_size: int
    table: pd.DataFrame
    label_source: str = LABEL_SOURCE

    ready = False  # a request for labels, not an estimate

    @property
    def missing(self) -> pd.DataFrame:
        """The sampled clips without a person's label."""
        return self.table[~self.table["labelled"]].reset_index(drop=True)

    @property
    def scoring_ids(self) -> list[str]:
        """Ids people must label before the estimate can be computed."""
        return self.missing["scoring_id"].tolist()

    @property
    def n_missing(self) -> int:
        """How many clips still need a label."""
        return int((~self.table["labelled"]).sum())

    def as_suggestion(self) -> Suggestion:
        """The clips to label as a :class:`~dlabel_lab.labeling.suggest.Suggestion` (what ``LabelQueue`` shows).

        ``score`` is the clip's inclusion probability; the run id is the
        request's, so labels authored ``suggest:<run id>`` trace back to it.

        Example:
            >>> LabelQueue(store, request.as_suggestion(), classes=classes)  # doctest: +SKIP
        """
        rows = self.missing
        reasons = [f"estimation sample ({self.sampler}): inclusion probability {p:.3g}"
                   + (f", drawn {d}x" if d > 1 else "") + "; label what you see, the estimate reweights"
                   for p, d in zip(rows["inclusion_probability"], rows["draws"], strict=True)]
        table = pd.DataFrame({
            "rank": np.arange(1, len(rows) + 1), "scoring_id": rows["scoring_id"].to_numpy(),
            "score": rows["inclusion_probability"].to_numpy(dtype=np.float64), "reason": reasons,
            "predicted_label": rows["predicted_label"].to_numpy(), "confidence": rows["confidence"].to_numpy(),
            "media_path": rows["media_path"].to_numpy(),
        })
        return Suggestion(self.run_id, f"{REQUEST_KIND}:{self.sampler}", self.model_version, self.population_size,
                          table)


def estimate_accuracy(store, model_version: str, *, budget: int, method: str | None = None, sampler: str = "srs",
                      oracle: str = "confidence", seed: int = 0, confidence: float = 0.95, n_strata: int = 4,
                      uniform_share: float = 0.2, fresh: bool = False, save: bool = True,
                      pool: Sequence[str] | None = None) -> Estimate | EstimationRequest:
    """Estimate a version's operational accuracy from a recorded sample, or ask for the labels it lacks.

    Args:
        store: The payload store.
        model_version: The deployed version.
        budget: Clips to sample (draws, for the failure-seeking sampler).
        method: The estimator; one that stays unbiased with the sampler
            (:data:`~dlabel_lab.estimate.samplers.SAMPLERS`): ``"ppi"`` or
            ``"srs"`` with ``sampler="srs"``, ``"stratified"`` with
            ``"stratified"``, ``"weighted"`` with ``"failure-seeking"``.
            Default: the sampler's first.
        sampler: ``"srs"``, ``"stratified"`` or ``"failure-seeking"``.
        oracle: The pseudo-oracle (:data:`~dlabel_lab.estimate.oracles.ORACLES`)
            that cuts the strata, steers the failure-seeking draws, serves
            as PPI's predictions and the Hansen-Hurwitz control.
            ``"confidence"`` needs nothing stored; the others need
            :func:`~dlabel_lab.estimate.oracles.compute_pseudo_oracles` first.
        seed: Random state of the draw. The same version, design, budget and
            seed find the recorded sample again; a larger budget with the same
            seed extends it (labels given are reused).
        confidence: Nominal coverage of the interval.
        n_strata: Strata of the stratified sampler.
        uniform_share: Uniform share of the failure-seeking draws.
        fresh: Draw a new sample even when one is recorded (e.g. to include
            clips scored since).
        save: Store the estimate with the version (``split="estimate:<method>"``).
        pool: The clips the estimate speaks for (default: every operational
            clip of the version: all it scored outside its training ids).
            Recorded with the sample (its ids and their digest), so the same
            pool finds the same sample again.

    Returns:
        The :class:`~dlabel_lab.estimate.estimators.Estimate` when every
        sampled clip has a person's label, else the
        :class:`EstimationRequest` listing the clips to label (``.ready``
        tells them apart).

    Raises:
        ConfigError: An unknown sampler, method or oracle, a pair that would
            be biased, a budget the design cannot meet, or a recorded
            sample whose population changed.

    Example:
        >>> result = estimate_accuracy(store, "shapes-v1", budget=30, method="ppi")  # doctest: +SKIP
        >>> result.ready, result.scoring_ids[:2]  # doctest: +SKIP
        (False, ['0190...', '0190...'])
    """
    if isinstance(store, ServiceClient):  # run by the service that owns the store
        from .remote import estimate_via

        return estimate_via(store, model_version, budget=budget, method=method, sampler=sampler, oracle=oracle,
                            seed=seed, confidence=confidence, n_strata=n_strata, uniform_share=uniform_share,
                            fresh=fresh, save=save, pool=pool)
    method = _check(sampler, method, oracle, budget)
    design = _design(sampler, int(budget), seed, oracle, n_strata, uniform_share)
    pool_ids = None if pool is None else sorted(dict.fromkeys(str(s) for s in pool))
    if pool_ids is not None:
        if not pool_ids:
            raise ConfigError("the pool is empty; pass the scoring ids the estimate should speak for, or None")
        design["pool_digest"] = hashlib.sha256("\n".join(pool_ids).encode()).hexdigest()
    found = None if fresh else _find_request(store, model_version, design)
    if found is None:
        pop = load_population(store, model_version, scoring_ids=pool_ids)
        run_id, params, result = _record_sample(store, pop, design, pool_ids)
    else:
        run_id, params, result = found
        pop = load_population(store, model_version, as_of=pd.Timestamp(params["as_of"]).to_pydatetime(),
                              scoring_ids=result.get("pool_ids"))
        if pop.digest != params["population_digest"]:
            raise ConfigError(f"the population of sample {run_id} changed ({params['population_size']} clips then, "
                              f"{pop.size} now); draw a new sample with fresh=True")
    draws = pop.positions(result["scoring_ids"])
    table = _request_table(pop, draws, result)
    if not table["labelled"].all():
        return EstimationRequest(run_id, model_version, sampler, int(budget), seed, oracle, pop.size, table)
    est = _estimate(store, pop, method, params, result, draws, confidence, oracle)
    est = dataclasses.replace(est, model_version=model_version, sampler=sampler, request_id=run_id,
                              details={**est.details, "budget": int(budget), "seed": seed})
    if save:
        _save(store, est, table["scoring_id"].tolist())
    return est


def log_sample_labels(store, request: EstimationRequest, labels: Mapping[str, str], *,
                      author: str | None = None) -> list[int]:
    """Log people's labels for clips of an estimation sample (``source="estimation-sample"``); their label ids.

    Args:
        store: The payload store.
        request: What :func:`estimate_accuracy` returned.
        labels: Scoring id -> class name.
        author: Who labelled (default ``estimate:<run id>``).

    Raises:
        ConfigError: An id is not in the sample.
        UnknownLabel: A label is not one of the version's classes.

    Example:
        >>> log_sample_labels(store, request, {sid: "circle"})  # doctest: +SKIP
        [42]
    """
    if not isinstance(request, EstimationRequest):
        raise ConfigError(f"log_sample_labels needs what estimate_accuracy returned, got {type(request).__name__}")
    sampled = set(request.table["scoring_id"])
    stray = [s for s in labels if s not in sampled]
    if stray:
        raise ConfigError(f"{len(stray)} id(s) are not in sample {request.run_id} (e.g. {stray[0]}); label only "
                          "the sampled clips (request.scoring_ids)")
    classes = store.get_model(request.model_version)["classes"]
    bad = sorted({v for v in labels.values() if v not in classes})
    if bad:
        raise UnknownLabel(f"{bad} are not classes of {request.model_version}: {classes}")
    who = author or f"estimate:{request.run_id}"
    return store.log_score_many([{"scoring_id": s, "label": v, "source": request.label_source, "author": who}
                                 for s, v in labels.items()])


def estimate_history(store, model_version: str) -> pd.DataFrame:
    """Every stored estimate of a version, oldest first (what :func:`~dlabel_lab.estimate.plots.plot_estimates` draws).

    Returns:
        ``logged_at``, ``model_version``, ``method``, ``sampler``,
        ``oracle``, ``point``, ``low``, ``high``, ``width``, ``labels_used``,
        ``confidence``, ``request_id``.

    Example:
        >>> estimate_history(store, "shapes-v1")[["method", "labels_used", "point"]]  # doctest: +SKIP
    """
    rows = []
    for ev in store.lineage(model_version)["evaluations"]:
        if not str(ev["split"]).startswith(_SPLIT):
            continue
        m = ev["metrics"]
        rows.append({"logged_at": ev["logged_at"], "model_version": model_version, "method": m.get("method"),
                     "sampler": m.get("sampler"), "oracle": m.get("oracle"), "point": m.get("point"),
                     "low": m.get("low"), "high": m.get("high"), "width": m.get("high", 0) - m.get("low", 0),
                     "labels_used": m.get("labels_used"), "confidence": m.get("confidence"),
                     "request_id": m.get("request_id")})
    columns = ["logged_at", "model_version", "method", "sampler", "oracle", "point", "low", "high", "width",
               "labels_used", "confidence", "request_id"]
    return pd.DataFrame(rows, columns=columns)


# --- helpers ---------------------------------------------------------------------------------------
def _check(sampler: str, method: str | None, oracle: str, budget: object) -> str:
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r}; choose one of {list(SAMPLERS)}")
    method = SAMPLERS[sampler][0] if method is None else method
    if method not in SAMPLERS[sampler]:
        pairs = "; ".join(f"{s}: {', '.join(ms)}" for s, ms in SAMPLERS.items())
        raise ConfigError(f"method {method!r} is not unbiased with sampler {sampler!r}; unbiased pairs are {pairs}")
    if oracle not in ORACLES:
        raise ConfigError(f"unknown pseudo-oracle {oracle!r}; choose one of {list(ORACLES)}")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 2:
        raise ConfigError(f"budget must be an int >= 2 (an interval needs two labels), got {budget!r}")
    return method


def _design(sampler: str, budget: int, seed: int, oracle: str, n_strata: int, uniform_share: float) -> dict:
    """The parameters that fix a sample (a recorded sample with the same ones is reused)."""
    design: dict[str, Any] = {"sampler": sampler, "budget": budget, "seed": int(seed)}
    if sampler == "stratified":
        design.update(oracle=oracle, n_strata=int(n_strata))
    elif sampler == "failure-seeking":
        design.update(oracle=oracle, uniform_share=float(uniform_share))
    return design


def _find_request(store, model_version: str, design: dict) -> tuple[str, dict, dict] | None:
    runs = store.runs(REQUEST_KIND)
    runs = runs[(runs["model_version"] == model_version) & (runs["status"] == "ok")]
    for _, run in runs.iloc[::-1].iterrows():  # the latest first
        params = json.loads(run["params"])
        same_pool = params.get("pool_digest") == design.get("pool_digest")  # a whole-population sample has none
        if same_pool and all(params.get(k) == v for k, v in design.items()):
            return str(run["run_id"]), params, json.loads(run["result"])
    return None


def _population_scores(store, pop: Population, oracle: str, temperature: float | None) -> np.ndarray:
    return oracle_scores(store, pop.model_version, pop.ids, oracle,
                         probabilities=stack_column(pop.frame, "probabilities"), temperature=temperature)


def _record_sample(store, pop: Population, design: dict, pool_ids: list[str] | None = None) -> tuple[str, dict, dict]:
    """Draw the sample and record it as an ``estimation-sample`` run."""
    temperature = stored_temperature(store, pop.model_version)
    sampler, budget, seed = design["sampler"], design["budget"], design["seed"]
    f = None if sampler == "srs" else _population_scores(store, pop, design["oracle"], temperature)
    params = {**design, "model_version": pop.model_version, "as_of": pop.as_of.isoformat(),
              "population_size": pop.size, "population_digest": pop.digest, "temperature": temperature,
              "label_source": LABEL_SOURCE}
    run_id = store.start_run(REQUEST_KIND, params, model_version=pop.model_version)
    try:
        sample = _draw(sampler, budget, seed, pop.size, f, design)
        result: dict[str, Any] = {
            "scoring_ids": [pop.ids[i] for i in sample.indices],
            "inclusion_probabilities": sample.inclusion_probabilities.tolist(),
            "draw_probabilities": None if sample.draw_probabilities is None else sample.draw_probabilities.tolist(),
            "strata": None if sample.strata is None else sample.strata.tolist(),
            "stratum_sizes": None if sample.stratum_sizes is None else sample.stratum_sizes.tolist(),
            "control": None if f is None else f[sample.indices].tolist(),
            "control_mean": None if f is None else float(f.mean()),
            "pool_ids": pool_ids,
        }
    except BaseException as error:
        store.finish_run(run_id, status="failed", error=error)
        raise
    store.finish_run(run_id, result=result)
    return run_id, params, result


def _draw(sampler: str, budget: int, seed: int, size: int, f: np.ndarray | None, design: dict) -> Sample:
    if sampler == "srs":
        return srs_sample(size, budget, seed=seed)
    assert f is not None
    if sampler == "stratified":
        strata = score_strata(f, design["n_strata"])
        sds = oracle_stratum_sds(f, strata, design["n_strata"])
        return stratified_sample(strata, budget, stratum_sds=sds, seed=seed)
    return failure_seeking_sample(np.clip(1 - f, 0, None), budget, seed=seed, uniform_share=design["uniform_share"])


def _request_table(pop: Population, draws: np.ndarray, result: dict) -> pd.DataFrame:
    """One row per distinct sampled clip, in order of first draw."""
    frame = pop.frame
    order = pd.unique(draws)
    first = {p: i for i, p in reversed(list(enumerate(draws)))}
    counts = pd.Series(draws).value_counts()
    pick = [first[p] for p in order]

    def per_draw(key: str) -> list:
        values = result.get(key)
        return [None if values is None else values[i] for i in pick]

    return pd.DataFrame({
        "scoring_id": frame["scoring_id"].to_numpy()[order],
        "draws": [int(counts[p]) for p in order],
        "inclusion_probability": per_draw("inclusion_probabilities"),
        "draw_probability": per_draw("draw_probabilities"),
        "stratum": per_draw("strata"),
        "labelled": pop.labelled[order],
        "predicted_label": frame["predicted_label"].to_numpy()[order],
        "confidence": frame["confidence"].to_numpy()[order],
        "media_path": frame["media_path"].to_numpy()[order],
    })


def _estimate(store, pop: Population, method: str, params: dict, result: dict, draws: np.ndarray,
              confidence: float, oracle: str) -> Estimate:
    y = pop.correct[draws]
    distinct = int(len(set(draws.tolist())))
    if method == "srs":
        return srs_estimate(y, confidence=confidence)
    if method == "ppi":
        f = _population_scores(store, pop, oracle, params.get("temperature"))
        return ppi_estimate(y, f[draws], f, confidence=confidence, oracle=oracle)
    if method == "stratified":
        return stratified_estimate(y, np.asarray(result["strata"], dtype=np.int64), result["stratum_sizes"],
                                   confidence=confidence, oracle=params["oracle"])
    return hansen_hurwitz_estimate(y, result["draw_probabilities"], population_size=pop.size,
                                   control=np.asarray(result["control"]), control_mean=result["control_mean"],
                                   labels_used=distinct, confidence=confidence, oracle=params["oracle"])


def _save(store, est: Estimate, scoring_ids: list[str]) -> None:
    """Store the estimate with the version, unless the same one is already the latest stored for its sample."""
    history = estimate_history(store, est.model_version)
    same = history[(history["request_id"] == est.request_id) & (history["method"] == est.method)]
    if len(same) and same.iloc[-1]["labels_used"] == est.labels_used and same.iloc[-1]["point"] == est.point \
            and same.iloc[-1]["confidence"] == est.confidence and same.iloc[-1]["oracle"] == est.oracle:
        return
    store.log_metrics(est.model_version, est.to_dict(), split=f"{_SPLIT}{est.method}", scoring_ids=scoring_ids)
