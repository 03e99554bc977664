"""Labelling through the scoring service: its ``/suggest``, ``/autolabel`` and ``/audit`` routes, and the client side.

:func:`~dlabel_lab.suggest`, :func:`~dlabel_lab.autolabel` and
:func:`~dlabel_lab.audit_report` take a :class:`~dlabel_lab.ServiceClient` in
place of a store and run in the service (which owns the store and the model),
so several people's notebooks draw queues from, and label into, one store.

Example:
    >>> remote = dl.connect("http://127.0.0.1:8765")  # doctest: +SKIP
    >>> queue = dl.suggest(remote, "shapes-v1", 10, strategy="entropy")  # doctest: +SKIP
    >>> LabelQueue(remote, queue, classes=remote.ingest().classes)  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ..serving.service import json_response

if TYPE_CHECKING:
    from ..serving.client import ServiceClient
    from .autolabel import AuditReport, AutoLabelResult
    from .suggest import Suggestion

__all__ = ["router", "suggest_via", "autolabel_via", "audit_report_via"]

_MAX_IDS = 1_000_000


class SuggestRequest(BaseModel):
    """The arguments of :func:`~dlabel_lab.suggest` (the store is the service's)."""

    model_version: str
    budget: int = Field(ge=1, le=_MAX_IDS)
    strategy: str = "margin"
    pool: list[str] | None = Field(default=None, max_length=_MAX_IDS)
    seed: int = 0
    mc_passes: int = Field(default=8, ge=0, le=256)
    stop_set: list[str] | None = Field(default=None, max_length=_MAX_IDS)
    stop_threshold: float = 0.99
    stop_window: int = Field(default=3, ge=1, le=1000)


class AutolabelRequest(BaseModel):
    """The arguments of :func:`~dlabel_lab.autolabel`."""

    model_version: str
    target_precision: float = Field(default=0.95, gt=0, lt=1)
    audit_rate: float = Field(default=0.1, ge=0, le=1)
    pool: list[str] | None = Field(default=None, max_length=_MAX_IDS)
    min_support: int = Field(default=10, ge=1)
    seed: int = 0


def router(store: Any, lock: threading.Lock) -> APIRouter:  # noqa: ANN401
    """The labelling routes over ``store``; model work runs under ``lock`` (one at a time).

    Example:
        >>> app = create_app(store, routers=[router])  # doctest: +SKIP
    """
    from .autolabel import audit_report, autolabel
    from .suggest import suggest

    routes = APIRouter(tags=["labelling"])

    @routes.post("/suggest", summary="suggest(): the clips people should label next (recorded as a run)")
    def suggest_route(body: SuggestRequest) -> Response:
        with lock:
            return json_response(suggest(store, **body.model_dump()))

    @routes.post("/autolabel", summary="autolabel(): label where the calibrated model is trusted, draw an audit")
    def autolabel_route(body: AutolabelRequest) -> Response:
        with lock:
            return json_response(autolabel(store, **body.model_dump()))

    @routes.get("/audit/{model_version}", summary="audit_report(): auto-label precision from the audits")
    def audit_route(model_version: str) -> Response:
        with lock:
            return json_response(audit_report(store, model_version))

    return routes


def suggest_via(client: ServiceClient, model_version: str, budget: int, **kwargs: Any) -> Suggestion:  # noqa: ANN401
    """:func:`~dlabel_lab.suggest` run by the service; the same :class:`~dlabel_lab.Suggestion`."""
    from .stopping import StopDecision
    from .suggest import Suggestion

    body = {"model_version": model_version, "budget": _int(budget), **_ids(kwargs)}
    return client.call("POST", "/suggest", json=body, classes=[Suggestion, StopDecision])


def autolabel_via(client: ServiceClient, model_version: str, **kwargs: Any) -> AutoLabelResult:  # noqa: ANN401
    """:func:`~dlabel_lab.autolabel` run by the service; the same :class:`~dlabel_lab.AutoLabelResult`."""
    from .autolabel import AutoLabelResult

    return client.call("POST", "/autolabel", json={"model_version": model_version, **_ids(kwargs)},
                       classes=[AutoLabelResult])


def audit_report_via(client: ServiceClient, model_version: str) -> AuditReport:
    """:func:`~dlabel_lab.audit_report` run by the service."""
    from urllib.parse import quote

    from .autolabel import AuditReport

    return client.call("GET", f"/audit/{quote(model_version, safe='')}", classes=[AuditReport])


def _int(value: Any) -> Any:  # noqa: ANN401
    try:
        import numpy as np

        return int(value) if isinstance(value, np.integer) else value
    except ImportError:  # pragma: no cover
        return value


def _ids(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(map(str, v)) if isinstance(v, Sequence) and not isinstance(v, str) else _int(v))
            for k, v in kwargs.items()}
