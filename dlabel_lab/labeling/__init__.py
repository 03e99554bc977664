"""Labelling less: query strategies, what to label next, MC-dropout, calibration, auto-labelling with audit,
labelling pipelines of machine steps and human micro-tasks.

Names load on first use (see :mod:`dlabel_lab.lazy`).
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "STRATEGIES": ".strategies",
    "Selection": ".strategies",
    "select": ".strategies",
    "Suggestion": ".suggest",
    "suggest": ".suggest",
    "mc_dropout_probabilities": "..models.mc_dropout",
    "has_dropout": "..models.mc_dropout",
    "Calibration": ".calibration",
    "apply_temperature": ".calibration",
    "calibrate": ".calibration",
    "fit_temperature": ".calibration",
    "AutoLabelResult": ".autolabel",
    "AuditReport": ".autolabel",
    "autolabel": ".autolabel",
    "audit_report": ".autolabel",
    "choose_threshold": ".autolabel",
    "exact_interval": ".autolabel",
    "StopDecision": ".stopping",
    "stabilising_kappas": ".stopping",
    "stopping_decision": ".stopping",
    "BULK_SOURCE": ".relabel",
    "relabel": ".relabel",
    "TASK_KINDS": ".pipelines",
    "MACHINE_KINDS": ".pipelines",
    "Task": ".pipelines",
    "PipelineRun": ".pipelines",
    "define_pipeline": ".pipelines",
    "run_pipeline": ".pipelines",
    "next_task": ".pipelines",
    "answer_task": ".pipelines",
    "task_frames": ".pipelines",
    "pipeline_status": ".pipelines",
    "resolved_objects": ".pipelines",
    "missed_objects": ".pipelines",
    "export_coco": ".pipelines",
    "TruthAnnotator": ".simulate",
}

_SUBMODULES = ("strategies", "suggest", "calibration", "autolabel", "stopping", "relabel", "pipelines", "microtasks",
               "pipeline_results", "simulate", "remote")

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, submodules=_SUBMODULES)

__all__ = sorted(_EXPORTS)
