"""Performance of a model from matched records: predictions against user scores.

:func:`evaluate` takes the comprehensive data set (``store.matched()`` or a
DataFrame with ``user_label``, ``predicted_label``, ``confidence`` and
optionally ``probabilities``) and returns an :class:`Evaluation`: accuracy,
per-class precision/recall/F1, the confusion matrix, expected calibration
error and slices. Metrics come from scikit-learn and torchmetrics.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"user_label": ["a", "b"], "predicted_label": ["a", "a"], "confidence": [0.9, 0.6]})
    >>> evaluate(df).accuracy
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from .errors import ConfigError

__all__ = ["Evaluation", "evaluate", "compare"]

FORMAT_VERSION = 1
_REQUIRED = ("user_label", "predicted_label")
_LISTLIKE = (list, tuple, np.ndarray, set)


@dataclass
class Evaluation:
    """Performance of predictions against user labels.

    Attributes:
        n: Rows evaluated (with both a user label and a prediction).
        accuracy: Fraction of rows where the prediction equals the user label.
        macro_f1: F1 averaged over the classes that occur as label or prediction.
        ece: Expected calibration error (L1, ``n_bins`` bins), ``None`` without
            probabilities or confidences.
        classes: Class names; rows and columns of ``confusion``.
        per_class: DataFrame indexed by class: precision, recall, f1, support.
        confusion: ``(K, K)`` counts, rows are user labels, columns predictions.
        slices: Column name -> DataFrame indexed by value: n, accuracy, mean_confidence.
        n_bins: Bins used for the calibration error.
        ece_source: ``"probabilities"``, ``"confidence"`` or ``"none"``.
        dropped: Input rows left out for lacking a user label or a prediction.
        conflicts: Byte-identical clips (same ``sha256``) that carry different
            user labels: one row per digest with ``n_copies``, ``labels`` and
            ``scoring_ids``. Empty when the records have no ``sha256`` column
            or no conflict. Such clips make the metrics ambiguous: resolve
            their labels first.

    Example:
        >>> ev = Evaluation.from_dict(ev.to_dict())  # doctest: +SKIP
    """

    n: int
    accuracy: float
    macro_f1: float
    ece: float | None
    classes: list[str]
    per_class: pd.DataFrame
    confusion: np.ndarray
    slices: dict[str, pd.DataFrame] = field(default_factory=dict)
    n_bins: int = 10
    ece_source: str = "none"
    dropped: int = 0
    conflicts: pd.DataFrame = field(default_factory=lambda: _conflicts(pd.DataFrame()))

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (NaN becomes ``None``) to store with a model version."""
        per_class = self.per_class.reset_index().rename(columns={self.per_class.index.name or "index": "class"})
        return _clean(
            {
                "version": FORMAT_VERSION,
                "n": self.n,
                "accuracy": self.accuracy,
                "macro_f1": self.macro_f1,
                "ece": self.ece,
                "ece_source": self.ece_source,
                "n_bins": self.n_bins,
                "dropped": self.dropped,
                "conflicting_labels": self.conflicts.to_dict(orient="records"),
                "classes": list(self.classes),
                "per_class": per_class.to_dict(orient="records"),
                "confusion": np.asarray(self.confusion).tolist(),
                "slices": {
                    col: df.reset_index(names="value").to_dict(orient="records") for col, df in self.slices.items()
                },
            }
        )

    @classmethod
    def from_dict(cls, d: dict) -> Evaluation:
        """Rebuild an :class:`Evaluation` written by :meth:`to_dict`."""
        if d.get("version") != FORMAT_VERSION:
            raise ConfigError(f"evaluation format version {d.get('version')!r} is not {FORMAT_VERSION}")
        per_class = pd.DataFrame(d["per_class"], columns=["class", "precision", "recall", "f1", "support"])
        slices = {
            col: pd.DataFrame(rows, columns=["value", "n", "accuracy", "mean_confidence"]).set_index("value")
            for col, rows in d.get("slices", {}).items()
        }
        for col, df in slices.items():
            df.index.name = col
        return cls(
            n=int(d["n"]),
            accuracy=float(d["accuracy"]),
            macro_f1=float(d["macro_f1"]),
            ece=None if d.get("ece") is None else float(d["ece"]),
            classes=list(d["classes"]),
            per_class=per_class.set_index("class").astype({"support": int}),
            confusion=np.asarray(d["confusion"], dtype=np.int64).reshape(len(d["classes"]), len(d["classes"])),
            slices=slices,
            n_bins=int(d.get("n_bins", 10)),
            ece_source=d.get("ece_source", "none"),
            dropped=int(d.get("dropped", 0)),
            conflicts=pd.DataFrame(d.get("conflicting_labels") or [], columns=_CONFLICT_COLUMNS),
        )

    def table(self) -> pd.DataFrame:
        """Summary: one ``value`` per metric (n, accuracy, macro_f1, ece, ``recall[<class>]``)."""
        rows = {
            "n": float(self.n),
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "ece": math.nan if self.ece is None else self.ece,
        }
        rows.update({f"recall[{c}]": float(r) for c, r in self.per_class["recall"].items()})
        return pd.DataFrame({"value": pd.Series(rows, dtype=float)}).rename_axis("metric")


def evaluate(
    records,
    *,
    classes: Sequence[str] | None = None,
    slices: Sequence[str] | str | None = None,
    n_bins: int = 10,
) -> Evaluation:
    """Evaluate predictions against user labels.

    Rows without a ``user_label`` (or without a ``predicted_label``) are left
    out. Labels outside ``classes`` are appended to them (sorted), so a new
    label in operation never crashes the evaluation.

    Args:
        records: A pandas DataFrame, a DuckDB relation (e.g. ``store.matched()``)
            or a list of dicts, with ``user_label`` and ``predicted_label``,
            and optionally ``confidence`` and ``probabilities`` (one list per row,
            ordered as ``classes``).
        classes: Class names in model order; default: sorted labels seen.
        slices: Columns to slice by. A column holding lists (such as ``tags``)
            is exploded so each element is a slice; bin continuous columns first.
        n_bins: Bins of the expected calibration error. It is computed from
            ``probabilities`` when ``classes`` are given and every row has one
            probability per class, otherwise from ``confidence`` vs correctness.

    Returns:
        The :class:`Evaluation`.

    Raises:
        ConfigError: No labelled rows, missing columns, or bad arguments.

    Example:
        >>> ev = evaluate(store.matched(), classes=model.classes, slices=["tags"])  # doctest: +SKIP
        >>> ev.table()  # doctest: +SKIP
    """
    if not isinstance(n_bins, int) or isinstance(n_bins, bool) or n_bins < 1:
        raise ConfigError(f"n_bins must be a positive int, got {n_bins!r}")
    slice_cols = [slices] if isinstance(slices, str) else list(slices or [])
    df, dropped = _labelled_rows(records, slice_cols)
    given = None if classes is None else [str(c) for c in classes]
    if given is not None and len(set(given)) != len(given):
        raise ConfigError(f"classes must be distinct names, got {given!r}")
    seen = set(df["user_label"]) | set(df["predicted_label"])
    all_classes = (given or []) + sorted(seen - set(given or []))
    index = {c: i for i, c in enumerate(all_classes)}
    y_true = df["user_label"].map(index).to_numpy()
    y_pred = df["predicted_label"].map(index).to_numpy()
    labels = list(range(len(all_classes)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per_class = pd.DataFrame(
        {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(int)},
        index=pd.Index(all_classes, name="class"),
    )
    ece, source = _ece(df, y_true, len(all_classes), given, n_bins)
    df = df.assign(_correct=(y_true == y_pred))
    return Evaluation(
        n=len(df),
        accuracy=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        ece=ece,
        classes=all_classes,
        per_class=per_class,
        confusion=confusion_matrix(y_true, y_pred, labels=labels),
        slices={col: _slice_table(df, col) for col in slice_cols},
        n_bins=n_bins,
        ece_source=source,
        dropped=dropped,
        conflicts=_conflicts(df),
    )


def compare(before: Evaluation, after: Evaluation) -> pd.DataFrame:
    """Before, after and delta (after - before) for n, accuracy, macro_f1, ece and per-class recall.

    Example:
        >>> compare(evaluate(old_records), evaluate(new_records))  # doctest: +SKIP
    """
    if not (isinstance(before, Evaluation) and isinstance(after, Evaluation)):
        raise ConfigError("compare needs two Evaluation objects (from evaluate())")
    b, a = before.table()["value"], after.table()["value"]
    order = list(b.index) + [m for m in a.index if m not in b.index]
    out = pd.DataFrame({"before": b.reindex(order), "after": a.reindex(order)})
    out["delta"] = out["after"] - out["before"]
    return out.rename_axis("metric")


# --- helpers ---------------------------------------------------------------------------
_CONFLICT_COLUMNS = ["sha256", "n_copies", "labels", "scoring_ids"]


def _conflicts(df: pd.DataFrame) -> pd.DataFrame:
    """Digests whose copies carry more than one distinct user label."""
    if df.empty or "sha256" not in df.columns or "scoring_id" not in df.columns:
        return pd.DataFrame(columns=_CONFLICT_COLUMNS)
    rows = []
    for sha, group in df.dropna(subset=["sha256"]).groupby("sha256", sort=True):
        labels = sorted(set(group["user_label"]))
        if len(labels) > 1:
            rows.append({"sha256": sha, "n_copies": len(group), "labels": labels,
                         "scoring_ids": sorted(map(str, group["scoring_id"]))})
    return pd.DataFrame(rows, columns=_CONFLICT_COLUMNS)


def _labelled_rows(records, slice_cols: list[str]) -> tuple[pd.DataFrame, int]:
    if isinstance(records, pd.DataFrame):
        df = records
    elif hasattr(records, "df") and callable(records.df):  # a DuckDB relation
        df = records.df()
    elif isinstance(records, list):
        df = pd.DataFrame(records)
    else:
        raise ConfigError(
            f"records must be a pandas DataFrame, a DuckDB relation or a list of dicts, got {type(records).__name__}"
        )
    missing = [c for c in (*_REQUIRED, *slice_cols) if c not in df.columns]
    if missing:
        raise ConfigError(f"records lack the columns {missing}; they have {list(df.columns)}")
    keep = df["user_label"].notna() & df["predicted_label"].notna()
    out = df.loc[keep].copy()
    if out.empty:
        raise ConfigError(
            f"no rows to evaluate: {len(df)} records, none with both a user_label and a predicted_label. "
            "Log user scores (store.log_score) for scored clips first."
        )
    out["user_label"] = out["user_label"].astype(str)
    out["predicted_label"] = out["predicted_label"].astype(str)
    return out.reset_index(drop=True), int((~keep).sum())


def _ece(df: pd.DataFrame, y_true: np.ndarray, k: int, given: list[str] | None, n_bins: int):
    probs = _probability_matrix(df, given, k)
    if probs is not None:
        value = multiclass_calibration_error(
            torch.tensor(probs), torch.tensor(y_true, dtype=torch.long), num_classes=k, n_bins=n_bins, norm="l1"
        )
        return float(value), "probabilities"
    if "confidence" not in df.columns:
        return None, "none"
    conf = pd.to_numeric(df["confidence"], errors="coerce").to_numpy(dtype=np.float64)
    ok = np.isfinite(conf)
    if not ok.any():
        return None, "none"
    correct = (df["user_label"].to_numpy() == df["predicted_label"].to_numpy())[ok]
    value = binary_calibration_error(
        torch.tensor(np.clip(conf[ok], 0.0, 1.0)), torch.tensor(correct, dtype=torch.long), n_bins=n_bins, norm="l1"
    )
    return float(value), "confidence"


def _probability_matrix(df: pd.DataFrame, given: list[str] | None, k: int) -> np.ndarray | None:
    """Rows of probabilities padded to ``k`` classes, or ``None`` if they cannot be trusted."""
    if given is None or "probabilities" not in df.columns:
        return None
    rows = df["probabilities"].tolist()
    if not all(isinstance(r, _LISTLIKE) and len(r) == len(given) for r in rows):
        return None
    probs = np.zeros((len(rows), k), dtype=np.float64)
    probs[:, : len(given)] = np.asarray([np.asarray(r, dtype=np.float64) for r in rows])
    if not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        return None
    return probs


def _slice_table(df: pd.DataFrame, col: str) -> pd.DataFrame:
    part = pd.DataFrame({col: df[col], "_correct": df["_correct"]})
    part["_conf"] = pd.to_numeric(df["confidence"], errors="coerce") if "confidence" in df.columns else np.nan
    if part[col].map(lambda v: isinstance(v, _LISTLIKE)).any():
        part[col] = part[col].map(lambda v: list(v) if isinstance(v, _LISTLIKE) else v)
        part = part.explode(col)
    try:
        g = part.groupby(col, dropna=False, sort=True)
        out = pd.DataFrame(
            {"n": g.size(), "accuracy": g["_correct"].mean().astype(float), "mean_confidence": g["_conf"].mean()}
        )
    except TypeError:
        raise ConfigError(
            f"column {col!r} holds values that cannot be grouped; slice by a column of scalars or lists"
        ) from None
    out.index.name = col
    return out.sort_values("n", ascending=False, kind="stable")


def _clean(obj):
    """Make nested results JSON-ready: numpy scalars to Python, NaN to ``None``."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
