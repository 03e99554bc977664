"""Training: datasets and the DataModule, transformation parameters and augmentation, the training recipe.

Names load on first use (see :mod:`dlabel_lab.lazy`).
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "ClipDataset": ".datasets",
    "StoreDataModule": ".datasets",
    "split_ids": ".datasets",
    "labelled_rows": ".datasets",
    "lineage_training_rows": ".datasets",
    "Evidence": ".transforms",
    "TransformationParams": ".transforms",
    "class_weight_tensor": ".transforms",
    "speed_indices": ".transforms",
    "PARAM_NAMES": ".transforms",
    "SCHEMA_VERSION": ".transforms",
    "ModelVersion": ".training",
    "train_model": ".training",
    "train_initial": ".training",
    "recalibrate_batchnorm": ".training",
    "fine_tune_copy": ".training",
    "evaluate_manifest": ".holdout",
    "train_detector": ".detection",
    "retrain_detector": ".detection",
}

_SUBMODULES = ("datasets", "transforms", "training", "augment", "holdout", "detection")

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, submodules=_SUBMODULES)

__all__ = sorted(_EXPORTS)
