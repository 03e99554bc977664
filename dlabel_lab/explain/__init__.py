"""Explanations: Captum attributions, neuron functions, sensitivity sweeps, derived and reviewed parameters.

Names load on first use (see :mod:`dlabel_lab.lazy`).
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "NeuronAttributionResult": ".attribution",
    "activations": ".attribution",
    "attribution_cost_benchmark": ".attribution",
    "frame_attribution": ".attribution",
    "layer_map": ".attribution",
    "neuron_attributions": ".attribution",
    "DIRECT_TAGS": ".neurons",
    "FACTOR_TAGS": ".neurons",
    "attribution_geometry": ".neurons",
    "compare_groups": ".neurons",
    "neuron_functions": ".neurons",
    "neuron_functions_long": ".neurons",
    "tag_clips": ".neurons",
    "sensitivity_sweep": ".sensitivity",
    "AXES": ".sensitivity",
    "Analysis": ".derive",
    "analyse": ".derive",
    "derive_transformation_params": ".derive",
    "FACTOR_COLUMNS": ".derive",
    "candidate_value": ".review",
    "load_params": ".review",
    "params_review": ".review",
    "review_params": ".review",
    "save_reviewed_params": ".review",
}

_SUBMODULES = ("attribution", "neurons", "sensitivity", "derive", "review")

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, submodules=_SUBMODULES)

__all__ = sorted(_EXPORTS)
