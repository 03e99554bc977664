"""Relabelling clips in bulk: one append-only user score per clip, with its author and source.

The DatasetBrowser's "Relabel n selected" calls :func:`relabel`; it works on any
list of scoring ids, from a notebook or a script, without a widget.

Example:
    >>> relabel(store, ["0190...", "0191..."], "circle", author="ana")  # doctest: +SKIP
    [41, 42]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import ConfigError, UnknownLabel

__all__ = ["BULK_SOURCE", "relabel"]

BULK_SOURCE = "human-bulk"  #: the ``source`` of a user score given by a bulk relabel


def relabel(store, scoring_ids: Iterable[str], label: str, *, author: str, source: str = BULK_SOURCE,
            classes: Sequence[str] | None = None) -> list[int]:
    """Give every clip in ``scoring_ids`` the user label ``label`` in one action; the new ``label_id``s.

    Each clip gets one new, append-only user score (``store.log_score_many``)
    with ``source`` and ``author``: the latest label wins in ``store.matched``,
    the earlier ones stay in ``store.score_history``.

    Raises:
        ConfigError: No clips, or no author.
        UnknownLabel: ``label`` is not one of ``classes``.

    Example:
        >>> relabel(store, ["0190...", "0191..."], "circle", author="ana")  # doctest: +SKIP
        [41, 42]
    """
    ids = list(dict.fromkeys(str(s) for s in scoring_ids))
    if not ids:
        raise ConfigError("no clips to relabel: select rows in the grid first")
    if not isinstance(author, str) or not author.strip():
        raise ConfigError(f"a relabel needs an author (who gives the label), got {author!r}")
    if classes is not None and label not in classes:
        raise UnknownLabel(f"{label!r} is not one of the classes {list(classes)}")
    return store.log_score_many([{"scoring_id": s, "label": label, "source": source, "author": author.strip()}
                                 for s in ids])
