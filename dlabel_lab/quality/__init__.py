"""Model and data quality: converted model versions (ONNX, INT8), model reports and data reports.

Names load on first use (see :mod:`dlabel_lab.lazy`).
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "ConvertedVersion": ".convert",
    "export_onnx": ".convert",
    "quantize_int8": ".convert",
    "load_converted": ".convert",
    "model_footprint": ".convert",
    "cpu_latency": ".convert",
    "conversion_report": ".convert",
    "INT8_METHODS": ".convert",
    "DEFAULT_INT8_METHOD": ".convert",
    "OnnxClipModel": "..models.onnx_model",
    "model_report": ".model_report",
    "ModelReport": ".model_report",
    "load_model_report": ".model_report",
    "compare_reports": ".model_report",
    "compare_html": ".model_report",
    "corrupt_frames": ".model_report",
    "corrupt_indices": ".model_report",
    "Corruption": ".model_report",
    "CORRUPTIONS": ".model_report",
    "DEFAULT_SUITE": ".model_report",
    "REPORT_SPLIT": ".model_report",
    "data_report": ".data_report",
    "DataReport": ".data_report",
    "source_of": ".data_report",
    "find_label_errors": ".label_issues",
    "LabelIssues": ".label_issues",
    "factor_shift": ".shift",
    "embedding_shift": ".shift",
}

_SUBMODULES = ("convert", "model_report", "data_report", "label_issues", "shift", "report_page", "remote")

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, submodules=_SUBMODULES)

__all__ = sorted(_EXPORTS)
