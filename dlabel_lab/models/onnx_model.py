"""A registered ONNX model version run by ONNX Runtime, with the interface the scoring endpoint calls.

Converted versions (:func:`dlabel_lab.quality.convert.export_onnx`, ``quantize_int8``) are ONNX files
under ``<store>/models/`` registered with ``format: onnx`` in their spec. An ONNX file is data: it is
checked against its recorded sha256, size-limited before it is read, refused when it points at
external data files, and run only by ONNX Runtime (no pickle, no ``torch.load``, no custom-op
libraries). :class:`OnnxClipModel` mirrors what :class:`~dlabel_lab.serving.endpoints.ModelEndpoint`
uses of a :class:`~dlabel_lab.ClipClassifier` (``classes``, ``spec``, ``eval()``, ``to()``,
``logits_and_embedding``), so a converted version is deployed behind the same endpoints.

Example:
    >>> model = load_onnx_version(store, "shapes-onnx-v1")  # doctest: +SKIP
    >>> logits, emb = model.logits_and_embedding(x)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, ModelError
from ..media.video import ClipSpec
from .registry import ONNX_FORMAT, is_onnx, verify_checkpoint

__all__ = ["OnnxClipModel", "load_onnx_version", "check_onnx_bytes", "MAX_ONNX_BYTES", "INPUT_NAME",
           "OUTPUT_NAMES"]

#: Largest ONNX file read (protobuf's own limit is 2 GiB; larger models need external data, which is refused).
MAX_ONNX_BYTES = 2 * 2**30
#: The graph input: float clips ``(N, 3, T, H, W)``.
INPUT_NAME = "clips"
#: The graph outputs: logits ``(N, K)`` and the embedding ``(N, D)``.
OUTPUT_NAMES = ("logits", "embedding")
#: Operator domains a converted version may use (the standard ones and ONNX Runtime's contrib ops).
_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")


class OnnxClipModel:
    """An ONNX clip classifier run by ONNX Runtime on the CPU.

    One inference session per thread count: each call runs with
    ``torch.get_num_threads()`` intra-op threads, so the endpoint's thread
    rule (:func:`~dlabel_lab.serving.threads.torch_threads`) applies to ONNX
    versions as it does to PyTorch ones.

    Args:
        model_bytes: The verified ONNX file's bytes (see :func:`check_onnx_bytes`).
        classes: Class names, index ``k`` is logit ``k``.
        spec: The clip spec the model reads clips with.
        model_version: The registered version id.

    Attributes:
        classes: Class names.
        spec: The :class:`~dlabel_lab.ClipSpec`.
        model_version_: The version id (what :func:`~dlabel_lab.deploy` reads).
        training: Always ``False`` (an exported graph has no training mode).

    Example:
        >>> spec = ClipSpec(frames=4, size=32)
        >>> model = OnnxClipModel(path.read_bytes(), classes=["a", "b"], spec=spec)  # doctest: +SKIP
        >>> model.predict_proba(x).shape  # doctest: +SKIP
        torch.Size([2, 2])
    """

    training = False

    def __init__(self, model_bytes: bytes, *, classes: Sequence[str], spec: ClipSpec,
                 model_version: str | None = None) -> None:
        check_onnx_bytes(model_bytes, n_classes=len(classes), name=model_version or "the ONNX model")
        self._bytes = model_bytes
        self.classes = [str(c) for c in classes]
        self.spec = spec
        self.model_version_ = model_version
        self._sessions: dict[int, object] = {}
        self._lock = threading.Lock()
        self.size_bytes = len(model_bytes)

    # --- what ModelEndpoint calls -------------------------------------------------------
    def eval(self) -> OnnxClipModel:
        """Return ``self`` (the graph always runs in inference mode)."""
        return self

    def train(self, mode: bool = True) -> OnnxClipModel:
        """Refuse training mode: an exported graph has no dropout or BatchNorm updates to switch on."""
        if mode:
            raise ConfigError("an ONNX model version runs in inference mode only; train its PyTorch parent instead")
        return self

    def to(self, device: str | torch.device) -> OnnxClipModel:
        """Return ``self`` on the CPU; other devices are refused (ONNX versions run on ONNX Runtime's CPU provider)."""
        if torch.device(device).type != "cpu":
            raise ConfigError(f"ONNX model versions run on the CPU; got device {device!r}. Deploy with device='cpu' "
                              "or deploy the PyTorch parent version on the accelerator")
        return self

    def modules(self) -> Iterator[torch.nn.Module]:
        """No torch modules (so ``has_dropout`` is ``False``: MC-dropout needs the PyTorch version)."""
        return iter(())

    def logits_and_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(N, K)`` and embedding ``(N, D)`` of float clips ``(N, 3, T, H, W)``, as float32 CPU tensors.

        Example:
            >>> logits, emb = model.logits_and_embedding(torch.zeros(2, 3, 4, 32, 32))  # doctest: +SKIP
        """
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        logits, emb = self._session(torch.get_num_threads()).run(list(OUTPUT_NAMES), {INPUT_NAME: arr})
        return torch.from_numpy(np.asarray(logits, np.float32)), torch.from_numpy(np.asarray(emb, np.float32))

    # --- ClipClassifier's inference helpers ----------------------------------------------
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)`` (like :meth:`ClipClassifier.forward <dlabel_lab.ClipClassifier.forward>`)."""
        return self.logits_and_embedding(x)[0]

    forward = __call__

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding ``(N, D)``."""
        return self.logits_and_embedding(x)[1]

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(N, K)``."""
        return torch.softmax(self(x), dim=-1)

    def parameter_count(self) -> int:
        """Number of weight values stored in the graph (initialisers, whatever their dtype).

        Example:
            >>> model.parameter_count()  # doctest: +SKIP
            181315
        """
        import onnx

        model = onnx.load_model_from_string(self._bytes)
        return int(sum(int(np.prod(t.dims)) for t in model.graph.initializer))

    def _session(self, threads: int):
        threads = max(1, int(threads))
        with self._lock:
            session = self._sessions.get(threads)
            if session is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                options.log_severity_level = 3
                # no busy-waiting pool threads between calls: the ingest endpoint decodes on the core left over
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                try:
                    session = ort.InferenceSession(self._bytes, options, providers=["CPUExecutionProvider"])
                except Exception as error:  # noqa: BLE001 - onnxruntime raises its own untyped errors
                    raise ModelError(f"ONNX Runtime cannot load {self.model_version_ or 'the ONNX model'}: "
                                     f"{type(error).__name__}: {error}") from None
                self._sessions[threads] = session
            return session

    def __repr__(self) -> str:
        return f"OnnxClipModel({self.model_version_!r}, classes={self.classes!r}, {self.size_bytes} bytes)"


def check_onnx_bytes(data: bytes, *, n_classes: int | None = None, name: str = "the ONNX model") -> None:
    """Refuse ONNX bytes that are not a self-contained clip classifier graph.

    Checks: it parses as an ONNX model; every tensor is stored inside the
    file (external data would make ONNX Runtime open other files); operators
    come from the standard or ONNX Runtime domains only; the graph has one
    float input ``clips`` of rank 5 and the outputs ``logits`` (with
    ``n_classes`` columns when the width is fixed) and ``embedding``.

    Raises:
        CheckpointError: The bytes fail a check.

    Example:
        >>> try:
        ...     check_onnx_bytes(b"not a model")
        ... except CheckpointError as error:
        ...     print(str(error).split(";")[0])
        the ONNX model is not an ONNX model (DecodeError)
    """
    import onnx

    def bad(reason: str) -> CheckpointError:
        return CheckpointError(f"{name} {reason}; it is not loaded. Convert the PyTorch version again "
                               "(dl.export_onnx); a file from elsewhere may be damaged or crafted.")

    try:
        model = onnx.load_model_from_string(data)
    except Exception as error:  # noqa: BLE001 - protobuf's decode errors are untyped
        raise bad(f"is not an ONNX model ({type(error).__name__})") from None
    if not model.graph.node:
        raise bad("is not an ONNX model (its graph has no nodes)")
    for graph in _graphs(model.graph):
        for tensor in [*graph.initializer, *(s.values for s in graph.sparse_initializer)]:
            if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
                raise bad(f"stores tensor {tensor.name!r} in an external file")
        for node in graph.node:
            if node.domain not in _DOMAINS:
                raise bad(f"uses operator {node.op_type!r} of the custom domain {node.domain!r}")
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_location == onnx.TensorProto.EXTERNAL:
                    raise bad(f"stores a constant of node {node.name!r} in an external file")
    if model.functions:
        raise bad("defines local functions")
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise bad(f"must take one input {INPUT_NAME!r}, has {[i.name for i in inputs]}")
    in_type = inputs[0].type.tensor_type
    if in_type.elem_type != onnx.TensorProto.FLOAT or len(in_type.shape.dim) != 5:
        raise bad(f"input {INPUT_NAME!r} must be float32 (N, 3, T, H, W)")
    outputs = {o.name: o for o in model.graph.output}
    if list(outputs) != list(OUTPUT_NAMES):
        raise bad(f"must have the outputs {list(OUTPUT_NAMES)}, has {list(outputs)}")
    dims = outputs["logits"].type.tensor_type.shape.dim
    if n_classes is not None and len(dims) == 2 and dims[1].HasField("dim_value") and dims[1].dim_value != n_classes:
        raise bad(f"has {dims[1].dim_value} logits for {n_classes} registered classes")


def _graphs(graph) -> Iterator:
    """A graph and every subgraph of its nodes' attributes (If/Loop bodies)."""
    import onnx

    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _graphs(g)


def read_onnx_version(store, model_version: str, *, max_bytes: int = MAX_ONNX_BYTES,
                      info: dict | None = None) -> tuple[bytes, dict]:
    """The verified bytes of a registered ONNX version and its ``store.get_model`` row.

    The file's size is checked with ``stat`` before anything is read, its
    sha256 against the registration (:func:`~dlabel_lab.models.registry.verify_checkpoint`),
    and the bytes read are hashed again, so what is loaded is what was checked.

    Raises:
        ConfigError: The version is not an ONNX version.
        CheckpointError: The file is missing, too large or altered.

    Example:
        >>> data, info = read_onnx_version(store, "shapes-onnx-v1")  # doctest: +SKIP
    """
    info = info if info is not None else store.get_model(model_version)
    if not is_onnx(info):
        raise ConfigError(f"model version {model_version} is not an ONNX version (its spec has no "
                          f"format {ONNX_FORMAT!r}); load it with dl.load_version")
    path = Path(info["checkpoint_path"])
    try:
        size = path.stat().st_size
    except OSError:
        size = None  # verify_checkpoint words the error
    if size is not None and size > max_bytes:
        raise CheckpointError(f"the ONNX file {path} of {model_version} is {size} bytes, over the limit of "
                              f"{max_bytes}; it is not read")
    verify_checkpoint(store, model_version, info)
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes or hashlib.sha256(data).hexdigest() != str(info["checkpoint_sha256"]):
        raise CheckpointError(f"the ONNX file {path} of {model_version} changed while it was read; it is not "
                              "loaded. Restore the registered file or convert the version again.")
    return data, info


def load_onnx_version(store, model_version: str, *, max_bytes: int = MAX_ONNX_BYTES) -> OnnxClipModel:
    """Load a registered ONNX version as an :class:`OnnxClipModel`, checked against its sha256 first.

    Raises:
        ConfigError: The version is a PyTorch (or detector) version.
        CheckpointError: The file is missing, too large, altered or not a clip classifier graph.
        UnknownRecord: The version is not registered.

    Example:
        >>> model = load_onnx_version(store, "shapes-onnx-v1")  # doctest: +SKIP
        >>> model.classes  # doctest: +SKIP
        ['circle', 'square', 'triangle']
    """
    data, info = read_onnx_version(store, model_version, max_bytes=max_bytes)
    spec = ClipSpec.from_dict({k: v for k, v in info["spec"].items() if k != "format"})
    return OnnxClipModel(data, classes=info["classes"], spec=spec, model_version=model_version)
