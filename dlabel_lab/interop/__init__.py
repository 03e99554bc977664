"""Interchange with the tools people already use: COCO, Label Studio, CVAT for video and FiftyOne.

Every format converts between its files and one neutral :class:`~dlabel_lab.interop.labelset.LabelSet`;
:func:`export_labels` builds one from a store and writes it, :func:`import_labels` reads one and
ingests its clips through an endpoint.

Names load on first use (see :mod:`dlabel_lab.lazy`).
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "Box": ".labelset",
    "ClipLabels": ".labelset",
    "LabelSet": ".labelset",
    "FORMATS": ".labelset",
    "canonical": ".labelset",
    "ImportReport": ".to_store",
    "collect": ".from_store",
    "export_labels": ".api",
    "import_labels": ".api",
    "read_labels": ".api",
    "write_labels": ".api",
    "EXPORT_FORMATS": ".api",
}

_SUBMODULES = ("labelset", "from_store", "to_store", "api", "coco", "labelstudio", "cvat", "fiftyone")

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, submodules=_SUBMODULES)

__all__ = sorted(_EXPORTS)
