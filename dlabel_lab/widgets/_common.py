"""Small helpers shared by the widgets: figures to PNG, chart images, tables to HTML, event handlers.

Figures are drawn on a :class:`matplotlib.figure.Figure` built without pyplot,
so no backend and no display are needed, and rendered to PNG bytes for an
``ipywidgets.Image``; :func:`show_png` sizes the image to the PNG's own
pixels (a chart is never stretched by its neighbours) and hides an image that
has nothing to show (no broken-image icon).

Errors: a handler made by :func:`handler` (what the widget's own buttons,
menus and keys call) shows the package's errors inside the widget; public
methods called from code raise to their caller as usual. When the widget's
store has been closed, a handler switches the widget off and says so instead
of failing on every click.

Example:
    >>> fig, ax = new_figure((2, 2))
    >>> figure_png(fig)[:4]
    b'\\x89PNG'
"""

from __future__ import annotations

import functools
import getpass
import html
import io
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import cv2
import ipywidgets as widgets
import numpy as np
import pandas as pd
from ipyevents import Event
from matplotlib.figure import Figure

from ..errors import DLabelError, StoreError

__all__ = [
    "BLANK_PNG",
    "new_figure",
    "figure_png",
    "frame_png",
    "png_size",
    "chart_image",
    "show_png",
    "table_html",
    "text_html",
    "store_is_closed",
    "switch_off",
    "run_shown",
    "handler",
    "short_ids",
    "default_author",
    "NUMBER_KEYS",
    "class_buttons",
    "key_actions",
    "press_key",
    "keys_hint",
    "key_events",
]


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


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height in pixels of PNG bytes, read from the header.

    Example:
        >>> png_size(frame_png(np.zeros((3, 5, 3), np.uint8)))
        (5, 3)
    """
    png = bytes(png)
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not PNG bytes")
    return struct.unpack(">II", png[16:24])


BLANK_PNG = frame_png(np.full((1, 1, 3), 255, np.uint8))
"""A valid 1 x 1 white PNG: what a hidden image holds instead of nothing (a broken-image icon)."""


def chart_image() -> widgets.Image:
    """An image for a chart or frames: hidden until :func:`show_png` gives it a PNG.

    Example:
        >>> chart_image().layout.display
        'none'
    """
    return widgets.Image(
        value=BLANK_PNG,
        format="png",
        layout=widgets.Layout(display="none", object_fit="contain", align_self="flex-start"),
    )


def show_png(image: widgets.Image, png: bytes | None) -> None:
    """Show ``png`` at its own pixel size (never stretched by a neighbour), or hide the image when empty.

    Example:
        >>> image = chart_image()
        >>> show_png(image, frame_png(np.zeros((3, 5, 3), np.uint8)))
        >>> image.layout.width, image.layout.height, image.layout.display
        ('5px', '3px', None)
    """
    if not png:
        image.value, image.layout.display = BLANK_PNG, "none"
        return
    width, height = png_size(png)
    image.value = png
    image.layout.width, image.layout.height, image.layout.display = f"{width}px", f"{height}px", None


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


def store_is_closed(store: Any) -> bool:
    """Whether a payload store has been closed (``store.close()``); ``False`` for anything else.

    Example:
        >>> store_is_closed(None)
        False
    """
    closed = getattr(store, "closed", None)
    return closed if isinstance(closed, bool) else False


def _controls(widget: widgets.Widget) -> Iterator[widgets.Widget]:
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _controls(child)


def switch_off(view: widgets.Box, message: str) -> None:
    """Disable every control of ``view`` and show ``message`` above them (once).

    Example:
        >>> view = widgets.VBox([widgets.Button()])
        >>> switch_off(view, "the store is closed")
        >>> view.children[1].disabled, "closed" in view.children[0].value
        (True, True)
    """
    for w in _controls(view):
        if w.has_trait("disabled"):
            w.disabled = True
    if getattr(view, "switched_off", None) is None:
        view.switched_off = widgets.HTML(f'<div style="color:#b00020;font-weight:bold">{html.escape(message)}</div>')
        view.children = (view.switched_off, *view.children)


def _closed_message(store: Any) -> str:
    return (
        f"The payload store {getattr(store, 'path', store)} is closed: this widget is switched off. "
        "Open the store again (PayloadStore(path)) and build a new widget to go on."
    )


def run_shown(view: Any, action: Callable, *args: Any) -> Any:
    """Run ``action(*args)`` for one of the widget's own events, showing what goes wrong inside the widget.

    ``view`` has an ``output`` (``ipywidgets.Output``), an ``errors`` list
    and, when it works on a store, a ``store``. The package's own errors
    (``DLabelError``) are written to ``view.output`` as one line and kept in
    ``view.errors``; anything else is kept too and re-raised, which Jupyter
    shows as a traceback in the output widget. A closed store switches the
    view off (:func:`switch_off`) instead of failing.

    Example:
        >>> view = widgets.VBox(); view.output, view.errors = widgets.Output(), []
        >>> def fail():
        ...     raise DLabelError("nothing to show")
        >>> run_shown(view, fail)
        >>> view.output.outputs[0]["text"], len(view.errors)
        ('DLabelError: nothing to show\\n', 1)
    """
    store = getattr(view, "store", None)
    with view.output:
        if store_is_closed(store):
            switch_off(view, _closed_message(store))
            return None
        try:
            return action(*args)
        except DLabelError as exc:
            if isinstance(exc, StoreError) and store_is_closed(store):
                switch_off(view, _closed_message(store))
                return None
            view.errors.append(exc)
            view.output.append_stderr(f"{type(exc).__name__}: {exc}\n")
        except Exception as exc:
            view.errors.append(exc)
            raise
    return None


def handler(view: Any, action: Callable, *args: Any) -> Callable[..., None]:
    """An event handler (``on_click``, ``observe``) that runs ``action(*args)`` through :func:`run_shown`.

    The event itself (the button, the change) is not passed on. A click on a
    button that is off (one that arrives after it was disabled) does nothing.

    Example:
        >>> button = widgets.Button()
        >>> button.on_click(handler(view, print, "clicked"))  # doctest: +SKIP
    """

    def on_event(*event: Any) -> None:
        if event and isinstance(event[0], widgets.Button) and event[0].disabled:
            return
        run_shown(view, action, *args)

    return on_event


def short_ids(ids: Iterable[str], *, min_len: int = 6) -> dict[str, str]:
    """Each id's shortest tail (at least ``min_len`` characters) that no other id shares, as ``"…tail"``.

    Scoring ids are time-ordered UUIDs: ids made in the same minute share
    their first characters, so a head would not tell them apart; the tail is
    the random part.

    Example:
        >>> short_ids(["0190-aaaa-1234", "0190-aaaa-5234"], min_len=3)
        {'0190-aaaa-1234': '…1234', '0190-aaaa-5234': '…5234'}
    """
    distinct = list(dict.fromkeys(str(i) for i in ids))
    n = min_len
    while n < max((len(i) for i in distinct), default=0) and len({i[-n:] for i in distinct}) < len(distinct):
        n += 1
    return {i: ("…" + i[-n:] if len(i) > n else i) for i in distinct}


def default_author() -> str:
    """Who is labelling by default: the operating system's user name (``"unknown"`` when it has none).

    Example:
        >>> isinstance(default_author(), str)
        True
    """
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):  # no user name in the environment nor in the password database
        return "unknown"


# -- keys: one scheme for every labelling widget ------------------------------------------------
NUMBER_KEYS = "123456789"
"""The class keys, one per class in the model's class order (the first nine classes get one)."""


def class_buttons(
    view: Any, classes: Sequence[str], action: Callable[[str], Any]
) -> tuple[dict[str, widgets.Button], dict[str, str]]:
    """One button per class, labelled with its key (``"1 circle"``), whose click runs ``action(cls)`` shown in ``view``.

    Returns:
        ``(buttons, class_keys)``: class name -> button, class name -> its number key (the first nine).

    Example:
        >>> view = widgets.VBox(); view.output, view.errors = widgets.Output(), []
        >>> buttons, keys = class_buttons(view, ["circle", "square"], print)
        >>> buttons["square"].description, keys["square"]
        ('2 square', '2')
    """
    class_keys = dict(zip(classes, NUMBER_KEYS, strict=False))
    buttons = {
        c: widgets.Button(
            description=f"{class_keys[c]} {c}" if c in class_keys else c,
            button_style="primary",
            tooltip=f"key {class_keys.get(c, '-')}",
        )
        for c in classes
    }
    for cls, button in buttons.items():
        button.on_click(handler(view, action, cls))
    return buttons, class_keys


def key_actions(
    buttons: Mapping[str, widgets.Button],
    class_keys: Mapping[str, str],
    action: Callable[[str], Any],
    **others: tuple[widgets.Widget, Callable[[], Any]],
) -> dict[str, tuple[widgets.Widget, Callable]]:
    """Key -> ``(control, action)``: each class's number key, then ``others`` (``s=(skip_button, skip)``).

    The key's action runs only while its control is on (see :func:`press_key`).
    Use ``space`` for the space bar.

    Example:
        >>> b = {"circle": widgets.Button()}
        >>> sorted(key_actions(b, {"circle": "1"}, print, s=(widgets.Button(), print)))
        ['1', 's']
    """
    actions: dict[str, tuple[widgets.Widget, Callable]] = {
        key: (buttons[cls], functools.partial(action, cls)) for cls, key in class_keys.items()
    }
    for name, bound in others.items():
        actions[" " if name == "space" else name] = bound
    return actions


def press_key(actions: Mapping[str, tuple[widgets.Widget, Callable]], key: str) -> bool:
    """Run the action bound to ``key`` (letters in either case) if its control is on.

    Returns:
        Whether the key means something now.

    Example:
        >>> press_key({"s": (widgets.Button(), lambda: None)}, "S")
        True
    """
    bound = actions.get(key) or actions.get(key.lower())
    if bound is None or bound[0].disabled:
        return False
    bound[1]()
    return True


def keys_hint(n_classes: int, extra: str) -> widgets.HTML:
    """The hint line under a labelling widget's buttons.

    Example:
        >>> keys_hint(3, "s skip").value
        '<p>keys, with the pointer over this widget: 1-3 class, s skip</p>'
    """
    return widgets.HTML(text_html(f"keys, with the pointer over this widget: 1-{min(n_classes, 9)} class, {extra}"))


def key_events(view: Any) -> Event:
    """An ipyevents ``Event`` that sends ``view``'s keydowns (no Ctrl, Alt, Meta) to ``view.press(key)``.

    The notebook's own shortcuts do not fire as well (``prevent_default_action``);
    what ``press`` raises is shown inside the view (:func:`run_shown`).

    Example:
        >>> w.key_events = key_events(w)  # doctest: +SKIP
    """
    events = Event(
        source=view, watched_events=["keydown"], prevent_default_action=True, ignore_modifier_key_events=True
    )

    def on_key(event: dict) -> None:
        if event.get("type") == "keydown" and not any(event.get(m) for m in ("ctrlKey", "altKey", "metaKey")):
            run_shown(view, view.press, str(event.get("key", "")))

    events.on_dom_event(on_key)
    return events
