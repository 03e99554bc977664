"""Models: clip classifiers, object detectors, backbones, safetensors checkpoints and the model version registry.

Names load on first use (see :mod:`dlabel_lab.lazy`).
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "ClipClassifier": ".classifier",
    "build_backbone": ".classifier",
    "file_sha256": ".classifier",
    "BACKBONES": ".classifier",
    "backbone_spec": ".backbones",
    "write_checkpoint": ".checkpoint",
    "read_checkpoint": ".checkpoint",
    "read_checkpoint_metadata": ".checkpoint",
    "load_state_dict_file": ".checkpoint",
    "register_version": ".registry",
    "load_version": ".registry",
    "register_detector": ".registry",
    "load_detector": ".registry",
    "mc_dropout_probabilities": ".mc_dropout",
    "has_dropout": ".mc_dropout",
    "ObjectDetector": ".detection",
    "DETECTORS": ".detection",
    "build_detector": ".detection",
}

_SUBMODULES = ("classifier", "backbones", "checkpoint", "registry", "mc_dropout", "detection")

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, submodules=_SUBMODULES)

__all__ = sorted(_EXPORTS)
