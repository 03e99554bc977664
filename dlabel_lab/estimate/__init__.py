"""Operational accuracy from few labels: pseudo-oracles, samplers, unbiased estimators, budget planning.

Names load on first use (see :mod:`dlabel_lab.lazy`).
"""

from ..lazy import lazy_exports

_EXPORTS = {
    # array level
    "Estimate": ".estimators",
    "clopper_pearson": ".estimators",
    "srs_estimate": ".estimators",
    "stratified_estimate": ".estimators",
    "ppi_estimate": ".estimators",
    "ppi_lambda": ".estimators",
    "hansen_hurwitz_estimate": ".estimators",
    "SAMPLERS": ".samplers",
    "Sample": ".samplers",
    "srs_sample": ".samplers",
    "score_strata": ".samplers",
    "neyman_allocation": ".samplers",
    "stratified_sample": ".samplers",
    "oracle_stratum_sds": ".samplers",
    "draw_probabilities": ".samplers",
    "failure_seeking_sample": ".samplers",
    "unit_variances": ".planning",
    "labels_needed": ".planning",
    "ORACLES": ".oracles",
    "calibrated_confidence": ".oracles",
    "prediction_agreement": ".oracles",
    "mc_agreement": ".oracles",
    "TTA_VIEWS": ".tta",
    "tta_views": ".tta",
    "tta_predictions": ".tta",
    # store level
    "Population": ".population",
    "load_population": ".population",
    "stored_temperature": ".oracles",
    "compute_pseudo_oracles": ".oracles",
    "load_pseudo_oracles": ".oracles",
    "LabelPlan": ".planning",
    "plan_labels": ".planning",
    "EstimationRequest": ".api",
    "estimate_accuracy": ".api",
    "estimate_history": ".api",
    "log_sample_labels": ".api",
    "plot_estimates": ".plots",
}

_SUBMODULES = ("estimators", "samplers", "planning", "oracles", "tta", "population", "api", "plots", "remote")

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, submodules=_SUBMODULES)

__all__ = sorted(_EXPORTS)
