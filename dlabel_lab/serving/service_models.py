"""The scoring service's request and answer shapes (pydantic), which make its OpenAPI schema.

Example:
    >>> LabelRow(scoring_id="0190a0b2-7c3d-7e4f-8a5b-1c2d3e4f5a6b", label="circle").source
    'human'
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

__all__ = ["Health", "ModelInfo", "ScoreAnswer", "ScorePath", "LabelRow", "LabelRows", "LabelIds"]


class Health(BaseModel):
    """Who serves which store."""

    store: str
    pid: int
    read_only: bool
    model_version: str | None = None


class ModelInfo(BaseModel):
    """The version that scores clips: its classes and preprocessing."""

    model_version: str
    classes: list[str]
    spec: dict


class ScoreAnswer(BaseModel):
    """One scoring event (a :class:`~dlabel_lab.ScoringResult` plus whether it was answered from the store)."""

    scoring_id: str
    model_version: str
    label: str | None = None
    predicted_label: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] = Field(default_factory=dict)
    latency_ms: float = 0.0
    sha256: str = ""
    error: str | None = None
    duplicate_of: str | None = None
    objects: list[dict] = Field(default_factory=list)
    replayed: bool = False


class ScorePath(BaseModel):
    """A clip the server reads itself (only inside an allow-listed root)."""

    path: str = Field(max_length=4096)
    scoring_id: str
    label: str | None = None


class LabelRow(BaseModel):
    """One user score; ``labelled_at`` is stamped by the client so that a retry is recognised."""

    scoring_id: str
    label: str = Field(max_length=256)
    source: str = Field(default="human", max_length=256)
    author: str | None = Field(default=None, max_length=256)
    labelled_at: datetime | None = None


class LabelRows(BaseModel):
    """A batch of user scores."""

    rows: list[LabelRow]


class LabelIds(BaseModel):
    """The ``label_id`` of each row, in order (a replayed row gets its stored id)."""

    label_ids: list[int]
