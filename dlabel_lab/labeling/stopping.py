"""When to stop labelling: stabilising predictions on a fixed stop set.

Bloodgood and Vijay-Shanker (2009): keep a fixed set of unlabelled clips
(the *stop set*); after each round, compare the new model version's
predictions on it with the previous version's (Cohen's kappa, from
scikit-learn). When the agreement stays at or above a threshold for a
window of consecutive rounds, more labels are no longer changing what the
model says, and labelling can stop. The stop set costs no labels: only
predictions, which the store keeps per version (score the stop set with
each new version through ``IngestEndpoint.shadow_score``).

Example:
    >>> decision = stopping_decision(store, ["shapes-v1", "shapes-v2", "shapes-v3"], stop_set)  # doctest: +SKIP
    >>> decision.should_stop, decision.kappas  # doctest: +SKIP
    (False, [0.82, 0.97])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError, UnknownRecord

__all__ = ["StopDecision", "stabilising_kappas", "stopping_decision"]


@dataclass(frozen=True)
class StopDecision:
    """Whether to stop, with the evidence.

    Attributes:
        should_stop: The last ``window`` kappas are all at or above ``threshold``.
        kappas: Cohen's kappa between each pair of successive versions on the stop set.
        versions: The versions compared, in order.
        threshold: The agreement required.
        window: Consecutive rounds required.
        n_stop_set: Clips in the stop set.
        reason: One sentence.
    """

    should_stop: bool
    kappas: list[float]
    versions: list[str]
    threshold: float
    window: int
    n_stop_set: int
    reason: str


def stabilising_kappas(predictions: Sequence[Sequence[str]]) -> list[float]:
    """Cohen's kappa between each successive pair of prediction lists (same clips, same order).

    Two identical lists that use a single class have kappa 1 (scikit-learn
    leaves it undefined).

    Example:
        >>> stabilising_kappas([["a", "b", "a"], ["a", "b", "b"], ["a", "b", "b"]])
        [0.4, 1.0]
    """
    from sklearn.metrics import cohen_kappa_score

    lists = [list(map(str, p)) for p in predictions]
    if len({len(p) for p in lists}) > 1:
        raise ConfigError("every prediction list must cover the same clips")
    out = []
    for a, b in zip(lists, lists[1:], strict=False):
        if a == b:
            out.append(1.0)
        else:
            out.append(round(float(cohen_kappa_score(a, b)), 6))
    return out


def stopping_decision(store, model_versions: Sequence[str], stop_set: Sequence[str], *, threshold: float = 0.99,
                      window: int = 3) -> StopDecision:
    """Decide from the store whether labelling can stop (stabilising predictions).

    Args:
        store: The payload store.
        model_versions: Successive versions, oldest first (each round's model).
        stop_set: Scoring ids of the fixed stop set (every version must have scored them).
        threshold: Kappa needed between successive versions.
        window: How many successive comparisons must all reach it.

    Raises:
        ConfigError: Fewer than two versions, an empty stop set, a bad threshold or window.
        UnknownRecord: A version has not scored every stop-set clip.

    Example:
        >>> stopping_decision(store, ["v1", "v2"], ids, window=1).should_stop  # doctest: +SKIP
        True
    """
    versions = list(model_versions)
    ids = sorted(set(map(str, stop_set)))
    if len(versions) < 2:
        raise ConfigError("the stopping rule compares successive versions: pass at least two")
    if not ids:
        raise ConfigError("the stop set is empty; pass the scoring ids of a fixed set of unlabelled clips")
    if not 0 < threshold <= 1 or window < 1:
        raise ConfigError(f"threshold must be in (0, 1] and window >= 1, got {threshold!r} and {window!r}")
    predictions = []
    for version in versions:
        df = store.matched(model_version=version, scoring_ids=ids).df()
        got = dict(zip(df["scoring_id"], df["predicted_label"], strict=True))
        missing = [s for s in ids if got.get(s) is None]
        if missing:
            raise UnknownRecord(f"{version} has not scored {len(missing)} stop-set clip(s) (e.g. {missing[0]}); "
                                "score the stop set with every version (IngestEndpoint.shadow_score)")
        predictions.append([got[s] for s in ids])
    kappas = stabilising_kappas(predictions)
    recent = kappas[-window:]
    stop = len(recent) == window and min(recent) >= threshold
    if stop:
        reason = f"the last {window} successive versions agree on the stop set with kappa >= {threshold}"
    elif len(kappas) < window:
        reason = f"only {len(kappas)} comparison(s) so far; {window} in a row must reach kappa {threshold}"
    else:
        reason = f"kappa {min(recent):.3f} in the last {window} round(s) is below {threshold}: predictions still move"
    return StopDecision(stop, kappas, versions, threshold, window, len(ids), reason)
