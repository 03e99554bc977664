"""Small helpers shared by the widgets: figures to PNG, tables to HTML, guarded callbacks.

Figures are drawn on a :class:`matplotlib.figure.Figure` built without pyplot,
so no backend and no display are needed, and rendered to PNG bytes for an
``ipywidgets.Image``.

Example:
    >>> fig, ax = new_figure((2, 2))
    >>> figure_png(fig)[:4]
    b'\\x89PNG'
"""

from __future__ import annotations

import functools
import html
import io
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..errors import DLabelError

__all__ = ["new_figure", "figure_png", "frame_png", "table_html", "text_html", "guarded"]


def new_figure(figsize: tuple[float, float], ncols: int = 1) -> tuple[Figure, Any]:
    """A pyplot-free figure and its axes (one, or a row of ``ncols``).

    Example:
        >>> fig, axes = new_figure((4, 2), ncols=2)
        >>> len(axes)
        2
    """
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, (fig.subplots() if ncols == 1 else fig.subplots(1, ncols, squeeze=False)[0])


def figure_png(fig: Figure, *, dpi: int = 90) -> bytes:
    """The figure as PNG bytes.

    Example:
        >>> figure_png(new_figure((1, 1))[0]).startswith(b"\\x89PNG")
        True
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def frame_png(frame: np.ndarray) -> bytes:
    """One RGB ``uint8`` frame ``(H, W, 3)`` as PNG bytes.

    Example:
        >>> frame_png(np.zeros((4, 4, 3), np.uint8))[:4]
        b'\\x89PNG'
    """
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(np.asarray(frame)[..., ::-1]))
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 images
        raise ValueError("could not encode the frame as PNG")
    return buf.tobytes()


def table_html(df: pd.DataFrame, *, max_rows: int = 50, float_format: str = "{:.3f}") -> str:
    """A data frame as an HTML table, at most ``max_rows`` rows, values escaped.

    Example:
        >>> "<table" in table_html(pd.DataFrame({"a": [1.0]}))
        True
    """
    if df is None or len(df) == 0:
        return "<i>no rows</i>"
    shown = df.head(max_rows)
    more = "" if len(df) <= max_rows else f"<br><i>showing {max_rows} of {len(df)} rows</i>"
    return shown.to_html(float_format=float_format.format, escape=True, border=0, na_rep="") + more


def text_html(text: str, *, tag: str = "p") -> str:
    """Escaped text in one HTML element.

    Example:
        >>> text_html("a < b")
        '<p>a &lt; b</p>'
    """
    return f"<{tag}>{html.escape(str(text))}</{tag}>"


def guarded(method: Callable) -> Callable:
    """Run a widget callback inside the widget's ``output``, so its errors are seen.

    The package's own errors (``DLabelError``) are printed as one line and kept in
    ``self.errors``; anything else is kept too and re-raised, which Jupyter shows
    as a traceback in the output widget.

    Example:
        >>> import ipywidgets
        >>> class View:
        ...     def __init__(self):
        ...         self.output, self.errors = ipywidgets.Output(), []
        ...     @guarded
        ...     def fail(self):
        ...         raise DLabelError("nothing to show")
        >>> view = View()
        >>> view.fail()
        DLabelError: nothing to show
        >>> len(view.errors)
        1
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.output:
            try:
                return method(self, *args, **kwargs)
            except DLabelError as exc:
                self.errors.append(exc)
                print(f"{type(exc).__name__}: {exc}")
            except Exception as exc:
                self.errors.append(exc)
                raise
        return None

    return wrapper
