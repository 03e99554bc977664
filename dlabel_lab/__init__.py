"""dlabel_lab: the data-labelling loop for deep-learning video models.

The package has one wing per stage of the loop: ``media`` (reading clips,
integrity checks, sample data), ``store`` (the DuckDB payload store),
``models`` (classifiers, backbones, checkpoints, the version registry),
``serving`` (the scoring endpoints), ``explain`` (Captum attributions and the
derivation of transformation parameters), ``train`` (datasets, augmentation,
the training recipe), then ``evaluate``, ``loop``, ``plots`` and ``widgets``.

Every public name below is importable from ``dlabel_lab`` directly. They are
loaded on first use (PEP 562), so ``import dlabel_lab`` imports no torch,
Lightning, Captum, torchvision, matplotlib or ipywidgets.

Example:
    >>> import dlabel_lab as dl
    >>> spec = dl.ClipSpec(frames=8, size=112)
"""

from .errors import (
    CheckpointError,
    ConfigError,
    DLabelError,
    DuplicateScoringId,
    EmptyMedia,
    MediaError,
    MediaTooLarge,
    MissingMedia,
    ModelError,
    SchemaVersionError,
    StoreCorrupt,
    StoreError,
    StoreLocked,
    TruncatedMedia,
    UnknownLabel,
    UnknownRecord,
    UnsafeSource,
    UnsupportedMedia,
    WeightsUnavailable,
)
from .lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    # evaluate
    'compare': '.evaluation',
    'evaluate': '.evaluation',
    'Evaluation': '.evaluation',
    # explain.attribution
    'attribution_cost_benchmark': '.explain.attribution',
    'frame_attribution': '.explain.attribution',
    'layer_activations': '.explain.attribution:activations',
    'layer_map': '.explain.attribution',
    'neuron_attributions': '.explain.attribution',
    'NeuronAttributionResult': '.explain.attribution',
    # explain.derive
    'analyse': '.explain.derive',
    'Analysis': '.explain.derive',
    'derive_transformation_params': '.explain.derive',
    'sensitivity_sweep': '.explain.derive',
    # explain.neurons
    'attribution_geometry': '.explain.neurons',
    'compare_groups': '.explain.neurons',
    'neuron_functions': '.explain.neurons',
    'neuron_functions_long': '.explain.neurons',
    'tag_clips': '.explain.neurons',
    # labeling
    'audit_report': '.labeling.autolabel',
    'autolabel': '.labeling.autolabel',
    'calibrate': '.labeling.calibration',
    'Calibration': '.labeling.calibration',
    'suggest': '.labeling.suggest',
    'Suggestion': '.labeling.suggest',
    # loop
    'ensure_scored': '.loop',
    'evaluate_version': '.loop',
    'LoopIteration': '.loop',
    'LoopReport': '.loop',
    'ModelVersion': '.loop',
    'retrain': '.loop',
    'run_loop': '.loop',
    'train_initial': '.loop',
    'train_model': '.loop',
    # media.samples
    'check_manifest': '.media.manifest',
    'Drift': '.media.samples',
    'load_digit_clips': '.media.samples',
    'make_shape_clips': '.media.samples',
    'read_manifest': '.media.manifest',
    'write_sample_data': '.media.samples',
    # media.video
    'Clip': '.media.video',
    'clip_stats': '.media.video',
    'ClipSpec': '.media.video',
    'ClipStats': '.media.video',
    'read_clip': '.media.video',
    'rebuild_tensor': '.media.video',
    'tensor_digest': '.media.video',
    'to_tensor': '.media.video',
    # models.backbones
    'BACKBONES': '.models.backbones',
    'build_backbone': '.models.backbones',
    # models.checkpoint
    'file_sha256': '.models.checkpoint',
    # models.classifier
    'ClipClassifier': '.models.classifier',
    # models.registry
    'load_version': '.models.registry',
    'register_version': '.models.registry',
    # serving.endpoints
    'deploy': '.serving.endpoints',
    'deploy_version': '.serving.endpoints',
    'IngestEndpoint': '.serving.endpoints',
    'ModelEndpoint': '.serving.endpoints',
    'replay': '.serving.endpoints',
    'ScoringResult': '.serving.endpoints',
    # store.payload_store
    'PayloadStore': '.store.payload_store',
    # train.datasets
    'ClipDataset': '.train.datasets',
    'split_ids': '.train.datasets',
    'StoreDataModule': '.train.datasets',
    # train.transforms
    'class_weight_tensor': '.train.transforms',
    'Evidence': '.train.transforms',
    'TransformationParams': '.train.transforms',
}
_SUBMODULES = ("media", "store", "models", "serving", "explain", "labeling", "train", "evaluation", "loop", "plots",
               "widgets", "errors", "cli", "demo")

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, submodules=_SUBMODULES)

__all__ = [
    "Analysis",
    "BACKBONES",
    "CheckpointError",
    "Clip",
    "ClipClassifier",
    "ClipDataset",
    "ClipSpec",
    "ClipStats",
    "ConfigError",
    "DLabelError",
    "Drift",
    "DuplicateScoringId",
    "EmptyMedia",
    "Evaluation",
    "Evidence",
    "IngestEndpoint",
    "LoopIteration",
    "LoopReport",
    "MediaError",
    "MediaTooLarge",
    "MissingMedia",
    "ModelEndpoint",
    "ModelError",
    "ModelVersion",
    "NeuronAttributionResult",
    "PayloadStore",
    "SchemaVersionError",
    "ScoringResult",
    "StoreCorrupt",
    "StoreDataModule",
    "StoreError",
    "StoreLocked",
    "suggest",
    "Suggestion",
    "TransformationParams",
    "TruncatedMedia",
    "UnknownLabel",
    "UnknownRecord",
    "UnsafeSource",
    "UnsupportedMedia",
    "WeightsUnavailable",
    "analyse",
    "attribution_cost_benchmark",
    "audit_report",
    "autolabel",
    "attribution_geometry",
    "build_backbone",
    "calibrate",
    "Calibration",
    "check_manifest",
    "class_weight_tensor",
    "clip_stats",
    "compare",
    "compare_groups",
    "deploy",
    "deploy_version",
    "derive_transformation_params",
    "ensure_scored",
    "evaluate",
    "evaluate_version",
    "file_sha256",
    "frame_attribution",
    "layer_activations",
    "layer_map",
    "load_digit_clips",
    "load_version",
    "make_shape_clips",
    "neuron_attributions",
    "neuron_functions",
    "neuron_functions_long",
    "read_clip",
    "read_manifest",
    "rebuild_tensor",
    "register_version",
    "replay",
    "retrain",
    "run_loop",
    "sensitivity_sweep",
    "split_ids",
    "tag_clips",
    "tensor_digest",
    "to_tensor",
    "train_initial",
    "train_model",
    "write_sample_data",
]
