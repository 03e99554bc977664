"""Captum attributions for clip models: neurons, layer maps and frames.

Every function here is pure: it takes a ``torch.nn.Module`` whose
``forward(x)`` maps a batch of clips ``(N, C, T, H, W)`` to logits, plus the
layer to explain, and returns tensors on the CPU. The default layers are the
model's ``embedding_layer`` (neurons) and ``last_conv`` (maps) when it has
them, as :class:`~dlabel_lab.models.ClipClassifier` does. Nothing here reads
or writes the store; :mod:`dlabel_lab.neurons` turns these tensors into
neuron functions and clip tags.

The model is put in eval mode for the duration of each call (and restored
after), so that rows of a batch never influence each other.

Example:
    >>> res = neuron_attributions(model, x, method="gradient", progress=False)  # doctest: +SKIP
    >>> res.mass_map.shape  # (N, n_neurons, H, W)  # doctest: +SKIP
    torch.Size([4, 64, 112, 112])
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from captum.attr import (
    IntegratedGradients,
    LayerConductance,
    LayerGradCam,
    NeuronConductance,
    NeuronGradient,
    NeuronIntegratedGradients,
)
from torch import nn
from tqdm.auto import tqdm

from ..errors import ConfigError, UnknownLabel

__all__ = [
    "NeuronAttributionResult",
    "activations",
    "attribution_cost_benchmark",
    "frame_attribution",
    "layer_map",
    "neuron_attributions",
]

Target = int | str | Sequence[int] | Sequence[str] | torch.Tensor | None
_NEURON_METHODS = ("gradient", "conductance", "integrated_gradients")


@dataclass(frozen=True)
class NeuronAttributionResult:
    """Compact per-clip summaries of neuron attributions.

    Attributes:
        mass_map: ``(N, K, H, W)``: absolute attribution of neuron ``neurons[k]``
            summed over channels and time, normalised to sum 1 per map (all
            zeros where the attribution is zero everywhere).
        frame_profile: ``(N, K, T)``: absolute attribution summed over
            channels, height and width, normalised to sum 1 (or all zeros).
        activations: ``(N, D)``: the layer's output per clip, flattened.
        neurons: The ``K`` flat neuron indices, in the order of dimension 1.
        method: The attribution method used.
    """

    mass_map: torch.Tensor
    frame_profile: torch.Tensor
    activations: torch.Tensor
    neurons: tuple[int, ...]
    method: str


# --- validation and small helpers ---------------------------------------------------
def _check_clips(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"{name} must be a torch.Tensor shaped (N, C, T, H, W), got {type(x).__name__}")
    if x.ndim != 5 or x.shape[0] == 0:
        raise ConfigError(
            f"{name} must be a batch of clips shaped (N, C, T, H, W) with N >= 1, got {tuple(x.shape)}; "
            "add the batch dimension with x.unsqueeze(0)"
        )
    return x.detach().float()


def _check_batch(value: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    return value


def _resolve_layer(model: nn.Module, layer: nn.Module | None, attr: str) -> nn.Module:
    if layer is None:
        layer = getattr(model, attr, None)
        if layer is None:
            raise ConfigError(
                f"{type(model).__name__} has no `{attr}` attribute; pass the module to explain as layer=..."
            )
    if not isinstance(layer, nn.Module):
        raise ConfigError(f"layer must be a torch.nn.Module inside the model, got {type(layer).__name__}")
    if not any(m is layer for m in model.modules()):
        raise ConfigError("layer is not a submodule of model; pass a module reachable from model.modules()")
    return layer


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _internal_batch(internal_batch_size: int | None, rows: int, dev: torch.device) -> int | None:
    """Rows per Captum pass: the caller's choice, else all steps in one pass on
    a GPU and one step per pass on the CPU (measured faster there: the large
    batched pass falls out of cache; Captum's own overhead is negligible)."""
    if internal_batch_size is not None:
        return internal_batch_size
    return None if dev.type == "cuda" else rows


def _normalise(a: torch.Tensor) -> torch.Tensor:
    """Divide each row (over the last dimension) by its sum; zero rows stay zero."""
    total = a.sum(-1, keepdim=True)
    return torch.where(total > 0, a / torch.where(total > 0, total, torch.ones_like(total)), torch.zeros_like(a))


def _targets(model: nn.Module, x: torch.Tensor, target: Target, batch_size: int) -> torch.Tensor:
    """Class indices ``(N,)``: the given ones, or the model's predictions."""
    n = x.shape[0]
    if target is None:
        dev = _device(model)
        with _eval_mode(model), torch.no_grad():
            out = [model(x[s].to(dev)).argmax(-1).cpu() for s in _chunks(n, batch_size)]
        return torch.cat(out).long()
    classes = list(getattr(model, "classes", None) or [])
    if isinstance(target, str) or (isinstance(target, Sequence) and target and isinstance(target[0], str)):
        names = [target] * n if isinstance(target, str) else list(target)
        unknown = sorted({t for t in names if t not in classes})
        if unknown:
            raise UnknownLabel(f"target {unknown} not among the model's classes {classes}; pass class names it knows")
        target = [classes.index(t) for t in names]
    t = torch.as_tensor(target).long().flatten()
    if t.numel() == 1:
        t = t.expand(n).clone()
    if t.numel() != n:
        raise ConfigError(f"target has {t.numel()} entries for {n} clips; pass one int or one per clip")
    return t


def _row_selector(ids: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A Captum neuron selector giving row ``r`` the neuron ``ids[r % K]``.

    Clips are repeated ``K`` times (``repeat_interleave``), so that one Captum
    call explains ``K`` neurons at once. Captum stacks the integration steps
    along dimension 0, which keeps row ``r`` on neuron ``ids[r % K]``.
    """
    k = len(ids)

    def select(out: torch.Tensor) -> torch.Tensor:
        flat = out.reshape(out.shape[0], -1)
        idx = ids.to(flat.device).repeat(flat.shape[0] // k)
        return flat.gather(1, idx[:, None]).squeeze(1)

    return select


# --- activations ------------------------------------------------------------------
def activations(
    model: nn.Module,
    x: torch.Tensor,
    *,
    layer: nn.Module | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> torch.Tensor:
    """The output of ``layer`` for every clip, flattened to ``(N, D)``.

    Args:
        model: Any module mapping ``(N, C, T, H, W)`` clips to logits.
        x: The clips.
        layer: Module whose output is recorded; defaults to ``model.embedding_layer``.
        batch_size: Clips per forward pass.
        progress: Show a progress bar.

    Returns:
        A float tensor ``(N, D)`` on the CPU (computed without gradients).

    Example:
        >>> activations(model, x, layer=model.embedding_layer).shape  # doctest: +SKIP
        torch.Size([4, 64])
    """
    x = _check_clips(x)
    layer = _resolve_layer(model, layer, "embedding_layer")
    _check_batch(batch_size, "batch_size")
    dev, out = _device(model), []

    def hook(_m, _i, o):
        o = o[0] if isinstance(o, (tuple, list)) else o
        out.append(o.detach().reshape(o.shape[0], -1).float().cpu())

    handle = layer.register_forward_hook(hook)
    try:
        with _eval_mode(model), torch.no_grad():
            for s in tqdm(_chunks(x.shape[0], batch_size), desc="activations", disable=not progress):
                model(x[s].to(dev))
    finally:
        handle.remove()
    return torch.cat(out)


# --- neurons ----------------------------------------------------------------------
def neuron_attributions(
    model: nn.Module,
    x: torch.Tensor,
    *,
    layer: nn.Module | None = None,
    neurons: Sequence[int] | None = None,
    method: Literal["gradient", "conductance", "integrated_gradients"] = "gradient",
    target: Target = None,
    n_steps: int = 16,
    internal_batch_size: int | None = None,
    batch_size: int = 16,
    neuron_batch_size: int = 1,
    progress: bool = True,
) -> NeuronAttributionResult:
    """Where in space and time each neuron of ``layer`` takes its input from.

    For each chosen neuron, Captum's ``NeuronGradient``, ``NeuronConductance``
    (conductance of the neuron towards the ``target`` class) or
    ``NeuronIntegratedGradients`` attributes the neuron to the input; the
    ``(C, T, H, W)`` attribution is reduced to a spatial ``mass_map`` and a
    temporal ``frame_profile``. Baselines are zeros, i.e. the normalised mean
    clip. Each Captum call explains ``batch_size`` clips times
    ``neuron_batch_size`` neurons (one row each); integrated methods evaluate
    ``rows * n_steps`` points, ``internal_batch_size`` rows per pass.

    Args:
        model: Any module mapping ``(N, C, T, H, W)`` clips to logits.
        x: The clips.
        layer: Module whose output neurons are explained; defaults to
            ``model.embedding_layer``.
        neurons: Flat indices into the layer's flattened output; defaults to all.
        method: ``"gradient"``, ``"conductance"`` or ``"integrated_gradients"``.
        target: Class for ``"conductance"``: an index, a class name, one per
            clip, or ``None`` for the predicted class. Ignored otherwise.
        n_steps: Integration steps for the integrated methods.
        internal_batch_size: Rows per forward/backward pass inside Captum;
            ``None`` runs all steps in one pass on a GPU and one step per pass
            on the CPU (the faster choice measured on each).
        batch_size: Clips per Captum call.
        neuron_batch_size: Neurons explained together per Captum call.
        progress: Show a progress bar.

    Returns:
        A :class:`NeuronAttributionResult`.

    Example:
        >>> res = neuron_attributions(model, x, neurons=[0, 1], progress=False)  # doctest: +SKIP
        >>> res.frame_profile.shape  # doctest: +SKIP
        torch.Size([4, 2, 8])
    """
    x = _check_clips(x)
    layer = _resolve_layer(model, layer, "embedding_layer")
    if method not in _NEURON_METHODS:
        raise ConfigError(f"method must be one of {_NEURON_METHODS}, got {method!r}")
    for value, name in ((n_steps, "n_steps"), (batch_size, "batch_size"), (neuron_batch_size, "neuron_batch_size")):
        _check_batch(value, name)
    if internal_batch_size is not None:
        _check_batch(internal_batch_size, "internal_batch_size")
    acts = activations(model, x, layer=layer, batch_size=max(batch_size, 32))
    d = acts.shape[1]
    ids = list(range(d)) if neurons is None else [int(i) for i in neurons]
    if not ids or any(not 0 <= i < d for i in ids):
        raise ConfigError(f"neurons must be a non-empty list of indices in [0, {d}) for this layer, got {neurons!r}")
    targets = _targets(model, x, target, batch_size) if method == "conductance" else None

    explainer = {"gradient": NeuronGradient, "conductance": NeuronConductance,
                 "integrated_gradients": NeuronIntegratedGradients}[method](model, layer)
    n, (_, _, t, h, w) = x.shape[0], x.shape
    mass = torch.zeros(n, len(ids), h, w)
    frames = torch.zeros(n, len(ids), t)
    dev = _device(model)
    clip_chunks, neuron_chunks = _chunks(n, batch_size), _chunks(len(ids), neuron_batch_size)
    bar = tqdm(total=len(clip_chunks) * len(neuron_chunks), desc=f"neuron {method}", disable=not progress)
    with _eval_mode(model):
        for cs in clip_chunks:
            for ns in neuron_chunks:
                sel = torch.tensor(ids[ns])
                k = len(sel)
                rows = x[cs].to(dev).repeat_interleave(k, 0)
                kw: dict = {"neuron_selector": _row_selector(sel)}
                if method != "gradient":
                    kw.update(baselines=0.0, n_steps=n_steps,
                              internal_batch_size=_internal_batch(internal_batch_size, rows.shape[0], dev))
                if method == "conductance":
                    kw["target"] = targets[cs].repeat_interleave(k).tolist()
                with warnings.catch_warnings():  # the selector only picks one neuron per row, as Captum asks
                    warnings.filterwarnings("ignore", message="The neuron_selector provided is a callable")
                    attr = explainer.attribute(rows.requires_grad_(), **kw).detach().abs().float().cpu()
                b = rows.shape[0] // k
                mass[cs, ns] = _normalise(attr.sum((1, 2)).reshape(b, k, h * w)).reshape(b, k, h, w)
                frames[cs, ns] = _normalise(attr.sum((1, 3, 4)).reshape(b, k, t))
                bar.update(1)
    bar.close()
    return NeuronAttributionResult(mass_map=mass, frame_profile=frames, activations=acts,
                                   neurons=tuple(ids), method=method)


# --- layer maps -------------------------------------------------------------------
def layer_map(
    model: nn.Module,
    x: torch.Tensor,
    *,
    layer: nn.Module | None = None,
    target: Target = None,
    method: Literal["gradcam", "conductance"] = "gradcam",
    upsample: bool = False,
    n_steps: int = 16,
    internal_batch_size: int | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> torch.Tensor:
    """Where the evidence for the target class sits in a conv layer's output.

    ``"gradcam"`` is Captum's ``LayerGradCam`` with ``relu_attributions=True``:
    the layer's channels weighted by their mean gradient, summed, positive
    part. ``"conductance"`` is ``LayerConductance`` (zero baseline, ``n_steps``)
    summed over channels, positive part.

    Args:
        model: Any module mapping ``(N, C, T, H, W)`` clips to logits.
        x: The clips.
        layer: A module with output ``(N, C, T', H', W')``; defaults to ``model.last_conv``.
        target: Class index, class name, one per clip, or ``None`` for the predicted class.
        method: ``"gradcam"`` or ``"conductance"``.
        upsample: Interpolate (trilinear) to the input's ``(T, H, W)``.
        n_steps: Integration steps for ``"conductance"``.
        internal_batch_size: Rows per pass inside Captum for ``"conductance"``;
            ``None``: all steps in one pass on a GPU, two per pass on the CPU.
        batch_size: Clips per Captum call.
        progress: Show a progress bar.

    Returns:
        A non-negative float tensor ``(N, T', H', W')``, or ``(N, T, H, W)``
        with ``upsample=True``.

    Example:
        >>> layer_map(model, x, upsample=True, progress=False).shape  # doctest: +SKIP
        torch.Size([4, 8, 112, 112])
    """
    x = _check_clips(x)
    layer = _resolve_layer(model, layer, "last_conv")
    if method not in ("gradcam", "conductance"):
        raise ConfigError(f"method must be 'gradcam' or 'conductance', got {method!r}")
    _check_batch(batch_size, "batch_size")
    _check_batch(n_steps, "n_steps")
    targets = _targets(model, x, target, batch_size)
    dev, out = _device(model), []
    explainer = LayerGradCam(model, layer) if method == "gradcam" else LayerConductance(model, layer)
    with _eval_mode(model):
        for s in tqdm(_chunks(x.shape[0], batch_size), desc=f"layer {method}", disable=not progress):
            xb, tb = x[s].to(dev), targets[s].tolist()
            if method == "gradcam":
                a = explainer.attribute(xb, target=tb, relu_attributions=True)
            else:
                a = explainer.attribute(xb, baselines=0.0, target=tb, n_steps=n_steps,
                                        internal_batch_size=_internal_batch(internal_batch_size, 2 * len(tb), dev))
            a = a.detach()
            if a.ndim != 5:
                raise ConfigError(
                    f"layer_map needs a layer with output (N, C, T', H', W'), got {tuple(a.shape)}; "
                    "pass a 3D conv such as layer=model.last_conv"
                )
            a = a.sum(1, keepdim=True).clamp_min(0)
            if upsample:
                a = F.interpolate(a, size=tuple(x.shape[2:]), mode="trilinear", align_corners=False)
            out.append(a[:, 0].float().cpu())
    return torch.cat(out)


# --- frames -----------------------------------------------------------------------
def frame_attribution(
    model: nn.Module,
    x: torch.Tensor,
    *,
    target: Target = None,
    n_steps: int = 16,
    internal_batch_size: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> torch.Tensor:
    """How much each frame contributes to the target class (Integrated Gradients).

    Captum's ``IntegratedGradients`` from a zero baseline (zeros are the
    normalised mean clip) to ``x``; the absolute attribution is summed over
    channels, height and width per frame and normalised to sum 1 per clip.

    Args:
        model: Any module mapping ``(N, C, T, H, W)`` clips to logits.
        x: The clips.
        target: Class index, class name, one per clip, or ``None`` for the predicted class.
        n_steps: Integration steps (Gauss-Legendre).
        internal_batch_size: Rows per pass inside Captum; ``None`` evaluates
            all ``batch_size * n_steps`` rows in one pass on a GPU and one step
            (``batch_size`` rows) per pass on the CPU.
        batch_size: Clips per Captum call.
        progress: Show a progress bar.

    Returns:
        A float tensor ``(N, T)``; rows sum to 1 (all zeros if the attribution is zero).

    Example:
        >>> frame_attribution(model, x, progress=False).sum(1)  # doctest: +SKIP
        tensor([1., 1., 1., 1.])
    """
    x = _check_clips(x)
    _check_batch(batch_size, "batch_size")
    _check_batch(n_steps, "n_steps")
    targets = _targets(model, x, target, batch_size)
    dev, out = _device(model), []
    ig = IntegratedGradients(model)
    with _eval_mode(model):
        for s in tqdm(_chunks(x.shape[0], batch_size), desc="frame attribution", disable=not progress):
            xb = x[s].to(dev)
            a = ig.attribute(xb, baselines=0.0, target=targets[s].tolist(), n_steps=n_steps,
                             internal_batch_size=_internal_batch(internal_batch_size, xb.shape[0], dev))
            out.append(_normalise(a.detach().abs().sum((1, 3, 4)).float().cpu()))
    return torch.cat(out)


# --- cost -------------------------------------------------------------------------
def attribution_cost_benchmark(
    model: nn.Module,
    x: torch.Tensor,
    *,
    layer: nn.Module | None = None,
    neuron: int = 0,
    n_steps: int = 16,
    internal_batch_size: int | None = None,
    repeats: int = 3,
) -> dict:
    """Time integrated attributions against the passes they cannot avoid.

    The reference is ``n_steps`` times (forward + backward to the input) of
    the same model on the same clips, measured in the same run. The
    attributions run as :func:`frame_attribution` and
    :func:`neuron_attributions` run them (same ``internal_batch_size``
    rule). Each timing is the best of ``repeats`` after one warm-up.

    Args:
        model: Any module mapping ``(N, C, T, H, W)`` clips to logits.
        x: The clips (one Captum call on all of them).
        layer: Layer for ``NeuronIntegratedGradients``; defaults to
            ``model.embedding_layer`` when present, else that part is skipped.
        neuron: The neuron explained.
        n_steps: Integration steps.
        internal_batch_size: Rows per pass; ``None`` as in :func:`frame_attribution`.
        repeats: Timed repetitions.

    Returns:
        A dict with ``n``, ``n_steps``, ``internal_batch_size`` (as used),
        ``reference_s_per_sample``, ``ig_s_per_sample``, ``ig_ratio`` and,
        with a layer, ``neuron_ig_s_per_sample`` and ``neuron_ig_ratio``.

    Example:
        >>> attribution_cost_benchmark(model, x, n_steps=16)["ig_ratio"]  # doctest: +SKIP
        0.95
    """
    x = _check_clips(x)
    _check_batch(repeats, "repeats")
    _check_batch(n_steps, "n_steps")
    if layer is None and getattr(model, "embedding_layer", None) is not None:
        layer = model.embedding_layer
    n, dev = x.shape[0], _device(model)
    xd = x.to(dev)
    targets = _targets(model, x, None, n).tolist()
    rows = torch.arange(n, device=dev)
    ibs = _internal_batch(internal_batch_size, n, dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def reference() -> None:
        for _ in range(n_steps):
            xi = xd.clone().requires_grad_()
            torch.autograd.grad(model(xi)[rows, targets].sum(), xi)

    ig = IntegratedGradients(model)
    runs: dict[str, Callable[[], object]] = {
        "reference": reference,
        "ig": lambda: ig.attribute(xd, baselines=0.0, target=targets, n_steps=n_steps, internal_batch_size=ibs),
    }
    if layer is not None:
        nig = NeuronIntegratedGradients(model, _resolve_layer(model, layer, "embedding_layer"))
        select = _row_selector(torch.tensor([neuron]))
        runs["neuron_ig"] = lambda: nig.attribute(xd, neuron_selector=select, baselines=0.0, n_steps=n_steps,
                                                  internal_batch_size=ibs)
    times: dict[str, list[float]] = {k: [] for k in runs}
    with _eval_mode(model):
        for rep in range(repeats + 1):  # interleaved, so that machine load hits every timing alike
            for key, fn in runs.items():
                sync()
                t0 = time.perf_counter()
                fn()
                sync()
                if rep:  # the first round warms up
                    times[key].append(time.perf_counter() - t0)
    result: dict = {"n": n, "n_steps": n_steps, "internal_batch_size": ibs}
    for key in runs:
        result[f"{key}_s_per_sample"] = min(times[key]) / n
    ref = result["reference_s_per_sample"]
    result["ig_ratio"] = result["ig_s_per_sample"] / ref
    if "neuron_ig_s_per_sample" in result:
        result["neuron_ig_ratio"] = result["neuron_ig_s_per_sample"] / ref
    return result
