"""Torch's CPU thread count while an endpoint scores: a measured default, set for the call and restored after.

The ingest endpoint decodes the next batch of clips in a second thread while
the model runs on the current one, so the model leaves a core to the decoder,
the store's writes and whatever else runs on the machine. Measured on 2 cores
(AMD EPYC VM, torch 2.14.1 with OpenMP, tiny3d on 8x64x64, batch 16, clips
through ``score_many``; ``bench/ingest_scale.py --threads 1,2``, medians of
2 repeats) on an otherwise idle machine (1,000 clips) and beside a process
that keeps one core busy (``--busy 1``, 500 clips):

- 1 torch thread: 35.8 clips/s idle, 36.0 with one core busy elsewhere;
- 2 torch threads (torch's default here): 50.4 clips/s idle, 27.4 with one core busy.

One thread is steady; two are faster only while nothing else wants a core
(OpenMP's threads wait on each other when one of them is descheduled). The
default rule, one core fewer than the process may use, takes the steady
figure; pass ``num_threads`` where the machine is dedicated to scoring.

``torch.set_num_threads`` is process-wide: :func:`torch_threads` sets it for
the duration of a call and puts back what was set before, so a user's own
setting is never changed for good. Two threads of one process that score with
different settings at the same time would see each other's.

Example:
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from ..errors import ConfigError

__all__ = ["check_num_threads", "default_num_threads", "torch_threads", "usable_cores"]


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one).

    Example:
        >>> usable_cores() >= 1
        True
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_num_threads() -> int:
    """Torch threads for scoring: one core fewer than the process may use, at least 1, at most torch's setting.

    The core left over decodes the next batch (the ingest endpoint's
    prefetch thread) and writes the store. Capped by ``torch.get_num_threads()``
    so that a lower setting of the user's is kept.

    Example:
        >>> 1 <= default_num_threads() <= max(1, usable_cores() - 1)
        True
    """
    return max(1, min(torch.get_num_threads(), usable_cores() - 1))


def check_num_threads(value: object) -> int | None:
    """``None`` (the default rule) or a positive int, else :class:`~dlabel_lab.ConfigError`.

    Example:
        >>> check_num_threads(2)
        2
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"num_threads must be None (the default rule) or an int >= 1, got {value!r}")
    return value


@contextlib.contextmanager
def torch_threads(num_threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(num_threads)``, then restore the previous count.

    Nothing is set when the count is already right (nested use costs nothing).

    Example:
        >>> with torch_threads(1):
        ...     pass
    """
    before = torch.get_num_threads()
    if num_threads != before:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
