"""The accuracy estimates of a version against the labels they cost, one series per method.

Compute once, draw on demand: :func:`~dlabel_lab.estimate.api.estimate_history`
reads the stored estimates, :func:`plot_estimates` draws any table with
their columns (matplotlib, imported on first use) and returns the axes.

Example:
    >>> import pandas as pd
    >>> table = pd.DataFrame({"method": ["srs", "ppi"], "labels_used": [20, 20], "point": [0.8, 0.82],
    ...                       "low": [0.56, 0.7], "high": [0.94, 0.91]})
    >>> ax = plot_estimates(table, truth=0.83)
    >>> ax.get_xlabel()
    'labels spent'
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError

__all__ = ["plot_estimates"]

_NEEDED = ("method", "labels_used", "point", "low", "high")


#: One colour per estimator, the same in every plot (matplotlib's tab10).
METHOD_COLOURS = {"srs": "tab:blue", "ppi": "tab:orange", "stratified": "tab:green", "weighted": "tab:red"}


def plot_estimates(history: pd.DataFrame, *, truth: float | None = None, ax: Any = None) -> Any:  # noqa: ANN401
    """Each estimate as a point with its interval, against the labels it used, one colour per method.

    Args:
        history: What :func:`~dlabel_lab.estimate.api.estimate_history`
            returns (or any table with ``method``, ``labels_used``,
            ``point``, ``low``, ``high``).
        truth: The true accuracy, when known (a benchmark), drawn as a line.
        ax: Axes to draw on (default: a new figure).

    Returns:
        The matplotlib axes.
    """
    if not isinstance(history, pd.DataFrame):
        raise ConfigError(f"plot_estimates needs a DataFrame (estimate_history), got {type(history).__name__}")
    missing = [c for c in _NEEDED if c not in history.columns]
    if missing:
        raise ConfigError(f"plot_estimates needs columns {list(_NEEDED)}; missing {missing}")
    if history.empty:
        raise ConfigError("no estimate to plot: estimate_accuracy has stored none for this version yet")
    from matplotlib.axes import Axes

    if ax is None:
        import matplotlib.pyplot as plt  # lazily: importing the package selects no backend

        _, ax = plt.subplots(figsize=(6.0, 4.0))
    elif not isinstance(ax, Axes):
        raise ConfigError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    methods = list(dict.fromkeys(history["method"]))
    span = float(history["labels_used"].max() - history["labels_used"].min()) or float(history["labels_used"].max())
    for i, method in enumerate(methods):
        rows = history[history["method"] == method].sort_values("labels_used")
        x = rows["labels_used"].to_numpy(dtype=np.float64) + (i - (len(methods) - 1) / 2) * 0.01 * span
        y = rows["point"].to_numpy(dtype=np.float64)
        err = np.vstack([y - rows["low"].to_numpy(dtype=np.float64), rows["high"].to_numpy(dtype=np.float64) - y])
        ax.errorbar(x, y, yerr=np.clip(err, 0, None), fmt="o-", capsize=4, label=str(method),
                    color=METHOD_COLOURS.get(str(method)))
    if truth is not None:
        ax.axhline(truth, color="grey", ls="--", label=f"truth {truth:.3f}")
    ax.set_xlabel("labels spent")
    ax.set_ylabel("accuracy")
    ax.set_ylim(max(0.0, float(history["low"].min()) - 0.05), min(1.0, float(history["high"].max()) + 0.05) + 0.001)
    ax.legend(fontsize="small")
    return ax
