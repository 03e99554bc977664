"""The scoring service with every wing's routes: what ``dlabel-lab serve`` and ``dl.serve`` run.

:mod:`dlabel_lab.serving.service` serves the store itself (scoring, labels,
``matched``, versions, runs, clips). The wings above it add their routes here
(``serving`` may not import them): suggest, auto-labelling and audits
(:mod:`dlabel_lab.labeling.remote`), estimates (:mod:`dlabel_lab.estimate.remote`)
and reports (:mod:`dlabel_lab.quality.remote`).

Example:
    >>> running = start_service("runs/store")  # doctest: +SKIP
    >>> dl.suggest(dl.connect(running.url), "shapes-v1", 10).scoring_ids  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .estimate.remote import router as estimate_routes
from .labeling.remote import router as labeling_routes
from .quality.remote import router as report_routes
from .serving import service as _service

__all__ = ["ROUTERS", "serve", "start_service"]

ROUTERS = (labeling_routes, estimate_routes, report_routes)


def serve(store_path: str | Path, **kwargs: Any) -> None:  # noqa: ANN401
    """:func:`dlabel_lab.serving.service.serve` with every wing's routes (suggest, autolabel, estimate, reports).

    Args:
        store_path: The store folder.
        **kwargs: ``host``, ``port``, ``token``, ``allow_roots``, ``cors_origins``,
            ``model_version``, ``num_threads``, ``on_ready``, ``log_level``.

    Example:
        >>> serve("runs/store", port=8765)  # doctest: +SKIP
    """
    _service.serve(store_path, routers=ROUTERS, **kwargs)


def start_service(store_path: str | Path, **kwargs: Any) -> _service.RunningService:  # noqa: ANN401
    """:func:`dlabel_lab.serving.service.start_service` with every wing's routes, in a background thread.

    Args:
        store_path: The store folder.
        **kwargs: As :func:`serve`, plus ``max_clip_bytes``; ``port`` 0 by default.

    Example:
        >>> with start_service("runs/store") as running:  # doctest: +SKIP
        ...     remote = dl.connect(running.url)
    """
    return _service.start_service(store_path, routers=ROUTERS, **kwargs)
