"""Evaluation of detections: COCO mean average precision and recall per class.

torchmetrics' :class:`~torchmetrics.detection.MeanAveragePrecision` with the ``pycocotools``
backend (the COCO reference implementation) computes every number; this module validates the
inputs, aligns predictions with the annotated frames and returns a :class:`DetectionReport`.

Example:
    >>> import torch
    >>> truth = [{"boxes": torch.tensor([[10.0, 10, 30, 30]]), "labels": torch.tensor([1])}]
    >>> pred = [{**truth[0], "scores": torch.tensor([0.9])}]
    >>> evaluate_detections(pred, truth).map_50
    1.0
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..errors import ConfigError
from ..media.objects import MAX_ANNOTATION_BYTES, ObjectAnnotations, read_object_annotations

__all__ = ["evaluate_detections", "DetectionReport"]

_SUMMARY = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1", "mar_10", "mar_100")


@dataclass(frozen=True)
class DetectionReport:
    """COCO detection metrics of one set of predictions.

    Metrics are in ``[0, 1]``; ``nan`` where COCO leaves them undefined (``map_small`` when no
    object is small, a class with no objects). Areas follow COCO: small is under 32x32 pixels,
    large over 96x96, measured on the ground-truth box.

    Attributes:
        map: AP averaged over IoU 0.50:0.95 and classes.
        map_50: AP at IoU 0.5.
        map_75: AP at IoU 0.75.
        map_small: ``map`` over small objects.
        map_medium: ``map`` over medium objects.
        map_large: ``map`` over large objects.
        mar_100: Recall with up to 100 detections per frame, averaged over IoU 0.50:0.95 and classes.
        per_class: Class name -> ``{"ap": ..., "recall": ..., "objects": ...}`` (``recall`` is
            ``mar_100`` of that class).
        n_images: Frames evaluated.
        n_objects: Ground-truth boxes.
        n_predictions: Predicted boxes.
        raw: Every number torchmetrics returned, as floats or lists.
    """

    map: float
    map_50: float
    map_75: float
    map_small: float
    map_medium: float
    map_large: float
    mar_100: float
    per_class: dict[str, dict[str, float]]
    n_images: int
    n_objects: int
    n_predictions: int
    raw: dict = field(default_factory=dict, repr=False)

    def table(self) -> pd.DataFrame:
        """One row per class (``class``, ``objects``, ``ap``, ``recall``) and an ``all`` row.

        Example:
            >>> report.table()  # doctest: +SKIP
        """
        rows = [{"class": name, **v} for name, v in self.per_class.items()]
        rows.append({"class": "all", "objects": self.n_objects, "ap": self.map, "recall": self.mar_100})
        return pd.DataFrame(rows, columns=["class", "objects", "ap", "recall"])


def evaluate_detections(
    predictions: Sequence[Mapping] | Mapping[int, Mapping],
    annotations: str | os.PathLike | ObjectAnnotations | Sequence[Mapping],
    *,
    iou_type: str = "bbox",
    classes: Sequence[str] | None = None,
    max_bytes: int = MAX_ANNOTATION_BYTES,
) -> DetectionReport:
    """Score detections against ground-truth boxes with COCO mAP (torchmetrics, pycocotools backend).

    Args:
        predictions: Per frame, ``{"boxes": (n, 4) xyxy, "labels": (n,), "scores": (n,)}``
            (tensors or arrays), as :meth:`~dlabel_lab.models.detection.ObjectDetector.detect`
            returns them: a list in the order of the annotated frames, or a dict keyed by image id
            (then only those images are evaluated).
        annotations: A COCO ``annotations.json`` (or its folder, or the
            :class:`~dlabel_lab.media.objects.ObjectAnnotations` read from it), or a list of
            per-frame ``{"boxes", "labels"}`` dicts aligned with a list of predictions.
        iou_type: ``"bbox"`` (the only type boxes support).
        classes: Class names for label ``1..K`` in the report (default: the annotations' names,
            or ``class_<k>``).
        max_bytes: Largest annotations file read (checked before reading).

    Returns:
        The :class:`DetectionReport`.

    Raises:
        ConfigError: Unknown ``iou_type``, predictions that do not line up with the frames, or
            malformed boxes, labels or scores.

    Example:
        >>> report = evaluate_detections(model.detect_dataset(ds), "clips/annotations.json")  # doctest: +SKIP
        >>> report.table()  # doctest: +SKIP
    """
    if iou_type != "bbox":
        raise ConfigError(f"iou_type must be 'bbox' (the annotations hold boxes, not masks), got {iou_type!r}")
    preds, targets, names = _align(predictions, annotations, classes, max_bytes)
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True, backend="pycocotools")
    metric.update(preds, targets)
    raw = {k: (v.tolist() if v.ndim else float(v)) for k, v in metric.compute().items()}
    value = {k: _undefined(raw[k]) for k in _SUMMARY}
    present = [int(c) for c in np.atleast_1d(raw.get("classes", []))]
    counts = np.bincount(
        np.concatenate([t["labels"].numpy() for t in targets] + [np.zeros(0, np.int64)]), minlength=len(names) + 1
    )
    ap = dict(zip(present, np.atleast_1d(raw["map_per_class"]), strict=False))
    rec = dict(zip(present, np.atleast_1d(raw["mar_100_per_class"]), strict=False))
    per_class = {
        name: {
            "objects": int(counts[k]) if k < len(counts) else 0,
            "ap": _undefined(ap.get(k, -1)),
            "recall": _undefined(rec.get(k, -1)),
        }
        for k, name in enumerate(names, start=1)
    }
    return DetectionReport(
        **{k: value[k] for k in ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100")},
        per_class=per_class,
        n_images=len(targets),
        n_objects=int(sum(len(t["labels"]) for t in targets)),
        n_predictions=int(sum(len(p["labels"]) for p in preds)),
        raw=raw,
    )


def _undefined(v) -> float:
    v = float(v)
    return math.nan if v < 0 else v


def _align(predictions, annotations, classes, max_bytes):
    if isinstance(annotations, (str, os.PathLike)):
        annotations = read_object_annotations(annotations, max_bytes=max_bytes)
    if isinstance(annotations, ObjectAnnotations):
        ids = [im["id"] for im in annotations.images]
        if isinstance(predictions, Mapping):
            unknown = sorted(set(predictions) - set(ids))
            if unknown:
                raise ConfigError(f"predictions for image ids {unknown[:5]} that are not in {annotations.path}")
            ids = [i for i in ids if i in predictions]
            pred_list = [predictions[i] for i in ids]
        else:
            pred_list = list(predictions)
            if len(pred_list) != len(ids):
                raise ConfigError(
                    f"{len(pred_list)} predictions for {len(ids)} annotated frames; pass one per "
                    "frame in the file's order, or a dict {image_id: prediction}"
                )
        truth = [annotations.target(i) for i in ids]
        names = list(classes) if classes is not None else annotations.classes
    else:
        if isinstance(predictions, Mapping) or isinstance(annotations, Mapping):
            raise ConfigError("with a list of targets, pass predictions as a list aligned with it")
        pred_list, truth = list(predictions), list(annotations)
        if len(pred_list) != len(truth):
            raise ConfigError(f"{len(pred_list)} predictions for {len(truth)} targets; pass one per frame")
        names = None
    if not truth:
        raise ConfigError("no frames to evaluate")
    preds = [_as_boxes(p, f"predictions[{k}]", scores=True) for k, p in enumerate(pred_list)]
    targets = [_as_boxes(t, f"targets[{k}]", scores=False) for k, t in enumerate(truth)]
    if names is None:
        top = max([0, *(int(t["labels"].max()) for t in targets + preds if len(t["labels"]))])
        names = list(classes) if classes is not None else [f"class_{k}" for k in range(1, top + 1)]
    return preds, targets, [str(n) for n in names]


def _as_boxes(d, where: str, *, scores: bool) -> dict[str, torch.Tensor]:
    if not isinstance(d, Mapping) or "boxes" not in d or "labels" not in d or (scores and "scores" not in d):
        need = "boxes, labels and scores" if scores else "boxes and labels"
        raise ConfigError(f"{where} must be a dict with {need}")
    try:
        b, lab = d["boxes"], d["labels"]
        boxes = (b.detach().cpu() if torch.is_tensor(b) else torch.as_tensor(np.asarray(b, np.float32))).float()
        labels = (lab.detach().cpu() if torch.is_tensor(lab) else torch.as_tensor(np.asarray(lab))).reshape(-1).long()
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: boxes and labels must be numeric arrays or tensors ({e})") from None
    if boxes.numel() == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(labels) != len(boxes):
        raise ConfigError(
            f"{where}: boxes must be (n, 4) xyxy with one label each, got {tuple(boxes.shape)} boxes "
            f"and {len(labels)} labels"
        )
    if not torch.isfinite(boxes).all() or (boxes[:, 2:] < boxes[:, :2]).any():
        raise ConfigError(f"{where}: boxes must be finite x0, y0, x1, y1 with x1 >= x0 and y1 >= y0")
    out = {"boxes": boxes, "labels": labels}
    if scores:
        s = torch.as_tensor(d["scores"]).detach().cpu().reshape(-1).float()
        if len(s) != len(boxes) or not torch.isfinite(s).all():
            raise ConfigError(f"{where}: need one finite score per box, got {len(s)} for {len(boxes)} boxes")
        out["scores"] = s
    return out
