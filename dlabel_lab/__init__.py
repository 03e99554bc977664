"""dlabel_lab: the data-labelling loop for deep-learning video models.

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
from .samples import Drift, load_digit_clips, make_shape_clips, read_manifest, write_sample_data
from .video import Clip, ClipSpec, ClipStats, clip_stats, read_clip, rebuild_tensor, tensor_digest, to_tensor

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Clip",
    "ClipSpec",
    "ClipStats",
    "ConfigError",
    "DLabelError",
    "Drift",
    "DuplicateScoringId",
    "EmptyMedia",
    "MediaError",
    "MediaTooLarge",
    "MissingMedia",
    "ModelError",
    "SchemaVersionError",
    "StoreCorrupt",
    "StoreError",
    "StoreLocked",
    "TruncatedMedia",
    "UnknownLabel",
    "UnknownRecord",
    "UnsafeSource",
    "UnsupportedMedia",
    "WeightsUnavailable",
    "clip_stats",
    "load_digit_clips",
    "make_shape_clips",
    "read_clip",
    "read_manifest",
    "rebuild_tensor",
    "tensor_digest",
    "to_tensor",
    "write_sample_data",
]
