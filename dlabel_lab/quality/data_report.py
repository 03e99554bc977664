"""``data_report``: what is missing, how the data is spread, how it shifted, what repeats and what looks wrong.

One call reads a payload store (it writes nothing) and returns a
:class:`DataReport` of pandas tables, matplotlib figures, a text summary and a
self-contained HTML page:

- **missing**: clips without a label, clips without a prediction (by the
  model version), unmatched ids with what they lack and the error the
  execution log holds for them, and clips that could not be read (failed
  runs with a media error, clips an ingest skipped or an import failed on);
- **distribution**: user labels per source (the clip's folder or camera id,
  or ``metadata["source"]``), per label source and per time window;
- **shift**: lab vs operational clips per clip factor (quantiles, standardised
  mean difference, Cliff's delta, Mann-Whitney and Kolmogorov-Smirnov tests)
  and on embeddings (MMD with a permutation p-value, and a classifier
  two-sample test's AUC); see :mod:`dlabel_lab.quality.shift`;
- **duplicates**: exact (the same sha256 under several scoring ids) and near
  (embedding neighbours within a cosine distance), with conflicting labels
  highlighted;
- **label issues**: cleanlab's ``find_label_issues`` on out-of-sample
  probabilities (see :mod:`dlabel_lab.quality.label_issues`), ranked, with
  :meth:`DataReport.relabel_queue` to put them in front of a labeller;
- **outliers**: cleanlab's out-of-distribution score of each clip's embedding.

Example:
    >>> report = data_report(store, model_version="shapes-v1")  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
    >>> report.to_html("runs/data_report.html")  # doctest: +SKIP
    >>> dl.widgets.LabelQueue(store, report.relabel_queue(), classes=classes)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, DLabelError, MediaError
from .label_issues import LabelIssues, default_model_version, find_label_errors, training_set
from .shift import FACTORS, embedding_shift, factor_shift

__all__ = ["DataReport", "NO_LABEL", "data_report", "source_of"]

NO_LABEL = "(no label)"  #: the column of unlabelled clips in the class tables
_TABLE_ROWS = 50  # rows of a table shown in the HTML page (the DataFrame keeps all)


def _media_error_names() -> tuple[str, ...]:
    names, todo = [], [MediaError]
    while todo:
        cls = todo.pop()
        names.append(cls.__name__)
        todo.extend(cls.__subclasses__())
    return tuple(sorted(set(names)))


def source_of(source_name: str | None, metadata: str | dict | None = None) -> str:
    """Where a clip came from: ``metadata["source"]`` when logged, else the folder of its name, or its camera id.

    A name with a folder gives the folder; a bare name without a file
    extension (a camera id) gives itself; a bare file name gives ``"(no
    folder)"``; clips logged from bytes give ``"<bytes>"``.

    Example:
        >>> source_of("/data/site-a/clip_0001.mp4"), source_of("cam-7"), source_of("x.mp4", '{"source": "lab"}')
        ('/data/site-a', 'cam-7', 'lab')
    """
    meta = metadata
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            meta = None
    if isinstance(meta, dict) and isinstance(meta.get("source"), str) and meta["source"].strip():
        return meta["source"]
    name = source_name or ""
    if not name:
        return "(unnamed)"
    if name == "<bytes>":
        return name
    path = PurePosixPath(name.replace("\\", "/"))
    if len(path.parts) > 1:
        return str(path.parent)
    return "(no folder)" if path.suffix else name


# --- the report ----------------------------------------------------------------------------------
@dataclass
class DataReport:
    """What :func:`data_report` found; tables, figures, a summary, an HTML page and the relabel queue.

    Attributes:
        store_path: The store folder.
        model_version: The version whose predictions and embeddings were used (``None``: none scored).
        created_at: When the report was made (UTC).
        tables: Name -> DataFrame: ``counts``, ``without_label``,
            ``without_prediction``, ``unmatched``, ``decode_failures``,
            ``class_by_source``, ``class_by_label_source``,
            ``class_by_window``, ``factor_shift``, ``factors``,
            ``embedding_shift``, ``exact_duplicates``, ``near_duplicates``,
            ``nearest_neighbours``, ``label_issues``, ``outliers``.
        notes: What was skipped and why, and how each part was computed.
        label_check: The :class:`LabelIssues` behind ``label_issues`` (``None`` when skipped).
        settings: The arguments the report ran with.
    """

    store_path: str
    model_version: str | None
    created_at: datetime
    tables: dict[str, pd.DataFrame]
    notes: list[str]
    label_check: LabelIssues | None
    settings: dict[str, Any]
    store: Any = field(default=None, repr=False)

    @property
    def label_issues(self) -> pd.DataFrame:
        """Likely label errors, ranked: ``rank``, ``scoring_id``, ``given_label``, ``suggested_label``, ...

        Example:
            >>> report.label_issues.head()  # doctest: +SKIP
        """
        return self.tables["label_issues"]

    def count(self, name: str) -> int:
        """One of the counts of ``tables["counts"]`` (``clips``, ``labelled``, ``without_label``, ...).

        Example:
            >>> report.count("without_label")  # doctest: +SKIP
            3
        """
        counts = self.tables["counts"].set_index("what")["n"]
        if name not in counts:
            raise KeyError(f"no count {name!r}; the counts are {list(counts.index)}")
        return int(counts[name])

    def summary(self) -> str:
        """The report in a few lines of text.

        Example:
            >>> print(report.summary())  # doctest: +SKIP
        """
        t, c = self.tables, self.count
        lines = [f"data report of {self.store_path} (model version {self.model_version or 'none'}), "
                 f"{self.created_at:%Y-%m-%d %H:%M} UTC",
                 f"clips: {c('clips')}, {c('labelled')} labelled, {c('without_label')} without a label, "
                 f"{c('without_prediction')} without a prediction"
                 f"{' by ' + self.model_version if self.model_version else ''}, {c('unmatched')} unmatched "
                 f"({c('unmatched_with_error')} with an error in the execution log), {c('decode_failures')} that "
                 "could not be read"]
        classes = [col for col in t["class_by_source"].columns if col != NO_LABEL]
        lines.append(f"distribution: {len(classes)} classes over {len(t['class_by_source'])} source(s) and "
                     f"{len(t['class_by_window'])} time window(s) ({self.settings['time_window']})")
        fs = t["factor_shift"]
        if len(fs):
            top = ", ".join(f"{r.factor} (Cliff's delta {r.cliffs_delta:+.2f}, Holm p {r.p_holm:.2g})"
                            for r in fs.head(3).itertuples())
            lines.append(f"shift, lab vs operational ({int(fs['n_lab'].max())} vs {int(fs['n_ops'].max())} "
                         f"clips): {top}")
        es = t["embedding_shift"]
        if len(es):
            r = es.iloc[0]
            lines.append(f"shift on embeddings: MMD^2 {r['mmd2']:.3g}, permutation p {r['mmd_p_value']:.3g}; "
                         f"classifier two-sample AUC {r['c2st_auc']:.2f}")
        ex, near = t["exact_duplicates"], t["near_duplicates"]
        lines.append(f"duplicates: {len(ex)} exact group(s) ({int(ex['conflicting'].sum()) if len(ex) else 0} "
                     f"with conflicting labels), {len(near)} near pair(s) within cosine distance "
                     f"{self.settings['near_duplicate_threshold']:g} "
                     f"({int(near['conflicting'].sum()) if len(near) else 0} conflicting)")
        if self.label_check is not None:
            lc = self.label_check
            lines.append(f"label issues: {len(lc.table)} of {len(lc.checked)} labelled clips flagged "
                         f"({lc.method}: {lc.description})")
        out = t["outliers"]
        if len(out):
            lines.append(f"outliers: {int(out['is_outlier'].sum())} of {len(out)} clips below the far-out fence of "
                         "cleanlab's out-of-distribution score")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def figures(self) -> dict[str, Any]:
        """Matplotlib figures (``Figure`` objects, no pyplot state) of the parts that have data.

        Keys: ``missing``, ``classes_by_source``, ``classes_by_window``,
        ``factor_shift``, ``duplicates``, ``label_issues``, ``outliers``.

        Example:
            >>> report.figures()["factor_shift"].savefig("shift.png")  # doctest: +SKIP
        """
        from . import report_page

        return report_page.figures(self)

    def to_html(self, path: str | Path | None = None) -> str:
        """The report as one self-contained HTML page (figures embedded as PNG); written to ``path`` when given.

        Every text that comes from the store (class names, ids, sources,
        errors) is escaped, and the page forbids scripts (a Content Security
        Policy allowing only inline styles and embedded images).

        Example:
            >>> report.to_html("runs/data_report.html")  # doctest: +SKIP
        """
        from . import report_page

        page = report_page.html_page(self)
        if path is not None:
            Path(path).write_text(page, encoding="utf-8")
        return page

    def _repr_html_(self) -> str:
        page = self.to_html()
        return page[page.index("<body>") + 6: page.rindex("</body>")]

    def relabel_queue(self, limit: int | None = None, *, record: bool = True):
        """The flagged clips as a queue for :class:`~dlabel_lab.widgets.LabelQueue`, most likely wrong first.

        Args:
            limit: At most this many clips (default all flagged).
            record: Record the queue as a ``label-issues`` run in the
                execution log (its id is the queue's ``run_id``, and labels
                given from the queue name it as their author). Needs a
                writable store; with ``False`` nothing is written.

        Returns:
            A :class:`~dlabel_lab.Suggestion` (``strategy="label-issues"``):
            ``table`` has ``rank``, ``scoring_id``, ``score`` (1 - label
            quality), ``reason``, ``predicted_label`` (the suggested label),
            ``confidence`` (its out-of-sample probability), ``media_path``,
            ``given_label`` and ``label_quality``.

        Raises:
            ConfigError: The report has no label check (see :attr:`notes`).

        Example:
            >>> queue = report.relabel_queue(20)  # doctest: +SKIP
            >>> dl.widgets.LabelQueue(store, queue, classes=classes)  # doctest: +SKIP
        """
        from ..labeling.suggest import Suggestion

        if self.label_check is None:
            raise ConfigError("this report has no label check (see report.notes); nothing to queue")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0):
            raise ConfigError(f"limit must be a non-negative int or None, got {limit!r}")
        flagged = self.label_issues if limit is None else self.label_issues.head(int(limit))
        reasons = [f"labelled {g!r}, but the out-of-sample model gives it {q:.2f} and says {s!r} ({p:.2f})"
                   for g, q, s, p in zip(flagged["given_label"], flagged["label_quality"], flagged["suggested_label"],
                                         flagged["suggested_probability"], strict=True)]  # fmt: skip
        table = pd.DataFrame({
            "rank": np.arange(1, len(flagged) + 1), "scoring_id": flagged["scoring_id"].to_numpy(),
            "score": 1.0 - flagged["label_quality"].to_numpy(dtype=float), "reason": reasons,
            "predicted_label": flagged["suggested_label"].to_numpy(),
            "confidence": flagged["suggested_probability"].to_numpy(dtype=float),
            "media_path": flagged["media_path"].to_numpy(), "given_label": flagged["given_label"].to_numpy(),
            "label_quality": flagged["label_quality"].to_numpy(dtype=float),
        })  # fmt: skip
        version = self.label_check.model_version or self.model_version or ""
        run_id = f"data-report:{self.created_at:%Y%m%dT%H%M%S}"
        if record:
            if self.store is None:
                raise ConfigError("this report holds no store to record the queue in; pass record=False")
            params = {"model_version": version, "method": self.label_check.method, "limit": limit,
                      "n_flagged": len(self.label_issues), "n_checked": len(self.label_check.checked)}
            run_id = self.store.start_run("label-issues", params, model_version=version or None)
            self.store.finish_run(run_id, result={"scoring_ids": table["scoring_id"].tolist(),
                                                  "scores": [float(s) for s in table["score"]]})
        return Suggestion(run_id, "label-issues", version, len(self.label_check.checked), table, None)


# --- building it ---------------------------------------------------------------------------------
def data_report(
    store,
    *,
    model_version: str | None = None,
    lab_source: str | Sequence[str] | None = "lineage",
    near_duplicate_threshold: float = 1e-3,
    time_window: str = "auto",
    label_method: str = "auto",
    max_factor_clips: int = 200,
    n_permutations: int = 200,
    seed: int = 0,
    progress: bool = True,
) -> DataReport:
    """Check a store's data: missing parts, class distribution, lab vs operational shift, duplicates, label issues.

    Nothing is written to the store (it may be open read-only);
    :meth:`DataReport.relabel_queue` records its queue when asked.

    Args:
        store: The payload store.
        model_version: The version whose predictions, probabilities and
            embeddings are used; default the newest that scored clips.
        lab_source: Which clips are the lab's. ``"lineage"``: the lab
            manifest the version's lineage was trained on (decoded from disk,
            embedded by the version), against the store's clips outside its
            training set; one or more source names (see :func:`source_of`):
            the store's clips from those sources, against the others;
            ``None``: no shift section.
        near_duplicate_threshold: Cosine distance between L2-normalised
            embeddings at or under which two clips (of different content)
            count as near duplicates. It depends on the embedding: the
            ``duplicates`` figure shows each clip's nearest-neighbour distance.
        time_window: A pandas period alias (``"h"``, ``"D"``, ``"W"``,
            ``"M"``, ``"Q"``, ``"Y"``) or ``"auto"`` (the finest giving at
            most 12 windows).
        label_method: How out-of-sample probabilities are obtained (see
            :func:`~dlabel_lab.quality.label_issues.find_label_errors`).
        max_factor_clips: Clips decoded per group for the factor shift
            (a seeded sample).
        n_permutations: Permutations of the MMD test.
        seed: Seed of the samples, permutations and folds.
        progress: Show progress bars while decoding clips.

    Returns:
        A :class:`DataReport`.

    Raises:
        UnknownRecord: ``model_version`` is not registered.
        ConfigError: A bad argument.

    Example:
        >>> report = data_report(store, lab_source=["/data/lab"])  # doctest: +SKIP
        >>> report.tables["class_by_source"]  # doctest: +SKIP
    """
    if not (isinstance(near_duplicate_threshold, (int, float)) and 0 <= near_duplicate_threshold <= 2):
        raise ConfigError(f"near_duplicate_threshold must be a cosine distance in [0, 2], got "
                          f"{near_duplicate_threshold!r}")
    if isinstance(max_factor_clips, bool) or not isinstance(max_factor_clips, int) or max_factor_clips < 2:
        raise ConfigError(f"max_factor_clips must be an int >= 2, got {max_factor_clips!r}")
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, int) or n_permutations < 1:
        raise ConfigError(f"n_permutations must be a positive int, got {n_permutations!r}")
    if time_window != "auto" and time_window not in _WINDOWS:
        raise ConfigError(f"time_window must be 'auto' or one of {list(_WINDOWS)}, got {time_window!r}")
    if model_version is not None:
        store.get_model(model_version)  # UnknownRecord when it is not registered
    version = model_version or default_model_version(store)
    notes: list[str] = []
    inventory = _inventory(store, version)
    scored = _scored(store, version)
    if version is None:
        notes.append("no model version has scored clips: predictions, embeddings, label issues, near duplicates and "
                     "outliers are left out")
    tables: dict[str, pd.DataFrame] = {}
    tables.update(_missing(store, version, inventory))
    window = _window_alias(inventory["received_at"]) if time_window == "auto" else time_window
    tables.update(_distribution(inventory, window))
    tables.update(_shift(store, version, inventory, scored, lab_source, max_factor_clips, n_permutations, seed,
                         progress, notes))
    tables.update(_duplicates(inventory, scored, near_duplicate_threshold))
    label_check = None
    if version is not None:
        try:
            label_check = find_label_errors(store, model_version=version, method=label_method, seed=seed)
        except ConfigError as error:
            notes.append(f"label issues not checked: {error}")
    if label_check is not None:
        issues = label_check.table.copy()
        issues.insert(issues.columns.get_loc("given_label"), "source",
                      issues["scoring_id"].map(inventory.set_index("scoring_id")["source"]))
        tables["label_issues"] = issues
        if len(label_check.unchecked):
            notes.append(f"{len(label_check.unchecked)} labelled clip(s) not checked for label errors "
                         f"(e.g. {label_check.unchecked['reason'].iloc[0]})")
    else:
        tables["label_issues"] = pd.DataFrame(columns=["rank", "scoring_id", "source", "given_label",
                                                       "suggested_label", "label_quality"])
    tables["outliers"] = _outliers(scored, inventory, notes)
    counts = tables.pop("counts")
    tables = {"counts": counts, **tables}
    settings = {"model_version": model_version, "lab_source": lab_source,
                "near_duplicate_threshold": float(near_duplicate_threshold), "time_window": window,
                "label_method": label_method, "max_factor_clips": max_factor_clips,
                "n_permutations": n_permutations, "seed": seed}
    return DataReport(str(store.path), version, datetime.now(timezone.utc).replace(tzinfo=None), tables, notes,
                      label_check, settings, store)


_INVENTORY = """
WITH latest AS ({latest}),
pred AS (
    SELECT scoring_id, count(*) AS n_predictions, bool_or(model_version = CAST(? AS VARCHAR)) AS by_version
    FROM predictions GROUP BY scoring_id
)
SELECT r.scoring_id, r.received_at, r.sha256, r.source_name, r.metadata, l.user_label, l.label_source,
       coalesce(p.n_predictions, 0) AS n_predictions, coalesce(p.by_version, false) AS predicted_by_version
FROM raw_payloads r LEFT JOIN latest l ON l.scoring_id = r.scoring_id LEFT JOIN pred p ON p.scoring_id = r.scoring_id
ORDER BY r.scoring_id"""


def _inventory(store, version: str | None) -> pd.DataFrame:
    """Every raw clip with its latest label and whether it was predicted (by ``version``), one row each."""
    from ..store.queries import LATEST_SCORES

    frame = store._df(_INVENTORY.format(latest=LATEST_SCORES), [version])
    frame["source"] = [source_of(n, m) for n, m in zip(frame["source_name"], frame["metadata"], strict=True)]
    frame["predicted_by_version"] = frame["predicted_by_version"].astype(bool)
    return frame.drop(columns="metadata")


def _scored(store, version: str | None) -> pd.DataFrame:
    if version is None:
        return pd.DataFrame(columns=["scoring_id", "sha256", "embedding", "user_label", "predicted_label"])
    frame = store.matched_df(model_version=version)
    return frame.drop_duplicates("scoring_id").sort_values("scoring_id").reset_index(drop=True)


# --- missing ---------------------------------------------------------------------------------------------
_PARTS = {"raw": "no raw clip (a label or model output without its clip)",
          "transformed": "no transformed payload (what the model saw)",
          "prediction": "no prediction"}  # fmt: skip


def _why(missing: list, error: str | None) -> str:
    if error is not None and "prediction" in missing:
        return f"the model step failed: {error}"
    if "raw" not in missing and {"transformed", "prediction"} <= set(missing):
        return "never scored (no model output logged, and no failure in the execution log)"
    why = "; ".join(_PARTS[m] for m in missing if m in _PARTS)
    return why + (f"; last failure: {error}" if error else "")


def _missing(store, version: str | None, inventory: pd.DataFrame) -> dict[str, pd.DataFrame]:
    unlabelled = inventory[inventory["user_label"].isna()]
    without_label = unlabelled[["scoring_id", "source", "source_name", "received_at"]].reset_index(drop=True)
    predicted = inventory["predicted_by_version"] if version is not None else inventory["n_predictions"] > 0
    without_prediction = inventory.loc[~predicted.to_numpy(), ["scoring_id", "source", "source_name", "received_at",
                                                               "user_label", "n_predictions"]].reset_index(drop=True)
    unmatched = store.unmatched()
    if version is not None:
        unmatched = unmatched[unmatched["model_version"].isna() | (unmatched["model_version"] == version)]
    unmatched = unmatched.reset_index(drop=True)
    unmatched["why"] = [_why(list(m), e) for m, e in zip(unmatched["missing"], unmatched["error"], strict=True)]
    failures = _read_failures(store)
    labelled = int(inventory["user_label"].notna().sum())
    counts = pd.DataFrame({
        "what": ["clips", "labelled", "without_label", "without_prediction", "unmatched", "unmatched_with_error",
                 "decode_failures"],
        "n": [len(inventory), labelled, len(without_label), len(without_prediction), len(unmatched),
              int(unmatched["error"].notna().sum()), len(failures)],
    })  # fmt: skip
    return {"counts": counts, "without_label": without_label, "without_prediction": without_prediction,
            "unmatched": unmatched, "decode_failures": failures}


def _read_failures(store) -> pd.DataFrame:
    """Clips that could not be read, from the execution log: failed runs with a media error, skips, import failures."""
    names = _media_error_names()

    def is_media(text: object) -> bool:
        return isinstance(text, str) and any(f"{n}:" in text for n in names)

    rows = []
    for run in store.runs().itertuples():
        if run.status == "failed" and is_media(run.error):
            rows.append({"run_id": run.run_id, "kind": run.kind, "scoring_id": run.scoring_id, "clip": None,
                         "error": run.error})
        try:
            result = json.loads(run.result) if isinstance(run.result, str) else (run.result or {})
        except ValueError:
            continue
        if not isinstance(result, dict):
            continue
        for item in result.get("skipped") or []:  # dlabel-lab ingest: {row, path, reason}
            if isinstance(item, dict) and is_media(item.get("reason")):
                rows.append({"run_id": run.run_id, "kind": run.kind, "scoring_id": None,
                             "clip": str(item.get("path")), "error": str(item.get("reason"))})
        for item in result.get("failures") or []:  # import_labels: [index, media, error]
            if isinstance(item, (list, tuple)) and len(item) == 3 and is_media(item[2]):
                rows.append({"run_id": run.run_id, "kind": run.kind, "scoring_id": None, "clip": str(item[1]),
                             "error": str(item[2])})
    return pd.DataFrame(rows, columns=["run_id", "kind", "scoring_id", "clip", "error"])


# --- distribution -------------------------------------------------------------------------------------
_WINDOWS = {"h": pd.Timedelta(hours=1), "D": pd.Timedelta(days=1), "W": pd.Timedelta(days=7),
            "M": pd.Timedelta(days=31), "Q": pd.Timedelta(days=92), "Y": pd.Timedelta(days=366)}  # fmt: skip


def _window_alias(times: pd.Series) -> str:
    if times.empty:
        return "D"
    span = times.max() - times.min()
    for alias, width in _WINDOWS.items():
        if span / width < 12:
            return alias
    return "Y"


def _crosstab(index: pd.Series, labels: pd.Series, name: str) -> pd.DataFrame:
    if index.empty:
        return pd.DataFrame(columns=[NO_LABEL]).rename_axis(name)
    table = pd.crosstab(index.rename(name), labels.rename("label"))
    columns = sorted(c for c in table.columns if c != NO_LABEL) + ([NO_LABEL] if NO_LABEL in table.columns else [])
    table = table[columns].sort_index()
    table.columns.name = None
    return table


def _distribution(inventory: pd.DataFrame, window: str) -> dict[str, pd.DataFrame]:
    labels = inventory["user_label"].astype(object).where(inventory["user_label"].notna(), NO_LABEL)
    labelled = inventory["user_label"].notna()
    windows = inventory["received_at"].dt.to_period(window).astype(str) if len(inventory) else inventory["source"]
    return {
        "class_by_source": _crosstab(inventory["source"], labels, "source"),
        "class_by_label_source": _crosstab(inventory.loc[labelled, "label_source"], labels[labelled], "label_source"),
        "class_by_window": _crosstab(windows, labels, "window"),
    }


# --- shift --------------------------------------------------------------------------------------------------
def _clip_spec(store, version: str | None):
    from ..media.video import ClipSpec

    if version is None:
        return ClipSpec(frames=8, size=64)
    spec = store.get_model(version).get("spec")
    return ClipSpec.from_dict(spec) if spec else ClipSpec(frames=8, size=64)


def _sample(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= limit else np.sort(rng.choice(n, limit, replace=False))


def _measure(readers: list, spec, progress: bool, desc: str) -> tuple[list[int], list[dict], list]:
    """Decode each clip; (positions read, their clip_stats, their clips); unreadable clips are skipped."""
    from tqdm.auto import tqdm

    from ..errors import StoreError
    from ..media.video import clip_stats

    kept, stats, clips = [], [], []
    for i, read in enumerate(tqdm(readers, desc=desc, unit="clip", disable=not progress)):
        try:
            clip = read(spec)
        except (MediaError, StoreError, OSError):
            continue
        kept.append(i)
        stats.append(clip_stats(clip).as_dict())
        clips.append(clip)
    return kept, stats, clips


def _embed(store, version: str, clips: list, spec) -> np.ndarray:
    """The version's embeddings of decoded clips, as its endpoint computes them."""
    import torch

    from ..media.video import to_tensor
    from ..models.registry import load_version

    model = load_version(store, version)
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(clips), 32):
            x = torch.stack([to_tensor(c, spec)[0] for c in clips[start: start + 32]])
            out.append(model.logits_and_embedding(x)[1].float().numpy())
    return np.concatenate(out).astype(np.float64)


def _embeddings(frame: pd.DataFrame) -> np.ndarray | None:
    values = [None if v is None else np.asarray(v, dtype=np.float64) for v in frame["embedding"]]
    if not values or any(v is None for v in values) or len({v.shape for v in values}) != 1:
        return None
    stacked = np.stack(values)
    return stacked if stacked.ndim == 2 and stacked.shape[1] and np.isfinite(stacked).all() else None


def _shift(store, version, inventory, scored, lab_source, max_clips, n_permutations, seed, progress,
           notes) -> dict[str, pd.DataFrame]:
    none = pd.DataFrame(columns=list(FACTORS))
    empty = {"factor_shift": factor_shift(none, none).iloc[0:0],
             "factors": pd.DataFrame(columns=["group", "clip", *FACTORS]),
             "embedding_shift": pd.DataFrame(columns=["n_lab", "n_ops", "mmd2", "bandwidth", "mmd_p_value",
                                                      "n_permutations", "c2st_auc", "c2st_folds"])}
    if lab_source is None:
        return empty
    rng = np.random.default_rng(seed)
    spec = _clip_spec(store, version)

    def stored(sid: str):
        from ..media.video import read_checked_file

        return lambda s: read_checked_file(store.verified_raw_path(sid), s, name=f"clip {sid}")

    lab_emb = ops_emb = None
    if isinstance(lab_source, str) and lab_source == "lineage":
        from ..media.video import read_clip
        from ..train.datasets import lineage_training_rows

        if version is None:
            notes.append("shift not measured: no model version, so no lineage to take the lab clips from")
            return empty
        rows = lineage_training_rows(store, version)
        if not rows:
            notes.append(f"shift not measured: the lineage of {version} records no lab manifest (or it is gone); pass "
                         "lab_source=<source names> to compare sources of the store")
            return empty
        rows = [rows[i] for i in _sample(len(rows), max_clips, rng)]
        ids, shas, _ = training_set(store, version)
        ops = scored[~scored["scoring_id"].isin(ids) & ~scored["sha256"].isin(shas)]
        ops = ops.iloc[_sample(len(ops), max_clips, rng)].reset_index(drop=True)
        lab_names = [Path(r["path"]).name for r in rows]
        lab_kept, lab_stats, lab_clips = _measure([lambda s, p=r["path"]: read_clip(p, s) for r in rows], spec,
                                                  progress, "measuring lab clips")
        lab_desc = f"{len(lab_kept)} lab clips of {version}'s lineage manifest"
        if lab_clips:
            try:
                lab_emb = _embed(store, version, lab_clips, spec)
            except DLabelError as error:
                notes.append(f"lab embeddings not computed ({error}): embedding shift left out")
        ops_emb = _embeddings(ops)
    else:
        wanted = [lab_source] if isinstance(lab_source, str) else [str(s) for s in lab_source]
        is_lab = inventory["source"].isin(wanted)
        lab_rows = inventory[is_lab].iloc[_sample(int(is_lab.sum()), max_clips, rng)]
        ops = inventory[~is_lab].iloc[_sample(int((~is_lab).sum()), max_clips, rng)].reset_index(drop=True)
        if lab_rows.empty or ops.empty:
            notes.append(f"shift not measured: {'no' if lab_rows.empty else 'every'} clip comes from the lab "
                         f"source(s) {wanted}")
            return empty
        lab_names = lab_rows["scoring_id"].tolist()
        lab_kept, lab_stats, _ = _measure([stored(s) for s in lab_names], spec, progress, "measuring lab clips")
        lab_desc = f"{len(lab_kept)} clips from the lab source(s)"
        by_id = scored.set_index("scoring_id") if len(scored) else None
        if by_id is not None:
            lab_scored = scored[scored["scoring_id"].isin(lab_names)]
            ops_scored = scored[scored["scoring_id"].isin(ops["scoring_id"])]
            lab_emb, ops_emb = _embeddings(lab_scored), _embeddings(ops_scored)
    ops_kept, ops_stats, _ = _measure([stored(s) for s in ops["scoring_id"]], spec, progress,
                                      "measuring operational clips")
    if not lab_stats or not ops_stats:
        notes.append("shift not measured: no lab or no operational clip could be read")
        return empty
    lab_f, ops_f = pd.DataFrame(lab_stats), pd.DataFrame(ops_stats)
    factors = pd.concat([
        lab_f.assign(group="lab", clip=[lab_names[i] for i in lab_kept]),
        ops_f.assign(group="operational", clip=ops["scoring_id"].iloc[ops_kept].tolist()),
    ], ignore_index=True)[["group", "clip", *FACTORS]]  # fmt: skip
    out = {"factor_shift": factor_shift(lab_f, ops_f), "factors": factors, "embedding_shift": empty["embedding_shift"]}
    notes.append(f"shift: {lab_desc} against {len(ops_kept)} operational clips, decoded with the "
                 f"{spec.frames}-frame {spec.size}px clip spec")
    if lab_emb is not None and ops_emb is not None and len(lab_emb) >= 2 and len(ops_emb) >= 2 \
            and lab_emb.shape[1] == ops_emb.shape[1]:
        result = embedding_shift(lab_emb, ops_emb, n_permutations=n_permutations, seed=seed)
        out["embedding_shift"] = pd.DataFrame([result])
    elif version is not None:
        notes.append("embedding shift not measured: fewer than two embedded clips in a group")
    return out


# --- duplicates and outliers -----------------------------------------------------------------------------
def _exact(inventory: pd.DataFrame) -> pd.DataFrame:
    columns = ["sha256", "n", "scoring_ids", "labels", "conflicting"]
    repeated = inventory[inventory.duplicated("sha256", keep=False)]
    rows = []
    for sha, group in repeated.groupby("sha256", sort=True):
        labels = [None if pd.isna(v) else str(v) for v in group["user_label"]]
        distinct = sorted({v for v in labels if v is not None})
        rows.append({"sha256": sha, "n": len(group), "scoring_ids": group["scoring_id"].tolist(), "labels": labels,
                     "conflicting": len(distinct) > 1})
    out = pd.DataFrame(rows, columns=columns)
    if len(out):
        out = out.sort_values(["conflicting", "n", "sha256"], ascending=[False, False, True]).reset_index(drop=True)
    return out


def _representatives(scored: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray | None]:
    """One scored clip per content (the first scoring id of each sha256) and its L2-normalised embedding."""
    if scored.empty:
        return scored, None
    reps = scored.drop_duplicates("sha256").reset_index(drop=True)
    emb = _embeddings(reps)
    if emb is None:
        return reps, None
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return reps, emb / np.where(norms > 0, norms, 1.0)


def _duplicates(inventory: pd.DataFrame, scored: pd.DataFrame, threshold: float) -> dict[str, pd.DataFrame]:
    from sklearn.neighbors import NearestNeighbors

    near_cols = ["scoring_id_a", "scoring_id_b", "distance", "label_a", "label_b", "conflicting"]
    out = {"exact_duplicates": _exact(inventory), "near_duplicates": pd.DataFrame(columns=near_cols),
           "nearest_neighbours": pd.DataFrame(columns=["scoring_id", "neighbour", "distance"])}
    reps, emb = _representatives(scored)
    if emb is None or len(reps) < 2:
        return out
    labels = inventory.set_index("scoring_id")["user_label"]
    ids = reps["scoring_id"].tolist()
    nn = NearestNeighbors(metric="cosine", algorithm="brute").fit(emb)
    dist, idx = nn.kneighbors(emb, n_neighbors=2)
    # the first neighbour is the clip itself, unless another clip is at distance 0 too
    other = np.where(idx[:, 0] == np.arange(len(ids)), idx[:, 1], idx[:, 0])
    nearest = np.where(idx[:, 0] == np.arange(len(ids)), dist[:, 1], dist[:, 0])
    out["nearest_neighbours"] = pd.DataFrame({"scoring_id": ids, "neighbour": [ids[j] for j in other],
                                              "distance": np.maximum(nearest, 0.0)})
    pairs = []
    dists, neighbours = nn.radius_neighbors(emb, radius=threshold + 1e-12, sort_results=True)
    for i, (ds, js) in enumerate(zip(dists, neighbours, strict=True)):
        for d, j in zip(ds, js, strict=True):
            if j > i:
                a, b = labels.get(ids[i]), labels.get(ids[j])
                a = None if a is None or pd.isna(a) else str(a)
                b = None if b is None or pd.isna(b) else str(b)
                pairs.append((ids[i], ids[j], max(float(d), 0.0), a, b, a is not None and b is not None and a != b))
    near = pd.DataFrame(pairs, columns=near_cols)
    if len(near):
        near = near.sort_values(["conflicting", "distance", "scoring_id_a"],
                                ascending=[False, True, True]).reset_index(drop=True)
    out["near_duplicates"] = near
    return out


def _outliers(scored: pd.DataFrame, inventory: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    columns = ["rank", "scoring_id", "source", "ood_score", "is_outlier", "user_label", "predicted_label"]
    reps, emb = _representatives(scored)
    if emb is None or len(reps) < 3:
        if len(scored):
            notes.append("outliers not scored: fewer than three embedded clips")
        return pd.DataFrame(columns=columns)
    from cleanlab.outlier import OutOfDistribution

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ood = OutOfDistribution(params={"k": int(min(10, len(reps) - 1))})
        scores = np.asarray(ood.fit_score(features=emb, verbose=False), dtype=np.float64)
    q1, q3 = np.quantile(scores, [0.25, 0.75])
    fence = q1 - 3.0 * (q3 - q1)  # Tukey's far-out fence: flags nothing when the scores have no long low tail
    order = np.lexsort((reps["scoring_id"].to_numpy(), scores))
    table = pd.DataFrame({
        "rank": np.arange(1, len(order) + 1), "scoring_id": reps["scoring_id"].to_numpy()[order],
        "source": reps["scoring_id"].map(inventory.set_index("scoring_id")["source"]).to_numpy()[order],
        "ood_score": scores[order], "is_outlier": scores[order] < fence,
        "user_label": reps["user_label"].to_numpy()[order],
        "predicted_label": reps["predicted_label"].to_numpy()[order],
    })  # fmt: skip
    table.attrs["fence"] = float(fence)
    return table
