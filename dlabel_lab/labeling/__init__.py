"""Labelling less: query strategies, suggestions of what to label next, MC-dropout, calibration.

Names load on first use (see :mod:`dlabel_lab.lazy`).
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "STRATEGIES": ".strategies",
    "Selection": ".strategies",
    "select": ".strategies",
    "Suggestion": ".suggest",
    "suggest": ".suggest",
    "mc_dropout_probabilities": ".mc_dropout",
    "has_dropout": ".mc_dropout",
    "Calibration": ".calibration",
    "apply_temperature": ".calibration",
    "calibrate": ".calibration",
    "fit_temperature": ".calibration",
}

_SUBMODULES = ("strategies", "suggest", "mc_dropout", "calibration")

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, submodules=_SUBMODULES)

__all__ = sorted(_EXPORTS)
