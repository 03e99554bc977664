"""Estimates through the scoring service: its ``/estimate`` route, and the client side.

:func:`~dlabel_lab.estimate_accuracy` takes a :class:`~dlabel_lab.ServiceClient`
in place of a store and runs in the service; the answer is the same
:class:`~dlabel_lab.Estimate`, or the :class:`EstimationRequest` that asks
people for the labels it lacks (label them with a ``LabelQueue`` over the
client, then ask again).

Example:
    >>> dl.estimate_accuracy(dl.connect("http://127.0.0.1:8765"), "shapes-v1", budget=100)  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ..serving.service import json_response

if TYPE_CHECKING:
    from ..serving.client import ServiceClient

__all__ = ["router", "estimate_via"]


class EstimateRequestBody(BaseModel):
    """The arguments of :func:`~dlabel_lab.estimate_accuracy` (the store is the service's)."""

    model_version: str
    budget: int = Field(ge=1, le=1_000_000)
    method: str | None = None
    sampler: str = "srs"
    oracle: str = "confidence"
    seed: int = 0
    confidence: float = Field(default=0.95, gt=0, lt=1)
    n_strata: int = Field(default=4, ge=1, le=1000)
    uniform_share: float = Field(default=0.2, ge=0, le=1)
    fresh: bool = False
    save: bool = True
    pool: list[str] | None = Field(default=None, max_length=1_000_000)


def router(store: Any, lock: threading.Lock) -> APIRouter:  # noqa: ANN401
    """The estimation route over ``store``.

    Example:
        >>> app = create_app(store, routers=[router])  # doctest: +SKIP
    """
    from .api import estimate_accuracy

    routes = APIRouter(tags=["estimation"])

    @routes.post("/estimate", summary="estimate_accuracy(): the version's field accuracy, or the labels it needs")
    def estimate_route(body: EstimateRequestBody) -> Response:
        args = body.model_dump()
        with lock:
            return json_response(estimate_accuracy(store, args.pop("model_version"), **args))

    return routes


def estimate_via(client: ServiceClient, model_version: str, **kwargs: Any):  # noqa: ANN201, ANN401
    """:func:`~dlabel_lab.estimate_accuracy` run by the service."""
    from .api import EstimationRequest
    from .estimators import Estimate

    body = {"model_version": model_version,
            **{k: (list(map(str, v)) if k == "pool" and v is not None else v) for k, v in kwargs.items()}}
    return client.call("POST", "/estimate", json=body, classes=[Estimate, EstimationRequest])
