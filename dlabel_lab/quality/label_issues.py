"""Likely label errors: cleanlab's ``find_label_issues`` on out-of-sample predicted probabilities.

:func:`find_label_errors` is thin glue over ``cleanlab.filter.find_label_issues``
(the confident-learning filter) and ``cleanlab.rank.get_label_quality_scores``
(self-confidence: the probability the out-of-sample model gives the label).
It takes arrays (labels and predicted probabilities you computed out of
sample) or a payload store, where the probabilities come from one of:

- ``"cross_validation"``: a logistic regression on the embeddings a model
  version logged for the labelled clips, predicted by stratified k-fold
  cross-validation (each clip scored by a classifier that did not see its
  label);
- ``"held_out"``: the probabilities the model version itself logged, for the
  labelled clips outside its lineage's training set (the ``train_ids`` each
  retrained version records, and the files of the lab manifest the root was
  trained on, matched by sha256).

Only cleanlab's non-experimental modules are used.

Example:
    >>> import numpy as np
    >>> labels = np.array([0, 0, 0, 1, 1, 1])
    >>> probs = np.array([[.9, .1], [.9, .1], [.1, .9], [.1, .9], [.1, .9], [.1, .9]])
    >>> find_label_errors(labels, probs).positions
    [2]
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import ConfigError, DLabelError, MediaError

__all__ = ["LabelIssues", "METHODS", "default_model_version", "find_label_errors", "training_set"]

#: Ways :func:`find_label_errors` obtains out-of-sample probabilities from a store.
METHODS = ("auto", "cross_validation", "held_out")


@dataclass(frozen=True)
class LabelIssues:
    """The clips (or examples) whose given label is likely wrong, most likely first.

    Attributes:
        table: One row per flagged example, ranked: ``rank``, ``position``
            (row in the checked data), ``scoring_id`` (store, or the ``ids``
            given), ``given_label``, ``suggested_label`` (the out-of-sample
            argmax), ``label_quality`` (the probability of the given label,
            cleanlab's self-confidence; low is suspicious),
            ``given_probability``, ``suggested_probability`` and, from a
            store, ``label_source``, ``label_author``, ``predicted_label``
            (what the model version logged) and ``media_path``.
        checked: Every checked example with ``label_quality`` and
            ``is_label_issue`` (same columns, in input order, no ``rank``).
        method: ``"cross_validation"``, ``"held_out"`` or ``"given"`` (arrays).
        description: How the out-of-sample probabilities were obtained.
        classes: The class order of the probabilities.
        model_version: The store's model version used, else ``None``.
        unchecked: Clips left out and why (``scoring_id``, ``reason``).
    """

    table: pd.DataFrame
    checked: pd.DataFrame
    method: str
    description: str
    classes: list
    model_version: str | None = None
    unchecked: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["scoring_id", "reason"]))

    def __len__(self) -> int:
        return len(self.table)

    @property
    def positions(self) -> list[int]:
        """Flagged rows of the checked data, most likely wrong first."""
        return [int(p) for p in self.table["position"]]

    @property
    def scoring_ids(self) -> list[str]:
        """Flagged scoring ids, most likely wrong first (empty when no ids were given)."""
        return [str(s) for s in self.table["scoring_id"]] if "scoring_id" in self.table else []

    @property
    def rate(self) -> float:
        """Share of the checked examples flagged."""
        return len(self.table) / len(self.checked) if len(self.checked) else float("nan")


def _probabilities(pred_probs, n: int | None = None) -> np.ndarray:
    probs = np.asarray(pred_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2 or (n is not None and probs.shape[0] != n):
        want = f"({n}, K)" if n is not None else "(N, K)"
        raise ConfigError(f"pred_probs must be shaped {want} with K >= 2 classes, got {probs.shape}")
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise ConfigError("pred_probs must be finite and non-negative")
    sums = probs.sum(axis=1, keepdims=True)
    if (sums <= 0).any():
        raise ConfigError("a row of pred_probs sums to 0; give every example a probability distribution")
    return probs / sums


def _label_indices(labels, classes: Sequence | None, k: int) -> tuple[np.ndarray, list]:
    values = list(labels.tolist() if isinstance(labels, (np.ndarray, pd.Series)) else labels)
    if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in values):
        raise ConfigError("labels has missing values; check only the labelled examples")
    if classes is None:
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            classes = list(range(k))
        else:
            classes = sorted({str(v) for v in values})
            if len(classes) != k:
                raise ConfigError(f"labels name {len(classes)} classes but pred_probs has {k} columns; pass "
                                  "classes= (the column order of pred_probs)")
    classes = list(classes)
    if len(classes) != k or len(set(classes)) != k:
        raise ConfigError(f"classes must be {k} distinct names (one per column of pred_probs), got {classes}")
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in values if v not in index})
    if unknown:
        raise ConfigError(f"labels {unknown[:5]} are not among the classes {classes[:10]}")
    return np.array([index[v] for v in values], dtype=np.int64), classes


def _run_cleanlab(y: np.ndarray, probs: np.ndarray, *, filter_by: str, rank_by: str) -> tuple[np.ndarray, np.ndarray]:
    """(flagged positions ranked, label quality of every example), with cleanlab's small-class warnings muted."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "may not flag all label issues in class ...": reported as unchecked instead
        flagged = find_label_issues(y, probs, filter_by=filter_by, return_indices_ranked_by=rank_by, n_jobs=1)
        quality = get_label_quality_scores(y, probs, method=rank_by)
    flagged = np.asarray(flagged, dtype=np.int64)
    # most likely wrong first; ties in input order, so that a run is reproducible
    order = np.lexsort((flagged, quality[flagged]))
    return flagged[order], np.asarray(quality, dtype=np.float64)


def _tables(y: np.ndarray, probs: np.ndarray, classes: list, flagged: np.ndarray, quality: np.ndarray,
            extra: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = len(y)
    suggested = probs.argmax(axis=1)
    checked = pd.DataFrame({"position": np.arange(n)})
    if extra is not None and "scoring_id" in extra:
        checked["scoring_id"] = extra["scoring_id"].to_numpy()
    checked["given_label"] = [classes[i] for i in y]
    checked["suggested_label"] = [classes[i] for i in suggested]
    checked["label_quality"] = quality
    checked["given_probability"] = probs[np.arange(n), y]
    checked["suggested_probability"] = probs[np.arange(n), suggested]
    if extra is not None:
        for column in extra.columns:
            if column not in checked:
                checked[column] = extra[column].to_numpy()
    checked["is_label_issue"] = False
    checked.loc[flagged, "is_label_issue"] = True
    table = checked.iloc[flagged].drop(columns="is_label_issue").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table, checked


def find_label_errors(
    labels_or_store,
    pred_probs=None,
    *,
    classes: Sequence | None = None,
    ids: Sequence[str] | None = None,
    model_version: str | None = None,
    method: str = "auto",
    cv_folds: int = 5,
    seed: int = 0,
    label_source: str | Sequence[str] | None = None,
    filter_by: str = "prune_by_noise_rate",
    rank_by: str = "self_confidence",
) -> LabelIssues:
    """Flag and rank the examples whose given label is likely wrong (cleanlab's confident learning).

    On arrays, ``pred_probs`` must already be out of sample (each row from a
    model that did not train on that example's label); on a store, they are
    computed (see ``method``).

    Args:
        labels_or_store: Given labels (class names or indices ``0..K-1``), or
            a :class:`~dlabel_lab.PayloadStore`.
        pred_probs: ``(N, K)`` out-of-sample probabilities (arrays only).
        classes: Column order of ``pred_probs`` (arrays; default ``0..K-1``
            for integer labels, the sorted names for text labels).
        ids: One id per example, copied into the tables as ``scoring_id``.
        model_version: (store) The version whose logged embeddings or
            probabilities are used; default the newest version that scored
            clips (see :func:`default_model_version`).
        method: (store) ``"cross_validation"`` (logistic regression on the
            version's logged embeddings, stratified ``cv_folds``-fold),
            ``"held_out"`` (the version's own probabilities on labelled clips
            outside its lineage's training set) or ``"auto"``:
            cross-validation when the embeddings allow it (every labelled clip
            of at least two classes checked), else held-out.
        cv_folds: Folds of the cross-validation (fewer when a class has fewer clips).
        seed: Seed of the fold assignment.
        label_source: (store) Check only clips whose latest label has this
            source (``"human"``, ``"auto"``, ...); default every labelled clip.
        filter_by: cleanlab's ``filter_by`` (``"prune_by_noise_rate"``,
            ``"prune_by_class"``, ``"both"``, ``"confident_learning"``,
            ``"predicted_neq_given"``, ``"low_normalized_margin"``,
            ``"low_self_confidence"``).
        rank_by: cleanlab's label quality score (``"self_confidence"``,
            ``"normalized_margin"``, ``"confidence_weighted_entropy"``).

    Returns:
        A :class:`LabelIssues` (``.table`` ranked, ``.description`` says
        where the probabilities came from).

    Raises:
        ConfigError: Bad shapes, unknown labels, fewer than two classes, an
            unknown method, or (store) no labelled clip to check.

    Example:
        >>> find_label_errors(["a", "a", "b"], [[.9, .1], [.1, .9], [.1, .9]]).table.given_label.tolist()
        ['a']
    """
    if hasattr(labels_or_store, "matched_df"):
        if pred_probs is not None or classes is not None or ids is not None:
            raise ConfigError("on a store, find_label_errors computes the probabilities itself: leave pred_probs, "
                              "classes and ids out")
        return _from_store(labels_or_store, model_version=model_version, method=method, cv_folds=cv_folds,
                           seed=seed, label_source=label_source, filter_by=filter_by, rank_by=rank_by)
    if pred_probs is None:
        raise ConfigError("find_label_errors(labels, pred_probs): give the out-of-sample probabilities, or a store")
    n = len(labels_or_store)
    probs = _probabilities(pred_probs, n)
    y, classes = _label_indices(labels_or_store, classes, probs.shape[1])
    extra = None
    if ids is not None:
        ids = [str(i) for i in ids]
        if len(ids) != n:
            raise ConfigError(f"{len(ids)} ids for {n} labels; give one id per example")
        extra = pd.DataFrame({"scoring_id": ids})
    return _check(y, probs, classes, extra, method="given", description="probabilities given by the caller",
                  filter_by=filter_by, rank_by=rank_by)


def _check(y: np.ndarray, probs: np.ndarray, classes: list, extra: pd.DataFrame | None, *, method: str,
           description: str, filter_by: str, rank_by: str, model_version: str | None = None,
           unchecked: pd.DataFrame | None = None) -> LabelIssues:
    if len(y) < 2 or len(np.unique(y)) < 2:
        raise ConfigError(f"label errors need examples of at least two classes; got {len(y)} example(s) of "
                          f"{len(np.unique(y))} class(es)")
    try:
        flagged, quality = _run_cleanlab(y, probs, filter_by=filter_by, rank_by=rank_by)
    except ValueError as error:  # cleanlab's own checks (an unknown filter_by or rank_by, ...)
        raise ConfigError(f"cleanlab refused the check: {error}") from None
    table, checked = _tables(y, probs, classes, flagged, quality, extra)
    if unchecked is None:
        unchecked = pd.DataFrame(columns=["scoring_id", "reason"])
    return LabelIssues(table, checked, method, description, list(classes), model_version, unchecked)


# --- from a store ------------------------------------------------------------------------------
def default_model_version(store) -> str | None:
    """The newest registered model version that has logged predictions with embeddings, else ``None``.

    Example:
        >>> default_model_version(store)  # doctest: +SKIP
        'shapes-v2'
    """
    scored = {row[0] for row in store.matched().project("model_version").distinct().fetchall()}
    versions = store.model_versions()
    for version in reversed(versions["model_version"].tolist()):
        if version in scored:
            return str(version)
    return sorted(scored)[-1] if scored else None


def training_set(store, model_version: str) -> tuple[set[str], set[str], bool]:
    """What a version's lineage trained on: (scoring ids, clip sha256 digests, whether anything is recorded).

    Retrained versions record their ``train_ids``; a root trained by
    ``train_initial`` records its lab manifest, whose files are hashed (a lab
    clip ingested into the store is then recognised by its sha256). A version
    registered without either (``dl.deploy`` of a model trained elsewhere)
    records nothing: the third value is ``False``.

    Example:
        >>> ids, shas, known = training_set(store, "shapes-v2")  # doctest: +SKIP
    """
    from ..media.manifest import read_manifest
    from ..models.checkpoint import file_sha256

    ids: set[str] = set()
    shas: set[str] = set()
    known = False
    seen: set[str] = set()
    version: str | None = model_version
    while version is not None and version not in seen:
        seen.add(version)
        info = store.get_model(version)
        params = info.get("params") or {}
        if params.get("train_ids") is not None:
            ids |= {str(s) for s in params["train_ids"]}
            known = True
        manifest = (params.get("training") or {}).get("train_manifest")
        if manifest:
            known = True
            try:
                rows = read_manifest(manifest)
            except (DLabelError, OSError):  # the manifest is gone or changed: its clips cannot be recognised
                rows = []
            for row in rows:
                try:
                    shas.add(file_sha256(row["path"]))
                except (OSError, MediaError):
                    continue
        version = info.get("parent")
    return ids, shas, known


def _labelled_frame(store, model_version: str, label_source) -> pd.DataFrame:
    frame = store.matched_df(model_version=model_version, label_source=label_source)
    frame = frame[frame["user_label"].notna()].drop_duplicates("scoring_id")
    return frame.sort_values("scoring_id").reset_index(drop=True)


def _stack(values, what: str) -> np.ndarray | None:
    arrays = [None if v is None else np.asarray(v, dtype=np.float64) for v in values]
    shapes = {a.shape for a in arrays if a is not None}
    if not arrays or any(a is None for a in arrays) or len(shapes) != 1 or next(iter(shapes)) in ((), (0,)):
        return None
    return np.stack(arrays)


def _extra(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[["scoring_id", "label_source", "label_author", "predicted_label", "media_path"]].reset_index(
        drop=True)


def _from_store(store, *, model_version, method, cv_folds, seed, label_source, filter_by, rank_by) -> LabelIssues:
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(cv_folds, bool) or not isinstance(cv_folds, (int, np.integer)) or cv_folds < 2:
        raise ConfigError(f"cv_folds must be an int >= 2, got {cv_folds!r}")
    version = model_version or default_model_version(store)
    if version is None:
        raise ConfigError("no model version has scored clips in this store: deploy one and score the labelled clips "
                          "(its embeddings or probabilities are what the check needs)")
    frame = _labelled_frame(store, version, label_source)
    if frame.empty:
        raise ConfigError(f"{version} has scored no labelled clip{'' if label_source is None else ' of that source'};"
                          " score the labelled clips with it first")
    ids, shas, known = training_set(store, version)
    shas |= set(frame.loc[frame["scoring_id"].isin(ids), "sha256"])  # copies of training clips
    in_sample = (frame["scoring_id"].isin(ids) | frame["sha256"].isin(shas)).to_numpy()
    common = dict(filter_by=filter_by, rank_by=rank_by, model_version=version)
    if method in ("auto", "cross_validation"):
        cv = _cross_validated(frame, store.get_model(version)["classes"], version, cv_folds, seed, in_sample)
        if isinstance(cv, str):
            if method == "cross_validation":
                raise ConfigError(f"cannot cross-validate: {cv}")
            common["why"] = f"cross-validation was not possible ({cv}), so "
        else:
            y, probs, classes, kept, description, unchecked = cv
            return _check(y, probs, classes, _extra(frame[kept]), method="cross_validation",
                          description=description, unchecked=unchecked, **common)
    why = common.pop("why", "")
    return _held_out(frame, store.get_model(version)["classes"], version, in_sample, known, common, why)


def _cross_validated(frame: pd.DataFrame, model_classes: list, version: str, folds: int, seed: int,
                     in_sample: np.ndarray):
    """(y, probs, classes, kept mask, description, unchecked), or why it cannot be done."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = _stack(frame["embedding"], "embedding")
    if x is None or not np.isfinite(x).all():
        return f"{version} logged no (or ragged, or non-finite) embeddings for the labelled clips"
    counts = frame["user_label"].value_counts()
    single = set(counts[counts < 2].index)
    kept = ~frame["user_label"].isin(single).to_numpy()
    unchecked = pd.DataFrame({"scoring_id": frame.loc[~kept, "scoring_id"].to_numpy(),
                              "reason": [f"the only clip labelled {lab!r}: nothing to cross-validate it against"
                                         for lab in frame.loc[~kept, "user_label"]]})  # fmt: skip
    present = set(counts[counts >= 2].index)
    if len(present) < 2:
        return "fewer than two classes have two or more labelled clips"
    classes = [c for c in model_classes if c in present] + sorted(present - set(model_classes))
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[lab] for lab in frame.loc[kept, "user_label"]], dtype=np.int64)
    k = int(min(folds, counts[list(present)].min()))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of a light model
        probs = cross_val_predict(model, x[kept], y, cv=StratifiedKFold(k, shuffle=True, random_state=seed),
                                  method="predict_proba")
    n_in = int(in_sample[kept].sum())
    description = (f"{k}-fold stratified cross-validation of a logistic regression on the embeddings {version} "
                   f"logged for {int(kept.sum())} labelled clips")
    if n_in:
        description += (f"; {n_in} of them were in {version}'s training set, so their embeddings may have learnt "
                        "their labels (wrong ones included) and hide some errors")
    return y, probs, classes, kept, description, unchecked


def _held_out(frame: pd.DataFrame, classes: list, version: str, in_sample: np.ndarray, known: bool,
              common: dict, why: str = "") -> LabelIssues:
    probs = _stack(frame["probabilities"], "probabilities")
    if probs is None or probs.shape[1] != len(classes):
        raise ConfigError(f"{version} logged no probabilities over its {len(classes)} classes for the labelled clips")
    foreign = ~frame["user_label"].isin(classes).to_numpy()
    keep = ~in_sample & ~foreign
    reasons = np.where(foreign, "its label is not a class of " + version,
                       f"in the training set of {version} (or of its lineage): not out of sample")
    unchecked = pd.DataFrame({"scoring_id": frame.loc[~keep, "scoring_id"].to_numpy(), "reason": reasons[~keep]})
    if keep.sum() < 2:
        raise ConfigError(f"{version} scored {int(keep.sum())} labelled clip(s) outside its training set; a held-out "
                          "check needs at least two (use method='cross_validation')")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[lab] for lab in frame.loc[keep, "user_label"]], dtype=np.int64)
    description = (f"{why}the probabilities {version} logged for {int(keep.sum())} labelled clips outside its "
                   "lineage's training set")
    if not known:
        description += (f" (the lineage records no training set: every clip is taken as unseen by {version}, "
                        "which holds only if it was trained elsewhere)")
    return _check(y, _probabilities(probs[keep]), list(classes), _extra(frame[keep]), method="held_out",
                  description=description, unchecked=unchecked, **common)
