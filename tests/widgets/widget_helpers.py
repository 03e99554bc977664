"""Checks shared by the widget tests (imported as a sibling module; pytest puts this folder on the path)."""

from __future__ import annotations

from dlabel_lab.widgets._common import png_size

PNG = b"\x89PNG"


def shown_png(image) -> bool:
    """The image shows a PNG at its own pixel size (not hidden, not stretched)."""
    png = bytes(image.value)
    if not png.startswith(PNG) or image.layout.display == "none":
        return False
    width, height = png_size(png)
    return (image.layout.width, image.layout.height) == (f"{width}px", f"{height}px")


def hidden(image) -> bool:
    """The image is hidden and holds a valid PNG (no broken-image icon if shown)."""
    return image.layout.display == "none" and bytes(image.value).startswith(PNG)


def score_all(ingest, clips):
    return ingest.score_many([c["path"] for c in clips], [c["label"] for c in clips], progress=False)


def latest(store, sid):
    return store.matched(scoring_ids=[sid]).df()["user_label"].iloc[0]


def press(w, key: str, **modifiers: bool) -> None:
    """Send a keydown as the browser does (ipyevents' message to the kernel)."""
    event = {"type": "keydown", "key": key, "code": f"Key{key.upper()}", "repeat": False, "altKey": False,
             "ctrlKey": False, "metaKey": False, "shiftKey": False, "timeStamp": 0.0, **modifiers}
    w.key_events._handle_msg({"content": {"data": {"method": "custom", "content": event}}, "buffers": []})
