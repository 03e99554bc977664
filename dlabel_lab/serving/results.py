"""What scoring produces (:class:`ScoringResult`) and the batches the endpoints pass between them.

Example:
    >>> ScoringResult(scoring_id="0190...", model_version="shapes-v1", label="circle",
    ...               predicted_label="circle").correct
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import MediaError

__all__ = ["ScoringResult"]


@dataclass(frozen=True)
class ScoringResult:
    """What one scoring event produced.

    Attributes:
        scoring_id: The id that ties every logged part together.
        model_version: The model version that scored the clip.
        label: The user score forwarded with the clip, if any.
        predicted_label: The model's top class (``None`` if the model failed).
        confidence: Probability of the top class.
        probabilities: Class name -> probability.
        latency_ms: Model time per clip in the batch.
        sha256: Digest of the raw clip bytes.
        error: The model's error message when it failed (the id is then unmatched).
        objects: What a detector identified, per class: ``label``, ``tracks``, ``boxes`` and
            mean ``score`` (empty for clip classifiers; their top-k is in the store).
        duplicate_of: The earliest scoring id whose clip had exactly these
            bytes, when this clip was scored before (also in the execution
            log as a ``duplicate_clip`` run); ``None`` for new content.
    """

    scoring_id: str
    model_version: str
    label: str | None = None
    predicted_label: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0
    sha256: str = ""
    error: str | None = None
    duplicate_of: str | None = None
    objects: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The model scored the clip."""
        return self.error is None

    @property
    def correct(self) -> bool | None:
        """Prediction equals the user score (``None`` without one)."""
        if self.label is None or self.predicted_label is None:
            return None
        return self.label == self.predicted_label


@dataclass
class _Item:
    scoring_id: str
    tensor: torch.Tensor
    record: dict
    label: str | None
    sha256: str = ""
    duplicate_of: str | None = None


@dataclass
class _Batch:
    """Clips of one batch, staged and decoded, with the ones left out (index into the sources, error)."""

    items: list[_Item] = field(default_factory=list)
    raws: list[dict] = field(default_factory=list)
    failed: list[tuple[int, MediaError]] = field(default_factory=list)
    stopped: bool = False
