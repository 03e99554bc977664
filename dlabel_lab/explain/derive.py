"""From the comprehensive data set to transformation parameters.

``analyse`` rebuilds, from the raw clips and their logged preprocessing
records, exactly what a model version saw, and runs the Captum attributions
over it: layer activations, LayerGradCam maps (where the evidence lies),
per-frame IntegratedGradients (when it lies) and neuron attributions for the
neurons that separate correct from wrong predictions. It measures each clip's
factors (brightness, contrast, motion, blur, noise from the pixels; object
scale and position from the attribution mass), describes every neuron's
function, tags every clip by the functions it activates, and stores all of it.

``derive_transformation_params`` compares the operational clips with the
model's reference distribution (its training clips, or the clips it gets
right) and with each other (wrong vs correct), and turns the implicated
factors into augmentation ranges, a crop, a frame window and class weights,
each carrying its evidence. ``sensitivity_sweep`` checks that the model really
is fragile along each axis; parameters without support are reported as such.

Example:
    >>> analysis = analyse(store, "shapes-v1")  # doctest: +SKIP
    >>> params = derive_transformation_params(store, "shapes-v1", analysis=analysis)  # doctest: +SKIP
    >>> params.describe()  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..media.video import ClipSpec, clip_stats, read_clip, spec_from_record, to_tensor
from ..models.registry import load_version
from ..train.datasets import lineage_training_rows
from ..train.transforms import Evidence, TransformationParams
from .attribution import activations, frame_attribution, layer_map, neuron_attributions
from .neurons import attribution_geometry, compare_groups, neuron_functions, tag_clips
from .review import candidate_quantiles
from .sensitivity import IDENTITY, _apply_axis, quantile_axes, sensitivity_sweep  # noqa: F401 - re-exported

__all__ = ["Analysis", "analyse", "derive_transformation_params", "sensitivity_sweep", "FACTOR_COLUMNS"]

#: Clip factors measured for every analysed clip: pixel statistics from
#: :func:`~dlabel_lab.clip_stats` and where the LayerGradCam mass lies.
FACTOR_COLUMNS = ("brightness", "contrast", "saturation", "hue", "motion", "blur", "noise", "object_scale",
                  "off_centre", "attention_scale")


@dataclass
class Analysis:
    """Attributions, factors, neuron functions and tags of one model version.

    Attributes:
        model_version: The analysed version.
        scoring_ids: The analysed clips, in row order.
        labels: Their user labels.
        predicted: The version's predictions.
        correct: ``predicted == labels``.
        frames: uint8 ``(N, T, H, W, 3)``: what the model saw.
        gradcam: ``(N, T, H, W)`` LayerGradCam maps for the user label, >= 0.
        frame_profile: ``(N, T)`` per-frame IntegratedGradients mass, sums to 1.
        activations: ``(N, D)`` embedding activations.
        factors: ``scoring_id`` plus :data:`FACTOR_COLUMNS` and geometry.
        functions: One row per neuron (see :func:`~dlabel_lab.neuron_functions`).
        tags: ``scoring_id, tag, score, source``.
        implicated_factors: Factors of wrong vs correct clips, by effect size.
        implicated_neurons: Neurons of wrong vs correct clips, by effect size.
        neuron_maps: Spatial attribution mass ``(N, K, H, W)`` of the top implicated neurons.
        top_neurons: The neuron indices of ``neuron_maps``.
        reference: Factors of the reference clips (training clips when known).
        classes: The model's classes.
        reference_x: The reference clips as the model reads them (for the sensitivity sweep).
        reference_y: Their class indices.
    """

    model_version: str
    scoring_ids: list[str]
    labels: list[str]
    predicted: list[str]
    correct: np.ndarray
    frames: np.ndarray
    gradcam: np.ndarray
    frame_profile: np.ndarray
    activations: np.ndarray
    factors: pd.DataFrame
    functions: pd.DataFrame
    tags: pd.DataFrame
    implicated_factors: pd.DataFrame
    implicated_neurons: pd.DataFrame
    neuron_maps: np.ndarray | None = None
    top_neurons: list[int] = field(default_factory=list)
    reference: pd.DataFrame | None = None
    classes: list[str] = field(default_factory=list)
    reference_x: torch.Tensor | None = None
    reference_y: torch.Tensor | None = None

    @property
    def accuracy(self) -> float:
        """Accuracy of the analysed version on the analysed clips."""
        return float(np.mean(self.correct)) if len(self.correct) else float("nan")


def _decode(sources: Sequence, specs: Sequence[ClipSpec], progress: bool, desc: str):
    xs, frames = [], []
    for src, spec in tqdm(list(zip(sources, specs, strict=True)), desc=desc, unit="clip", disable=not progress):
        clip = read_clip(src, spec)
        x, _ = to_tensor(clip, spec)
        xs.append(x)
        frames.append(clip.frames)
    return torch.stack(xs), np.stack(frames)


def _colour(frames: np.ndarray) -> pd.DataFrame:
    """Mean saturation (0..1) and saturation-weighted circular mean hue (0..1) of each uint8 RGB clip."""
    import cv2

    rows = []
    for clip in frames:
        hsv = cv2.cvtColor(np.ascontiguousarray(clip.reshape(-1, clip.shape[-2], 3)), cv2.COLOR_RGB2HSV)
        sat = hsv[..., 1].astype(np.float64) / 255.0
        angle = hsv[..., 0].astype(np.float64) / 180.0 * 2 * np.pi
        w = sat.sum()
        hue = (np.arctan2((np.sin(angle) * sat).sum(), (np.cos(angle) * sat).sum()) / (2 * np.pi)) % 1.0 \
            if w > 0 else 0.0
        rows.append({"saturation": float(sat.mean()), "hue": float(hue)})
    return pd.DataFrame(rows)


def _factors(frames: np.ndarray, gradcam: np.ndarray) -> pd.DataFrame:
    stats = pd.DataFrame([clip_stats(f).as_dict() for f in frames])
    if frames.ndim == 5 and frames.shape[-1] == 3:
        stats = pd.concat([stats, _colour(frames)], axis=1)
    geometry = attribution_geometry(torch.as_tensor(gradcam).sum(dim=1).numpy())
    geometry = geometry.rename(columns={"object_scale": "attention_scale", "object_scale_50": "attention_scale_50"})
    out = pd.concat([stats, geometry.reset_index(drop=True)], axis=1)
    return out.fillna(out.median(numeric_only=True))


def _targets(labels: Sequence[str], classes: Sequence[str]) -> torch.Tensor:
    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor([index[lab] for lab in labels], dtype=torch.long)


def analyse(
    store,
    model_version: str,
    *,
    scoring_ids: Sequence[str] | None = None,
    top_neurons: int = 8,
    method: str = "gradient",
    n_steps: int = 8,
    reference_clips: int = 48,
    batch_size: int = 16,
    save: bool = True,
    progress: bool = True,
) -> Analysis:
    """Attribute, measure, describe and tag the matched clips of a model version.

    Args:
        store: The payload store.
        model_version: The version to analyse (its predictions must be in the store).
        scoring_ids: Restrict to these ids (default: every labelled clip it scored).
        top_neurons: How many implicated neurons get full neuron attributions.
        method: Neuron attribution method (``"gradient"``, ``"conductance"``,
            ``"integrated_gradients"``).
        n_steps: Integration steps of the path methods.
        reference_clips: Training clips measured as the reference distribution.
        batch_size: Clips per attribution batch.
        save: Store neuron functions, clip tags and attributions.
        progress: Show progress bars.

    Returns:
        An :class:`Analysis`.

    Example:
        >>> a = analyse(store, "shapes-v1", top_neurons=4)  # doctest: +SKIP
        >>> a.implicated_factors.head(3)  # doctest: +SKIP
    """
    model = load_version(store, model_version)
    df = store.matched(model_version=model_version, scoring_ids=scoring_ids).df()
    df = df.dropna(subset=["user_label"]).drop_duplicates("scoring_id").reset_index(drop=True)
    df = df[df["user_label"].isin(model.classes)].reset_index(drop=True)
    if len(df) < 2:
        raise ConfigError(f"{model_version} has {len(df)} labelled, scored clips in the store; analyse needs at "
                          "least 2. Score clips with user labels first.")
    records = [json.loads(r) if isinstance(r, str) else r for r in df["record"]]
    specs = [spec_from_record(r) for r in records]
    x, frames = _decode(list(df["media_path"]), specs, progress, f"rebuilding {model_version} inputs")
    labels = df["user_label"].tolist()
    y = _targets(labels, model.classes)
    acts = activations(model, x, batch_size=batch_size).numpy()
    gradcam = layer_map(model, x, target=y, upsample=True, batch_size=batch_size, progress=progress).numpy()
    profile = frame_attribution(model, x, target=y, n_steps=n_steps, batch_size=batch_size,
                                progress=progress).numpy()
    factors = _factors(frames, gradcam)
    factors.insert(0, "scoring_id", df["scoring_id"].tolist())
    correct = (df["predicted_label"] == df["user_label"]).to_numpy()
    measured = factors[[c for c in FACTOR_COLUMNS if c in factors]]
    functions = neuron_functions(acts, measured, labels, classes=model.classes)
    tags = tag_clips(acts, functions, factors=measured, ids=df["scoring_id"].tolist())
    if correct.all() or not correct.any():
        implicated_f = pd.DataFrame(columns=["feature", "cohens_d", "p_value"])
        implicated_n = pd.DataFrame(columns=["feature", "cohens_d", "p_value"])
    else:
        implicated_f = compare_groups(measured, correct)
        implicated_n = compare_groups(pd.DataFrame(acts, columns=[f"n{i}" for i in range(acts.shape[1])]), correct)
    if len(implicated_n):
        top = [int(f[1:]) for f in implicated_n["feature"].head(top_neurons)]
    else:
        top = list(np.argsort(-acts.std(axis=0))[:top_neurons].astype(int))
    maps = None
    if top:
        result = neuron_attributions(model, x, neurons=top, method=method, n_steps=n_steps, batch_size=batch_size,
                                     progress=progress)
        maps = result.mass_map.numpy()
    reference, ref_x, ref_y = _reference(store, model_version, model, reference_clips, batch_size, progress)
    analysis = Analysis(
        model_version=model_version, scoring_ids=df["scoring_id"].tolist(), labels=labels,
        predicted=df["predicted_label"].tolist(), correct=correct, frames=frames, gradcam=gradcam,
        frame_profile=profile, activations=acts, factors=factors, functions=functions, tags=tags,
        implicated_factors=implicated_f, implicated_neurons=implicated_n, neuron_maps=maps, top_neurons=top,
        reference=reference, classes=list(model.classes), reference_x=ref_x, reference_y=ref_y,
    )
    if save:
        _save(store, analysis)
    return analysis


def _reference(store, model_version, model, limit, batch_size, progress):
    """Factors, tensors and targets of the lineage's training clips (``None``s when unknown)."""
    rows = [r for r in lineage_training_rows(store, model_version, limit=limit) if r["label"] in model.classes]
    if len(rows) < 4:
        return None, None, None
    x, frames = _decode([r["path"] for r in rows], [model.spec] * len(rows), progress, "measuring reference clips")
    y = _targets([r["label"] for r in rows], model.classes)
    gradcam = layer_map(model, x, target=y, upsample=True, batch_size=batch_size, progress=False).numpy()
    return _factors(frames, gradcam), x, y


def _save(store, a: Analysis) -> None:
    rows = []
    for rec in a.functions.to_dict("records"):
        extra = {k: v for k, v in rec.items() if k not in ("layer", "neuron", "class_label")}
        rows.append({"layer": rec.get("layer", "embedding"), "neuron": int(rec["neuron"]),
                     "class_label": rec.get("class_label"), "factor": rec.get("function_factor") or None,
                     "corr": _finite(rec.get("top_corr")), **{k: _plain(v) for k, v in extra.items()}})
    store.log_neuron_functions(a.model_version, rows)
    if len(a.tags):
        store.log_clip_tags(a.model_version, a.tags[["scoring_id", "tag", "score"]].to_dict("records"))
    attributions = []
    for i, sid in enumerate(a.scoring_ids):
        attributions.append({"scoring_id": sid, "kind": "frame_profile", "values": a.frame_profile[i].tolist()})
        geo = {k: _plain(a.factors.iloc[i][k]) for k in a.factors.columns if k != "scoring_id"}
        attributions.append({"scoring_id": sid, "kind": "factors", "values": geo})
    store.log_attributions(a.model_version, attributions)


def _finite(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _plain(v):
    if isinstance(v, (np.floating, float)):
        return _finite(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


# --- derivation ------------------------------------------------------------------
def _q(values: pd.Series) -> dict[str, float]:
    v = values.dropna().to_numpy(dtype=float)
    if not len(v):
        return {}
    return {"q05": float(np.quantile(v, 0.05)), "q50": float(np.quantile(v, 0.5)), "q95": float(np.quantile(v, 0.95))}


def _candidate(value) -> dict[str, float]:
    """The candidate value in the evidence (see :func:`~dlabel_lab.explain.review.candidate_quantiles`), when finite."""
    q = candidate_quantiles(value)
    return q if all(np.isfinite(v) for v in q.values()) else {}


def _effect(implicated: pd.DataFrame, feature: str) -> tuple[float | None, float | None]:
    if implicated is None or not len(implicated) or feature not in set(implicated["feature"]):
        return None, None
    row = implicated.set_index("feature").loc[feature]
    return _finite(row.get("cohens_d")), _finite(row.get("p_value"))


def _neurons_for(functions: pd.DataFrame, factor: str, k: int = 5) -> tuple[str, ...]:
    col = f"corr_{factor}"
    if col not in functions:
        return ()
    top = functions.assign(a=functions[col].abs()).sort_values("a", ascending=False)
    top = top[top["a"] >= 0.3].head(k)
    return tuple(f"{r.layer}:{int(r.neuron)}" for r in top.itertuples())


def _fragile(sweep: pd.DataFrame | None, axis: str, lo: float, hi: float, identity: float, drop: float) -> bool | None:
    if sweep is None or axis not in set(sweep["axis"]):
        return None
    s = sweep[sweep["axis"] == axis]
    base = s.loc[(s["value"] - identity).abs().idxmin(), "accuracy"]
    inside = s[(s["value"] >= min(lo, identity) - 1e-9) & (s["value"] <= max(hi, identity) + 1e-9)]
    return bool(len(inside) and base - inside["accuracy"].min() >= drop)


def derive_transformation_params(
    store,
    model_version: str,
    *,
    analysis: Analysis | None = None,
    sensitivity: bool = True,
    save: bool = True,
    min_effect: float = 0.3,
    min_shift: float = 0.1,
    fragile_drop: float = 0.05,
    p: float = 0.8,
    require_support: bool = True,
    progress: bool = True,
) -> TransformationParams:
    """Describe transformation parameters from the comprehensive data set of a version.

    For each measurable factor the operational clips are compared with the
    reference (the clips the lineage was trained on when known, else the
    clips the model gets right): a factor whose operational quantiles leave
    the reference by more than ``min_shift`` (relative), or that separates
    wrong from correct clips with ``|Cohen's d| >= min_effect``, becomes an
    augmentation range that covers its operational 5-95 % quantiles. Object
    scale is the moving foreground's size (see :func:`~dlabel_lab.clip_stats`;
    LayerGradCam mass at a coarse last convolution under-measures it, so the
    mass gives ``attention_scale`` and the crop instead), the crop comes from where the mass lies,
    the frame window from per-frame IntegratedGradients, and class weights
    from per-class recall (or, when the model collapsed onto one class, from
    the labelled operational class shares over the reference shares). Colour
    (saturation, hue shift) and contrast in both directions are ranged the
    same way; faster or slower motion becomes a playback ``speed`` range
    (the reference clips re-timed until their motion matches the operational
    quantiles; see ``_derive_motion``). A sensitivity sweep on the reference clips, whose values
    follow each candidate range (its operational quantiles, see
    :func:`~dlabel_lab.explain.sensitivity.quantile_axes`), then
    marks each range supported (the model loses at least ``fragile_drop``
    accuracy inside it) or not; unsupported ranges are kept in the evidence
    with ``supported=False`` so they can be reviewed, not silently dropped.
    Each evidence records its candidate value (``candidate_*`` quantiles),
    which a reviewer who accepts it applies (see :mod:`dlabel_lab.explain.review`).

    Args:
        store: The payload store.
        model_version: The analysed version.
        analysis: A precomputed :func:`analyse` result.
        sensitivity: Run the sensitivity sweep.
        save: Store the parameters (versioned) in the store.
        min_effect: Effect size that implicates a factor.
        min_shift: Relative quantile shift that implicates a factor.
        fragile_drop: Accuracy loss that counts as fragile.
        p: Probability each augmentation fires.
        require_support: Apply a range only when the sensitivity sweep confirms
            the model is fragile along it; otherwise it is reported in the
            evidence (``supported=False``) with no value. Ignored when
            ``sensitivity`` is off.
        progress: Show progress bars.

    Returns:
        The :class:`~dlabel_lab.TransformationParams`, with ``evidence`` per parameter.

    Example:
        >>> params = derive_transformation_params(store, "shapes-v1")  # doctest: +SKIP
    """
    a = analysis or analyse(store, model_version, progress=progress)
    ops = a.factors
    ref = a.reference if a.reference is not None else ops[a.correct] if a.correct.sum() >= 3 else ops
    ref_source = "training clips" if a.reference is not None else "correctly predicted clips"
    values: dict[str, object] = {}
    evidence: dict[str, Evidence] = {}
    plans: list[dict] = []

    def plan(name: str, factor: str, ops_values: pd.Series, ref_values: pd.Series, *, axis: str, to_param,
             ratio: bool = True) -> None:
        qo, qr = _q(ops_values), _q(ref_values)
        if not qo or not qr or (ratio and qr["q50"] == 0):
            return
        if ratio:
            lo_ratio, hi_ratio = qo["q05"] / qr["q50"], qo["q95"] / qr["q50"]
            spread = max(abs(lo_ratio - 1), abs(hi_ratio - 1))
        else:  # additive factors (hue): differences, not ratios
            lo_ratio, hi_ratio = qo["q05"] - qr["q50"], qo["q95"] - qr["q50"]
            spread = max(abs(lo_ratio), abs(hi_ratio))
        d, pval = _effect(a.implicated_factors, factor)
        r10, r90 = np.nanquantile(ref_values.to_numpy(dtype=float), [0.1, 0.9])
        outside = qo["q50"] < r10 or qo["q50"] > r90
        shifted = spread > min_shift and outside
        implicated = d is not None and abs(d) >= min_effect and (pval is None or pval < 0.2)
        lo, hi = to_param(lo_ratio, hi_ratio, qo, qr)
        plans.append(dict(name=name, factor=factor, qo=qo, qr=qr, d=d, shifted=shifted, implicated=implicated,
                          lo=float(lo), hi=float(hi), axis=axis))

    plan("brightness", "brightness", ops["brightness"], ref["brightness"], axis="brightness",
         to_param=lambda lo, hi, qo, qr: (min(lo, 1.0), max(hi, 1.0)))
    cv_ops = ops["contrast"] / ops["brightness"].clip(lower=1e-3)
    cv_ref = ref["contrast"] / ref["brightness"].clip(lower=1e-3)
    # both directions: a flatter and a harsher operational contrast each widen the range on their side
    plan("contrast", "contrast", cv_ops, cv_ref, axis="contrast",
         to_param=lambda lo, hi, qo, qr: (min(lo, 1.0), max(hi, 1.0)))
    if "saturation" in ops and "saturation" in ref:
        plan("saturation", "saturation", ops["saturation"], ref["saturation"], axis="saturation",
             to_param=lambda lo, hi, qo, qr: (min(lo, 1.0), min(5.0, max(hi, 1.0))))
    if "hue" in ops and "hue" in ref:
        plan("hue", "hue", ops["hue"], ref["hue"], axis="hue", ratio=False,
             to_param=lambda lo, hi, qo, qr: (max(-0.5, min(lo, 0.0)), min(0.5, max(hi, 0.0))))
    if "object_scale" in ops and "object_scale" in ref:
        plan("scale", "object_scale", ops["object_scale"], ref["object_scale"], axis="scale",
             to_param=lambda lo, hi, qo, qr: (max(0.3, min(lo, 1.0)), min(2.0, max(hi, 1.0))))
    plan("noise", "noise", ops["noise"], ref["noise"], axis="noise",
         to_param=lambda lo, hi, qo, qr: (0.0, min(1.0, max(0.0, qo["q95"] - qr["q50"]) * 2.0)))
    if ops["blur"].median() > ref["blur"].median():  # only blurrier operational clips call for blur
        plan("blur", "blur", ops["blur"], ref["blur"], axis="blur",
             to_param=lambda lo, hi, qo, qr: (0.1, float(np.clip(3.0 * (qo["q95"] - qr["q50"]), 0.2, 2.0))))
    sweep = None
    if sensitivity:
        # the sweep follows the operational quantiles of every candidate, not a fixed grid
        ranges = {pl["axis"]: (pl["lo"], pl["hi"]) for pl in plans if pl["shifted"] or pl["implicated"]}
        sweep = _reference_sweep(store, a, model_version, ranges)
    for pl in plans:
        name, factor, qo, qr, lo, hi = pl["name"], pl["factor"], pl["qo"], pl["qr"], pl["lo"], pl["hi"]
        shifted, implicated = pl["shifted"], pl["implicated"]
        identity = IDENTITY[pl["axis"]]
        fragile = _fragile(sweep, pl["axis"], lo, hi, identity, fragile_drop)
        note = (f"operational {factor} q05-q95 {qo['q05']:.3g}-{qo['q95']:.3g} vs {ref_source} median "
                f"{qr['q50']:.3g}; range {lo:.3g}-{hi:.3g}")
        if not (shifted or implicated):
            note += "; within the reference range and not implicated: no augmentation"
        quantiles = {**{f"ops_{k}": v for k, v in qo.items()}, **{f"ref_{k}": v for k, v in qr.items()},
                     **_candidate((round(lo, 4), round(hi, 4)))}  # what accepting it in a review applies
        if sweep is not None and pl["axis"] in set(sweep["axis"]):
            s_ax = sweep[sweep["axis"] == pl["axis"]]
            quantiles.update({f"sweep_acc@{v:.3g}": float(acc) for v, acc in zip(s_ax["value"], s_ax["accuracy"],
                                                                                  strict=True)})
        evidence[name] = Evidence(source="factor-shift",
                                  neurons=_neurons_for(a.functions, factor), factor=factor, effect_size=pl["d"],
                                  quantiles=quantiles, supported=bool(fragile), note=note if fragile is not None
                                  else note + "; no sensitivity check")
        if require_support and sweep is not None and not fragile and (shifted or implicated):
            note += "; the model is not fragile inside this range: reported, not applied"
            evidence[name] = replace(evidence[name], note=note)
        elif shifted or implicated:
            values[name] = (round(lo, 4), round(hi, 4))
    _derive_motion(store, a, model_version, values, evidence, sensitivity=sensitivity,
                   require_support=require_support, fragile_drop=fragile_drop, progress=progress)
    _derive_crop(a, values, evidence)
    _derive_window(a, values, evidence)
    _derive_class_weights(a, values, evidence)
    params = TransformationParams(**values, p=p, evidence=evidence)
    if save:
        store.save_params(params.to_dict(), model_version=model_version, name=f"{model_version}-params")
    return params


#: Speeds the re-timing sweep tries (whole numbers above 1 avoided: they alias, see ``speed_indices``).
SPEED_GRID = (0.5, 0.7, 1.0, 1.3, 1.7, 2.2, 2.7, 3.3, 3.9)


def _pooled_motion(x01: torch.Tensor) -> np.ndarray:
    """Motion energy per clip ``(N, C, T, H, W)`` on 0..1: mean absolute frame difference of block-averaged grey.

    Averaging blocks of an eighth of the frame first, then counting only the
    differences above three robust deviations of the clip's median cell
    difference, keeps pixel noise (which also changes from frame to frame)
    from reading as motion.
    """
    w = torch.tensor([0.299, 0.587, 0.114])[: x01.shape[1]]
    grey = (x01 * (w / w.sum()).view(1, -1, 1, 1, 1)).sum(1)
    k = max(1, min(grey.shape[-2:]) // 8)
    pooled = torch.nn.functional.avg_pool2d(grey, k) if k > 1 else grey
    if pooled.shape[1] < 2:
        return np.zeros(len(x01))
    d = pooled.diff(dim=1).abs().flatten(1)
    # moving cells are few; the median cell difference is the clip's noise floor
    floor = 3.0 * 1.4826 * d.median(dim=1, keepdim=True).values
    return (d - floor).clamp(min=0).mean(dim=1).numpy()


def _speed_sweep(store, a: Analysis, model_version: str, *, with_accuracy: bool, limit: int = 48,
                 progress: bool = False) -> pd.DataFrame | None:
    """Motion and accuracy of the reference clips re-timed at each of :data:`SPEED_GRID` (``None`` without them)."""
    from ..train.transforms import speed_indices

    if store is None:
        return None
    model = load_version(store, model_version)
    spec = model.spec
    if spec.sampling != "uniform" or spec.indices is not None or not spec.frames or spec.frames < 2:
        return None
    rows = [r for r in lineage_training_rows(store, model_version, limit=limit) if r["label"] in model.classes]
    if len(rows) < 4:
        return None
    dense_spec = replace(spec, frames=spec.frames * 4)
    x, _ = _decode([r["path"] for r in rows], [dense_spec] * len(rows), progress, "re-timing reference clips")
    y = _targets([r["label"] for r in rows], model.classes)
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1, 1)
    x01 = (x * std + mean).clamp(0, 1)
    out = []
    was_training = model.training
    model.eval()
    try:
        for speed in SPEED_GRID:
            # three start points per clip, so that one reflection pattern does not stand for the speed
            clips = [x01[:, :, speed_indices(x.shape[2], spec.frames, speed, start=st)] for st in (0.0, 0.37, 0.73)]
            xs = torch.cat(clips)
            row = {"axis": "speed", "value": speed, "motion": float(np.median(_pooled_motion(xs))), "n": len(xs)}
            if with_accuracy:
                with torch.no_grad():
                    xn = (xs - mean) / std
                    pred = torch.cat([model(xn[i: i + 64]).argmax(-1) for i in range(0, len(xn), 64)])
                row["accuracy"] = float((pred == y.repeat(3)).float().mean())
            out.append(row)
    finally:
        model.train(was_training)
    return pd.DataFrame(out)


def _derive_motion(store, a: Analysis, model_version: str, values: dict, evidence: dict, *, sensitivity: bool,
                   require_support: bool, fragile_drop: float, progress: bool) -> None:
    """Faster or slower operational motion becomes a playback speed range (re-timing of training clips).

    Motion is measured on block-averaged frames (pixel noise is not motion),
    on the operational clips as the model read them and on the reference clips
    re-timed at each speed of :data:`SPEED_GRID`; the operational 5-95 %
    quantiles are mapped through that speed -> motion curve to a speed range,
    and the model's accuracy on the re-timed reference clips says whether it is
    fragile inside it.
    """
    if a.frames is None or len(a.frames) == 0 or a.frames.shape[1] < 2:
        return
    ops_motion = _pooled_motion(torch.from_numpy(np.ascontiguousarray(a.frames)).permute(0, 4, 1, 2, 3).float()
                                / 255.0)
    sweep = _speed_sweep(store, a, model_version, with_accuracy=sensitivity, progress=progress)
    qo = _q(pd.Series(ops_motion))
    if sweep is None or not qo:
        if qo:
            evidence["speed"] = Evidence(source="factor-shift", factor="motion", supported=False,
                                         quantiles={f"ops_{k}": v for k, v in qo.items()},
                                         note="no reference clips to re-time (the lineage records no training "
                                              "manifest, or the spec does not sample frames uniformly): motion "
                                              "measured, speed not derived")
        return
    curve = sweep["motion"].to_numpy(dtype=float)
    speeds = sweep["value"].to_numpy(dtype=float)
    m1 = float(curve[list(speeds).index(1.0)])
    if m1 <= 0:
        return
    envelope = np.maximum.accumulate(curve)
    span = envelope[-1] - envelope[0]
    tol = 1e-6 * max(span, 1e-12)

    def speed_of(m: float) -> float:
        keep = np.concatenate([[True], np.diff(envelope) > tol])
        return float(np.interp(m, envelope[keep], speeds[keep]))

    ratio = qo["q50"] / m1
    lo, hi = min(1.0, speed_of(qo["q05"])), max(1.0, speed_of(qo["q95"]))
    quantiles = {**{f"ops_{k}": v for k, v in qo.items()}, "ref_motion@1": m1,
                 **{f"motion@{v:.3g}": float(m) for v, m in zip(speeds, curve, strict=True)},
                 **_candidate((round(lo, 4), round(hi, 4)))}
    if "accuracy" in sweep:
        quantiles.update({f"sweep_acc@{v:.3g}": float(acc) for v, acc in zip(speeds, sweep["accuracy"], strict=True)})
    note = (f"operational motion q05-q95 {qo['q05']:.3g}-{qo['q95']:.3g} (median {ratio:.2f}x the reference clips'); "
            f"re-timing the reference clips matches it at speeds {lo:.2g}-{hi:.2g}")
    if abs(ratio - 1) <= 0.25 or hi - lo < 0.2:
        evidence["speed"] = Evidence(source="factor-shift", factor="motion", effect_size=float(ratio), supported=False,
                                     quantiles=quantiles, note=note + "; within the reference motion: no re-timing")
        return
    fragile = _fragile(sweep, "speed", lo, hi, 1.0, fragile_drop) if "accuracy" in sweep else None
    if require_support and fragile is not None and not fragile:
        note += "; the model is not fragile inside this range: reported, not applied"
    else:
        values["speed"] = (round(lo, 4), round(hi, 4))
    evidence["speed"] = Evidence(source="factor-shift", factor="motion", effect_size=float(ratio),
                                 supported=bool(fragile), quantiles=quantiles,
                                 note=note if fragile is not None else note + "; no sensitivity check")


def _reference_sweep(store, a: Analysis, model_version: str,
                     ranges: dict[str, tuple[float, float]] | None = None) -> pd.DataFrame | None:
    model = load_version(store, model_version)
    if a.reference_x is not None:
        x, y = a.reference_x, a.reference_y
    else:
        keep = np.flatnonzero(a.correct)
        if len(keep) < 3:
            return None
        mean = torch.tensor(model.spec.mean).view(1, 3, 1, 1, 1)
        std = torch.tensor(model.spec.std).view(1, 3, 1, 1, 1)
        x = (torch.from_numpy(a.frames[keep]).permute(0, 4, 1, 2, 3).float() / 255.0 - mean) / std
        y = _targets([a.labels[i] for i in keep], model.classes)
    if ranges is None:
        return sensitivity_sweep(model, x, y)
    if not ranges:
        return None
    return sensitivity_sweep(model, x, y, axes=quantile_axes(ranges))


def _derive_crop(a: Analysis, values: dict, evidence: dict) -> None:
    f = a.factors
    if not {"bbox_top", "bbox_left", "bbox_h", "bbox_w"} <= set(f.columns):
        return
    top, left = f["bbox_top"].quantile(0.05), f["bbox_left"].quantile(0.05)
    bottom = (f["bbox_top"] + f["bbox_h"]).quantile(0.95)
    right = (f["bbox_left"] + f["bbox_w"]).quantile(0.95)
    if not np.isfinite([top, left, bottom, right]).all():
        return
    area = (bottom - top) * (right - left)
    q = {"top": float(top), "left": float(left), "bottom": float(bottom), "right": float(right), "area": float(area),
         **_candidate((round(float(top), 4), round(float(left), 4), round(float(bottom - top), 4),
                       round(float(right - left), 4)))}
    if area < 0.6:
        values["crop"] = (round(float(top), 4), round(float(left), 4), round(float(bottom - top), 4),
                          round(float(right - left), 4))
        evidence["crop"] = Evidence(source="attribution", factor="position", quantiles=q, supported=True,
                                    note=f"90 % of LayerGradCam mass lies in {area:.0%} of the frame")
    else:
        evidence["crop"] = Evidence(source="attribution", factor="position", quantiles=q, supported=False,
                                    note=f"attribution mass spreads over {area:.0%} of the frame: no crop")


def _derive_window(a: Analysis, values: dict, evidence: dict) -> None:
    prof = np.nan_to_num(a.frame_profile.mean(axis=0))
    t = len(prof)
    if t < 4 or prof.sum() <= 0:
        return
    prof = prof / prof.sum()
    best = (0, t)
    for length in range(1, t + 1):
        sums = np.convolve(prof, np.ones(length), mode="valid")
        j = int(np.argmax(sums))
        if sums[j] >= 0.9:
            best = (j, j + length)
            break
    frac = (best[1] - best[0]) / t
    q = {**{f"frame_{i}": float(v) for i, v in enumerate(prof)},
         **_candidate((round(best[0] / t, 4), round(best[1] / t, 4)))}
    if frac <= 0.75:
        values["frame_window"] = (round(best[0] / t, 4), round(best[1] / t, 4))
        evidence["frame_window"] = Evidence(source="attribution", factor="time", quantiles=q, supported=True,
                                            note=f"90 % of per-frame attribution in frames {best[0]}-{best[1] - 1}")
    else:
        evidence["frame_window"] = Evidence(source="attribution", factor="time", quantiles=q, supported=False,
                                            note=f"evidence spreads over {frac:.0%} of the frames: no window")


def _derive_class_weights(a: Analysis, values: dict, evidence: dict) -> None:
    labels = np.array(a.labels)
    recalls = {c: float(np.mean(a.correct[labels == c])) for c in a.classes if (labels == c).any()}
    if len(recalls) < 2:
        return
    shares = pd.Series(a.predicted).value_counts(normalize=True)
    collapsed_share = min(0.9, max(0.5, 1.8 / max(len(a.classes), 2)))  # 0.9 for 2 classes, 0.6 for 3
    if shares.iloc[0] >= collapsed_share:
        # A model that answers one class for most clips fails globally (drift), not per class:
        # its recall says nothing about which classes are hard, so weights would only skew the child.
        # What the labels say still holds: reweight towards the labelled operational class distribution.
        ops_share = pd.Series(labels).value_counts(normalize=True)
        if a.reference_y is not None and len(a.reference_y):
            ref_idx = pd.Series(np.asarray(a.reference_y)).value_counts(normalize=True)
            ref_share = pd.Series({a.classes[int(k)]: float(v) for k, v in ref_idx.items()})
        else:
            ref_share = pd.Series({c: 1.0 / len(a.classes) for c in a.classes})
        raw = {c: float(ops_share.get(c, 0.0)) / max(float(ref_share.get(c, 0.0)), 1e-6) for c in recalls}
        mean = float(np.mean(list(raw.values()))) or 1.0
        weights = {c: round(float(np.clip(v / mean, 0.25, 4.0)), 4) for c, v in raw.items()}
        spread = max(weights.values()) / max(min(weights.values()), 1e-6)
        q = {**{f"recall_{c}": r for c, r in recalls.items()}, **{f"ops_share_{c}": float(ops_share.get(c, 0.0))
                                                                  for c in recalls}, **_candidate(weights)}
        note = (f"{shares.index[0]!r} is predicted for {shares.iloc[0]:.0%} of clips: a global failure, not a "
                "per-class one, so recall says nothing; weights follow the labelled operational class shares "
                "over the reference shares")
        if spread >= 1.25:
            values["class_weights"] = weights
        else:
            note += f" (spread {spread:.2f}x < 1.25x: the classes are balanced alike, no class weights)"
        evidence["class_weights"] = Evidence(source="label-distribution", factor="class", quantiles=q,
                                             effect_size=float(spread), supported=spread >= 1.25, note=note)
        return
    raw = {c: 1.0 - r + 0.25 for c, r in recalls.items()}
    mean = float(np.mean(list(raw.values())))
    weights = {c: round(float(np.clip(v / mean, 0.5, 2.0)), 4) for c, v in raw.items()}
    spread = max(weights.values()) / min(weights.values())
    ev = Evidence(source="per-class-error", factor="class",
                  quantiles={**{f"recall_{c}": r for c, r in recalls.items()}, **_candidate(weights)},
                  effect_size=float(max(recalls.values()) - min(recalls.values())), supported=spread >= 1.25,
                  note="weights from per-class recall on the operational clips")
    evidence["class_weights"] = ev
    if spread >= 1.25:
        values["class_weights"] = weights
