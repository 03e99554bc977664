"""Pseudo-oracles: cheap signals, on every scored clip, of whether the model's prediction is right.

Each is a score in [0, 1], higher meaning likelier right, so that samplers
(strata, failure-proneness ``1 - score``) and estimators (PPI's predictions,
the Hansen-Hurwitz control) use any of them the same way:

- ``confidence``: the calibrated confidence, ``max softmax(log p / T)`` with
  the temperature stored for the version by :func:`~dlabel_lab.calibrate`
  (raw confidence when it was never calibrated);
- ``lineage_agreement``: share of the version's ancestors (its lineage, an
  ensemble for free) that predicted the same class on the clip (NaN where
  none scored it);
- ``tta_agreement``: share of test-time-augmentation views
  (:mod:`.tta`) predicted as the clip itself;
- ``mc_agreement``: share of MC-dropout passes whose argmax is the
  prediction (one minus the MC-dropout disagreement), from the passes the
  model endpoint logged or recomputed with
  :func:`~dlabel_lab.models.mc_dropout.mc_dropout_probabilities`.

The array functions are pure; :func:`compute_pseudo_oracles` rebuilds the
clips from the store (raw clip + preprocessing record), runs the model
where needed, logs the columns as attributions of kind ``"pseudo_oracles"``
(one JSON row per clip) inside a ``pseudo-oracles`` run, and
:func:`load_pseudo_oracles` reads them back, the latest value of each
column per clip winning.

Example:
    >>> calibrated_confidence([[0.8, 0.2], [0.5, 0.5]]).tolist()
    [0.8, 0.5]
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError

__all__ = ["ATTRIBUTION_KIND", "ORACLES", "calibrated_confidence", "compute_pseudo_oracles", "load_pseudo_oracles",
           "mc_agreement", "oracle_scores", "prediction_agreement", "stored_temperature"]

#: The pseudo-oracle columns.
ORACLES = ("confidence", "lineage_agreement", "tta_agreement", "mc_agreement")
#: The attribution kind the columns are stored under.
ATTRIBUTION_KIND = "pseudo_oracles"
_CHUNK = 64


# --- pure ---------------------------------------------------------------------------------------
def calibrated_confidence(probabilities, temperature: float | None = None) -> np.ndarray:
    """Top-class probability after temperature scaling (``None``: as given).

    Example:
        >>> calibrated_confidence([[0.9, 0.1]], 2.0).round(3).tolist()
        [0.75]
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ConfigError(f"probabilities must be (N, K) with N >= 1, got shape {p.shape}")
    if temperature is not None:
        from ..labeling.calibration import apply_temperature  # lazily: calibration loads torchmetrics

        p = apply_temperature(p, temperature)
    return p.max(axis=1)


def prediction_agreement(predicted: Sequence, others: Sequence[Sequence]) -> np.ndarray:
    """Share of other models' predictions equal to ``predicted``, per clip; NaN where none predicted.

    Args:
        predicted: The model's predicted label per clip.
        others: One sequence per other model, aligned with ``predicted``;
            ``None`` where that model did not score the clip.

    Example:
        >>> prediction_agreement(["a", "b", "c"], [["a", "a", None], ["a", "b", None]]).tolist()
        [1.0, 0.5, nan]
    """
    pred = list(predicted)
    agree = np.zeros(len(pred))
    seen = np.zeros(len(pred))
    for other in others:
        other = list(other)
        if len(other) != len(pred):
            raise ConfigError(f"each other model needs one prediction per clip ({len(pred)}), got {len(other)}")
        for i, (a, b) in enumerate(zip(pred, other, strict=True)):
            if b is None or (isinstance(b, float) and np.isnan(b)):
                continue
            seen[i] += 1
            agree[i] += a == b
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(seen > 0, agree / np.maximum(seen, 1), np.nan)


def mc_agreement(mc_probabilities, predicted) -> np.ndarray:
    """Share of MC-dropout passes ``(T, N, K)`` whose argmax is the predicted class index, per clip.

    Example:
        >>> mc = np.array([[[0.9, 0.1]], [[0.4, 0.6]], [[0.7, 0.3]], [[0.8, 0.2]]])
        >>> mc_agreement(mc, [0]).tolist()
        [0.75]
    """
    mc = np.asarray(mc_probabilities, dtype=np.float64)
    pred = np.asarray(predicted).ravel()
    if mc.ndim != 3 or mc.shape[1] != pred.size:
        raise ConfigError(f"MC-dropout probabilities must be (T, N, K) with N = {pred.size}, got {mc.shape}")
    return (mc.argmax(axis=2) == pred[None, :]).mean(axis=0)


# --- the store ---------------------------------------------------------------------------------------
def stored_temperature(store, model_version: str) -> float | None:
    """The temperature :func:`~dlabel_lab.calibrate` last stored for the version (``None`` if never).

    Example:
        >>> stored_temperature(store, "shapes-v1")  # doctest: +SKIP
        2.31
    """
    found = [ev["metrics"].get("temperature") for ev in store.lineage(model_version)["evaluations"]
             if ev["split"] == "calibration"]
    found = [t for t in found if t is not None]
    return float(found[-1]) if found else None


def load_pseudo_oracles(store, model_version: str) -> pd.DataFrame:
    """The stored pseudo-oracle columns of a version's clips: ``scoring_id`` and one column per oracle.

    Example:
        >>> load_pseudo_oracles(store, "shapes-v1").columns.tolist()  # doctest: +SKIP
        ['scoring_id', 'confidence', 'lineage_agreement', 'tta_agreement', 'mc_agreement']
    """
    logged = store.attributions(model_version, kind=ATTRIBUTION_KIND)
    merged: dict[str, dict] = {}
    for sid, values in zip(logged["scoring_id"], logged["values"], strict=True):  # oldest first: latest wins
        if isinstance(values, dict):
            merged.setdefault(sid, {}).update({k: v for k, v in values.items() if k in ORACLES})
    columns = [c for c in ORACLES if any(c in v for v in merged.values())]
    frame = pd.DataFrame({"scoring_id": sorted(merged)})
    for c in columns:
        frame[c] = [np.nan if merged[s].get(c) is None else float(merged[s][c]) for s in frame["scoring_id"]]
    return frame


def oracle_scores(store, model_version: str, scoring_ids: Sequence[str], oracle: str, *,
                  probabilities=None, temperature: float | None = None) -> np.ndarray:
    """One pseudo-oracle's scores for the given clips, ready for a sampler or estimator.

    ``confidence`` is computed from ``probabilities`` with ``temperature``
    (the same definition as the stored column); the others are read from what
    :func:`compute_pseudo_oracles` stored. Clips where an oracle has no
    value (no ancestor scored them) get the mean of the others.

    Raises:
        ConfigError: Unknown oracle, or clips without a stored score.
    """
    if oracle not in ORACLES:
        raise ConfigError(f"unknown pseudo-oracle {oracle!r}; choose one of {list(ORACLES)}")
    if oracle == "confidence" and probabilities is not None:
        return calibrated_confidence(probabilities, temperature)
    stored = load_pseudo_oracles(store, model_version)
    have = dict(zip(stored["scoring_id"], stored[oracle], strict=True)) if oracle in stored else {}
    lacking = [s for s in scoring_ids if s not in have]
    if lacking:
        raise ConfigError(f"{len(lacking)} clip(s) of {model_version} have no stored {oracle!r} (e.g. {lacking[0]}); "
                          f"run compute_pseudo_oracles(store, {model_version!r}, oracles=[{oracle!r}]) first")
    values = np.array([have[s] for s in scoring_ids], dtype=np.float64)
    if np.isnan(values).all():
        raise ConfigError(f"{oracle!r} has no value on any of these clips (e.g. no ancestor of {model_version} "
                          "scored them); choose another pseudo-oracle")
    return np.where(np.isnan(values), np.nanmean(values), values)


def compute_pseudo_oracles(store, model_version: str, *, oracles: Sequence[str] | None = None,
                           scoring_ids: Sequence[str] | None = None, mc_passes: int = 8, seed: int = 0,
                           batch_size: int = 16, save: bool = True) -> pd.DataFrame:
    """Compute the pseudo-oracles of every clip a version scored, and store them.

    Args:
        store: The payload store.
        model_version: The version whose predictions are judged.
        oracles: Which of :data:`ORACLES`; default every one that applies
            (``lineage_agreement`` needs an ancestor, ``mc_agreement`` logged
            passes or a model with dropout).
        scoring_ids: Only these clips (default: every clip the version scored).
        mc_passes: MC-dropout passes for clips without logged passes.
        seed: Seeds the MC-dropout masks.
        batch_size: Clips per forward pass.
        save: Log the columns (attributions of kind ``"pseudo_oracles"``) in
            a ``pseudo-oracles`` run.

    Returns:
        ``scoring_id`` and one column per computed oracle, sorted by id.

    Raises:
        ConfigError: An unknown oracle, or one asked for that cannot be had.

    Example:
        >>> compute_pseudo_oracles(store, "shapes-v2", oracles=["confidence", "tta_agreement"])  # doctest: +SKIP
    """
    from ..labeling.calibration import stack_column

    wanted = list(ORACLES) if oracles is None else list(dict.fromkeys(oracles))
    unknown = sorted(set(wanted) - set(ORACLES))
    if unknown or not wanted:
        raise ConfigError(f"unknown pseudo-oracle(s) {unknown}; choose from {list(ORACLES)}")
    explicit = oracles is not None
    rows = store.matched(model_version=model_version, scoring_ids=None if scoring_ids is None else list(scoring_ids))
    rows = rows.project("scoring_id, predicted_label, probabilities, record").df()
    if rows.empty:
        raise ConfigError(f"{model_version} has scored no clips{'' if scoring_ids is None else ' among those ids'}")
    rows = rows.sort_values("scoring_id").reset_index(drop=True)
    classes = store.get_model(model_version)["classes"]
    out = pd.DataFrame({"scoring_id": rows["scoring_id"]})
    notes: dict[str, str] = {}
    temperature = stored_temperature(store, model_version)
    if "confidence" in wanted:
        out["confidence"] = calibrated_confidence(stack_column(rows, "probabilities"), temperature)
        notes["confidence"] = "calibrated" if temperature is not None else "raw (the version was never calibrated)"
    if "lineage_agreement" in wanted:
        _lineage_column(store, model_version, rows, out, notes, explicit)
    if "tta_agreement" in wanted or "mc_agreement" in wanted:
        _model_columns(store, model_version, rows, classes, out, notes, explicit,
                       tta="tta_agreement" in wanted, mc="mc_agreement" in wanted, passes=mc_passes, seed=seed,
                       batch_size=batch_size)
    if save:
        columns = [c for c in ORACLES if c in out]
        params = {"oracles": columns, "temperature": temperature, "mc_passes": mc_passes, "seed": seed,
                  "n_clips": len(out), "notes": notes}
        with store.run("pseudo-oracles", params, model_version=model_version):
            store.log_attributions(model_version, [
                {"scoring_id": sid, "kind": ATTRIBUTION_KIND,
                 "values": {c: (None if np.isnan(v) else float(v)) for c, v in zip(columns, vals, strict=True)}}
                for sid, *vals in out[["scoring_id", *columns]].itertuples(index=False, name=None)])
    return out


def _lineage_column(store, model_version: str, rows: pd.DataFrame, out: pd.DataFrame, notes: dict,
                    explicit: bool) -> None:
    ancestors = store.lineage(model_version)["chain"][1:]
    ids = rows["scoring_id"].tolist()
    others = []
    for version in ancestors:
        got = store.matched(model_version=version, scoring_ids=ids).project("scoring_id, predicted_label").df()
        by_id = dict(zip(got["scoring_id"], got["predicted_label"], strict=True))
        others.append([by_id.get(s) for s in ids])
    if not any(v is not None for other in others for v in other):
        why = ("it has no ancestor" if not ancestors else
               f"no ancestor ({', '.join(ancestors)}) scored these clips; shadow-score them "
               "(IngestEndpoint.shadow_score)")
        if explicit:
            raise ConfigError(f"lineage_agreement needs ancestors' predictions on the same clips, but {why}")
        notes["lineage_agreement"] = f"skipped: {why}"
        return
    out["lineage_agreement"] = prediction_agreement(rows["predicted_label"].tolist(), others)
    notes["lineage_agreement"] = f"ancestors: {', '.join(ancestors)}"


def _model_columns(store, model_version: str, rows: pd.DataFrame, classes: list[str], out: pd.DataFrame,
                   notes: dict, explicit: bool, *, tta: bool, mc: bool, passes: int, seed: int,
                   batch_size: int) -> None:
    """TTA and MC-dropout agreement, over clips rebuilt from the store, in chunks."""
    import torch

    from ..media.video import read_checked_file, spec_from_record, to_tensor
    from ..models.mc_dropout import has_dropout, mc_dropout_probabilities
    from ..models.registry import load_version
    from .tta import TTA_VIEWS, tta_predictions

    model = load_version(store, model_version)
    logged: dict[str, np.ndarray] = {}
    if mc:
        frame = store.attributions(model_version, kind="mc_dropout")
        logged = {sid: np.asarray(v, dtype=np.float64) for sid, v in zip(frame["scoring_id"], frame["values"],
                                                                          strict=True)
                  if np.ndim(v) == 2}
        if not has_dropout(model) and not set(rows["scoring_id"]) <= set(logged):
            why = "the model has no dropout and the endpoint logged no MC-dropout passes for every clip"
            if explicit:
                raise ConfigError(f"mc_agreement cannot be computed: {why} (deploy with mc_passes=T, or train "
                                  "with dropout)")
            notes["mc_agreement"] = f"skipped: {why}"
            mc = False
    if not (tta or mc):
        return
    index = {c: i for i, c in enumerate(classes)}
    predicted = np.array([index.get(label, -1) for label in rows["predicted_label"]])
    tta_col = np.full(len(rows), np.nan)
    mc_col = np.full(len(rows), np.nan)
    recomputed = 0
    for start in range(0, len(rows), _CHUNK):
        chunk = rows.iloc[start : start + _CHUNK]
        records = [json.loads(r) if isinstance(r, str) else r for r in chunk["record"]]
        tensors = []
        for sid, record in zip(chunk["scoring_id"], records, strict=True):
            spec = spec_from_record(record)
            clip = read_checked_file(store.verified_raw_path(sid), spec, name=f"clip {sid}")
            tensors.append(to_tensor(clip, spec)[0])
        x = torch.stack(tensors)
        pos = np.arange(start, start + len(chunk))
        if tta:
            norms = [(tuple(r["mean"]), tuple(r["std"])) for r in records]
            for norm in dict.fromkeys(norms):
                sel = np.array([n == norm for n in norms])
                preds = tta_predictions(model, x[torch.from_numpy(sel)], mean=norm[0], std=norm[1],
                                        batch_size=batch_size)
                tta_col[pos[sel]] = (preds == predicted[start:start + len(chunk)][sel][None, :]).mean(axis=0)
        if mc:
            ids = chunk["scoring_id"].tolist()
            missing = [i for i, s in enumerate(ids) if s not in logged]
            if missing:
                fresh = mc_dropout_probabilities(model, x[missing], passes=passes, seed=seed, batch_size=batch_size)
                recomputed += len(missing)
            for i, sid in enumerate(ids):
                passes_i = logged[sid] if sid in logged else fresh[:, missing.index(i), :]
                mc_col[start + i] = mc_agreement(passes_i[:, None, :], predicted[start + i : start + i + 1])[0]
    if tta:
        out["tta_agreement"] = tta_col
        notes["tta_agreement"] = f"views: {', '.join(TTA_VIEWS)}"
    if mc:
        out["mc_agreement"] = mc_col
        notes["mc_agreement"] = f"{len(rows) - recomputed} clip(s) from logged passes, {recomputed} recomputed"
