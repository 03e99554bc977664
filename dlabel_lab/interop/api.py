"""Export a store's labels to COCO, Label Studio, CVAT for video, FiftyOne or Parquet; import them back.

Example:
    >>> path = export_labels(store, "exports/coco", format="coco", model_version="shapes-v1")  # doctest: +SKIP
    >>> report = import_labels(dl.deploy_version(other, "shapes-v1"), path, format="coco")  # doctest: +SKIP
    >>> report.summary()  # doctest: +SKIP
    'imported 24 of 24 clips from coco (exports/coco/annotations.json): 24 clip labels, 0 boxes in 0 tracks'
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from .from_store import collect, place_media
from .labelset import FORMATS, MAX_LABEL_FILE_BYTES, LabelSet, check_labelset
from .to_store import ImportReport, ingest_labelset

__all__ = ["export_labels", "import_labels", "read_labels", "write_labels", "EXPORT_FORMATS"]

EXPORT_FORMATS = (*FORMATS, "parquet")


def _module(format: str):  # noqa: ANN202, A002 - the format's module
    if format not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    return importlib.import_module(f".{format}", __package__)


def read_labels(path: str | os.PathLike, *, format: str, max_bytes: int = MAX_LABEL_FILE_BYTES) -> LabelSet:  # noqa: A002
    """Read a label file (or export folder) of ``format`` into a label set; media paths absolute.

    Raises:
        ConfigError: Unknown format; the file is missing, too large or malformed.
        UnsafeSource: A clip path is a URL, absolute, or leaves the file's folder.

    Example:
        >>> read_labels("exports/ls", format="labelstudio").summary()  # doctest: +SKIP
    """
    return _module(format).read(path, max_bytes=max_bytes)


def write_labels(ls: LabelSet, out_dir: str | os.PathLike, *, format: str) -> Path:  # noqa: A002
    """Write a label set whose media are relative paths inside ``out_dir``; the main file's path.

    Example:
        >>> write_labels(ls, "exports/cvat", format="cvat")  # doctest: +SKIP
    """
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return _module(format).write(ls, out_dir)


def export_labels(
    store,
    out_dir: str | os.PathLike,
    *,
    format: str,  # noqa: A002
    model_version: str | None = None,
    scoring_ids: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    media: str = "copy",
    **parquet_filters,
) -> Path:
    """Export labelled clips, their labels, people's boxes and tracks (and a model's predictions).

    The clips are copied (or hard-linked) into ``out_dir/media`` under their scoring ids, and
    the format's files name them relative to ``out_dir``, so the folder can be moved or zipped
    whole; nothing is written outside it.

    Args:
        store: The :class:`~dlabel_lab.PayloadStore`.
        out_dir: The export folder (created).
        format: ``"coco"``, ``"labelstudio"``, ``"cvat"``, ``"fiftyone"`` or ``"parquet"``
            (the matched data set as Parquet, :meth:`~dlabel_lab.PayloadStore.export_parquet`).
        model_version: Also export this model's clip predictions and boxes (as predictions /
            pre-annotations where the format has room).
        scoring_ids: The clips; default every clip with a label or box (or the model's objects).
        classes: Class order; default the model's, then other labels sorted.
        media: ``"copy"`` or ``"link"`` (hard links).
        **parquet_filters: For ``"parquet"``: filters of :meth:`~dlabel_lab.PayloadStore.matched`.

    Returns:
        The main file written (``annotations.json``, ``tasks.json``, the CVAT folder,
        ``manifest.json``), or the Parquet file.

    Raises:
        ConfigError: Unknown format or media mode; labels outside ``classes``; nothing to export.
        UnknownRecord: A scoring id or the model version is not in the store.

    Example:
        >>> export_labels(store, "exports/ls", format="labelstudio", model_version="shapes-v2")  # doctest: +SKIP
        PosixPath('exports/ls/tasks.json')
    """
    if format == "parquet":
        if model_version is not None:
            parquet_filters["model_version"] = model_version
        if scoring_ids is not None:
            parquet_filters["scoring_ids"] = list(scoring_ids)
        return store.export_parquet(out_dir, **parquet_filters)
    if parquet_filters:
        raise ConfigError(f"filters {sorted(parquet_filters)} apply to format='parquet' only; select clips with "
                          "scoring_ids=")
    module = _module(format)
    ls = collect(store, model_version=model_version, scoring_ids=scoring_ids, classes=classes)
    if not ls.clips:
        raise ConfigError("no clip in the store has a label, a person's box or (with model_version) the model's "
                          "objects, so there is nothing to export; label some clips first or pass scoring_ids=")
    check_labelset(ls)  # before any file is placed
    rel = place_media(ls, out_dir, media=media)
    return module.write(rel, out_dir)


def import_labels(
    endpoint,
    path: str | os.PathLike,
    *,
    format: str,  # noqa: A002
    on_error: str = "skip",
    max_bytes: int = MAX_LABEL_FILE_BYTES,
    progress: bool = True,
) -> ImportReport:
    """Import a label file: its clips through ``endpoint``, its labels as user scores, its boxes as people's boxes.

    Sources and authors come from the file where it has them (files this package wrote keep the
    original ones, so export -> import -> export is the identity); otherwise the source is the
    format's name (``"coco"``, ``"labelstudio"``, ``"cvat"``, ``"fiftyone"``).

    Args:
        endpoint: An ingest endpoint (``dl.deploy_version(store, v)``) or a detection endpoint
            (``dl.deploy_detector(store, v)``); the store is the endpoint's.
        path: The label file or export folder.
        format: One of ``"coco"``, ``"labelstudio"``, ``"cvat"``, ``"fiftyone"``.
        on_error: ``"skip"`` or ``"raise"`` for clips that cannot be read (see
            :func:`~dlabel_lab.interop.to_store.ingest_labelset`).
        max_bytes: Largest label file accepted (checked before reading).
        progress: Show a progress bar.

    Raises:
        ConfigError: Unknown format; the file is missing, too large or malformed.
        UnsafeSource: A clip path is a URL, absolute, or leaves the file's folder.
        UnknownLabel: A clip label is not one of the endpoint's classes (nothing is logged).
        MissingMedia: A clip file is missing (nothing is logged).

    Example:
        >>> import_labels(dl.deploy_version(store, "shapes-v1"), "from_cvat/", format="cvat").boxes  # doctest: +SKIP
        312
    """
    ls = read_labels(path, format=format, max_bytes=max_bytes)
    return ingest_labelset(ls, endpoint, source=format, path=str(path), on_error=on_error, progress=progress)
