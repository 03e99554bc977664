"""MC-dropout: T stochastic forward passes of a model, for BALD and disagreement scores.

Only the model's dropout layers run in training mode; BatchNorm and
everything else stay in evaluation mode, so the passes differ only by the
dropout masks (Gal and Ghahramani, 2016). Each pass draws its masks from a
seeded generator, so the same seed gives the same samples.

Example:
    >>> mc = mc_dropout_probabilities(model, x, passes=8)  # doctest: +SKIP
    >>> mc.shape  # (passes, N, classes)  # doctest: +SKIP
    (8, 16, 3)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["mc_dropout_probabilities", "has_dropout"]

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def has_dropout(model: nn.Module) -> bool:
    """Whether the model has a dropout layer with ``p > 0``.

    Example:
        >>> has_dropout(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.2)))
        True
    """
    return any(isinstance(m, _DROPOUT) and m.p > 0 for m in model.modules())


@contextlib.contextmanager
def _dropout_on(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    for m in model.modules():
        if isinstance(m, _DROPOUT):
            m.train()
    try:
        yield
    finally:
        model.train(was)


@torch.no_grad()
def mc_dropout_probabilities(model: nn.Module, x: torch.Tensor, *, passes: int = 8, seed: int = 0,
                             batch_size: int = 16) -> np.ndarray:
    """Class probabilities of ``passes`` dropout-sampled forward passes; ``(passes, N, K)``.

    Args:
        model: A classifier returning logits ``(N, K)``, with dropout (``p > 0``).
        x: The inputs, ``(N, ...)``.
        passes: Stochastic passes T (>= 2).
        seed: Seeds the dropout masks.
        batch_size: Clips per forward pass.

    Raises:
        ConfigError: The model has no active dropout (every pass would be the
            same, so BALD would be zero everywhere), or ``passes < 2``.

    Example:
        >>> mc_dropout_probabilities(model, x, passes=4).shape  # doctest: +SKIP
        (4, 2, 3)
    """
    if passes < 2:
        raise ConfigError(f"passes must be >= 2 for MC-dropout, got {passes!r}")
    if not has_dropout(model):
        raise ConfigError("the model has no dropout with p > 0, so MC-dropout passes would all agree; train the "
                          "version with dropout (e.g. ClipClassifier(..., dropout=0.3)) or use another strategy")
    out = []
    with _dropout_on(model), torch.random.fork_rng():
        torch.manual_seed(seed)
        for _ in range(passes):
            probs = [torch.softmax(model(x[i : i + batch_size]), dim=1) for i in range(0, len(x), batch_size)]
            out.append(torch.cat(probs).double().cpu().numpy())
    return np.stack(out)
