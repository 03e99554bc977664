"""The clip classifier: a LightningModule with a backbone, an embedding and a linear head.

Example:
    >>> import torch
    >>> model = ClipClassifier(classes=["dark", "bright"], backbone="tiny3d")
    >>> model(torch.zeros(2, 3, 8, 64, 64)).shape
    torch.Size([2, 2])
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from ..errors import CheckpointError, ConfigError, UnknownLabel
from ..media.video import ClipSpec
from .backbones import BACKBONES, backbone_spec, build_backbone, pretrained_spec, weights_member
from .checkpoint import MAX_CHECKPOINT_BYTES, file_sha256, read_checkpoint, state_dict_mismatch, write_checkpoint

__all__ = ["ClipClassifier", "build_backbone", "file_sha256", "BACKBONES"]

CHECKPOINT_FORMAT = "dlabel_lab.ClipClassifier"
CHECKPOINT_VERSION = 1
#: Bounds on checkpoint metadata, checked before a model is built from it.
MAX_CLASSES = 100_000
MAX_CLASS_NAME_CHARS = 1024
MAX_EMBED_DIM = 65536
MAX_SPEC_FRAMES = 4096
MAX_SPEC_SIDE = 8192
_HPARAM_KEYS = ("lr", "weight_decay", "class_weights", "embed_dim", "dropout")


class ClipClassifier(pl.LightningModule):
    """Classify clips ``(N, 3, T, H, W)`` into named classes.

    The clip spec (frames, size, normalisation) travels with the model and
    its checkpoints. With pretrained torchvision weights the spec takes the
    weights' eval-transform mean and std (and, when no spec is given, their
    crop size), because the pretrained features only hold under them.

    Args:
        num_classes: Number of classes; names default to ``"class_0"``, ...
        classes: Class names (overrides the default names; must agree with
            ``num_classes`` when both are given).
        backbone: One of :data:`~dlabel_lab.backbones.BACKBONES`.
        spec: A :class:`ClipSpec` or its dict; defaults to the backbone's
            (8 frames of 64 px for ``tiny3d``/``frame2d``).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        class_weights: Loss weight per class, a sequence/tensor of ``K`` values
            or a dict ``{class name: weight}`` (missing classes weigh 1).
        augment: Callable applied to each training clip ``(C, T, H, W)``
            in :meth:`training_step` only.
        weights: Backbone weights (see :func:`build_backbone`); never downloaded.
        embed_dim: Embedding width of ``tiny3d``/``frame2d``.
        dropout: Dropout between the embedding and the head.

    Attributes:
        classes: Class names, index ``k`` is logit ``k``.
        spec: The :class:`ClipSpec` the model reads clips with.
        backbone_name: The backbone's name.
        embedding_layer: Module whose output is the ``(N, D)`` embedding.
        last_conv: Last spatio-temporal feature map module ``(N, C, T', H', W')``.

    Example:
        >>> model = ClipClassifier(3, backbone="frame2d", embed_dim=16)
        >>> model.classes
        ['class_0', 'class_1', 'class_2']
    """

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        classes: Sequence[str] | None = None,
        backbone: str = "tiny3d",
        spec: ClipSpec | Mapping | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        class_weights: Sequence[float] | torch.Tensor | Mapping[str, float] | None = None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        weights: str | os.PathLike | None = None,
        embed_dim: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.classes = _check_classes(num_classes, classes)
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ConfigError(f"lr must be a positive number, got {lr!r}")
        if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
            raise ConfigError(f"weight_decay must be >= 0, got {weight_decay!r}")
        if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
            raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        if augment is not None and not callable(augment):
            raise ConfigError(f"augment must be a callable on a (C, T, H, W) tensor, got {type(augment).__name__}")
        self.augment = augment
        self.backbone_name = backbone
        self.backbone, dim = build_backbone(backbone, weights=weights, embed_dim=embed_dim)
        self.spec = _resolve_spec(spec, backbone, weights)
        self.embedding_layer = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, len(self.classes))
        cw = _class_weight_list(class_weights, self.classes)
        self.register_buffer("loss_class_weights", None if cw is None else torch.tensor(cw), persistent=False)
        self.train_acc = torchmetrics.Accuracy(task="multiclass", num_classes=len(self.classes))
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=len(self.classes))
        self.save_hyperparameters(
            {
                "classes": list(self.classes),
                "backbone": backbone,
                "spec": self.spec.to_dict(),
                "lr": float(lr),
                "weight_decay": float(weight_decay),
                "class_weights": cw,
                "embed_dim": embed_dim,
                "dropout": float(dropout),
            }
        )
        self.weights_source = self.backbone.weights_source

    # --- inference -------------------------------------------------------------
    @property
    def last_conv(self) -> nn.Module:
        """The last spatio-temporal feature-map module (a Captum layer target)."""
        return self.backbone.get_submodule(self.backbone.last_conv_name)

    def logits_and_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(N, K)`` and embedding ``(N, D)`` in one pass."""
        emb = self.embedding_layer(self.backbone(x))
        return self.head(self.dropout(emb)), emb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)`` for float clips ``(N, 3, T, H, W)``."""
        return self.logits_and_embedding(x)[0]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, D)`` (the output of :attr:`embedding_layer`)."""
        return self.embedding_layer(self.backbone(x))

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(N, K)``, computed in eval mode without gradients (the mode is restored)."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return torch.softmax(self(x), dim=-1)
        finally:
            self.train(was_training)

    # --- Lightning hooks ---------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y, w = _unpack(batch)
        if self.augment is not None:
            x = torch.stack([self.augment(clip) for clip in x])
        logits = self(x)
        loss = self._loss(logits, y, w)
        self.train_acc.update(logits.detach(), y)
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y, w = _unpack(batch)
        logits = self(x)
        self.val_acc.update(logits, y)
        self.log("val_loss", self._loss(logits, y, w), on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("val_acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        x = batch if isinstance(batch, torch.Tensor) else batch[0]
        return torch.softmax(self(x), dim=-1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        per_sample = F.cross_entropy(logits, y, reduction="none")
        cw = self.loss_class_weights
        if cw is None and w is None:
            return per_sample.mean()
        weight = torch.ones_like(per_sample) if cw is None else cw.to(per_sample.dtype)[y]
        if w is not None:
            weight = weight * w.to(per_sample.dtype)
        return (per_sample * weight).sum() / weight.sum().clamp_min(1e-12)

    # --- checkpoints ---------------------------------------------------------------
    def checkpoint_metadata(self) -> dict:
        """The JSON metadata written with every checkpoint."""
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "classes": list(self.classes),
            "spec": self.spec.to_dict(),
            "backbone": self.backbone_name,
            "hparams": {k: v for k, v in self.hparams.items() if k not in ("classes", "spec", "backbone")},
            "weights_source": self.weights_source,
            "torch": str(torch.__version__),
        }

    def save_checkpoint(self, path: str | os.PathLike) -> str:
        """Write the weights and metadata to a ``.safetensors`` file; return its sha256.

        Example:
            >>> sha = model.save_checkpoint("runs/model.safetensors")  # doctest: +SKIP
        """
        return write_checkpoint(path, self.state_dict(), self.checkpoint_metadata())

    @classmethod
    def load_checkpoint(cls, path: str | os.PathLike, *, max_bytes: int = MAX_CHECKPOINT_BYTES) -> ClipClassifier:
        """Load a checkpoint written by :meth:`save_checkpoint`, in eval mode.

        Refuses URLs, missing files, files over ``max_bytes`` (default 8 GiB),
        pickles, metadata out of bounds (more than :data:`MAX_CLASSES` class
        names, ``embed_dim`` over :data:`MAX_EMBED_DIM`, ...; checked before
        the tensors are read) and checkpoints whose tensors do not match the
        architecture its metadata describes (checked on a ``meta``-device
        skeleton, so nothing is allocated for a mismatching model).

        Raises:
            CheckpointError: The file cannot be loaded safely or does not match.

        Example:
            >>> model = ClipClassifier.load_checkpoint("runs/model.safetensors")  # doctest: +SKIP
        """
        state, meta = read_checkpoint(path, max_bytes=max_bytes, validate=lambda m: _check_metadata(m, path))
        kwargs = {"classes": meta["classes"], "backbone": meta["backbone"], "spec": meta["spec"],
                  **dict(meta.get("hparams") or {})}
        try:
            with torch.device("meta"):  # shapes only: nothing is allocated
                skeleton = cls(**kwargs)
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            raise CheckpointError(f"{path} has unusable metadata ({e}); save the model again") from None
        mismatch = state_dict_mismatch(skeleton, state)
        if mismatch:
            raise CheckpointError(
                f"{path} does not match a {meta['backbone']} ClipClassifier with {len(skeleton.classes)} classes: "
                f"{mismatch}"
            )
        del skeleton
        model = cls(**kwargs)
        model.load_state_dict(state, strict=True)
        model.weights_source = meta.get("weights_source")
        return model.eval()


# --- helpers ----------------------------------------------------------------------------
def _check_metadata(meta, path) -> None:
    """Refuse checkpoint metadata that is not a ClipClassifier's or is out of bounds, naming the field."""

    def bad(reason: str) -> CheckpointError:
        return CheckpointError(
            f"{path} has unusable metadata: {reason}. Re-save the model with model.save_checkpoint(); a file "
            "from elsewhere may be damaged or crafted."
        )

    if not isinstance(meta, Mapping):
        raise bad(f"it must be a JSON object, got {type(meta).__name__}")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a ClipClassifier checkpoint (format {meta.get('format')!r})")
    if meta.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {meta.get('format_version')!r}; this dlabel_lab reads version "
            f"{CHECKPOINT_VERSION}. Upgrade dlabel_lab or re-save the model."
        )
    classes = meta.get("classes")
    if not isinstance(classes, list):
        raise bad(f"classes must be a list of names, got {type(classes).__name__}")
    if len(classes) > MAX_CLASSES:
        raise bad(f"classes has {len(classes)} names; the limit is {MAX_CLASSES}")
    for i, name in enumerate(classes):
        if not isinstance(name, str):
            raise bad(f"classes[{i}] is not a string ({type(name).__name__})")
        if len(name) > MAX_CLASS_NAME_CHARS:
            raise bad(f"classes[{i}] is {len(name)} characters long; the limit is {MAX_CLASS_NAME_CHARS}")
    if not isinstance(meta.get("backbone"), str) or meta["backbone"] not in BACKBONES:
        raise bad(f"backbone {meta.get('backbone')!r} is not one of {', '.join(BACKBONES)}")
    hp = meta.get("hparams")
    hp = {} if hp is None else hp
    if not isinstance(hp, Mapping):
        raise bad(f"hparams must be a JSON object, got {type(hp).__name__}")
    unknown = sorted(set(hp) - set(_HPARAM_KEYS))
    if unknown:
        raise bad(f"hparams has unknown keys {unknown[:5]}; known: {', '.join(_HPARAM_KEYS)}")

    def number(field: str, value, low: float, high: float = math.inf, *, integer: bool = False,
               low_open: bool = False, high_open: bool = False) -> None:
        if integer and (not isinstance(value, int) or isinstance(value, bool)):
            raise bad(f"{field} {value!r} is not an int")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise bad(f"{field} {value!r} is not a number")
        if not math.isfinite(value):
            raise bad(f"{field} {value!r} is not a finite number")
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if not (above and below):
            interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open or high == math.inf else ']'}"
            raise bad(f"{field} {value!r} is outside {interval}")

    if "embed_dim" in hp:
        number("hparams.embed_dim", hp["embed_dim"], 1, MAX_EMBED_DIM, integer=True)
    if "lr" in hp:
        number("hparams.lr", hp["lr"], 0, low_open=True)
    if "weight_decay" in hp:
        number("hparams.weight_decay", hp["weight_decay"], 0)
    if "dropout" in hp:
        number("hparams.dropout", hp["dropout"], 0, 1, high_open=True)
    cw = hp.get("class_weights")
    if cw is not None:
        if not isinstance(cw, list):
            raise bad(f"hparams.class_weights must be a list or null, got {type(cw).__name__}")
        if len(cw) != len(classes):
            raise bad(f"hparams.class_weights has {len(cw)} values for {len(classes)} classes")
        for i, w in enumerate(cw):
            number(f"hparams.class_weights[{i}]", w, 0)
    spec = meta.get("spec")
    if not isinstance(spec, Mapping):
        raise bad(f"spec must be a JSON object, got {type(spec).__name__}")
    if spec.get("frames") is not None:
        number("spec.frames", spec["frames"], 1, MAX_SPEC_FRAMES, integer=True)
    size = spec.get("size")
    sides = [size] if not isinstance(size, list) else size
    if size is not None:
        if len(sides) not in (1, 2) or any(not isinstance(v, int) or isinstance(v, bool) for v in sides):
            raise bad(f"spec.size {size!r} must be an int or [height, width]")
        if any(not 1 <= v <= MAX_SPEC_SIDE for v in sides):
            raise bad(f"spec.size {size!r} is outside [1, {MAX_SPEC_SIDE}]")
    indices = spec.get("indices")
    if indices is not None and (not isinstance(indices, list) or len(indices) > MAX_SPEC_FRAMES):
        raise bad(f"spec.indices must be a list of at most {MAX_SPEC_FRAMES} frame numbers")


def _check_classes(num_classes, classes) -> list[str]:
    if classes is None:
        if num_classes is None:
            raise ConfigError("pass num_classes=K or classes=[names]; the model needs to know its classes")
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ConfigError(f"num_classes must be an int >= 2, got {num_classes!r}")
        return [f"class_{i}" for i in range(num_classes)]
    if isinstance(classes, str):
        raise ConfigError(f"classes must be a list of names, got the string {classes!r}")
    names = [str(c) for c in classes]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ConfigError(f"classes must be at least two distinct names, got {names!r}")
    if num_classes is not None and num_classes != len(names):
        raise ConfigError(f"num_classes={num_classes} disagrees with {len(names)} class names; pass one of them")
    return names


def _resolve_spec(spec, backbone: str, weights) -> ClipSpec:
    member = weights_member(backbone, weights)
    if spec is None:
        return backbone_spec(backbone, weights=member)
    if isinstance(spec, Mapping):
        spec = ClipSpec.from_dict(dict(spec))
    if not isinstance(spec, ClipSpec):
        raise ConfigError(f"spec must be a ClipSpec or its dict, got {type(spec).__name__}")
    if member is not None:
        size = spec.size
        return replace(pretrained_spec(spec, member), size=size)
    return spec


def _class_weight_list(class_weights, classes: list[str]) -> list[float] | None:
    if class_weights is None:
        return None
    if isinstance(class_weights, Mapping):
        unknown = sorted(set(map(str, class_weights)) - set(classes))
        if unknown:
            raise UnknownLabel(f"class_weights name unknown classes {unknown}; the model's classes are {classes}")
        by_name = {str(k): float(v) for k, v in class_weights.items()}
        values = [by_name.get(c, 1.0) for c in classes]
    else:
        values = [float(v) for v in (class_weights.tolist() if torch.is_tensor(class_weights) else class_weights)]
        if len(values) != len(classes):
            raise ConfigError(f"class_weights has {len(values)} values for {len(classes)} classes; give one per class")
    if any(not v >= 0 for v in values) or sum(values) <= 0:
        raise ConfigError(f"class_weights must be >= 0 and not all zero, got {values}")
    return values


def _unpack(batch):
    if isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
        x, y = batch[0], batch[1]
        w = batch[2] if len(batch) == 3 else None
        return x, y.long(), w
    raise ConfigError("batches must be (clips, labels) or (clips, labels, sample_weights) tuples")
