"""Reading clips: the seeking decoder, container and decode checks, sample data (with object boxes) and manifests.

Names load on first use (see :mod:`dlabel_lab.lazy`).
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "ClipSpec": ".video",
    "Clip": ".video",
    "ClipStats": ".video",
    "read_clip": ".video",
    "to_tensor": ".video",
    "rebuild_tensor": ".video",
    "tensor_digest": ".video",
    "clip_stats": ".video",
    "sniff_container": ".video",
    "check_file_size": ".video",
    "check_container_file": ".video",
    "Drift": ".samples",
    "FACTORS": ".manifest",
    "make_shape_clips": ".samples",
    "make_tutorial_clips": ".samples",
    "load_digit_clips": ".samples",
    "read_manifest": ".manifest",
    "check_manifest": ".manifest",
    "write_sample_data": ".samples",
    "write_clip": ".writing",
    "decode_frames": ".decoding",
    "make_object_clips": ".objects",
    "read_object_annotations": ".objects",
    "ObjectAnnotations": ".objects",
}

_SUBMODULES = ("video", "decoding", "writing", "samples", "manifest", "checks", "objects")

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, submodules=_SUBMODULES)

__all__ = sorted(_EXPORTS)
