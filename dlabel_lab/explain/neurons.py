"""From attributions to neuron functions, clip tags and group comparisons.

Pure functions on arrays and data frames (no model, no store):

- :func:`attribution_geometry` summarises attribution maps ``(N, H, W)`` as
  spatial factors (centre, spread, object scale, box);
- :func:`neuron_functions` says what each neuron responds to: a class (by
  mean activation) and the clip factors its activation follows (Spearman);
- :func:`tag_clips` labels every clip by the neuron functions it activates
  and by extreme factor values;
- :func:`compare_groups` contrasts correct and wrong predictions, column by
  column, which implicates neurons and factors.

Example:
    >>> import numpy as np, pandas as pd
    >>> acts = np.arange(8.0).reshape(4, 2)
    >>> fn = neuron_functions(acts, pd.DataFrame({"brightness": [0.1, 0.2, 0.3, 0.4]}))
    >>> fn.loc[0, "function"]
    'brightness+ (1.00)'
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu, rankdata

from ..errors import ConfigError, UnknownLabel

__all__ = [
    "DIRECT_TAGS",
    "FACTOR_TAGS",
    "attribution_geometry",
    "compare_groups",
    "neuron_functions",
    "neuron_functions_long",
    "tag_clips",
]

#: Tag names for the low and the high end of each factor; other factors get
#: ``"low-<factor>"`` / ``"high-<factor>"``.
FACTOR_TAGS: dict[str, tuple[str, str]] = {
    "brightness": ("dark", "bright"),
    "contrast": ("low-contrast", "high-contrast"),
    "motion": ("static", "fast-motion"),
    "blur": ("sharp", "blurry"),
    "object_scale": ("small-object", "large-object"),
    "object_scale_50": ("small-object", "large-object"),
    "spread": ("compact", "spread-out"),
    "centre_x": ("left", "right"),
    "centre_y": ("top", "bottom"),
    "off_centre": ("centred", "off-centre"),
}

#: Factors tagged directly from their population quantiles: (tag low end, tag high end).
DIRECT_TAGS: dict[str, tuple[bool, bool]] = {
    "brightness": (True, True),
    "contrast": (True, False),
    "blur": (False, True),
    "motion": (True, True),
    "object_scale": (True, True),
    "off_centre": (False, True),
}


# --- helpers ----------------------------------------------------------------------
def _as_2d(values, name: str) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ConfigError(f"{name} must be a 2-D array (N clips, D neurons) with N >= 1, got shape {a.shape}")
    return a


def _constant(v: np.ndarray) -> bool:
    """True when a column does not vary beyond float32 noise (range within 1e-5 of its magnitude)."""
    if v.size == 0:
        return True
    return float(np.ptp(v)) <= 1e-5 * max(float(np.abs(v).max()), 1e-300)


def _tail_rank(v: np.ndarray) -> np.ndarray:
    """Empirical rank on 0..1 (average ties); 0.5 for a single value."""
    return (rankdata(v) - 1.0) / (len(v) - 1) if len(v) > 1 else np.full(len(v), 0.5)


def _tag_names(factor: str) -> tuple[str, str]:
    return FACTOR_TAGS.get(factor, (f"low-{factor}", f"high-{factor}"))


def _numeric_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]


def _check_quantile(q: float) -> float:
    if not 0.5 < q < 1.0:
        raise ConfigError(f"quantile must be in (0.5, 1), e.g. 0.75, got {q!r}")
    return float(q)


# --- geometry ---------------------------------------------------------------------
def attribution_geometry(maps, *, mass: float = 0.9) -> pd.DataFrame:
    """Where the attribution mass of each map sits, as fractions of the frame.

    Negative values are clipped to zero and each map is normalised to sum 1.
    Pixel ``(i, j)`` sits at ``((i + 0.5) / H, (j + 0.5) / W)``. The *core*
    holding a fraction ``f`` of the mass is every pixel at least as heavy as
    the lightest pixel needed when pixels are added heaviest first (ties are
    all in, so the rule is symmetric and deterministic).

    Args:
        maps: Non-negative maps ``(N, H, W)`` (tensor or array); sum a
            ``(N, T, H, W)`` map over time first.
        mass: The fraction of mass for ``object_scale`` and the box.

    Returns:
        One row per map with ``centre_y``, ``centre_x`` (mass-weighted, 0..1),
        ``off_centre`` (distance of the centre from the frame centre, 0..1),
        ``spread`` (mass-weighted RMS radius), ``object_scale_50`` and
        ``object_scale`` (square root of the area fraction of the 50% and
        ``mass`` cores) and ``bbox_top``, ``bbox_left``, ``bbox_h``,
        ``bbox_w`` (box around the ``mass`` core). All NaN for an all-zero map.

    Example:
        >>> m = np.zeros((1, 4, 4)); m[0, :2, :2] = 1
        >>> attribution_geometry(m)[["centre_y", "centre_x", "object_scale"]].round(2).values.tolist()
        [[0.25, 0.25, 0.5]]
    """
    if hasattr(maps, "detach"):
        maps = maps.detach().cpu().numpy()
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim != 3:
        raise ConfigError(f"maps must be shaped (N, H, W), got {m.shape}; for (N, T, H, W) maps pass maps.sum(1)")
    if not 0.0 < mass <= 1.0:
        raise ConfigError(f"mass must be in (0, 1], got {mass!r}")
    n, h, w = m.shape
    m = np.clip(np.nan_to_num(m, nan=0.0), 0.0, None)
    total = m.sum((1, 2))
    ok = total > 0
    p = m / np.where(ok, total, 1.0)[:, None, None]
    ys, xs = (np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w
    cy = (p.sum(2) * ys).sum(1)
    cx = (p.sum(1) * xs).sum(1)
    r2 = (ys[None, :, None] - cy[:, None, None]) ** 2 + (xs[None, None, :] - cx[:, None, None]) ** 2
    spread = np.sqrt((p * r2).sum((1, 2)))
    flat = p.reshape(n, -1)
    heavy = -np.sort(-flat, axis=1)
    cum = np.cumsum(heavy, axis=1)

    def core(f: float) -> np.ndarray:
        k = np.minimum((cum < f - 1e-9).sum(1), h * w - 1)
        return (flat >= heavy[np.arange(n), k][:, None]).reshape(n, h, w)

    core50, core_m = core(0.5), core(mass)
    rows, cols = core_m.any(2), core_m.any(1)
    top, bottom = rows.argmax(1), h - rows[:, ::-1].argmax(1)
    left, right = cols.argmax(1), w - cols[:, ::-1].argmax(1)
    out = pd.DataFrame({
        "centre_y": cy,
        "centre_x": cx,
        "off_centre": np.hypot(cx - 0.5, cy - 0.5) / math.sqrt(0.5),
        "spread": spread,
        "object_scale_50": np.sqrt(core50.mean((1, 2))),
        "object_scale": np.sqrt(core_m.mean((1, 2))),
        "bbox_top": top / h,
        "bbox_left": left / w,
        "bbox_h": (bottom - top) / h,
        "bbox_w": (right - left) / w,
    })
    out.loc[~ok, :] = np.nan
    return out


# --- neuron functions -------------------------------------------------------------
def _spearman(acts: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Spearman correlation of each activation column with ``v`` (0 where either is constant)."""
    fin = np.isfinite(v)
    a, v = acts[fin], v[fin]
    out = np.zeros(acts.shape[1])
    if len(v) < 3 or _constant(v):
        return out
    rv = rankdata(v) - (len(v) + 1) / 2.0
    live = np.array([not _constant(a[:, j]) for j in range(a.shape[1])], dtype=bool)
    if not live.any():
        return out
    ra = rankdata(a[:, live], axis=0) - (len(v) + 1) / 2.0
    num = (ra * rv[:, None]).sum(0)
    den = np.sqrt((ra**2).sum(0) * (rv**2).sum())
    out[live] = np.clip(num / den, -1.0, 1.0)
    return out


def neuron_functions(
    activations,
    factors: pd.DataFrame | None = None,
    labels: Sequence | None = None,
    *,
    classes: Sequence[str] | None = None,
    layer_name: str = "embedding",
    min_abs_corr: float = 0.3,
    min_selectivity: float = 0.5,
) -> pd.DataFrame:
    """What each neuron responds to: a class and the clip factors it follows.

    The class of a neuron is the class whose clips activate it most (mean
    activation); its selectivity is ``(mean in class - mean in other
    labelled clips) / std over all clips``. Each numeric column of
    ``factors`` gets the Spearman correlation with the activation over the
    clips where the factor is finite; a (near-)constant factor or neuron
    (range within 1e-5 of its magnitude: float32 noise) correlates 0.

    Args:
        activations: ``(N, D)`` activations (array or tensor), e.g. from
            :func:`~dlabel_lab.attribution.activations`.
        factors: ``N`` rows of numeric clip factors (brightness, contrast,
            motion, blur, object_scale, centre_x, ...); other columns are ignored.
        labels: ``N`` class names (``None`` for unlabelled clips), or ``None``.
        classes: All class names, in order; defaults to the sorted labels.
        layer_name: Written to the ``layer`` column.
        min_abs_corr: Smallest ``|corr|`` that makes a factor part of the function.
        min_selectivity: Smallest selectivity that makes the class part of the function.

    Returns:
        One row per neuron: ``layer``, ``neuron``, ``class_label``,
        ``class_selectivity``, ``mean_activation``, ``std_activation``,
        ``corr_<factor>`` per factor, ``top_factor``, ``top_corr`` (the
        largest ``|corr|``, first column on ties), ``evidence`` (class or
        None), ``function_factor`` (``top_factor`` or None) and ``function``,
        e.g. ``"evidence:circle; brightness+ (0.82)"`` or ``"unspecific"``.

    Example:
        >>> fn = neuron_functions(acts, factors, labels, classes=["circle", "square"])  # doctest: +SKIP
        >>> fn[["neuron", "function"]].head(2)  # doctest: +SKIP
    """
    a = _as_2d(activations, "activations")
    n, d = a.shape
    if n < 3:
        raise ConfigError(f"neuron_functions needs at least 3 clips to correlate, got {n}")
    std = a.std(0)
    const = np.array([_constant(a[:, j]) for j in range(d)], dtype=bool)
    out = pd.DataFrame({"layer": layer_name, "neuron": np.arange(d), "class_label": None,
                        "class_selectivity": np.nan, "mean_activation": a.mean(0), "std_activation": std})
    out["class_label"] = out["class_label"].astype(object)

    if labels is not None:
        lab = [None if x is None or (isinstance(x, float) and math.isnan(x)) else str(x) for x in labels]
        if len(lab) != n:
            raise ConfigError(f"labels has {len(lab)} entries for {n} clips; pass one label (or None) per clip")
        known = list(classes) if classes is not None else sorted({x for x in lab if x is not None})
        unknown = sorted({x for x in lab if x is not None} - set(known))
        if unknown:
            raise UnknownLabel(f"labels {unknown} are not in classes {known}; add them to classes or fix the labels")
        lab_arr = np.array(lab, dtype=object)
        present = [c for c in known if (lab_arr == c).any()]
        if present:
            means = np.stack([a[lab_arr == c].mean(0) for c in present])
            best = means.argmax(0)
            labelled = np.array([x is not None for x in lab], dtype=bool)
            for j in np.flatnonzero(~const):
                c = present[best[j]]
                inside, other = lab_arr == c, labelled & (lab_arr != c)
                out.at[j, "class_label"] = c
                if other.any():
                    sel = (a[inside, j].mean() - a[other, j].mean()) / std[j]
                    out.at[j, "class_selectivity"] = float(sel)
            out.loc[const, "class_selectivity"] = 0.0

    names = _numeric_columns(factors) if factors is not None else []
    if factors is not None and len(factors) != n:
        raise ConfigError(f"factors has {len(factors)} rows for {n} clips; pass one row per clip, in the same order")
    corr = np.zeros((d, len(names)))
    for k, f in enumerate(names):
        corr[:, k] = _spearman(a, factors[f].to_numpy(dtype=np.float64))
        out[f"corr_{f}"] = corr[:, k]
    if names:
        top = np.abs(corr).argmax(1)
        out["top_factor"] = [names[t] for t in top]
        out["top_corr"] = corr[np.arange(d), top]
    else:
        out["top_factor"], out["top_corr"] = None, np.nan
    sel_ok = out["class_selectivity"].fillna(-np.inf) >= min_selectivity
    out["evidence"] = pd.Series([c if ok and isinstance(c, str) else None for c, ok in
                                 zip(out["class_label"], sel_ok, strict=True)], dtype=object)
    corr_ok = (out["top_corr"].abs() >= min_abs_corr) & (out["top_corr"].abs() > 0)
    out["function_factor"] = pd.Series([f if ok else None for f, ok in zip(out["top_factor"], corr_ok, strict=True)],
                                       dtype=object)

    def describe(row) -> str:
        parts = []
        if row.evidence is not None:
            parts.append(f"evidence:{row.evidence}")
        if row.function_factor is not None:
            sign = "+" if row.top_corr > 0 else "-"
            parts.append(f"{row.function_factor}{sign} ({abs(row.top_corr):.2f})")
        return "; ".join(parts) or "unspecific"

    out["function"] = [describe(r) for r in out.itertuples()]
    return out


def neuron_functions_long(functions: pd.DataFrame) -> pd.DataFrame:
    """The ``corr_<factor>`` columns of :func:`neuron_functions` as tidy rows.

    Returns:
        Columns ``layer``, ``neuron``, ``class_label``, ``class_selectivity``,
        ``function``, ``factor``, ``corr``; one row per neuron and factor,
        ordered by neuron then factor column order (the shape the store's
        ``log_neuron_functions`` takes).

    Example:
        >>> neuron_functions_long(fn).columns.tolist()[-2:]  # doctest: +SKIP
        ['factor', 'corr']
    """
    corr_cols = [c for c in functions.columns if str(c).startswith("corr_")]
    ids = [c for c in ("layer", "neuron", "class_label", "class_selectivity", "function") if c in functions.columns]
    if "neuron" not in ids:
        raise ConfigError("functions needs a 'neuron' column; pass the frame from neuron_functions()")
    long = functions[ids + corr_cols].melt(id_vars=ids, var_name="factor", value_name="corr")
    long["factor"] = long["factor"].str.slice(len("corr_"))
    order = {c[len("corr_"):]: i for i, c in enumerate(corr_cols)}
    long["_o"] = long["factor"].map(order)
    return long.sort_values(["neuron", "_o"], kind="mergesort").drop(columns="_o").reset_index(drop=True)


# --- clip tags --------------------------------------------------------------------
def tag_clips(
    activations,
    functions: pd.DataFrame,
    *,
    factors: pd.DataFrame | None = None,
    ids: Sequence | None = None,
    quantile: float = 0.75,
) -> pd.DataFrame:
    """Tag every clip by the neuron functions it activates and its extreme factors.

    The rule, with ``q = quantile`` and quantiles interpolated linearly over
    the clips given (strict inequalities, so a constant column tags nothing):

    1. **Evidence.** For a neuron whose ``evidence`` is class ``c``, a clip
       with activation above the neuron's ``q`` quantile gets ``evidence:c``.
    2. **Neuron factors.** For a neuron whose ``function_factor`` is ``f``
       with correlation sign ``s``: activation above its ``q`` quantile tags
       the high end of ``f`` if ``s > 0`` (low end if ``s < 0``); below its
       ``1 - q`` quantile tags the other end. End names come from
       :data:`FACTOR_TAGS` (``brightness`` → ``dark`` / ``bright``).
    3. **Direct factors** (``factors`` given). For each factor in
       :data:`DIRECT_TAGS`, a clip below the population's ``1 - q`` quantile
       gets the low tag, above the ``q`` quantile the high tag (only the ends
       listed: ``dark``/``bright``, ``low-contrast``, ``blurry``,
       ``static``/``fast-motion``, ``small-object``/``large-object``,
       ``off-centre``). ``off_centre`` is derived from ``centre_x`` and
       ``centre_y`` when absent.

    A score is the clip's empirical rank (0..1) towards the tagged end of the
    activation or factor. One row per clip and tag: the highest score, and
    ``source`` listing every reason (``neuron:<j>``, ``factor:<f>``) sorted.

    Args:
        activations: ``(N, D)`` activations, the ones ``functions`` was built from.
        functions: The frame from :func:`neuron_functions`.
        factors: ``N`` rows of clip factors; its ``scoring_id`` column names the clips.
        ids: ``N`` clip ids (overrides ``factors["scoring_id"]``).
        quantile: ``q`` above, in (0.5, 1).

    Returns:
        Columns ``scoring_id`` (or ``clip_index``, the row position, without ids),
        ``tag``, ``score``, ``source``; ordered by clip, then tag.

    Example:
        >>> tags = tag_clips(acts, fn, factors=factors)  # doctest: +SKIP
        >>> tags[tags.tag == "dark"].scoring_id.tolist()  # doctest: +SKIP
    """
    a = _as_2d(activations, "activations")
    n, d = a.shape
    q = _check_quantile(quantile)
    missing = {"neuron", "evidence", "function_factor", "top_corr"} - set(functions.columns)
    if missing:
        raise ConfigError(f"functions lacks columns {sorted(missing)}; pass the frame from neuron_functions()")
    if factors is not None and len(factors) != n:
        raise ConfigError(f"factors has {len(factors)} rows for {n} clips; pass one row per clip, in the same order")
    id_col, id_values = "clip_index", list(range(n))
    if ids is not None:
        id_col, id_values = "scoring_id", list(ids)
    elif factors is not None and "scoring_id" in factors.columns:
        id_col, id_values = "scoring_id", factors["scoring_id"].tolist()
    if len(id_values) != n:
        raise ConfigError(f"ids has {len(id_values)} entries for {n} clips; pass one id per clip")

    rows: list[tuple[int, str, float, str]] = []

    def add(v: np.ndarray, pos: np.ndarray, low: str | None, high: str | None, source: str) -> None:
        if _constant(v):
            return
        lo, hi, r = np.quantile(v, 1 - q), np.quantile(v, q), _tail_rank(v)
        if high is not None:
            rows.extend((int(pos[i]), high, float(r[i]), source) for i in np.flatnonzero(v > hi))
        if low is not None:
            rows.extend((int(pos[i]), low, float(1 - r[i]), source) for i in np.flatnonzero(v < lo))

    everyone = np.arange(n)
    for f in functions.sort_values("neuron", kind="mergesort").itertuples():
        j = int(f.neuron)
        if not 0 <= j < d:
            raise ConfigError(f"functions names neuron {j} but activations has {d} columns; use matching inputs")
        if f.evidence is not None and not (isinstance(f.evidence, float) and math.isnan(f.evidence)):
            add(a[:, j], everyone, None, f"evidence:{f.evidence}", f"neuron:{j}")
        if isinstance(f.function_factor, str):
            low, high = _tag_names(f.function_factor)
            if f.top_corr < 0:
                low, high = high, low
            add(a[:, j], everyone, low, high, f"neuron:{j}")

    if factors is not None:
        table = factors
        if "off_centre" not in table.columns and {"centre_x", "centre_y"} <= set(table.columns):
            table = table.assign(off_centre=np.hypot(table["centre_x"] - 0.5, table["centre_y"] - 0.5)
                                 / math.sqrt(0.5))
        for f, (do_low, do_high) in DIRECT_TAGS.items():
            if f not in table.columns:
                continue
            v = pd.to_numeric(table[f], errors="coerce").to_numpy(dtype=np.float64)
            fin = np.flatnonzero(np.isfinite(v))
            low, high = _tag_names(f)
            add(v[fin], fin, low if do_low else None, high if do_high else None, f"factor:{f}")

    if not rows:
        return pd.DataFrame({id_col: pd.Series(dtype=object), "tag": pd.Series(dtype=str),
                             "score": pd.Series(dtype=float), "source": pd.Series(dtype=str)})
    df = pd.DataFrame(rows, columns=["pos", "tag", "score", "source"])
    df = df.groupby(["pos", "tag"], sort=True).agg(
        score=("score", "max"), source=("source", lambda s: ";".join(sorted(set(s))))).reset_index()
    df.insert(0, id_col, [id_values[p] for p in df["pos"]])
    return df.drop(columns="pos")


# --- correct vs wrong ---------------------------------------------------------------
def compare_groups(values, correct) -> pd.DataFrame:
    """Contrast wrong and correct predictions, one column at a time.

    Args:
        values: ``N`` rows of factors (a DataFrame; numeric columns are used)
            or activations (an ``(N, D)`` array or tensor; columns ``0..D-1``).
        correct: ``N`` booleans, True where the prediction matched the user label.

    Returns:
        One row per column: ``feature``, ``mean_correct``, ``mean_wrong``,
        ``mean_diff`` (wrong - correct), ``cohens_d`` (``mean_diff`` over the pooled
        standard deviation; ±inf when both groups are constant but differ),
        ``p_value`` (two-sided Mann-Whitney U), ``n_correct``, ``n_wrong``;
        sorted by ``|cohens_d|``, largest first, NaN last. Statistics that
        need both groups are NaN when one is empty. NaN values are skipped.

    Example:
        >>> df = pd.DataFrame({"brightness": [0.5, 0.6, 0.1, 0.2], "blur": [0.1, 0.2, 0.2, 0.1]})
        >>> compare_groups(df, [True, True, False, False]).feature.tolist()
        ['brightness', 'blur']
    """
    if isinstance(values, pd.DataFrame):
        table = values[_numeric_columns(values)]
    else:
        table = pd.DataFrame(_as_2d(values, "values"))
    ok = np.asarray(correct)
    if ok.ndim != 1 or len(ok) != len(table):
        raise ConfigError(f"correct must hold one boolean per row ({len(table)}), got shape {ok.shape}")
    if ok.dtype != bool:
        if pd.isna(pd.Series(ok)).any():
            raise ConfigError("correct has missing values; drop clips without a user label before comparing")
        ok = ok.astype(bool)
    rows = []
    for col in table.columns:
        v = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=np.float64)
        fin = np.isfinite(v)
        vc, vw = v[fin & ok], v[fin & ~ok]
        mc = float(vc.mean()) if len(vc) else np.nan
        mw = float(vw.mean()) if len(vw) else np.nan
        diff, d, p = mw - mc, np.nan, np.nan
        if len(vc) and len(vw):
            dof = len(vc) + len(vw) - 2
            if dof > 0:
                pooled = math.sqrt((((vc - mc) ** 2).sum() + ((vw - mw) ** 2).sum()) / dof)
                d = diff / pooled if pooled > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                p = float(mannwhitneyu(vw, vc, alternative="two-sided").pvalue)
        rows.append((col, mc, mw, diff, d, p, len(vc), len(vw)))
    out = pd.DataFrame(rows, columns=["feature", "mean_correct", "mean_wrong", "mean_diff", "cohens_d", "p_value",
                                      "n_correct", "n_wrong"])
    order = out["cohens_d"].abs().sort_values(ascending=False, kind="mergesort", na_position="last").index
    return out.loc[order].reset_index(drop=True)
