"""Object detectors on clip frames: a LightningModule over torchvision's detection models.

torchvision does the heavy lifting (FCOS, Faster R-CNN, RetinaNet, SSDlite: their heads, losses,
box coding and NMS); this module adds a tiny in-house backbone so that an FCOS detector trains on a
CPU in seconds, builds torchvision's detectors by name without downloading anything, and saves
safetensors checkpoints like :class:`~dlabel_lab.ClipClassifier`. Frames and boxes come from
:func:`~dlabel_lab.frames_dataset` (:mod:`dlabel_lab.objects.frames`). Labels are 1-based indices
into ``classes`` (0 is background, as in torchvision); they equal COCO category ids when those are
``1..K``.

Example:
    >>> import torch
    >>> model = ObjectDetector(["circle", "square"], arch="tiny_fcos", frame_size=(120, 160))
    >>> out = model.detect(torch.zeros(1, 3, 120, 160))
    >>> sorted(out[0])
    ['boxes', 'labels', 'scores']
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
import torchvision
import torchvision.models.detection as tvd
from torch import nn
from torch.utils.data import Dataset
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead

from ..errors import CheckpointError, ConfigError
from ..media.video import image_tensors
from .backbones import _cached_weights_path, classify_weights
from .checkpoint import (
    MAX_CHECKPOINT_BYTES,
    load_state_dict_file,
    read_checkpoint,
    state_dict_mismatch,
    write_checkpoint,
)

__all__ = ["ObjectDetector", "DETECTORS", "build_detector", "weights_classes"]

CHECKPOINT_FORMAT = "dlabel_lab.ObjectDetector"
CHECKPOINT_VERSION = 1
MAX_CLASSES = 10_000
MAX_FRAME_SIDE = 8192
_HEAD_CONVS = 1
#: torchvision detectors: name -> (builder, weights enum, class-specific head keys that a new class count resizes).
_TORCHVISION = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": (
        tvd.fasterrcnn_mobilenet_v3_large_320_fpn,
        tvd.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
        ("roi_heads.box_predictor.",),
    ),
    "fcos_resnet50_fpn": (
        tvd.fcos_resnet50_fpn,
        tvd.FCOS_ResNet50_FPN_Weights,
        ("head.classification_head.cls_logits.",),
    ),
    "retinanet_resnet50_fpn": (
        tvd.retinanet_resnet50_fpn,
        tvd.RetinaNet_ResNet50_FPN_Weights,
        ("head.classification_head.cls_logits.",),
    ),
    "ssdlite320_mobilenet_v3_large": (
        tvd.ssdlite320_mobilenet_v3_large,
        tvd.SSDLite320_MobileNet_V3_Large_Weights,
        ("head.classification_head.",),
    ),
}
#: Every architecture :func:`build_detector` accepts.
DETECTORS: tuple[str, ...] = ("tiny_fcos", *_TORCHVISION)


# --- the in-house detector ------------------------------------------------------------------
def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class TinyPyramid(nn.Module):
    """A small CNN that returns one stride-4 feature map (32 channels) with context from strides 8 and 16.

    Strides 2-4-8-16 (16-32-64-64 channels); the stride-8 and stride-16 maps are projected and
    upsampled onto the stride-4 map (a one-level FPN), so objects from 6 to about 60 pixels are seen
    at one level with enough context. Returns ``{"0": (N, 32, H/4, W/4)}`` as torchvision's detectors
    expect.
    """

    out_channels = 32

    def __init__(self) -> None:
        super().__init__()
        c = self.out_channels
        self.c1, self.c2 = _conv(3, 16, 2), _conv(16, 32, 2)
        self.c3, self.c4 = _conv(32, 64, 2), _conv(64, 64, 2)
        self.lat2, self.lat3, self.lat4 = nn.Conv2d(32, c, 1), nn.Conv2d(64, c, 1), nn.Conv2d(64, c, 1)
        self.out = _conv(c, c, 1)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        c2 = self.c2(self.c1(x))
        c3 = self.c3(c2)
        c4 = self.c4(c3)
        up = nn.functional.interpolate
        p = self.lat2(c2) + up(self.lat3(c3) + up(self.lat4(c4), size=c3.shape[-2:]), size=c2.shape[-2:])
        return OrderedDict([("0", self.out(p))])


def _tiny_fcos(num_classes: int, frame_size: tuple[int, int]) -> nn.Module:
    h, w = frame_size
    return tvd.FCOS(
        TinyPyramid(),
        num_classes,
        min_size=min(h, w),
        max_size=max(h, w),
        anchor_generator=AnchorGenerator(sizes=((8,),), aspect_ratios=((1.0,),)),
        head=FCOSHead(TinyPyramid.out_channels, 1, num_classes, num_convs=_HEAD_CONVS),
        score_thresh=0.05,
        nms_thresh=0.5,
        detections_per_img=100,
    )


# --- builders ----------------------------------------------------------------------------------
def build_detector(
    arch: str,
    *,
    num_classes: int,
    frame_size: tuple[int, int] = (120, 160),
    weights: str | os.PathLike | torchvision.models.WeightsEnum | None = None,
) -> nn.Module:
    """Build a torchvision detection model; nothing is downloaded.

    ``tiny_fcos`` is FCOS on :class:`TinyPyramid` (one stride-4 level, two head convolutions;
    about 0.3 M parameters). The torchvision names build their models with ``weights=None`` and
    ``weights_backbone=None`` and, except SSDlite (fixed 320x320 input), with ``min_size`` and
    ``max_size`` set to ``frame_size`` so frames keep their resolution.

    Args:
        arch: One of :data:`DETECTORS`.
        num_classes: Outputs including background (``K + 1``).
        frame_size: ``(height, width)`` of the frames the model will see.
        weights: ``None``; ``"DEFAULT"``, ``"COCO_V1"`` or the torchvision enum member, read from
            the torch hub cache (``torch.hub.get_dir()/checkpoints``) only; or a local
            ``.pth``/``.safetensors`` state dict of the same architecture. Class-specific head
            layers whose shape differs (another class count) keep their fresh initialisation.

    Returns:
        The model, with ``weights_source`` set (``None`` for random initialisation).

    Raises:
        ConfigError: Unknown arch, weights name or frame size.
        WeightsUnavailable: Pretrained weights were asked for but are not cached, or a URL was given.
        CheckpointError: The weights file is unsafe or does not fit the architecture.

    Example:
        >>> net = build_detector("tiny_fcos", num_classes=4)
        >>> type(net).__name__
        'FCOS'
    """
    if arch not in DETECTORS:
        raise ConfigError(f"unknown detector {arch!r}; choose one of {', '.join(DETECTORS)}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or not 2 <= num_classes <= MAX_CLASSES + 1:
        raise ConfigError(f"num_classes counts background too: an int in [2, {MAX_CLASSES + 1}], got {num_classes!r}")
    h, w = _check_frame_size(frame_size)
    kind, value = _classify_weights(arch, weights)
    if arch == "tiny_fcos":
        net = _tiny_fcos(num_classes, (h, w))
    else:
        builder = _TORCHVISION[arch][0]
        sizes = {} if arch.startswith("ssdlite") else {"min_size": min(h, w), "max_size": max(h, w)}
        net = builder(weights=None, weights_backbone=None, num_classes=num_classes, **sizes)
    if kind != "none":
        path = _cached_weights_path(value) if kind == "torchvision" else value
        _load_weights(net, load_state_dict_file(path), str(path), _TORCHVISION.get(arch, (None, None, ()))[2])
    net.weights_source = (
        f"torchvision:{type(value).__name__}.{value.name}"
        if kind == "torchvision"
        else (f"file:{Path(value).name}" if kind == "file" else None)
    )
    return net


def weights_classes(arch: str, weights) -> list[str] | None:
    """The class names (background left out) of torchvision ``weights`` for ``arch``, or ``None``.

    Example:
        >>> weights_classes("ssdlite320_mobilenet_v3_large", "DEFAULT")[:2]
        ['person', 'bicycle']
    """
    kind, value = _classify_weights(arch, weights)
    return list(value.meta["categories"][1:]) if kind == "torchvision" else None


def _classify_weights(arch: str, weights):
    return classify_weights(arch, weights, enums={a: v[1] for a, v in _TORCHVISION.items()}, kind="detector")


def _load_weights(net: nn.Module, state: dict, source: str, head_keys: tuple[str, ...]) -> None:
    own = net.state_dict()
    resized = [k for k in state if k.startswith(head_keys) and k in own and own[k].shape != state[k].shape]
    state = {k: v for k, v in state.items() if k not in resized}
    missing_ok = set(resized)
    mismatch = state_dict_mismatch(net, {**{k: own[k] for k in missing_ok}, **state})
    if mismatch:
        raise CheckpointError(
            f"weights {source!r} do not fit {type(net).__name__}: {mismatch}. Pass a state dict "
            "saved from the same architecture."
        )
    net.load_state_dict(state, strict=False)


def _check_frame_size(frame_size) -> tuple[int, int]:
    ok = (
        isinstance(frame_size, (tuple, list))
        and len(frame_size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= MAX_FRAME_SIDE for v in frame_size)
    )
    if not ok:
        raise ConfigError(f"frame_size must be (height, width) ints in [16, {MAX_FRAME_SIDE}], got {frame_size!r}")
    return int(frame_size[0]), int(frame_size[1])


# --- the LightningModule ------------------------------------------------------------------------
class ObjectDetector(pl.LightningModule):
    """Detect objects in clip frames; train with a Lightning ``Trainer`` on :func:`~dlabel_lab.frames_dataset`.

    Batches are ``(images, targets)`` as :func:`collate_detections` makes them: lists of float
    ``(3, H, W)`` frames in ``[0, 1]`` and of ``{"boxes": (n, 4) xyxy, "labels": (n,)}`` dicts.

    Args:
        classes: Class names; label ``k`` is ``classes[k - 1]``. With torchvision weights and no
            classes, the weights' categories are used.
        arch: One of :data:`DETECTORS`.
        frame_size: ``(height, width)`` of the frames.
        weights: See :func:`build_detector`; never downloaded.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.

    Example:
        >>> model = ObjectDetector(["circle", "square", "triangle"])
        >>> model.arch, model.frame_size
        ('tiny_fcos', (120, 160))
    """

    def __init__(
        self,
        classes: Sequence[str] | None = None,
        *,
        arch: str = "tiny_fcos",
        frame_size: tuple[int, int] = (120, 160),
        weights: str | os.PathLike | torchvision.models.WeightsEnum | None = None,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        if classes is None:
            classes = weights_classes(arch, weights) if arch in _TORCHVISION else None
            if classes is None:
                raise ConfigError("pass classes=[...] (the class names; label k is classes[k - 1])")
        self.classes = [str(c) for c in classes]
        if not 1 <= len(self.classes) <= MAX_CLASSES:
            raise ConfigError(f"need 1 to {MAX_CLASSES} class names, got {len(self.classes)}")
        for name, v in (("lr", lr), ("weight_decay", weight_decay)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 and (v > 0 or name != "lr")):
                raise ConfigError(
                    f"{name} must be a {'positive' if name == 'lr' else 'non-negative'} number, got {v!r}"
                )
        self.arch = arch
        self.frame_size = _check_frame_size(tuple(frame_size) if isinstance(frame_size, list) else frame_size)
        self.net = build_detector(arch, num_classes=len(self.classes) + 1, frame_size=self.frame_size, weights=weights)
        self.weights_source = self.net.weights_source
        self.save_hyperparameters(
            {
                "classes": self.classes,
                "arch": arch,
                "frame_size": list(self.frame_size),
                "lr": float(lr),
                "weight_decay": float(weight_decay),
            }
        )

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None):
        """The torchvision model: losses in training mode, detections in eval mode."""
        return self.net(images, targets)

    @torch.no_grad()
    def detect(self, frames, *, batch_size: int = 16) -> list[dict[str, torch.Tensor]]:
        """Detect objects in frames.

        Args:
            frames: ``uint8`` RGB ``(H, W, 3)`` or ``(T, H, W, 3)`` arrays (a decoded clip's
                ``frames``), a float tensor ``(3, H, W)``/``(T, 3, H, W)`` in ``[0, 1]``, or a list
                of either.
            batch_size: Frames per forward pass.

        Returns:
            One dict per frame with CPU tensors ``boxes`` ``(n, 4)`` xyxy in pixels, ``labels``
            ``(n,)`` (1-based into :attr:`classes`; background detections are dropped) and
            ``scores`` ``(n,)``.

        Example:
            >>> dets = model.detect(dl.read_clip("clip.mp4", spec).frames)  # doctest: +SKIP
        """
        images = image_tensors(frames)
        was_training = self.training
        self.eval()
        try:
            out = []
            for start in range(0, len(images), batch_size):
                chunk = [im.to(self.device) for im in images[start : start + batch_size]]
                for d in self.net(chunk):
                    # FCOS and RetinaNet score every output, background (0) included: drop it, so labels
                    # are always 1-based class indices (an untrained or weak head does emit 0)
                    keep = d["labels"] > 0
                    out.append({k: d[k][keep].detach().cpu() for k in ("boxes", "labels", "scores")})
            return out
        finally:
            self.train(was_training)

    def detect_dataset(self, dataset: Dataset, *, batch_size: int = 16) -> dict[int, dict[str, torch.Tensor]]:
        """Detections for every item ``(image, target)`` of ``dataset`` (e.g. :func:`~dlabel_lab.frames_dataset`),
        keyed by ``target["image_id"]``, ready for :func:`~dlabel_lab.evaluate_detections`."""
        out = {}
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
            for (_, target), det in zip(items, self.detect([im for im, _ in items]), strict=True):
                out[int(target["image_id"])] = det
        return out

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        losses = self.net(list(images), [{k: t[k] for k in ("boxes", "labels")} for t in targets])
        loss = sum(losses.values())
        self.log("train_loss", loss, prog_bar=True, batch_size=len(images))
        for k, v in losses.items():
            self.log(f"train_{k}", v, batch_size=len(images))
        return loss

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, torch.Tensor]]:
        images = batch[0] if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], list) else batch
        return self.detect(images)

    def configure_optimizers(self):
        """AdamW with a one-cycle schedule over the trainer's steps (warm-up, then cosine decay)."""
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        steps = getattr(self.trainer, "estimated_stepping_batches", None) if self._trainer is not None else None
        if not isinstance(steps, (int, float)) or not math.isfinite(steps) or steps < 2:
            return opt
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=self.hparams.lr, total_steps=int(steps), pct_start=0.15
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # --- checkpoints -----------------------------------------------------------------------------
    def checkpoint_metadata(self) -> dict:
        """The JSON metadata written with every checkpoint."""
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "classes": list(self.classes),
            "arch": self.arch,
            "frame_size": list(self.frame_size),
            "hparams": {"lr": self.hparams.lr, "weight_decay": self.hparams.weight_decay},
            "weights_source": self.weights_source,
            "torch": str(torch.__version__),
        }

    def save_checkpoint(self, path: str | os.PathLike) -> str:
        """Write weights and metadata to a ``.safetensors`` file; return its sha256.

        Example:
            >>> sha = model.save_checkpoint("runs/detector.safetensors")  # doctest: +SKIP
        """
        return write_checkpoint(path, self.state_dict(), self.checkpoint_metadata())

    @classmethod
    def load_checkpoint(cls, path: str | os.PathLike, *, max_bytes: int = MAX_CHECKPOINT_BYTES) -> ObjectDetector:
        """Load a checkpoint written by :meth:`save_checkpoint`, in eval mode.

        The metadata is checked (format, class names, architecture, frame size) before the
        tensors are read, and the tensors must fit the architecture exactly.

        Raises:
            CheckpointError: The file is unsafe, not a detector checkpoint or does not match.

        Example:
            >>> model = ObjectDetector.load_checkpoint("runs/detector.safetensors")  # doctest: +SKIP
        """
        state, meta = read_checkpoint(path, max_bytes=max_bytes, validate=lambda m: _check_metadata(m, path))
        hp = meta.get("hparams") or {}
        model = cls(
            meta["classes"],
            arch=meta["arch"],
            frame_size=tuple(meta["frame_size"]),
            lr=hp.get("lr", 2e-3),
            weight_decay=hp.get("weight_decay", 1e-4),
        )
        mismatch = state_dict_mismatch(model, state)
        if mismatch:
            raise CheckpointError(
                f"{path} does not match a {meta['arch']} ObjectDetector with {len(model.classes)} classes: {mismatch}"
            )
        model.load_state_dict(state, strict=True)
        model.weights_source = meta.get("weights_source")
        return model.eval()


def _check_metadata(meta, path) -> None:
    def bad(reason: str) -> CheckpointError:
        return CheckpointError(
            f"{path} has unusable metadata: {reason}. Save the detector again with model.save_checkpoint()."
        )

    if meta.get("format") != CHECKPOINT_FORMAT:
        raise bad(f"format {meta.get('format')!r} is not {CHECKPOINT_FORMAT!r} (a classifier? use ClipClassifier)")
    if meta.get("format_version") != CHECKPOINT_VERSION:
        raise bad(f"format_version {meta.get('format_version')!r} is not {CHECKPOINT_VERSION}")
    classes = meta.get("classes")
    if not (
        isinstance(classes, list)
        and 1 <= len(classes) <= MAX_CLASSES
        and all(isinstance(c, str) and len(c) <= 1024 for c in classes)
    ):
        raise bad(f"'classes' must be 1 to {MAX_CLASSES} names of at most 1024 characters")
    if meta.get("arch") not in DETECTORS:
        raise bad(f"arch {meta.get('arch')!r} is not one of {', '.join(DETECTORS)}")
    try:
        _check_frame_size(tuple(meta.get("frame_size") or ()))
    except ConfigError as e:
        raise bad(str(e)) from None
