"""Model conversion: a version exported to ONNX and quantised to INT8, each a derived version with lineage.

:func:`export_onnx` exports a registered PyTorch version's logits and embedding (the two outputs the
scoring endpoint logs) with a dynamic batch axis, checks ONNX Runtime against PyTorch on held-out
clips and registers the ``.onnx`` file as a version whose parent is the PyTorch one.
:func:`quantize_int8` quantises an ONNX version with ``onnxruntime.quantization`` and registers the
result as a child of it. Both record ``params["conversion"]`` (method, settings, what was measured),
and both deploy like any version (``dl.deploy_version``), their predictions logged under their own ids.

Why the PyTorch side must be in eval mode when parity is checked: the TorchScript exporter traces
the graph in eval mode (BatchNorm with its running statistics, dropout off) and then puts the module
back in the mode it found it in. A freshly built :class:`~dlabel_lab.ClipClassifier` (a
LightningModule) starts in training mode, and so does a wrapper module around an eval-mode
classifier: exporting the wrapper switches the classifier back to training mode afterwards. A
PyTorch reference computed then uses batch statistics (and updates the running ones): the ONNX
outputs differed by 0.23-0.34 (max abs logit, fresh tiny3d models, three seeds) and by 0.14 (a
trained version exported through a wrapper left in training mode) from such a reference, but by
under 1e-6 from the same model in eval mode. Here the reference is the freshly loaded version, with
the wrapper put in eval mode before the export and the mode checked after it.

Which INT8 method: dynamic quantisation in onnxruntime 1.32 quantises the Conv3d weights too
(``ConvInteger``), not only MatMul/Gemm, and static QDQ quantisation with calibration clips does as
well, so both reach the size goal; see :data:`DEFAULT_INT8_METHOD` for what decided the default.

Example:
    >>> onnx_v = export_onnx(store, "shapes-v1")  # doctest: +SKIP
    >>> int8_v = quantize_int8(store, onnx_v.version)  # doctest: +SKIP
    >>> ingest = dl.deploy_version(store, int8_v.version)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
import os
import shutil
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, MediaError, ModelError, UnknownRecord
from ..media.video import ClipSpec, read_checked_file, read_clip, to_tensor
from ..models.checkpoint import file_sha256
from ..models.classifier import ClipClassifier
from ..models.onnx_model import (
    INPUT_NAME,
    MAX_ONNX_BYTES,
    OUTPUT_NAMES,
    OnnxClipModel,
    check_onnx_bytes,
    load_onnx_version,
    read_onnx_version,
)
from ..models.registry import ONNX_FORMAT, is_detector, is_onnx, load_version, store_model_file
from ..serving.threads import torch_threads

__all__ = ["ConvertedVersion", "export_onnx", "quantize_int8", "load_converted", "model_footprint", "cpu_latency",
           "conversion_report", "INT8_METHODS", "DEFAULT_INT8_METHOD"]

#: The INT8 methods of :func:`quantize_int8`.
INT8_METHODS = ("dynamic", "static")
#: The default INT8 method: ``"dynamic"``. Measured by ``bench/conversion.py`` (tiny3d, 4x32x32 clips, 5 seeds,
#: 300 held-out clips each, one CPU thread): both methods quantise the Conv3d weights and give files of 0.267x
#: (dynamic) and 0.273x (static) of the FP32 ONNX file; INT8 - FP32 accuracy was -0.40 points (95 % CI
#: [-0.80, 0.00]) for dynamic and -1.20 points ([-2.13, -0.27]) for static QDQ with 64 MinMax calibration
#: clips. Static ran faster (batch 16: 67 ms against 145 ms; FP32 ONNX 39 ms: ``ConvInteger`` on 3-D
#: convolutions is slow on CPU), but needs calibration clips; dynamic needs no data and lost less accuracy.
DEFAULT_INT8_METHOD = "dynamic"
#: Clips decoded from the store when none are given (parity checks, calibration).
DEFAULT_PARITY_CLIPS = 32
DEFAULT_CALIBRATION_CLIPS = 64
_BATCH = 16


@dataclass
class ConvertedVersion:
    """A converted model version registered in the store.

    Attributes:
        version: Its version id (e.g. ``"shapes-onnx-v1"``).
        parent: The version it was converted from.
        method: ``"onnx"``, ``"int8-dynamic"`` or ``"int8-static"``.
        path: The ``.onnx`` file under ``<store>/models/``.
        size_bytes: The file's size.
        parity: Max abs difference of ONNX Runtime's logits and embedding from
            PyTorch's on the parity clips (ONNX export only; ``None`` for INT8,
            whose difference from FP32 is in ``details``).
        details: What was recorded in the version's ``params["conversion"]``.
    """

    version: str
    parent: str
    method: str
    path: str
    size_bytes: int
    parity: float | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-ready dict.

        Example:
            >>> ConvertedVersion("m-onnx-v1", "m-v1", "onnx", "m.onnx", 10, 1e-7).to_dict()["method"]
            'onnx'
        """
        return asdict(self)


class _LogitsAndEmbedding(nn.Module):
    """The function the endpoint runs: clips -> (logits, embedding)."""

    def __init__(self, model: ClipClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.logits_and_embedding(x)


# --- ONNX export --------------------------------------------------------------------------------
def export_onnx(store, model_version: str, *, name: str | None = None, opset: int = 17,
                parity_clips: torch.Tensor | Sequence[torch.Tensor] | None = None,
                tolerance: float = 1e-4) -> ConvertedVersion:
    """Export a PyTorch version to ONNX, check it against PyTorch and register it as a derived version.

    The graph computes the logits and the embedding (the outputs the scoring
    endpoint logs) from float clips ``(N, 3, T, H, W)``, with a dynamic batch
    axis (and a dynamic time axis when the spec keeps every frame), with the
    TorchScript exporter in eval mode (BatchNorm folded into the convolutions,
    dropout gone). ONNX Runtime's outputs are then compared with the eval-mode
    PyTorch model's on the parity clips, in batches of 16 (a batch size the
    export did not trace). Only when the max abs difference of logits and
    embedding is within ``tolerance`` is the file written to
    ``<store>/models/<name>-<sha256[:16]>.onnx`` and registered, with
    ``parent=model_version``, the parent's classes and data set version, the
    spec plus ``format: onnx``, and ``params["conversion"]``.

    Args:
        store: The payload store.
        model_version: A registered PyTorch clip classifier version.
        name: Registry name; default ``"<parent's name>-onnx"``.
        opset: ONNX opset.
        parity_clips: Float clips ``(N, 3, T, H, W)`` (or a list of
            ``(3, T, H, W)``) preprocessed with the version's spec. Default:
            up to 32 clips decoded from the store with the version's spec
            (the version's recorded ``holdout_ids``, else clips it scored,
            else any scored clips, else its training manifest); the source is
            recorded as ``parity_source``.
        tolerance: Largest accepted max abs difference.

    Returns:
        The :class:`ConvertedVersion`.

    Raises:
        ConfigError: The version is a detector or already converted, the clips
            are not ``(N, 3, T, H, W)`` finite floats, or no clips are found.
        ModelError: The export fails or ONNX Runtime differs by more than
            ``tolerance`` (nothing is registered).

    Example:
        >>> onnx_v = export_onnx(store, "shapes-v1")  # doctest: +SKIP
        >>> onnx_v.parity < 1e-4, store.get_model(onnx_v.version)["parent"]  # doctest: +SKIP
        (True, 'shapes-v1')
    """
    if not (isinstance(tolerance, (int, float)) and tolerance >= 0 and math.isfinite(tolerance)):
        raise ConfigError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    if isinstance(opset, bool) or not isinstance(opset, int) or not 11 <= opset <= 21:
        raise ConfigError(f"opset must be an int in [11, 21], got {opset!r}")
    info = store.get_model(model_version)
    _refuse_non_pytorch(info, model_version, "export_onnx")
    model = load_version(store, model_version).eval()
    if parity_clips is None:
        clips, _, source = _store_clips(store, model_version, model.spec, purpose="parity",
                                        limit=DEFAULT_PARITY_CLIPS)
    else:
        clips, source = _check_clips(parity_clips, "parity_clips"), "given"
    with store.run("convert", {"method": "onnx", "opset": opset, "tolerance": tolerance, "parity_source": source},
                   model_version=model_version):
        data = _export_bytes(model, clips, opset=opset, dynamic_time=model.spec.frames is None)
        onnx_model = OnnxClipModel(data, classes=model.classes, spec=model.spec, model_version=None)
        logits_diff, emb_diff, prob_diff = _parity(model, onnx_model, clips)
        parity = max(logits_diff, emb_diff)
        if not parity <= tolerance:
            raise ModelError(
                f"the ONNX export of {model_version} differs from PyTorch by {parity:.3g} (max abs; logits "
                f"{logits_diff:.3g}, embedding {emb_diff:.3g}) on {len(clips)} clips ({source}), over the tolerance "
                f"{tolerance:g}; nothing was registered. Check that the model runs the same in eval mode on any "
                "batch size (no batch-dependent ops), or pass a larger tolerance if the model is deep")
        import onnxruntime

        details = {
            "method": "onnx", "exporter": "torch.onnx (TorchScript)", "opset": opset, "torch": str(torch.__version__),
            "onnxruntime": onnxruntime.__version__, "source_name": str(info["name"]),
            "parity_max_abs": parity, "parity_logits_max_abs": logits_diff, "parity_embedding_max_abs": emb_diff,
            "parity_probabilities_max_abs": prob_diff, "parity_clips": len(clips), "parity_source": source,
            "tolerance": float(tolerance), "dynamic_axes": ["batch"] + (["time"] if model.spec.frames is None else []),
            "parent_size_bytes": Path(info["checkpoint_path"]).stat().st_size,
        }
        return _register(store, info, model_version, data, name=name or f"{info['name']}-onnx", spec=model.spec,
                         details=details, parity=parity)


def _export_bytes(model: ClipClassifier, clips: torch.Tensor, *, opset: int, dynamic_time: bool) -> bytes:
    wrapper = _LogitsAndEmbedding(model).eval()
    axes = {0: "batch", 2: "time"} if dynamic_time else {0: "batch"}
    dynamic_axes = {INPUT_NAME: axes, OUTPUT_NAMES[0]: {0: "batch"}, OUTPUT_NAMES[1]: {0: "batch"}}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # "legacy TorchScript-based exporter"
            torch.onnx.export(wrapper, (clips[:2].contiguous(),), buffer, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                              dynamic_axes=dynamic_axes, do_constant_folding=True)
    except Exception as error:  # noqa: BLE001 - the exporter raises many untyped errors
        raise ModelError(f"torch.onnx.export failed: {type(error).__name__}: {error}") from None
    if model.training:  # the exporter restores the mode it found; the wrapper was in eval mode
        raise ModelError("the model came back from the export in training mode; parity would be meaningless")
    return buffer.getvalue()


def _parity(model: ClipClassifier, onnx_model: OnnxClipModel, clips: torch.Tensor) -> tuple[float, float, float]:
    """Max abs difference of logits, embedding and probabilities, PyTorch (eval) vs ONNX Runtime."""
    model.eval()
    worst = [0.0, 0.0, 0.0]
    with torch.inference_mode():
        for start in range(0, len(clips), _BATCH):
            x = clips[start : start + _BATCH]
            ref_logits, ref_emb = model.logits_and_embedding(x)
            logits, emb = onnx_model.logits_and_embedding(x)
            diffs = [(ref_logits - logits).abs().max(), (ref_emb - emb).abs().max(),
                     (torch.softmax(ref_logits, -1) - torch.softmax(logits, -1)).abs().max()]
            worst = [max(w, float(d)) for w, d in zip(worst, diffs, strict=True)]
    return worst[0], worst[1], worst[2]


# --- INT8 ----------------------------------------------------------------------------------------
class _ClipReader:
    """An onnxruntime CalibrationDataReader over clips, in batches of 8."""

    def __init__(self, clips: torch.Tensor) -> None:
        self._batches = iter([{INPUT_NAME: clips[i : i + 8].numpy()} for i in range(0, len(clips), 8)])

    def get_next(self) -> dict | None:
        return next(self._batches, None)


def quantize_int8(store, model_version: str, *, method: str = DEFAULT_INT8_METHOD,
                  calibration_clips: torch.Tensor | Sequence[torch.Tensor] | None = None, name: str | None = None,
                  per_channel: bool = True, check_clips: torch.Tensor | Sequence[torch.Tensor] | None = None,
                  parity_clips: torch.Tensor | Sequence[torch.Tensor] | None = None) -> ConvertedVersion:
    """Quantise an ONNX version to INT8 with onnxruntime's quantiser and register it as its child.

    A PyTorch version is exported first (:func:`export_onnx`, with
    ``parity_clips``) and the INT8 version becomes the child of that ONNX
    version, so the lineage reads INT8 -> ONNX -> PyTorch. The ONNX file is
    read through its sha256 check, pre-processed
    (``onnxruntime.quantization.quant_pre_process``) and quantised:

    - ``"dynamic"``: ``quantize_dynamic``, INT8 weights of Conv (``ConvInteger``,
      3-D included) and MatMul/Gemm, activation ranges computed per batch at
      run time; needs no data.
    - ``"static"``: ``quantize_static`` in QDQ format, INT8 weights and
      activations whose ranges (MinMax) come from ``calibration_clips``.

    Weights are per channel unless ``per_channel=False``. The INT8 outputs are
    compared with the FP32 ONNX version's on ``check_clips`` (top-1 agreement,
    max abs probability and logit differences) and recorded with the sizes in
    ``params["conversion"]``; no threshold is applied.

    Args:
        store: The payload store.
        model_version: An ONNX version, or a PyTorch version (exported first).
        method: ``"dynamic"`` or ``"static"`` (see :data:`DEFAULT_INT8_METHOD`).
        calibration_clips: Clips for ``"static"``; default up to 64 decoded
            from the store (the PyTorch ancestor's ``train_ids``, else its
            training manifest, else scored clips).
        name: Registry name; default ``"<PyTorch ancestor's name>-int8"``.
        per_channel: Per-channel weight scales.
        check_clips: Clips for the INT8-vs-FP32 comparison; default the
            parity clips' default source.
        parity_clips: Passed to :func:`export_onnx` when a PyTorch version is given.

    Returns:
        The :class:`ConvertedVersion` (``method`` ``"int8-dynamic"`` or ``"int8-static"``).

    Raises:
        ConfigError: Unknown method, a detector or an INT8 version, unusable clips.
        CheckpointError: The ONNX file is missing or altered.
        ModelError: The quantiser fails (nothing is registered).

    Example:
        >>> int8_v = quantize_int8(store, "shapes-onnx-v1")  # doctest: +SKIP
        >>> int8_v.size_bytes / store.get_model("shapes-onnx-v1")["metrics"]["size_bytes"]  # doctest: +SKIP
        0.27
    """
    if method not in INT8_METHODS:
        raise ConfigError(f"method must be one of {INT8_METHODS}, got {method!r}")
    info = store.get_model(model_version)
    if not is_onnx(info):
        _refuse_non_pytorch(info, model_version, "quantize_int8")
        model_version = export_onnx(store, model_version, parity_clips=parity_clips).version
        info = store.get_model(model_version)
    conversion = (info.get("params") or {}).get("conversion") or {}
    if conversion.get("method") != "onnx":
        raise ConfigError(f"{model_version} is already quantised ({conversion.get('method')}); quantise its FP32 "
                          f"parent {info.get('parent')!r} instead")
    root = str(info["parent"])
    data, _ = read_onnx_version(store, model_version, info=info)
    spec = _clip_spec(info)
    if method == "static":
        if calibration_clips is None:
            cal, _, cal_source = _store_clips(store, root, spec, purpose="calibration",
                                              limit=DEFAULT_CALIBRATION_CLIPS)
        else:
            cal, cal_source = _check_clips(calibration_clips, "calibration_clips"), "given"
    if check_clips is None:
        check, _, check_source = _store_clips(store, root, spec, purpose="parity", limit=DEFAULT_PARITY_CLIPS)
    else:
        check, check_source = _check_clips(check_clips, "check_clips"), "given"
    settings = {"method": f"int8-{method}", "quantizer": "onnxruntime.quantization", "per_channel": bool(per_channel),
                "weight_type": "QInt8", "pre_process": True}
    if method == "static":
        settings.update(quant_format="QDQ", activation_type="QInt8", calibrate_method="MinMax",
                        calibration_clips=len(cal), calibration_source=cal_source)
    else:
        settings.update(quant_format="dynamic (ConvInteger/MatMulInteger)", activation_type="QUInt8 (dynamic)")
    with store.run("convert", {k: v for k, v in settings.items() if k != "quantizer"}, model_version=model_version):
        qdata = _quantize_bytes(store, data, method=method, per_channel=per_channel,
                                calibration=cal if method == "static" else None)
        check_onnx_bytes(qdata, n_classes=len(info["classes"]), name="the quantised model")
        fp32 = OnnxClipModel(data, classes=info["classes"], spec=spec)
        int8 = OnnxClipModel(qdata, classes=info["classes"], spec=spec)
        agreement, prob_diff, logit_diff = _compare(fp32, int8, check)
        import onnxruntime

        details = {**settings, "onnxruntime": onnxruntime.__version__, "source_name": conversion.get("source_name"),
                   "size_bytes": len(qdata), "fp32_size_bytes": len(data), "size_ratio": len(qdata) / len(data),
                   "check_clips": len(check), "check_source": check_source, "top1_agreement_with_fp32": agreement,
                   "probabilities_max_abs_vs_fp32": prob_diff, "logits_max_abs_vs_fp32": logit_diff}
        base = conversion.get("source_name") or str(info["name"])
        return _register(store, info, model_version, qdata, name=name or f"{base}-int8", spec=spec, details=details,
                         parity=None)


def _quantize_bytes(store, data: bytes, *, method: str, per_channel: bool, calibration: torch.Tensor | None) -> bytes:
    """Run onnxruntime's quantiser in a private folder under ``<store>/models/``; the INT8 file's bytes."""
    import logging

    from onnxruntime import quantization as q

    work = Path(store.path) / "models" / f".quantize-{os.getpid()}-{time.time_ns()}"
    work.mkdir(parents=True)
    quiet = logging.getLogger()
    level = quiet.level
    try:
        quiet.setLevel(max(level, logging.ERROR))  # the quantiser logs advice through the root logger
        fp32, pre, out = work / "fp32.onnx", work / "pre.onnx", work / "int8.onnx"
        fp32.write_bytes(data)
        q.quant_pre_process(str(fp32), str(pre))
        if method == "dynamic":
            q.quantize_dynamic(str(pre), str(out), per_channel=per_channel, weight_type=q.QuantType.QInt8)
        else:
            q.quantize_static(str(pre), str(out), _ClipReader(calibration), quant_format=q.QuantFormat.QDQ,
                              per_channel=per_channel, activation_type=q.QuantType.QInt8,
                              weight_type=q.QuantType.QInt8, calibrate_method=q.CalibrationMethod.MinMax)
        if out.stat().st_size > MAX_ONNX_BYTES:
            raise ModelError(f"the quantised model is over {MAX_ONNX_BYTES} bytes")
        return out.read_bytes()
    except ModelError:
        raise
    except Exception as error:  # noqa: BLE001 - the quantiser raises many untyped errors
        raise ModelError(f"onnxruntime's {method} quantisation failed: {type(error).__name__}: {error}") from None
    finally:
        quiet.setLevel(level)
        shutil.rmtree(work, ignore_errors=True)


def _compare(reference, model, clips: torch.Tensor) -> tuple[float, float, float]:
    """Top-1 agreement, max abs probability and logit differences of two models on clips."""
    same, prob, logit = 0, 0.0, 0.0
    with torch.inference_mode():
        for start in range(0, len(clips), _BATCH):
            x = clips[start : start + _BATCH]
            a, b = reference.logits_and_embedding(x)[0], model.logits_and_embedding(x)[0]
            same += int((a.argmax(-1) == b.argmax(-1)).sum())
            prob = max(prob, float((torch.softmax(a, -1) - torch.softmax(b, -1)).abs().max()))
            logit = max(logit, float((a - b).abs().max()))
    return same / len(clips), prob, logit


# --- registration and loading -------------------------------------------------------------
def _register(store, parent_info: dict, parent: str, data: bytes, *, name: str, spec: ClipSpec, details: dict,
              parity: float | None) -> ConvertedVersion:
    """Write the ONNX bytes under their digest into ``<store>/models/`` and register the derived version."""
    def write(tmp: Path) -> str:
        tmp.write_bytes(data)
        return file_sha256(tmp)

    final = store_model_file(store, name=name, suffix=".onnx", write=write)
    dataset = parent_info.get("dataset_version")
    version = store.register_model(
        name=name, checkpoint_path=str(final), classes=list(parent_info["classes"]),
        spec={**spec.to_dict(), "format": ONNX_FORMAT}, parent=parent,
        dataset_version=dataset if isinstance(dataset, str) else None, params={"conversion": details},
        metrics={"size_bytes": len(data), **({"parity_max_abs": parity} if parity is not None else {})},
    )
    return ConvertedVersion(version=version, parent=parent, method=details["method"], path=str(final),
                            size_bytes=len(data), parity=parity, details=details)


def load_converted(store, version: str, *, max_bytes: int = MAX_ONNX_BYTES) -> OnnxClipModel:
    """Load a converted (ONNX or INT8) version as an :class:`~dlabel_lab.models.onnx_model.OnnxClipModel`.

    The file is size-checked, verified against its recorded sha256
    (``verify_checkpoint``), checked to be a self-contained clip classifier
    graph and run only by ONNX Runtime. The model has what the scoring
    endpoint uses (``classes``, ``spec``, ``eval()``, ``logits_and_embedding``);
    ``dl.deploy_version(store, version)`` serves it.

    Raises:
        ConfigError: The version is not a converted one.
        CheckpointError: The file is missing, too large or altered.

    Example:
        >>> model = load_converted(store, "shapes-onnx-v1")  # doctest: +SKIP
        >>> model.predict_proba(x).argmax(-1)  # doctest: +SKIP
    """
    return load_onnx_version(store, version, max_bytes=max_bytes)


def _load_any(store, version: str):
    info = store.get_model(version)
    return (load_converted(store, version) if is_onnx(info) else load_version(store, version).eval()), info


def _refuse_non_pytorch(info: dict, version: str, what: str) -> None:
    if is_detector(info):
        raise ConfigError(f"{what} converts clip classifiers; {version} is an object detector")
    if is_onnx(info):
        raise ConfigError(f"{version} is already an ONNX version; {what} takes its PyTorch parent "
                          f"{info.get('parent')!r}")


def _clip_spec(info: dict) -> ClipSpec:
    return ClipSpec.from_dict({k: v for k, v in (info.get("spec") or {}).items() if k != "format"})


# --- clips ---------------------------------------------------------------------------------------
def _check_clips(clips, what: str) -> torch.Tensor:
    if isinstance(clips, (list, tuple)):
        if not clips or not all(torch.is_tensor(c) for c in clips):
            raise ConfigError(f"{what} must be a float tensor (N, 3, T, H, W) or a non-empty list of (3, T, H, W)")
        try:
            clips = torch.stack(list(clips))
        except RuntimeError as error:
            raise ConfigError(f"{what}: the clips differ in shape ({error})") from None
    if not torch.is_tensor(clips) or clips.ndim != 5 or clips.shape[1] != 3 or len(clips) == 0:
        raise ConfigError(f"{what} must be a float tensor (N, 3, T, H, W) with N >= 1, got "
                          f"{tuple(clips.shape) if torch.is_tensor(clips) else type(clips).__name__}")
    if not clips.is_floating_point() or not bool(torch.isfinite(clips).all()):
        raise ConfigError(f"{what} must hold finite floats (clips preprocessed with the version's spec)")
    return clips.detach().to("cpu", torch.float32).contiguous()


def _store_clips(store, version: str, spec: ClipSpec, *, purpose: str,
                 limit: int) -> tuple[torch.Tensor, list[str | None], str]:
    """Clips for a check, decoded with the package's reading path: (tensors, labels, source).

    ``purpose="parity"`` prefers clips the version was not trained on: its
    recorded ``holdout_ids``, then clips it scored, then any scored clips of
    the store, then (last) its training manifest. ``"calibration"`` prefers
    the training distribution: ``train_ids``, the training manifest, then
    scored clips. Scored clips are read from the store's verified raw files.
    """
    info = store.get_model(version)
    params = info.get("params") or {}
    ids_key = "holdout_ids" if purpose == "parity" else "train_ids"
    recorded = [str(s) for s in (params.get(ids_key) or [])][:limit]

    def scored(**filters) -> list[str]:
        frame = store.matched_df(**filters)
        return sorted(set(frame["scoring_id"]))[:limit] if len(frame) else []

    def manifest() -> list[dict]:
        from ..train.datasets import lineage_training_rows

        return lineage_training_rows(store, version, limit=limit)

    steps = [(f"{ids_key} of {version}", lambda: recorded)]
    if purpose == "parity":
        steps += [(f"clips scored by {version}", lambda: scored(model_version=version)),
                  ("clips scored in the store", lambda: scored()),
                  (f"training manifest of {version} (not held out)", manifest)]
    else:
        steps += [(f"training manifest of {version}", manifest), ("clips scored in the store", lambda: scored())]
    source, found = "", []
    for source, get in steps:  # noqa: B007 - the source that gave the clips is reported
        found = get()
        if found:
            break
    else:
        raise ConfigError(f"no clips to run the {purpose} check of {version} on: it records no {ids_key}, the store "
                          f"has no scored clips and no training manifest is readable. Pass {purpose}_clips "
                          "(float tensors preprocessed with the version's spec)")
    tensors, labels = [], []
    if isinstance(found[0], dict):  # manifest rows
        for row in found:
            tensors.append(to_tensor(read_clip(row["path"], spec), spec)[0])
            labels.append(row.get("label"))
    else:
        known = _user_labels(store, found)
        for sid in found:
            try:
                clip = read_checked_file(store.verified_raw_path(sid), spec, name=f"clip {sid}")
            except (MediaError, UnknownRecord) as error:
                raise ConfigError(f"clip {sid} ({source}) cannot be read for the {purpose} check: {error}") from None
            tensors.append(to_tensor(clip, spec)[0])
            labels.append(known.get(sid))
    return torch.stack(tensors), labels, f"{source}: {len(tensors)} clips"


def _user_labels(store, scoring_ids: Sequence[str]) -> dict[str, str]:
    frame = store.matched_df(scoring_ids=list(scoring_ids))
    if not len(frame):
        return {}
    frame = frame[frame["user_label"].notna()]
    return {str(s): str(lab) for s, lab in zip(frame["scoring_id"], frame["user_label"], strict=True)}


# --- size, latency and the report -------------------------------------------------------------
def model_footprint(store, version: str) -> dict:
    """Format, parameter count and bytes on disk of a registered version.

    Example:
        >>> model_footprint(store, "shapes-int8-v1")  # doctest: +SKIP
        {'version': 'shapes-int8-v1', 'format': 'int8-dynamic', 'parameters': 181315, 'size_bytes': 194036}
    """
    model, info = _load_any(store, version)
    if isinstance(model, OnnxClipModel):
        params = model.parameter_count()
        fmt = ((info.get("params") or {}).get("conversion") or {}).get("method", "onnx")
    else:
        params, fmt = int(sum(p.numel() for p in model.parameters())), "pytorch"
    return {"version": version, "format": fmt, "parameters": params,
            "size_bytes": Path(info["checkpoint_path"]).stat().st_size}


def cpu_latency(model, *, shape: Sequence[int] | None = None, batch_sizes: Sequence[int] = (1, 16),
                repeats: int = 20, warmup: int = 3, threads: int = 1, seed: int = 0) -> dict[int, float]:
    """Median CPU latency (ms per batch) of ``model.logits_and_embedding``, the call the endpoint makes.

    Works for a :class:`~dlabel_lab.ClipClassifier` (eval mode, inference
    mode) and an :class:`~dlabel_lab.models.onnx_model.OnnxClipModel` (one
    ONNX Runtime session per thread count) alike; both run with ``threads``
    CPU threads. Inputs are seeded normal clips of ``shape`` ``(3, T, H, W)``
    (default the model's spec: ``(3, frames, height, width)``).

    Returns:
        ``{batch size: median milliseconds per batch}``.

    Example:
        >>> cpu_latency(load_converted(store, "shapes-onnx-v1"), batch_sizes=(1, 16))  # doctest: +SKIP
        {1: 2.1, 16: 31.5}
    """
    if repeats < 1 or warmup < 0 or threads < 1:
        raise ConfigError("repeats and threads must be >= 1 and warmup >= 0")
    if shape is None:
        h, w = model.spec.out_size
        shape = (3, model.spec.frames or 8, h, w)
    gen = torch.Generator().manual_seed(seed)
    if isinstance(model, nn.Module):
        model.eval()
    out = {}
    with torch_threads(threads), torch.inference_mode():
        for n in batch_sizes:
            x = torch.randn(int(n), *shape, generator=gen)
            times = []
            for i in range(warmup + repeats):
                t0 = time.perf_counter()
                model.logits_and_embedding(x)
                if i >= warmup:
                    times.append((time.perf_counter() - t0) * 1000.0)
            out[int(n)] = float(statistics.median(times))
    return out


def conversion_report(store, version: str, *, clips: torch.Tensor | Sequence[torch.Tensor] | None = None,
                      labels: Sequence[str | int] | None = None, batch_sizes: Sequence[int] = (1, 16),
                      repeats: int = 20, threads: int = 1, log: bool = True):
    """Compare a converted version with its ancestors: size, parameters, CPU latency, accuracy, agreement.

    One row per version of the chain from the PyTorch root to ``version``
    (PyTorch -> ONNX [-> INT8]), each run the way the endpoint runs it, on
    the same clips. ``agreement`` and ``max_abs_prob_diff`` are against the
    PyTorch root; ``accuracy`` needs labels (given, or the user labels /
    manifest labels of the default clips). With ``log=True`` the row of
    ``version`` is logged with ``store.log_metrics(version, ..., split="conversion-report")``.

    Args:
        store: The payload store.
        version: A converted version.
        clips: Float clips ``(N, 3, T, H, W)``; default the parity clips' default
            source of the PyTorch root (see :func:`export_onnx`).
        labels: Class names or indices, one per clip.
        batch_sizes: Batch sizes of the latency measurement.
        repeats: Timed repeats per batch size (the median is reported).
        threads: CPU threads.
        log: Log the converted version's row as metrics.

    Returns:
        A pandas DataFrame indexed by version.

    Example:
        >>> report = conversion_report(store, "shapes-int8-v1")  # doctest: +SKIP
        >>> report[["format", "size_bytes", "latency_ms_b1", "accuracy"]]  # doctest: +SKIP
    """
    import pandas as pd

    chain = store.lineage(version)["chain"]
    infos = {v: store.get_model(v) for v in chain}
    if not is_onnx(infos[version]):
        raise ConfigError(f"{version} is not a converted version; conversion_report compares ONNX/INT8 versions")
    root = next((v for v in chain if not is_onnx(infos[v])), None)
    if root is None:
        raise ConfigError(f"the lineage of {version} has no PyTorch version to compare with")
    chain = chain[: chain.index(root) + 1][::-1]  # root first
    classes = list(infos[root]["classes"])
    if clips is None:
        x, found, source = _store_clips(store, root, _clip_spec(infos[root]), purpose="parity",
                                        limit=DEFAULT_PARITY_CLIPS)
        labels = labels if labels is not None else (found if all(lab is not None for lab in found) else None)
    else:
        x, source = _check_clips(clips, "clips"), "given"
    y = None
    if labels is not None:
        if len(labels) != len(x):
            raise ConfigError(f"{len(labels)} labels for {len(x)} clips")
        y = torch.tensor([classes.index(lab) if isinstance(lab, str) else int(lab) for lab in labels])
    rows, root_probs, root_size = [], None, None
    for v in chain:
        model, info = _load_any(store, v)
        probs = []
        with torch_threads(threads), torch.inference_mode():
            for start in range(0, len(x), _BATCH):
                probs.append(torch.softmax(model.logits_and_embedding(x[start : start + _BATCH])[0].float(), -1))
        p = torch.cat(probs)
        root_probs = p if root_probs is None else root_probs
        foot = model_footprint(store, v)
        root_size = foot["size_bytes"] if root_size is None else root_size
        lat = cpu_latency(model, shape=tuple(x.shape[1:]), batch_sizes=batch_sizes, repeats=repeats, threads=threads)
        row = {"version": v, "parent": info.get("parent"), "format": foot["format"],
               "parameters": foot["parameters"], "size_bytes": foot["size_bytes"],
               "size_vs_pytorch": foot["size_bytes"] / root_size,
               **{f"latency_ms_b{n}": ms for n, ms in lat.items()},
               "accuracy": None if y is None else float((p.argmax(-1) == y).float().mean()),
               "agreement": float((p.argmax(-1) == root_probs.argmax(-1)).float().mean()),
               "max_abs_prob_diff": float((p - root_probs).abs().max()), "clips": len(x), "clip_source": source}
        rows.append(row)
    if log:
        store.log_metrics(version, {k: v for k, v in rows[-1].items() if k not in ("version",)},
                          split="conversion-report")
    return pd.DataFrame(rows).set_index("version")
