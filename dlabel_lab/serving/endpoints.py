"""The two scoring endpoints and ``deploy``.

``IngestEndpoint`` (the second scoring endpoint) receives native clips with an
optional user score, assigns a time-ordered scoring id, logs the raw payload,
preprocesses with the model's clip spec and forwards tensor, score and id to
``ModelEndpoint`` (the first scoring endpoint), which runs the model in
batches and logs the transformed payload, the prediction and the user score.

Example:
    >>> ingest = deploy(model, store, classes=["circle", "square", "triangle"])  # doctest: +SKIP
    >>> result = ingest.score("clip.mp4", label="circle")  # doctest: +SKIP
    >>> result.predicted_label, result.confidence  # doctest: +SKIP
    ('circle', 0.93)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from ..errors import ConfigError, MediaError, MediaTooLarge, UnknownLabel, UnknownRecord, UnsupportedMedia
from ..media.checks import _check_path
from ..media.video import (
    ClipSpec,
    check_container_file,
    read_checked_file,
    spec_from_record,
    tensor_digest,
    to_tensor,
)
from ..models.classifier import ClipClassifier
from ..models.mc_dropout import has_dropout, mc_dropout_probabilities
from ..models.onnx_model import load_onnx_version
from ..models.registry import is_onnx, load_version, register_version
from ..store.io import check_scoring_id
from .results import ScoringResult, _Batch, _Item
from .threads import check_num_threads, default_num_threads, torch_threads

if TYPE_CHECKING:
    from ..store.staging import StagedMedia

__all__ = ["ScoringResult", "ModelEndpoint", "IngestEndpoint", "StagedClip", "deploy", "deploy_version", "replay"]


class ModelEndpoint:
    """The first scoring endpoint: a model with payload logging.

    Args:
        model: A :class:`~dlabel_lab.ClipClassifier`.
        store: The :class:`~dlabel_lab.PayloadStore` to log into.
        model_version: The registered version id of ``model``.
        top_k: How many identified objects (top classes) to log.
        batch_size: Clips per forward pass.
        device: Torch device to run on.
        mc_passes: When >= 2, also run this many MC-dropout passes per clip
            (dropout layers only in training mode; see
            :func:`~dlabel_lab.models.mc_dropout.mc_dropout_probabilities`) and
            log their probabilities as attributions of kind ``"mc_dropout"``
            (a ``(passes, classes)`` list per clip), for BALD and disagreement
            scores without re-reading the clips later. 0 (default) runs none.
        mc_seed: Seed of the dropout masks (the same seed gives the same passes).
        num_threads: Torch CPU threads while scoring, set for the call and
            restored after (``torch.set_num_threads`` is process-wide). ``None``
            (default) takes one core fewer than the process may use, at least
            1 and at most torch's current setting
            (:func:`~dlabel_lab.serving.threads.default_num_threads`): the
            ingest endpoint decodes the next batch on the core left over.
            Measured on 2 cores through ``score_many``
            (``bench/ingest_scale.py --threads 1,2``, tiny3d on 8x64x64):
            1 thread 35.8 clips/s on an idle machine and 36.0 beside a
            process keeping one core busy (``--busy 1``); 2 threads 50.4
            idle but 27.4 beside the busy process. The default takes the
            steady figure; on a 2-core machine that does nothing else,
            ``num_threads=2`` is faster.

    Raises:
        ConfigError: ``mc_passes`` is 1, negative or not an int, or the model
            has no dropout (every pass would agree); ``num_threads`` is not
            ``None`` or an int >= 1.

    Example:
        >>> endpoint = ModelEndpoint(model, store, model_version="shapes-v1")  # doctest: +SKIP
        >>> bald_ready = ModelEndpoint(model, store, model_version="shapes-v1", mc_passes=8)  # doctest: +SKIP
    """

    def __init__(self, model: ClipClassifier, store, *, model_version: str, top_k: int = 3, batch_size: int = 16,
                 device: str | torch.device = "cpu", mc_passes: int = 0, mc_seed: int = 0,
                 num_threads: int | None = None) -> None:
        if isinstance(mc_passes, bool) or not isinstance(mc_passes, int) or mc_passes < 0 or mc_passes == 1:
            raise ConfigError(f"mc_passes must be 0 (none) or an int >= 2, got {mc_passes!r}")
        if mc_passes and not has_dropout(model):
            raise ConfigError("mc_passes needs a model with dropout (p > 0): every pass would agree. Train the "
                              "version with dropout (ClipClassifier(..., dropout=0.3)) or leave mc_passes at 0")
        self.mc_passes = mc_passes
        self.mc_seed = int(mc_seed)
        self.num_threads = check_num_threads(num_threads)
        self.model = model
        self.store = store
        self.model_version = model_version
        self.top_k = top_k
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.classes = list(model.classes)
        self.model.eval().to(self.device)

    def threads(self) -> int:
        """The torch thread count this endpoint scores with (``num_threads``, else the default rule).

        Example:
            >>> endpoint.threads()  # doctest: +SKIP
            1
        """
        return self.num_threads or default_num_threads()

    def _infer(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            logits, emb = self.model.logits_and_embedding(x.to(self.device))
            return torch.softmax(logits.float(), dim=-1).cpu(), emb.float().cpu()

    def score_batch(self, items: Sequence[_Item], *, log_scores: bool = True) -> list[ScoringResult]:
        """Run the model on preprocessed items and log what it saw and predicted.

        If the model fails, the user scores are still logged, each id gets a
        failed run with the error in the execution log, and results carry the
        error (the ids then show in ``store.unmatched()``). The model runs
        with :meth:`threads` torch threads; the previous count is restored.
        """
        with torch_threads(self.threads()):
            return self._score_batch(items, log_scores=log_scores)

    def _score_batch(self, items: Sequence[_Item], *, log_scores: bool) -> list[ScoringResult]:
        results: list[ScoringResult] = []
        for start in range(0, len(items), self.batch_size):
            chunk = list(items[start : start + self.batch_size])
            if log_scores:
                scores = [{"scoring_id": it.scoring_id, "label": it.label, "source": "human"}
                          for it in chunk if it.label is not None]
                if scores:
                    self.store.log_score_many(scores)
            t0 = time.perf_counter()
            try:
                x = torch.stack([it.tensor for it in chunk])
                probs, emb = self._infer(x)
            except Exception as e:  # noqa: BLE001 - any model failure is logged, never lost
                results.extend(self._failed(chunk, e))
                continue
            latency = (time.perf_counter() - t0) * 1000.0 / len(chunk)
            transformed, predictions = [], []
            k = min(self.top_k, len(self.classes))
            for it, p, e in zip(chunk, probs, emb, strict=True):
                top = torch.topk(p, k)
                objects = [{"label": self.classes[j], "score": float(s)}
                           for s, j in zip(top.values.tolist(), top.indices.tolist(), strict=True)]
                transformed.append({
                    "scoring_id": it.scoring_id, "model_version": self.model_version, "record": it.record,
                    "tensor_digest": tensor_digest(it.tensor), "embedding": e.tolist(), "objects": objects,
                })
                predictions.append({
                    "scoring_id": it.scoring_id, "model_version": self.model_version, "label": objects[0]["label"],
                    "probabilities": p.tolist(), "confidence": objects[0]["score"], "latency_ms": latency,
                })
                results.append(ScoringResult(
                    scoring_id=it.scoring_id, model_version=self.model_version, label=it.label,
                    predicted_label=objects[0]["label"], confidence=objects[0]["score"],
                    probabilities=dict(zip(self.classes, p.tolist(), strict=True)), latency_ms=latency,
                    sha256=it.sha256, duplicate_of=it.duplicate_of,
                ))
            self.store.log_transformed_many(transformed)
            self.store.log_prediction_many(predictions)
            if self.mc_passes:
                mc = mc_dropout_probabilities(self.model, x.to(self.device), passes=self.mc_passes,
                                              seed=self.mc_seed, batch_size=self.batch_size)
                self.store.log_attributions(self.model_version, [
                    {"scoring_id": it.scoring_id, "kind": "mc_dropout", "values": mc[:, j, :].tolist()}
                    for j, it in enumerate(chunk)])
        return results

    def _failed(self, chunk: Sequence[_Item], error: Exception) -> list[ScoringResult]:
        message = f"{type(error).__name__}: {error}"
        out = []
        for it in chunk:
            run = self.store.start_run("score", {"model_version": self.model_version}, scoring_id=it.scoring_id,
                                       model_version=self.model_version)
            self.store.finish_run(run, status="failed", error=message)
            out.append(ScoringResult(scoring_id=it.scoring_id, model_version=self.model_version, label=it.label,
                                     sha256=it.sha256, error=message, duplicate_of=it.duplicate_of))
        return out


class IngestEndpoint:
    """The second scoring endpoint: receives native clips and user scores.

    Args:
        model_endpoint: Where preprocessed clips are forwarded.
        store: The payload store.
        classes: The label set user scores must come from.
        spec: Preprocessing; defaults to the model's clip spec.

    Example:
        >>> results = ingest.score_many(paths, labels)  # doctest: +SKIP
    """

    def __init__(self, model_endpoint: ModelEndpoint, store, *, classes: Sequence[str],
                 spec: ClipSpec | None = None) -> None:
        self.model_endpoint = model_endpoint
        self.store = store
        self.classes = list(classes)
        self.spec = spec or model_endpoint.model.spec

    @property
    def model_version(self) -> str:
        return self.model_endpoint.model_version

    def _check_labels(self, labels: Sequence[str | None]) -> None:
        check_labels(labels, self.classes)

    def _prepare(self, source, label: str | None) -> tuple[_Item, dict]:
        """Stage the clip inside the store (bounded, hashed), decode the staged copy, build the tensor.

        Peak memory is one copy block plus the decoded frames, whatever the
        file's size, and nothing is written outside the store's folder.
        """
        staged, name, suffix = _stage_source(self.store, source, self.spec)
        try:
            clip = read_checked_file(staged.path, self.spec, name=repr(name), suffix=suffix)
            x, record = to_tensor(clip, self.spec)
        except BaseException:
            self.store.discard_staged(staged)
            raise
        meta = {"fps": clip.fps, "frame_count": clip.frame_count, "width": clip.width, "height": clip.height,
                "codec": clip.codec, "container": clip.container}
        return _Item("", x, record, label), {"staged": staged, "source_name": name, "metadata": meta}

    def score(self, source, label: str | None = None) -> ScoringResult:
        """Score one clip (a path or bytes) with an optional user score."""
        return self.score_many([source], None if label is None else [label], progress=False)[0]

    def score_many(self, sources: Sequence, labels: Sequence[str | None] | None = None, *,
                   batch_size: int | None = None, on_error: str = "raise", failures: list | None = None,
                   progress: bool = True, scoring_ids: Sequence[str] | None = None) -> list[ScoringResult]:
        """Score clips in batches, with a progress bar.

        While the model scores one batch, a second thread stages and decodes
        the next (one batch ahead, so memory holds at most two batches of
        tensors), on the core the model endpoint's thread count leaves free
        (see ``num_threads`` of :class:`ModelEndpoint`). Batches are logged in
        order, one after the other, exactly as without the second thread.

        Args:
            sources: Paths or bytes.
            labels: User scores, one per source (``None`` entries allowed).
            batch_size: Clips per batch; default the model endpoint's.
            on_error: What a clip that cannot be read does. ``"raise"`` stops
                at it (clips of earlier batches stay logged; the bad batch logs
                nothing); ``"skip"`` leaves it out and goes on; ``"stop"``
                logs the clips before it and returns without raising.
            failures: With ``"skip"`` or ``"stop"``, ``(index, error)`` of each
                clip left out is appended here (index into ``sources``).
            progress: Show a tqdm progress bar.
            scoring_ids: The clips' scoring ids, chosen by the caller (one per
                source, canonical UUID text); default new ones. A retry with the
                same id adds no second raw payload (the scoring service uses
                them as idempotency keys).

        Raises:
            UnknownLabel: A label is not a class (before anything is logged).
            ConfigError: ``scoring_ids`` has another length, a malformed or a repeated id.
            MediaError: A clip cannot be read (with ``on_error="raise"``).

        Example:
            >>> results = ingest.score_many(["a.mp4", "b.mp4"], ["circle", None], on_error="skip")  # doctest: +SKIP
        """
        sources = list(sources)
        labels = [None] * len(sources) if labels is None else list(labels)
        if len(labels) != len(sources):
            raise ConfigError(f"{len(labels)} labels for {len(sources)} clips; pass one label (or None) per clip")
        if on_error not in ("raise", "skip", "stop"):
            raise ConfigError(f"on_error must be 'raise', 'skip' or 'stop', got {on_error!r}")
        self._check_labels(labels)
        preset = _check_preset_ids(scoring_ids, len(sources))
        bs = batch_size or self.model_endpoint.batch_size
        spans = [range(start, min(start + bs, len(sources))) for start in range(0, len(sources), bs)]
        results: list[ScoringResult] = []
        bar = tqdm(total=len(sources), desc=f"scoring with {self.model_version}", unit="clip", disable=not progress)
        pool = ThreadPoolExecutor(1, thread_name_prefix="dlabel-prepare") if len(spans) > 1 else None
        ahead: Future[_Batch] | None = None
        batch: _Batch | None = None
        try:
            with torch_threads(self.model_endpoint.threads()):
                for k, span in enumerate(spans):
                    if ahead is None:
                        batch = self._prepare_batch(sources, labels, span, on_error, preset)
                    else:  # a MediaError of that batch (on_error="raise") surfaces here
                        batch, ahead = ahead.result(), None
                    if pool is not None and not batch.stopped and k + 1 < len(spans):
                        ahead = pool.submit(self._prepare_batch, sources, labels, spans[k + 1], on_error, preset)
                    if failures is not None:
                        failures.extend(batch.failed)
                    bar.update(len(batch.failed))
                    if batch.items:
                        results.extend(self._log_batch(batch))
                        bar.update(len(batch.items))
                    stopped, batch = batch.stopped, None
                    if stopped:
                        break
        finally:
            bar.close()
            leftovers = [batch] if batch is not None else []  # a batch that failed before it was logged
            if ahead is not None:  # staged by the second thread, never logged
                try:
                    leftovers.append(ahead.result())
                except BaseException:  # noqa: BLE001 - its own staged copies are already gone
                    pass
            for left in leftovers:
                for raw in left.raws:
                    self.store.discard_staged(raw["staged"])
            if pool is not None:
                pool.shutdown(wait=True)
        return results

    def _prepare_batch(self, sources: Sequence, labels: Sequence[str | None], span: range, on_error: str,
                       preset: Sequence[str] | None = None) -> _Batch:
        """Stage and decode the clips of ``span``; on an exception nothing of the batch stays staged."""
        batch = _Batch()
        try:
            for index in span:
                try:
                    item, raw = self._prepare(sources[index], labels[index])
                except MediaError as error:
                    if on_error == "raise":
                        raise
                    batch.failed.append((index, error))
                    if on_error == "stop":
                        batch.stopped = True
                        break
                    continue
                if preset is not None:
                    item.scoring_id = preset[index]
                batch.items.append(item)
                batch.raws.append(raw)
        except BaseException:
            for raw in batch.raws:
                self.store.discard_staged(raw["staged"])
            raise
        return batch

    def _log_batch(self, batch: _Batch) -> list[ScoringResult]:
        """Give the batch its scoring ids, log the raw payloads, then score it (the model endpoint logs the rest)."""
        for item, raw in zip(batch.items, batch.raws, strict=True):
            item.scoring_id = raw["scoring_id"] = item.scoring_id or self.store.new_scoring_id()
        earlier = self.store.first_scoring_ids([raw["staged"].sha256 for raw in batch.raws])
        for item, sha in zip(batch.items, self.store.log_raw_many(batch.raws), strict=True):
            item.sha256 = sha
            first = earlier.get(sha)
            item.duplicate_of = None if first == item.scoring_id else first  # a retry is no duplicate
        self._log_duplicates(batch.items)
        return self.model_endpoint.score_batch(batch.items)

    def _log_duplicates(self, items: Sequence[_Item]) -> None:
        """Record in the execution log each clip whose exact bytes were scored before."""
        for item in items:
            if item.duplicate_of is not None:
                run_id = self.store.start_run(
                    "duplicate_clip", {"sha256": item.sha256, "duplicate_of": item.duplicate_of},
                    scoring_id=item.scoring_id, model_version=self.model_version)
                self.store.finish_run(run_id, result={"duplicate_of": item.duplicate_of})

    def _read_logged(self, scoring_id: str):
        """Decode a logged clip from its file in the store, checked against its digest."""
        return read_checked_file(self.store.verified_raw_path(scoring_id), self.spec, name=f"clip {scoring_id}")

    def rescore_unmatched(self, *, progress: bool = True) -> list[ScoringResult]:
        """Finish scoring events whose model step failed (ids in ``unmatched()``).

        The tensor is rebuilt from the logged raw clip; the user score already
        logged is not logged again.
        """
        missing = self.store.unmatched()
        ids = [sid for sid, parts in zip(missing["scoring_id"], missing["missing"], strict=True)
               if "prediction" in list(parts)]
        items = []
        for sid in tqdm(ids, desc="rebuilding", unit="clip", disable=not progress):
            x, record = to_tensor(self._read_logged(sid), self.spec)
            items.append(_Item(sid, x, record, None))
        return self.model_endpoint.score_batch(items, log_scores=False)

    def shadow_score(self, scoring_ids: Sequence[str], *, progress: bool = True) -> list[ScoringResult]:
        """Score already-logged clips with this endpoint's model (no new raw rows, no new scores).

        Used to compare a new model version with its parent on the same ids.
        """
        items = []
        for sid in tqdm(list(scoring_ids), desc=f"shadow scoring {self.model_version}", unit="clip",
                        disable=not progress):
            x, record = to_tensor(self._read_logged(sid), self.spec)
            items.append(_Item(sid, x, record, None))
        return self.model_endpoint.score_batch(items, log_scores=False)


def check_labels(labels: Sequence[str | None], classes: Sequence[str], *, what: str = "model") -> None:
    """Refuse user scores that are not class names (``None`` entries are fine), before anything is logged.

    Example:
        >>> check_labels(["circle", None], ["circle", "square"])
    """
    known = set(classes)
    bad = sorted({str(lab) for lab in labels if lab is not None and lab not in known})
    if bad:
        raise UnknownLabel(f"labels {bad} are not among the {what}'s classes {list(classes)}; nothing was logged. "
                           f"Fix the labels or deploy a {what} with these classes.")


@dataclass(frozen=True)
class StagedClip:
    """A clip already staged inside the store (an upload the scoring service streamed there).

    The endpoint takes it over: it is logged, or removed when it cannot be read.

    Attributes:
        staged: The staged file (from :class:`~dlabel_lab.store.staging.StagingWriter`).
        name: The client's file name, for errors and ``source_name``.
        suffix: The file name's suffix (``.mp4``), a hint for the decoder.
    """

    staged: StagedMedia
    name: str
    suffix: str = ""


def _check_preset_ids(scoring_ids: Sequence[str] | None, n: int) -> list[str] | None:
    if scoring_ids is None:
        return None
    ids = [check_scoring_id(s, where=f"scoring_ids[{i}]") for i, s in enumerate(scoring_ids)]
    if len(ids) != n:
        raise ConfigError(f"{len(ids)} scoring ids for {n} clips; pass one id per clip or none")
    if len(set(ids)) != len(ids):
        raise ConfigError("scoring_ids repeats an id; each clip needs its own scoring id")
    return ids


def _stage_source(store, source, spec: ClipSpec) -> tuple[StagedMedia, str, str]:
    """Check a source (path or bytes) and copy it into the store's staging folder; (staged, name, suffix)."""
    if isinstance(source, StagedClip):
        staged = source.staged
        if staged.path.parent.resolve() != (store.media_dir / "staging").resolve():
            raise UnsupportedMedia(f"{source.name}: a staged clip must lie in this store's staging folder")
        if staged.size > spec.max_file_bytes:
            store.discard_staged(staged)
            raise MediaTooLarge(f"{source.name} is {staged.size / 2**20:.1f} MiB, over the limit of "
                                f"{spec.max_file_bytes / 2**20:.0f} MiB per clip; nothing was stored")
        return staged, source.name, source.suffix
    if isinstance(source, (bytes, bytearray, memoryview)):
        return store.stage_media(source, max_bytes=spec.max_file_bytes), "<bytes>", ""
    if not isinstance(source, (str, os.PathLike)):
        raise UnsupportedMedia(f"a clip source must be a path or bytes, got {type(source).__name__}")
    path = _check_path(source)
    name = os.fspath(source)
    check_container_file(path, spec, name=repr(name), suffix=path.suffix)  # refuse before copying anything
    return store.stage_media(path, max_bytes=spec.max_file_bytes, name=repr(name)), name, path.suffix


def deploy(model: ClipClassifier, store, *, classes: Sequence[str] | None = None, spec: ClipSpec | None = None,
           name: str = "model", model_version: str | None = None, batch_size: int = 16, top_k: int = 3,
           device: str = "cpu", mc_passes: int = 0, num_threads: int | None = None) -> IngestEndpoint:
    """Deploy a model behind both endpoints, registering it in the store if needed.

    Args:
        model: The model to serve.
        store: The payload store.
        classes: The classes user scores come from; must match the model's.
        spec: Preprocessing; default the model's spec.
        name: Registry name when the model is registered here.
        model_version: An already registered version of exactly this model.
        batch_size: Clips per forward pass.
        top_k: Identified objects logged per clip.
        device: Torch device.
        mc_passes: MC-dropout passes logged per clip (see :class:`ModelEndpoint`).
        num_threads: Torch threads while scoring; ``None`` takes the measured
            default rule (see :class:`ModelEndpoint`).

    Example:
        >>> ingest = deploy(model, store, classes=["circle", "square", "triangle"])  # doctest: +SKIP
        >>> ingest = deploy(model, store, num_threads=1)  # doctest: +SKIP
    """
    if classes is not None and list(classes) != list(model.classes):
        raise ConfigError(f"classes {list(classes)} differ from the model's {list(model.classes)}; "
                          "user scores must use the model's class names in the same order")
    spec = spec or model.spec
    check_num_threads(num_threads)  # before anything is registered
    if model_version is None:
        model_version = getattr(model, "model_version_", None)
    if model_version is None:
        model_version, _ = register_version(store, model, name=name,
                                            params={"deployed_without_training_record": True})
    endpoint = ModelEndpoint(model, store, model_version=model_version, top_k=top_k, batch_size=batch_size,
                             device=device, mc_passes=mc_passes, num_threads=num_threads)
    return IngestEndpoint(endpoint, store, classes=model.classes, spec=spec)


def deploy_version(store, model_version: str, **kwargs) -> IngestEndpoint:
    """Deploy a model version registered in the store.

    A converted ONNX version (``dl.export_onnx``, ``dl.quantize_int8``) runs on
    ONNX Runtime behind the same endpoints, checked against its sha256 first;
    its predictions are logged under its own version id.

    Example:
        >>> ingest = deploy_version(store, "shapes-v2")  # doctest: +SKIP
        >>> ingest = deploy_version(store, "shapes-onnx-v1")  # doctest: +SKIP
    """
    if is_onnx(store.get_model(model_version)):
        model = load_onnx_version(store, model_version)
        return deploy(model, store, model_version=model_version, **kwargs)
    model = load_version(store, model_version)
    return deploy(model, store, model_version=model_version, **kwargs)


def replay(store, scoring_id: str, model_version: str) -> tuple[torch.Tensor, bool]:
    """Rebuild the tensor a model saw from the raw clip and its logged record.

    Returns:
        ``(tensor, digest_matches)``.

    Example:
        >>> x, ok = replay(store, result.scoring_id, result.model_version)  # doctest: +SKIP
    """
    row = store.matched(scoring_ids=[scoring_id], model_version=model_version).df()
    if row.empty:
        raise UnknownRecord(f"no transformed payload for scoring id {scoring_id!r} under {model_version!r}")
    record = row["record"].iloc[0]
    record = json.loads(record) if isinstance(record, str) else record
    spec = spec_from_record(record)
    x, _ = to_tensor(read_checked_file(store.verified_raw_path(scoring_id), spec, name=scoring_id), spec)
    return x, tensor_digest(x) == row["tensor_digest"].iloc[0]
