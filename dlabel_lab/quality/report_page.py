"""The figures and the HTML page of a :class:`~dlabel_lab.quality.data_report.DataReport`.

Figures are plain ``matplotlib.figure.Figure`` objects (no pyplot state, no
backend chosen). Text from the store reaches a figure only through
:func:`plot_text` (printable, shortened, ``$`` escaped so that mathtext never
parses a class name) and the page only through :func:`escape`: class names,
ids, sources and errors may be hostile. The page embeds its figures as
base64 PNG and forbids scripts with a Content Security Policy.

Example:
    >>> plot_text("$x$ <b>")
    '\\\\$x\\\\$ <b>'
    >>> escape("<script>")
    '&lt;script&gt;'
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["escape", "figures", "html_page", "plot_text", "table_html"]

_ROWS = 50  # rows of a table shown on the page; the DataFrame keeps all


def escape(value: object) -> str:
    """``value`` as text safe inside HTML (``&``, ``<``, ``>``, quotes escaped)."""
    return html.escape(str(value), quote=True)


def plot_text(value: object, limit: int = 28) -> str:
    """``value`` as a matplotlib label: printable, at most ``limit`` characters, ``$`` escaped, no leading ``_``."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join("" if v is None else str(v) for v in value)
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{value:.4g}"
    if value is pd.NaT:
        return ""
    return str(value)


def table_html(df: pd.DataFrame, *, max_rows: int = _ROWS, index: bool = False,
               highlight: str | None = None) -> str:
    """A DataFrame as an escaped HTML table (its first ``max_rows`` rows); rows where ``highlight`` is true marked."""
    if df is None or df.empty:
        return "<p class='empty'>none</p>"
    shown = df.head(max_rows)
    head = ([escape(df.index.name or "")] if index else []) + [escape(c) for c in df.columns]
    parts = ["<table><thead><tr>", *(f"<th>{h}</th>" for h in head), "</tr></thead><tbody>"]
    for key, row in shown.iterrows():
        marked = highlight is not None and bool(row.get(highlight))
        parts.append("<tr class='conflict'>" if marked else "<tr>")
        if index:
            parts.append(f"<th>{escape(_cell(key))}</th>")
        parts.extend(f"<td>{escape(_cell(v))}</td>" for v in row.tolist())
        parts.append("</tr>")
    parts.append("</tbody></table>")
    if len(df) > max_rows:
        parts.append(f"<p class='more'>{len(df) - max_rows} more row(s) in the DataFrame</p>")
    return "".join(parts)


# --- figures ----------------------------------------------------------------------------------------------
def _figure(width: float, height: float, ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _stacked(table: pd.DataFrame, title: str, *, horizontal: bool, top: int = 15):
    from matplotlib import colormaps

    totals = table.sum(axis=1).sort_values(ascending=False, kind="mergesort")
    table = table.loc[totals.index[:top]]
    if table.shape[1] > 20:  # the 19 largest classes, the rest summed
        keep = table.sum(axis=0).sort_values(ascending=False, kind="mergesort").index[:19]
        rest = table.drop(columns=keep).sum(axis=1)
        table = table[[c for c in table.columns if c in set(keep)]].assign(**{"(other classes)": rest})
    if horizontal:
        table = table.iloc[::-1]
    fig, (ax,) = _figure(7.5, 1.2 + 0.35 * len(table) if horizontal else 3.6)
    cmap = colormaps["tab20"]
    base = np.zeros(len(table))
    pos = np.arange(len(table))
    for k, column in enumerate(table.columns[:20]):
        values = table[column].to_numpy(dtype=float)
        colour = "#bbbbbb" if column == "(no label)" else cmap(k % 20)
        if horizontal:
            ax.barh(pos, values, left=base, color=colour, label=plot_text(column))
        else:
            ax.bar(pos, values, bottom=base, color=colour, label=plot_text(column))
        base += values
    names = [plot_text(i, 40) for i in table.index]
    if horizontal:
        ax.set_yticks(pos, names)
        ax.set_xlabel("clips")
    else:
        ax.set_xticks(pos, names, rotation=45, ha="right")
        ax.set_ylabel("clips")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _missing_figure(report) -> Any:
    counts = report.tables["counts"].set_index("what")["n"]
    keys = ["without_label", "without_prediction", "unmatched", "decode_failures"]
    fig, (ax,) = _figure(6.0, 2.4)
    ax.barh(np.arange(len(keys))[::-1], [counts[k] for k in keys], color=["#4c72b0", "#dd8452", "#c44e52", "#8172b3"])
    ax.set_yticks(np.arange(len(keys))[::-1], [k.replace("_", " ") for k in keys])
    ax.set_xlim(0, max(1, *(counts[k] for k in keys)) * 1.05)
    ax.set_xlabel("clips")
    ax.set_title(f"missing parts of {counts['clips']} clips")
    return fig


def _factor_figure(report) -> Any:
    factors = report.tables["factors"]
    shift = report.tables["factor_shift"].set_index("factor")
    names = [c for c in factors.columns if c not in ("group", "clip")]
    fig, axes = _figure(2.0 * len(names), 3.0, ncols=len(names))
    for ax, name in zip(axes, names, strict=True):
        data = [pd.to_numeric(factors.loc[factors["group"] == g, name], errors="coerce").dropna().to_numpy()
                for g in ("lab", "operational")]
        ax.boxplot(data, tick_labels=["lab", "ops"], widths=0.6)
        delta = shift.loc[name, "cliffs_delta"] if name in shift.index else float("nan")
        ax.set_title(f"{name}\nCliff's δ {delta:+.2f}", fontsize="small")
    return fig


def _duplicates_figure(report) -> Any:
    nn = report.tables["nearest_neighbours"]["distance"].to_numpy(dtype=float)
    threshold = report.settings["near_duplicate_threshold"]
    fig, (ax,) = _figure(6.0, 3.0)
    positive = nn[nn > 0]
    low = min(positive.min() if len(positive) else 1e-6, threshold if threshold > 0 else 1.0) / 2
    values = np.maximum(nn, low)
    bins = np.geomspace(low, max(values.max(), low * 10), 40)
    ax.hist(values, bins=bins, color="#4c72b0")
    ax.set_xscale("log")
    ax.axvline(max(threshold, low), color="#c44e52", linestyle="--", label=f"threshold {threshold:g}")
    ax.set_xlabel("cosine distance to the nearest other clip (embedding)")
    ax.set_ylabel("clips")
    near, exact = report.tables["near_duplicates"], report.tables["exact_duplicates"]
    ax.set_title(f"{len(near)} near pair(s), {len(exact)} exact group(s)")
    ax.legend(frameon=False)
    return fig


def _label_figure(report) -> Any:
    checked = report.label_check.checked.sort_values("label_quality", kind="mergesort")
    fig, (ax,) = _figure(6.0, 3.0)
    x = np.arange(1, len(checked) + 1)
    flagged = checked["is_label_issue"].to_numpy(dtype=bool)
    ax.scatter(x[~flagged], checked["label_quality"].to_numpy()[~flagged], s=8, color="#4c72b0", label="kept")
    ax.scatter(x[flagged], checked["label_quality"].to_numpy()[flagged], s=14, color="#c44e52", label="flagged")
    ax.set_xlabel("labelled clips, lowest label quality first")
    ax.set_ylabel("label quality")
    ax.set_title(f"{int(flagged.sum())} of {len(checked)} labels flagged ({report.label_check.method})")
    ax.legend(frameon=False)
    return fig


def _outlier_figure(report) -> Any:
    table = report.tables["outliers"]
    fig, (ax,) = _figure(6.0, 3.0)
    ax.hist(table["ood_score"].to_numpy(dtype=float), bins=30, color="#4c72b0")
    fence = table.attrs.get("fence")
    if fence is not None and math.isfinite(fence) and fence >= 0:
        ax.axvline(fence, color="#c44e52", linestyle="--", label="far-out fence")
        ax.legend(frameon=False)
    elif fence is not None:
        ax.text(0.02, 0.95, "far-out fence below 0: no outlier", transform=ax.transAxes, va="top", fontsize="small")
    ax.set_xlabel("out-of-distribution score (low: unusual)")
    ax.set_ylabel("clips")
    ax.set_title(f"{int(table['is_outlier'].sum())} outlier(s) of {len(table)} clips")
    return fig


def figures(report) -> dict[str, Any]:
    """The report's figures, keyed by part; parts without data are left out."""
    t = report.tables
    out = {"missing": _missing_figure(report)}
    if len(t["class_by_source"]):
        out["classes_by_source"] = _stacked(t["class_by_source"], "user labels per source", horizontal=True)
    if len(t["class_by_window"]):
        out["classes_by_window"] = _stacked(t["class_by_window"].sort_index(),
                                            f"user labels per time window ({report.settings['time_window']})",
                                            horizontal=False, top=len(t["class_by_window"]))
    if len(t["factors"]):
        out["factor_shift"] = _factor_figure(report)
    if len(t["nearest_neighbours"]):
        out["duplicates"] = _duplicates_figure(report)
    if report.label_check is not None:
        out["label_issues"] = _label_figure(report)
    if len(t["outliers"]):
        out["outliers"] = _outlier_figure(report)
    return out


# --- the page ------------------------------------------------------------------------------------------------
_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;margin-top:1.6em}h3{font-size:1.05em}
table{border-collapse:collapse;font-size:.85em;margin:.4em 0}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top;max-width:32em;overflow-wrap:anywhere}
thead th{background:#f2f2f2}tr.conflict td{background:#fde2e2}
pre{background:#f7f7f7;padding:.6em;white-space:pre-wrap}.empty,.more{color:#777;font-size:.85em}
img{max-width:100%}"""
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(figs: dict, key: str) -> str:
    fig = figs.get(key)
    return "" if fig is None else f"<p><img alt='{escape(key)}' src='data:image/png;base64,{_png(fig)}'></p>"


def html_page(report) -> str:
    """The report as one HTML document (no script, no external resource)."""
    t = report.tables
    figs = figures(report)
    lc = report.label_check
    threshold = float(report.settings["near_duplicate_threshold"])
    made = f"{report.created_at:%Y-%m-%d %H:%M}"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{_CSP}\">",
        f"<title>data report: {escape(report.store_path)}</title><style>{_STYLE}</style></head><body>",
        "<h1>Data report</h1>",
        f"<p>store <code>{escape(report.store_path)}</code>, model version "
        f"<code>{escape(report.model_version or 'none')}</code>, made {escape(made)} "
        "UTC</p>",
        f"<pre>{escape(report.summary())}</pre>",
        "<h2>Missing</h2>", table_html(t["counts"]), _img(figs, "missing"),
        "<h3>Clips without a label</h3>", table_html(t["without_label"]),
        "<h3>Clips without a prediction</h3>", table_html(t["without_prediction"]),
        "<h3>Unmatched ids and why</h3>", table_html(t["unmatched"]),
        "<h3>Clips that could not be read (execution log)</h3>", table_html(t["decode_failures"]),
        "<h2>Distribution</h2>",
        "<h3>User labels per source</h3>", table_html(t["class_by_source"], index=True),
        _img(figs, "classes_by_source"),
        "<h3>User labels per label source</h3>", table_html(t["class_by_label_source"], index=True),
        f"<h3>User labels per time window ({escape(report.settings['time_window'])})</h3>",
        table_html(t["class_by_window"], index=True), _img(figs, "classes_by_window"),
        "<h2>Lab vs operational shift</h2>",
        "<h3>Clip factors</h3>", table_html(t["factor_shift"]), _img(figs, "factor_shift"),
        "<h3>Embeddings</h3>", table_html(t["embedding_shift"]),
        "<h2>Duplicates</h2>",
        "<h3>Exact (same sha256); conflicting labels highlighted</h3>",
        table_html(t["exact_duplicates"], highlight="conflicting"),
        f"<h3>Near (cosine distance &le; {threshold:g}); conflicting "
        "labels highlighted</h3>",
        table_html(t["near_duplicates"], highlight="conflicting"), _img(figs, "duplicates"),
        "<h2>Likely label errors</h2>",
        f"<p>{escape(lc.description if lc is not None else 'not checked (see the notes)')}. Put them in front of a "
        "labeller with <code>report.relabel_queue()</code> and the <code>LabelQueue</code> widget.</p>",
        table_html(t["label_issues"]), _img(figs, "label_issues"),
        "<h2>Outliers</h2>", table_html(t["outliers"], max_rows=20, highlight="is_outlier"), _img(figs, "outliers"),
        "<h2>Notes</h2>",
        "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in report.notes) + "</ul>" if report.notes
        else "<p class='empty'>none</p>",
        "</body></html>",
    ]
    return "\n".join(parts)
