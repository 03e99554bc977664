"""dlabel_lab: the data-labelling loop for deep-learning video models.

Example:
    >>> import dlabel_lab as dl
    >>> spec = dl.ClipSpec(frames=8, size=112)
"""

from .attribution import (
    NeuronAttributionResult,
    attribution_cost_benchmark,
    frame_attribution,
    layer_map,
    neuron_attributions,
)
from .attribution import activations as layer_activations
from .backbones import BACKBONES, build_backbone
from .checkpoint import file_sha256
from .data import ClipDataset, StoreDataModule, split_ids
from .derive import Analysis, analyse, derive_transformation_params, sensitivity_sweep
from .endpoints import IngestEndpoint, ModelEndpoint, ScoringResult, deploy, deploy_version, load_version, replay
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
from .evaluate import Evaluation, compare, evaluate
from .loop import (
    LoopIteration,
    LoopReport,
    ModelVersion,
    ensure_scored,
    evaluate_version,
    retrain,
    run_loop,
    train_initial,
    train_model,
)
from .models import ClipClassifier
from .neurons import attribution_geometry, compare_groups, neuron_functions, neuron_functions_long, tag_clips
from .samples import Drift, load_digit_clips, make_shape_clips, read_manifest, write_sample_data
from .store import PayloadStore
from .transforms import Evidence, TransformationParams, class_weight_tensor
from .video import Clip, ClipSpec, ClipStats, clip_stats, read_clip, rebuild_tensor, tensor_digest, to_tensor

__version__ = "0.1.0"

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
    "TransformationParams",
    "TruncatedMedia",
    "UnknownLabel",
    "UnknownRecord",
    "UnsafeSource",
    "UnsupportedMedia",
    "WeightsUnavailable",
    "analyse",
    "attribution_cost_benchmark",
    "attribution_geometry",
    "build_backbone",
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
