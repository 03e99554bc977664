"""Checks shared by the widget tests (imported as a sibling module; pytest puts this folder on the path)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

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
    event = {
        "type": "keydown",
        "key": key,
        "code": f"Key{key.upper()}",
        "repeat": False,
        "altKey": False,
        "ctrlKey": False,
        "metaKey": False,
        "shiftKey": False,
        "timeStamp": 0.0,
        **modifiers,
    }
    w.key_events._handle_msg({"content": {"data": {"method": "custom", "content": event}}, "buffers": []})


@dataclass
class FakeAnalysis:
    model_version: str
    scoring_ids: list
    labels: list
    predicted: list
    correct: np.ndarray
    frames: np.ndarray
    gradcam: np.ndarray
    frame_profile: np.ndarray
    functions: pd.DataFrame
    tags: pd.DataFrame
    factors: pd.DataFrame
    implicated_factors: pd.DataFrame


def fake_analysis(model_version="shapes-v1", n=3, t=4, size=16):
    """A seeded stand-in for ``derive.Analysis`` with what the AttributionViewer reads."""
    rng = np.random.default_rng(0)
    ids = [f"0190-{i}" for i in range(n)]
    profile = rng.random((n, t))
    return FakeAnalysis(
        model_version=model_version,
        scoring_ids=ids,
        labels=["circle", "square", "circle"],
        predicted=["circle", "circle", "square"],
        correct=np.array([True, False, False]),
        frames=rng.integers(0, 255, (n, t, size, size, 3), dtype=np.uint8),
        gradcam=rng.random((n, t, size, size)),
        frame_profile=profile / profile.sum(axis=1, keepdims=True),
        functions=pd.DataFrame(
            {
                "layer": ["embed"] * 2,
                "neuron": [0, 1],
                "class_label": ["circle", "square"],
                "function": ["brightness+ (0.8)", "object_scale- (0.6)"],
            }
        ),
        tags=pd.DataFrame({"scoring_id": [ids[1]], "tag": ["dark"], "score": [0.9], "source": ["neuron:0"]}),
        factors=pd.DataFrame({"scoring_id": ids, "brightness": [0.5, 0.2, 0.3], "motion": [0.1, 0.2, 0.3]}),
        implicated_factors=pd.DataFrame({"feature": ["brightness"], "cohens_d": [-1.2], "p_value": [0.04]}),
    )
