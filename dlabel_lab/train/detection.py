"""Training object detectors: from COCO clip-frame annotations to a fitted, optionally registered, version.

:func:`train_detector` fits an :class:`~dlabel_lab.ObjectDetector` (new, or a
copy of a given one, which is left untouched) on one or more annotation files
as :func:`~dlabel_lab.make_object_clips` or a labelling pipeline's
``export_coco`` write them, with a deterministic CPU/GPU Lightning ``Trainer``.
:func:`retrain_detector` does that from a registered version and registers
the result as its child, recording the annotation files (with their sha256)
it learned from, so lineage says which boxes made which detector.

Example:
    >>> det = train_detector("clips/objects/annotations.json", epochs=12)  # doctest: +SKIP
    >>> v2 = retrain_detector(store, "objects-v1", ["clips/objects/annotations.json", "missed.json"])  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import ConcatDataset, DataLoader

from ..errors import ConfigError
from ..media.objects import ObjectAnnotations, read_object_annotations
from ..models.checkpoint import file_sha256
from ..models.detection import ObjectDetector
from ..models.registry import load_detector, register_detector
from ..objects.frames import collate_detections, frames_dataset
from ..objects.tiling import random_crop

__all__ = ["train_detector", "retrain_detector"]

Annotations = str | os.PathLike | ObjectAnnotations


def _as_list(annotations) -> list[ObjectAnnotations]:
    items = [annotations] if isinstance(annotations, (str, os.PathLike, ObjectAnnotations)) else list(annotations)
    if not items:
        raise ConfigError("give at least one annotations file (COCO annotations.json of clip frames)")
    return [a if isinstance(a, ObjectAnnotations) else read_object_annotations(a) for a in items]


class _Crops(torch.utils.data.Dataset):
    """Every item of ``base`` as a random crop of ``size`` (a new place each time it is read)."""

    def __init__(self, base, size: tuple[int, int], seed: int) -> None:
        self.base, self.size = base, size
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image, target = self.base[i]
        if image.shape[1] < self.size[0] or image.shape[2] < self.size[1]:
            raise ConfigError(f"crops {self.size} are larger than the {tuple(image.shape[1:])} frames")
        return random_crop(image, target, self.size, self.rng)


def _positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
    return value


def train_detector(
    annotations: Annotations | Sequence[Annotations],
    *,
    detector: ObjectDetector | None = None,
    arch: str = "tiny_fcos",
    frame_size: tuple[int, int] | None = None,
    epochs: int = 12,
    batch_size: int = 8,
    seed: int = 0,
    crops: tuple[int, int] | None = None,
    progress: bool = False,
    root_dir: str | os.PathLike | None = None,
) -> ObjectDetector:
    """Fit a detector on annotated clip frames; the fitted detector in eval mode.

    Args:
        annotations: One or several COCO ``annotations.json`` of clip frames (paths, or
            :class:`~dlabel_lab.media.objects.ObjectAnnotations`), all with the same class names
            in the same order; their frames are pooled.
        detector: Start from this detector's weights (a copy is trained; the given one is not
            changed). Default: a new ``arch`` detector.
        arch: Architecture of a new detector.
        frame_size: ``(height, width)`` of a new detector (default: the first file's frame size).
        epochs: Passes over the frames.
        batch_size: Frames per step.
        seed: Seeds weights, shuffling and everything random; same data and seed, same detector.
        crops: ``(height, width)``: every epoch also shows each frame's random crop of this size
            (boxes at least half inside it kept; :func:`~dlabel_lab.objects.tiling.random_crop`),
            which the detector enlarges to its input size: SAHI's slicing-aided fine-tuning, so
            objects are also learnt at the scale :func:`~dlabel_lab.detect_tiled` shows them with
            tiles of this size. Doubles the work per epoch.
        progress: Show Lightning's progress bar.
        root_dir: Where Lightning may write (default: a temporary folder, removed after).

    Raises:
        ConfigError: No annotations, files whose classes differ from each other or from
            ``detector``'s, or a bad argument.

    Example:
        >>> det = train_detector(["train/annotations.json", "missed.json"], epochs=8)  # doctest: +SKIP
    """
    anns = _as_list(annotations)
    _positive(epochs, "epochs")
    _positive(batch_size, "batch_size")
    classes = anns[0].classes
    for a in anns[1:]:
        if a.classes != classes:
            raise ConfigError(f"{a.path} has classes {a.classes}, {anns[0].path} has {classes}; detectors learn one "
                              "class list: export every file with the same classes in the same order")
    pl.seed_everything(seed, workers=True, verbose=False)
    if detector is None:
        if frame_size is None:
            im = anns[0].images[0] if anns[0].images else None
            if im is None:
                raise ConfigError(f"{anns[0].path} holds no images; give frame_size=(height, width)")
            frame_size = (int(im["height"]), int(im["width"]))
        model = ObjectDetector(classes, arch=arch, frame_size=frame_size)
    else:
        if not isinstance(detector, ObjectDetector):
            raise ConfigError(f"detector must be an ObjectDetector, got {type(detector).__name__}")
        if list(detector.classes) != list(classes):
            raise ConfigError(f"the detector's classes {detector.classes} differ from the annotations' {classes}")
        model = copy.deepcopy(detector)
    datasets = [frames_dataset(a) for a in anns]
    data = datasets[0] if len(datasets) == 1 else ConcatDataset(datasets)
    if len(data) == 0:
        raise ConfigError("the annotations hold no frames to train on")
    if crops is not None:
        if (not isinstance(crops, Sequence) or len(crops) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 8 for v in crops)):  # fmt: skip
            raise ConfigError(f"crops must be (height, width) ints >= 8, got {crops!r}")
        data = ConcatDataset([data, _Crops(data, (int(crops[0]), int(crops[1])), seed)])
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=collate_detections, generator=generator)
    with tempfile.TemporaryDirectory(prefix="dlabel-det-") as tmp:
        trainer = pl.Trainer(
            max_epochs=epochs, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=progress, enable_model_summary=False, deterministic=True,
            default_root_dir=str(root_dir or tmp),
        )  # fmt: skip
        model.train()
        trainer.fit(model, loader)
    return model.cpu().eval()


def retrain_detector(
    store,
    parent: str,
    annotations: Annotations | Sequence[Annotations],
    *,
    name: str | None = None,
    epochs: int = 8,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = False,
) -> str:
    """Fine-tune a registered detector version on annotation files and register the child version.

    The child's params record the annotation files and their sha256, epochs and seed; its parent
    is ``parent``, so ``store.lineage(child)`` answers which boxes and which detector made it.

    Args:
        store: The payload store.
        parent: The registered detector version to start from.
        annotations: COCO annotation files (e.g. the original training set plus the objects
            people marked as missed, exported by a labelling pipeline).
        name: Registry name (default: the parent's name).
        epochs: Fine-tuning epochs.
        batch_size: Frames per step.
        seed: Training seed.
        progress: Show Lightning's progress bar.

    Returns:
        The new version id.

    Example:
        >>> v2 = retrain_detector(store, "objects-v1", ["train/annotations.json", "missed.json"])  # doctest: +SKIP
    """
    base = load_detector(store, parent)
    items = [annotations] if isinstance(annotations, (str, os.PathLike, ObjectAnnotations)) else list(annotations)
    anns = _as_list(items)
    files = [{"path": str(Path(a.path)), "sha256": file_sha256(Path(a.path)), "frames": len(a.images),
              "objects": a.n_objects} for a in anns]  # fmt: skip
    child = train_detector(anns, detector=base, epochs=epochs, batch_size=batch_size, seed=seed, progress=progress)
    info = store.get_model(parent)
    version, _ = register_detector(
        store, child, name=name or str(info["name"]), parent=parent,
        params={"annotations": files, "epochs": epochs, "batch_size": batch_size, "seed": seed,
                "fine_tuned_from": parent},
    )  # fmt: skip
    return version
