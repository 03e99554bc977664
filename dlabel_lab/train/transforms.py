"""Transformation parameters: what retraining should account for, with evidence.

:class:`TransformationParams` holds the ranges derived from the comprehensive
data set (augmentation ranges, crop/zoom, temporal window and stride, class
weights), each with the :class:`Evidence` that justified it. It round-trips
exactly through JSON, applies its crop/window/stride to a
:class:`~dlabel_lab.ClipSpec`, and builds a torchvision ``transforms.v2``
pipeline that augments a normalised clip with the *same* random parameters on
every frame.

Example:
    >>> params = TransformationParams(brightness=(0.6, 1.4), p=1.0)
    >>> TransformationParams.from_json(params.to_json()) == params
    True
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

import pandas as pd
import torch
from torchvision.transforms import v2

from ..errors import ConfigError, UnknownLabel
from ..media.video import ClipSpec
from .augment import (
    _BackgroundAffine,
    _Clamp01,
    _ClipBlur,
    _ClipCompose,
    _FromVideo,
    _RangeNoise,
    _ToVideo,
)

__all__ = ["Evidence", "TransformationParams", "class_weight_tensor", "speed_indices", "PARAM_NAMES", "SCHEMA_VERSION"]

SCHEMA_VERSION = 3  # 2: saturation and hue; 3: speed

#: Parameter names, in the order they are described and applied.
PARAM_NAMES = (
    "brightness",
    "contrast",
    "saturation",
    "hue",
    "scale",
    "blur",
    "noise",
    "translate",
    "crop",
    "frame_window",
    "frame_stride",
    "speed",
    "class_weights",
)
_RANGES = ("brightness", "contrast", "saturation", "scale", "blur", "noise", "speed")
_AUGMENTS = ("brightness", "contrast", "saturation", "hue", "scale", "blur", "noise", "translate")


# --- evidence --------------------------------------------------------------------
@dataclass(frozen=True)
class Evidence:
    """Why a parameter has its value.

    Args:
        source: Where it came from: ``"attribution"``, ``"sensitivity"``,
            ``"per-class-error"``, ``"manual"``, ...
        neurons: Implicated neurons as ``"layer:index"`` strings.
        factor: The clip factor measured (``"brightness"``, ``"scale"``, ...).
        effect_size: Size of the effect (Cohen's d, accuracy drop, ...), or
            ``None`` when not measured.
        quantiles: Operational quantiles of the factor, e.g.
            ``{"q05": 0.2, "q50": 0.4, "q95": 0.7}``.
        supported: Whether a sensitivity check confirmed the model is fragile
            along this axis.
        note: Free text.

    Example:
        >>> Evidence(source="sensitivity", factor="brightness", effect_size=0.12, supported=True).supported
        True
    """

    source: str = "manual"
    neurons: tuple[str, ...] = ()
    factor: str = ""
    effect_size: float | None = None
    quantiles: dict[str, float] = field(default_factory=dict)
    supported: bool = False
    note: str = ""

    def __post_init__(self) -> None:
        for name in ("source", "factor", "note"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"Evidence.{name} must be a str, got {getattr(self, name)!r}")
        if isinstance(self.neurons, str) or not isinstance(self.neurons, Sequence):
            raise ConfigError(f"Evidence.neurons must be a list of 'layer:index' strings, got {self.neurons!r}")
        bad = [n for n in self.neurons if not isinstance(n, str) or ":" not in n]
        if bad:
            raise ConfigError(f"Evidence.neurons must be 'layer:index' strings such as 'head.fc:3', got {bad[:3]!r}")
        object.__setattr__(self, "neurons", tuple(self.neurons))
        if self.effect_size is not None:
            object.__setattr__(self, "effect_size", _finite(self.effect_size, "Evidence.effect_size"))
        if not isinstance(self.quantiles, Mapping):
            raise ConfigError(f"Evidence.quantiles must be a dict like {{'q05': 0.1}}, got {self.quantiles!r}")
        quantiles = {}
        for key, value in self.quantiles.items():
            if not isinstance(key, str):
                raise ConfigError(f"Evidence.quantiles keys must be strings such as 'q05', got {key!r}")
            quantiles[key] = _finite(value, f"Evidence.quantiles[{key!r}]")
        object.__setattr__(self, "quantiles", quantiles)
        if not isinstance(self.supported, bool):
            raise ConfigError(f"Evidence.supported must be True or False, got {self.supported!r}")

    def to_dict(self) -> dict:
        """A JSON-ready dict; :meth:`from_dict` inverts it."""
        return {
            "source": self.source,
            "neurons": list(self.neurons),
            "factor": self.factor,
            "effect_size": self.effect_size,
            "quantiles": dict(self.quantiles),
            "supported": self.supported,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Evidence:
        """Rebuild evidence written by :meth:`to_dict`."""
        if isinstance(d, Evidence):
            return d
        if not isinstance(d, Mapping):
            raise ConfigError(f"evidence must be an Evidence or a dict, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown Evidence keys {sorted(unknown)}; valid keys: {[f.name for f in fields(cls)]}")
        return cls(**d)


# --- parameters ------------------------------------------------------------------
@dataclass(frozen=True)
class TransformationParams:
    """Transformation parameters for retraining, each with its evidence.

    Every parameter defaults to "no change". Ranges are ``(lo, hi)`` and are
    sampled uniformly, once per clip.

    Args:
        brightness: Multiplicative brightness factor range, e.g. ``(0.6, 1.4)``.
        contrast: Multiplicative contrast factor range (both directions:
            ``(0.5, 1.6)`` lowers and raises contrast).
        saturation: Multiplicative saturation factor range.
        hue: Hue shift range as a fraction of the colour circle, within
            ``[-0.5, 0.5]``.
        scale: Zoom factor range; below 1 zooms out (objects get smaller, the
            border is padded with the normalisation mean), above 1 zooms in.
        blur: Gaussian blur sigma range in pixels, ``0 < lo <= hi``.
        noise: Additive Gaussian noise std range on the 0..1 scale.
        translate: Maximum shift ``(fx, fy)`` as fractions of width and height.
        crop: ``(top, left, height, width)`` fractions applied at
            preprocessing through :meth:`apply_to_spec`, not as augmentation.
        frame_window: ``(start, end)`` fractions of the clip to sample from
            (through :meth:`apply_to_spec`).
        frame_stride: Step between sampled frames (through
            :meth:`apply_to_spec`); 1 means no change.
        speed: Playback speed range ``(lo, hi)``, ``0 < lo <= hi <= 8``: each
            training clip is re-timed by a factor drawn from it (frames
            sampled ``speed`` times as far apart, reflected at the clip's
            ends; see :func:`speed_indices`), so faster (or slower) motion is
            simulated from the clip's own frames. It acts in
            :class:`~dlabel_lab.train.datasets.ClipDataset`, not in
            :meth:`build_augment`, and never at serving time.
        class_weights: Loss weight per class name; missing classes weigh 1.
        p: Probability that each augmentation fires on a clip.
        evidence: :class:`Evidence` keyed by parameter name. Evidence for a
            parameter left unset records a candidate that was rejected.
        seed: Default seed for :meth:`build_augment`.
        schema: Format version of the serialised parameters.

    Example:
        >>> params = TransformationParams(scale=(0.5, 1.0), frame_stride=2)
        >>> params.is_empty()
        False
    """

    brightness: tuple[float, float] | None = None
    contrast: tuple[float, float] | None = None
    saturation: tuple[float, float] | None = None
    hue: tuple[float, float] | None = None
    scale: tuple[float, float] | None = None
    blur: tuple[float, float] | None = None
    noise: tuple[float, float] | None = None
    translate: tuple[float, float] | None = None
    crop: tuple[float, float, float, float] | None = None
    frame_window: tuple[float, float] | None = None
    frame_stride: int = 1
    speed: tuple[float, float] | None = None
    class_weights: dict[str, float] = field(default_factory=dict)
    p: float = 0.8
    evidence: dict[str, Evidence] = field(default_factory=dict)
    seed: int | None = None
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        _validate(self)

    # -- review -----------------------------------------------------------------
    def reject(self, names: Sequence[str], *, note: str = "rejected by a person") -> TransformationParams:
        """A copy with the named parameters reset to "no change", their evidence kept and noted.

        ``describe()`` then still lists them (value ``None``): what was turned
        down is not hidden. Names that change nothing already are left as they are.

        Example:
            >>> p = TransformationParams(blur=(0.5, 1.0), noise=(0.0, 0.1)).reject(["blur"])
            >>> p.blur, p.noise
            (None, (0.0, 0.1))
        """
        defaults = {f.name: (f.default_factory() if f.default_factory is not MISSING else f.default)
                    for f in fields(self)}
        names = [n for n in names if getattr(self, n) != defaults[n]]
        evidence = dict(self.evidence)
        for n in names:
            if n in evidence:
                old = evidence[n]
                evidence[n] = replace(old, note=f"{old.note}; {note}" if old.note else note)
        return replace(self, **{n: defaults[n] for n in names}, evidence=evidence)

    def supported_only(self) -> TransformationParams:
        """A copy keeping only parameters whose evidence is supported (a review policy).

        Parameters without evidence are kept; the others are rejected with
        :meth:`reject`, so their evidence stays on record.

        Example:
            >>> from dlabel_lab.train.transforms import Evidence
            >>> p = TransformationParams(blur=(0.5, 1.0), evidence={"blur": Evidence(supported=False)})
            >>> p.supported_only().blur is None
            True
        """
        return self.reject([n for n, ev in self.evidence.items() if not ev.supported], note="not supported")

    def for_operational(self) -> tuple[TransformationParams, dict[str, str]]:
        """The part of the augmentation that also makes sense on operational (drifted) clips.

        A derived range usually maps the reference (lab) clips into the
        operational regime (e.g. brightness 0.35-1.0: darker); applied to
        clips that already are operational it would push them beyond it. Only
        ranges that reach both sides of "no change" (an invariance, such as
        contrast 0.7-1.4 or zoom 0.8-1.2) and shifts are kept; crop, window,
        stride and class weights act through the spec and the loss, not here.

        Returns:
            The kept parameters and, per dropped augmentation, why.

        Example:
            >>> kept, why = TransformationParams(brightness=(0.4, 1.0), contrast=(0.7, 1.4)).for_operational()
            >>> kept.brightness, kept.contrast, sorted(why)
            (None, (0.7, 1.4), ['brightness'])
        """
        identity = {"brightness": 1.0, "contrast": 1.0, "scale": 1.0, "saturation": 1.0}
        drop, why = [], {}
        for name in _AUGMENTS:
            value = getattr(self, name)
            if value is None or name == "translate":
                continue
            if name in ("blur", "noise"):
                drop.append(name)
                why[name] = "adds degradation the operational clips already carry"
            elif name == "hue":
                continue
            elif not (value[0] < identity[name] < value[1]):
                drop.append(name)
                why[name] = f"one-sided range {value} maps lab clips into the operational regime"
        if self.speed is not None and not self.speed[0] < 1.0 < self.speed[1]:
            drop.append("speed")
            why["speed"] = f"one-sided range {self.speed} re-times lab clips into the operational regime"
        return replace(self, **{n: None for n in drop}), why

    # -- inspection ------------------------------------------------------------
    def is_empty(self) -> bool:
        """True when no parameter changes anything (``p``, evidence and seed aside).

        Example:
            >>> TransformationParams().is_empty()
            True
        """
        return not self._set_names()

    def _set_names(self) -> list[str]:
        names = [n for n in PARAM_NAMES if n not in ("frame_stride", "class_weights") and getattr(self, n) is not None]
        if self.frame_stride != 1:
            names.append("frame_stride")
        if self.class_weights:
            names.append("class_weights")
        return sorted(names, key=PARAM_NAMES.index)

    def describe(self) -> pd.DataFrame:
        """One row per set parameter, with its evidence.

        Parameters that have evidence but no value (rejected candidates) are
        listed too, with ``value`` ``None``, so that what did not help stays
        visible.

        Returns:
            Columns ``parameter``, ``value``, ``source``, ``effect_size``,
            ``supported``, ``neurons``, ``note``.

        Example:
            >>> TransformationParams(blur=(0.5, 1.5)).describe()["parameter"].tolist()
            ['blur']
        """
        set_names = self._set_names()
        rows = []
        for name in sorted(set(set_names) | set(self.evidence), key=PARAM_NAMES.index):
            value = getattr(self, name) if name in set_names else None
            ev = self.evidence.get(name)
            rows.append(
                {
                    "parameter": name,
                    "value": dict(value) if isinstance(value, dict) else value,
                    "source": ev.source if ev else None,
                    "effect_size": ev.effect_size if ev else None,
                    "supported": ev.supported if ev else None,
                    "neurons": ", ".join(ev.neurons) if ev else "",
                    "note": ev.note if ev else "",
                }
            )
        columns = ["parameter", "value", "source", "effect_size", "supported", "neurons", "note"]
        return pd.DataFrame(rows, columns=columns)

    # -- serialisation ---------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dict; :meth:`from_dict` inverts it exactly.

        Example:
            >>> TransformationParams(noise=(0.0, 0.05)).to_dict()["noise"]
            [0.0, 0.05]
        """
        d: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif f.name == "evidence":
                value = {k: ev.to_dict() for k, ev in value.items()}
            elif f.name == "class_weights":
                value = dict(value)
            d[f.name] = value
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> TransformationParams:
        """Rebuild parameters written by :meth:`to_dict`.

        Raises:
            ConfigError: Unknown keys (a typo) or a newer schema version.

        Example:
            >>> TransformationParams.from_dict({"contrast": [0.8, 1.2]}).contrast
            (0.8, 1.2)
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"TransformationParams.from_dict needs a dict, got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = set(d) - set(names)
        if unknown:
            raise ConfigError(f"unknown transformation parameters {sorted(unknown)}; valid names: {names}")
        schema = d.get("schema", SCHEMA_VERSION)
        if not isinstance(schema, int) or schema > SCHEMA_VERSION:
            raise ConfigError(
                f"transformation parameters have schema {schema!r}; this dlabel_lab reads up to "
                f"{SCHEMA_VERSION}. Upgrade dlabel_lab to read them."
            )
        return cls(**dict(d))

    def to_json(self, *, indent: int | None = None) -> str:
        """The parameters as JSON text (see :meth:`to_dict`).

        Example:
            >>> TransformationParams(p=1.0).to_json()[:9]
            '{"brightn'
        """
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> TransformationParams:
        """Rebuild parameters from :meth:`to_json` text.

        Example:
            >>> TransformationParams.from_json('{"frame_stride": 2}').frame_stride
            2
        """
        try:
            d = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"transformation parameters are not valid JSON ({exc}). Pass to_json() output.") from exc
        return cls.from_dict(d)

    # -- application -----------------------------------------------------------
    def apply_to_spec(self, spec: ClipSpec) -> ClipSpec:
        """The clip spec with this crop, frame window and stride applied.

        ``crop`` replaces the spec's crop. ``frame_window`` sets the window and
        ``sampling="uniform"`` (frames spread evenly over the window);
        ``frame_stride > 1`` sets ``sampling="stride"`` (every n-th frame from
        the window start). When either is set, explicit ``spec.indices`` are
        dropped, since they would override the sampling. Unset parameters leave
        the spec as it is.

        Example:
            >>> TransformationParams(frame_window=(0.25, 1.0)).apply_to_spec(ClipSpec()).window
            (0.25, 1.0)
        """
        if not isinstance(spec, ClipSpec):
            raise ConfigError(f"apply_to_spec needs a ClipSpec, got {type(spec).__name__}")
        changes: dict[str, Any] = {}
        if self.crop is not None:
            changes["crop"] = self.crop
        if self.frame_window is not None:
            changes.update(window=self.frame_window, sampling="uniform", indices=None)
        if self.frame_stride > 1:
            changes.update(sampling="stride", stride=self.frame_stride, indices=None)
        return replace(spec, **changes) if changes else spec

    def build_augment(
        self,
        *,
        mean: Sequence[float] = (0.45, 0.45, 0.45),
        std: Sequence[float] = (0.225, 0.225, 0.225),
        seed: int | None = None,
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """A torchvision ``transforms.v2`` pipeline for normalised clips ``(C, T, H, W)``.

        The pipeline un-normalises to 0..1, turns the clip into a
        ``tv_tensors.Video`` ``(T, C, H, W)`` so that v2 samples each random
        parameter once per clip (every frame gets the same brightness, zoom,
        shift and blur sigma), applies each set augmentation with probability
        ``p`` (``RandomAffine`` for scale/translate, ``ColorJitter`` for
        brightness and contrast, ``GaussianBlur``, ``GaussianNoise``), clamps
        to 0..1 and re-normalises. Output shape, dtype and device match the
        input. Without augmentation parameters (or with ``p == 0``) it is the
        identity.

        Args:
            mean: Normalisation mean of the clips (RGB, 0..1 scale); also the
                (unused for zoom-out borders, which take the clip's own
                background: the median of its border pixels).
            std: Normalisation std of the clips.
            seed: Seed for a reproducible sequence of augmentations; defaults
                to ``self.seed``. The global RNG (CPU, CUDA) is left untouched. With
                DataLoader workers leave it ``None``: each worker would repeat
                the same sequence.

        Returns:
            A ``transforms.v2.Compose`` (picklable, so it works in workers).

        Example:
            >>> aug = TransformationParams(brightness=(0.5, 1.5), p=1.0).build_augment(seed=0)
            >>> aug(torch.zeros(3, 4, 16, 16)).shape
            torch.Size([3, 4, 16, 16])
        """
        mean_t, std_t = _check_norm(mean, "mean"), _check_norm(std, "std")
        if len(mean_t) != len(std_t) or min(std_t) <= 0:
            raise ConfigError(f"build_augment needs as many mean as std values, std > 0; got {mean!r}, {std!r}")
        seed = self.seed if seed is None else seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"build_augment seed must be an int or None, got {seed!r}")
        steps: list[Callable] = []
        if self.scale is not None or self.translate is not None:
            steps.append(
                _BackgroundAffine(
                    degrees=0.0,
                    translate=self.translate,
                    scale=self.scale,
                    interpolation=v2.InterpolationMode.BILINEAR,
                    fill=list(mean_t),
                )
            )
        if self.brightness is not None:
            steps.append(v2.ColorJitter(brightness=self.brightness))
        if self.contrast is not None:
            steps.append(v2.ColorJitter(contrast=self.contrast))
        if self.saturation is not None and len(mean_t) == 3:
            steps.append(v2.ColorJitter(saturation=self.saturation))
        if self.hue is not None and len(mean_t) == 3:
            steps.append(v2.ColorJitter(hue=self.hue))
        if self.blur is not None:
            steps.append(_ClipBlur(sigma=self.blur))
        if self.noise is not None:
            steps.append(_RangeNoise(sigma=self.noise))
        if not steps or self.p == 0:
            return _ClipCompose([v2.Identity()], seed=seed)
        return _ClipCompose(
            [
                _ToVideo(),
                v2.Normalize(mean=[-m / s for m, s in zip(mean_t, std_t, strict=True)], std=[1.0 / s for s in std_t]),
                *(v2.RandomApply([t], p=self.p) for t in steps),
                _Clamp01(),
                v2.Normalize(mean=list(mean_t), std=list(std_t)),
                _FromVideo(),
            ],
            seed=seed,
        )


def class_weight_tensor(params: TransformationParams, classes: Sequence[str]) -> torch.Tensor:
    """Per-class loss weights ordered as ``classes`` (1.0 where unset).

    Raises:
        UnknownLabel: A weighted class is not one of ``classes``.

    Example:
        >>> class_weight_tensor(TransformationParams(class_weights={"b": 2.0}), ["a", "b"])
        tensor([1., 2.])
    """
    classes = list(classes)
    unknown = sorted(set(params.class_weights) - set(classes))
    if unknown:
        raise UnknownLabel(
            f"class_weights name classes {unknown} that are not among the model's classes {classes}. "
            "Remove them or fix the class names."
        )
    return torch.tensor([float(params.class_weights.get(c, 1.0)) for c in classes], dtype=torch.float32)


# --- validation ------------------------------------------------------------------
def speed_indices(dense: int, frames: int, speed: float, *, start: float = 0.0) -> list[int]:
    """Indices into ``dense`` evenly sampled frames that re-time a clip by ``speed``.

    A model reads ``frames`` frames spread evenly over a clip; a clip read
    ``dense`` frames deep (``dense >= frames``) covers the same span finer.
    Frames ``speed`` times as far apart as the model's show motion ``speed``
    times as fast; past the clip's ends the positions reflect (the clip plays
    back and forth), so no frame is invented. ``speed == 1`` with ``start ==
    0`` gives the model's own frames. Whole-number speeds above 1 can alias
    (at ``speed == 3`` here every position reflects onto the same frame);
    training draws speeds from a continuous range, where that has no weight.

    Args:
        dense: Frames of the densely read clip.
        frames: Frames the model reads.
        speed: Re-timing factor (> 0); above 1 is faster.
        start: First position, as a fraction of the room the span leaves (or
            of the clip when the span overruns it), in ``[0, 1]``.

    Example:
        >>> speed_indices(16, 4, 1.0)
        [0, 5, 10, 15]
        >>> speed_indices(16, 4, 2.5)
        [0, 13, 5, 8]
        >>> speed_indices(16, 4, 0.5, start=1.0)
        [8, 10, 13, 15]
    """
    if dense < 1 or frames < 1 or not speed > 0 or not 0.0 <= start <= 1.0:
        raise ConfigError(f"speed_indices needs dense, frames >= 1, speed > 0 and start in [0, 1]; "
                          f"got {dense}, {frames}, {speed}, {start}")
    last = dense - 1
    step = last / max(frames - 1, 1)
    span = (frames - 1) * step * speed
    origin = start * (last - span) if span <= last else start * last
    period = 2 * last
    out = []
    for k in range(frames):
        pos = origin + k * step * speed
        if period:
            pos = pos % period
            pos = period - pos if pos > last else pos
        out.append(min(last, int(round(pos + 1e-9))))
    return out


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _pair(value: Any, name: str) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(f"TransformationParams.{name} must be a (lo, hi) pair, got {value!r}")
    lo, hi = (_finite(v, f"TransformationParams.{name}") for v in value)
    return lo, hi


def _check_range(value: Any, name: str, *, min_lo: float, strict: bool, max_hi: float = math.inf) -> tuple:
    lo, hi = _pair(value, name)
    low_ok = lo > min_lo if strict else lo >= min_lo
    if not (low_ok and lo <= hi <= max_hi):
        bound = f"{min_lo} {'<' if strict else '<='} lo <= hi" + (f" <= {max_hi}" if max_hi < math.inf else "")
        raise ConfigError(f"TransformationParams.{name} must satisfy {bound}, got {value!r}. Swap or fix the bounds.")
    return lo, hi


def _check_norm(value: Sequence[float], name: str) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) not in (1, 3):
        raise ConfigError(f"build_augment {name} needs 1 or 3 values (one per channel), got {value!r}")
    return tuple(_finite(v, f"build_augment {name}") for v in value)


def _validate(params: TransformationParams) -> None:
    def put(name: str, value: Any) -> None:
        object.__setattr__(params, name, value)

    limits = {
        "brightness": dict(min_lo=0.0, strict=False),
        "contrast": dict(min_lo=0.0, strict=False),
        "saturation": dict(min_lo=0.0, strict=False),
        "scale": dict(min_lo=0.0, strict=True),
        "blur": dict(min_lo=0.0, strict=True, max_hi=50.0),
        "noise": dict(min_lo=0.0, strict=False, max_hi=1.0),
        "speed": dict(min_lo=0.0, strict=True, max_hi=8.0),
    }
    for name in _RANGES:
        value = getattr(params, name)
        if value is not None:
            put(name, _check_range(value, name, **limits[name]))
    if params.hue is not None:
        lo, hi = _pair(params.hue, "hue")
        if not -0.5 <= lo <= hi <= 0.5:
            raise ConfigError(f"TransformationParams.hue must satisfy -0.5 <= lo <= hi <= 0.5, got {params.hue!r}")
        put("hue", (lo, hi))
    if params.translate is not None:
        fx, fy = _pair(params.translate, "translate")
        if not (0 <= fx <= 1 and 0 <= fy <= 1):
            raise ConfigError(f"TransformationParams.translate fractions must be in [0, 1], got {params.translate!r}")
        put("translate", (fx, fy))
    if params.crop is not None:
        crop = params.crop
        if isinstance(crop, (str, bytes)) or not isinstance(crop, Sequence) or len(crop) != 4:
            raise ConfigError(f"TransformationParams.crop must be (top, left, height, width) fractions, got {crop!r}")
        t, left, h, w = (_finite(v, "TransformationParams.crop") for v in crop)
        if not (0 <= t < 1 and 0 <= left < 1 and 0 < h <= 1 and 0 < w <= 1 and t + h <= 1 + 1e-9
                and left + w <= 1 + 1e-9):
            raise ConfigError(
                f"TransformationParams.crop {crop!r} reaches outside the frame: need top + height <= 1 and "
                "left + width <= 1, all fractions of the frame."
            )
        put("crop", (t, left, h, w))
    if params.frame_window is not None:
        a, b = _pair(params.frame_window, "frame_window")
        if not 0 <= a < b <= 1:
            raise ConfigError(
                f"TransformationParams.frame_window must satisfy 0 <= start < end <= 1, got {params.frame_window!r}"
            )
        put("frame_window", (a, b))
    stride = params.frame_stride
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ConfigError(f"TransformationParams.frame_stride must be an int >= 1, got {stride!r}")
    if not isinstance(params.class_weights, Mapping):
        raise ConfigError(f"TransformationParams.class_weights must be a dict of class name -> weight, "
                          f"got {params.class_weights!r}")
    weights = {}
    for key, value in params.class_weights.items():
        if not isinstance(key, str):
            raise ConfigError(
                f"class_weights keys must be class names (str), got {key!r} ({type(key).__name__}). "
                "Map class indices to names first."
            )
        weight = _finite(value, f"class_weights[{key!r}]")
        if weight < 0:
            raise ConfigError(f"class_weights[{key!r}] must be >= 0, got {value!r}")
        weights[key] = weight
    put("class_weights", weights)
    p = _finite(params.p, "TransformationParams.p")
    if not 0 <= p <= 1:
        raise ConfigError(f"TransformationParams.p is a probability in [0, 1], got {params.p!r}")
    put("p", p)
    if not isinstance(params.evidence, Mapping):
        raise ConfigError(f"TransformationParams.evidence must be a dict keyed by parameter name, "
                          f"got {params.evidence!r}")
    unknown = sorted(set(params.evidence) - set(PARAM_NAMES))
    if unknown:
        raise ConfigError(f"evidence for unknown parameters {unknown}; valid names: {list(PARAM_NAMES)}")
    put("evidence", {k: Evidence.from_dict(v) for k, v in params.evidence.items()})
    if params.seed is not None and (isinstance(params.seed, bool) or not isinstance(params.seed, int)):
        raise ConfigError(f"TransformationParams.seed must be an int or None, got {params.seed!r}")
    if isinstance(params.schema, bool) or not isinstance(params.schema, int) or params.schema > SCHEMA_VERSION:
        raise ConfigError(f"TransformationParams.schema {params.schema!r} is not supported (max {SCHEMA_VERSION})")
