"""Reports through the scoring service: ``/reports/data`` and ``/reports/model/{version}`` as HTML pages.

The data report is built on request from the store the service owns; a
model report is the one stored with the version (build it with
``dlabel-lab report STORE --kind model`` before serving, or
``dl.model_report`` in the service's process). Read them with
:meth:`~dlabel_lab.ServiceClient.report_html`.

Example:
    >>> html = dl.connect("http://127.0.0.1:8765").report_html("data")  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

__all__ = ["router"]

# the reports are self-contained pages that run no script; say so to the browser as well
_HEADERS = {"content-security-policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'"}


def router(store: Any, lock: threading.Lock) -> APIRouter:  # noqa: ANN401
    """The report routes over ``store``.

    Example:
        >>> app = create_app(store, routers=[router])  # doctest: +SKIP
    """
    from .data_report import data_report
    from .model_report import load_model_report

    routes = APIRouter(tags=["reports"])

    @routes.get("/reports/data", response_class=HTMLResponse, summary="data_report() as a self-contained page")
    def data_page(model_version: str | None = Query(None)) -> HTMLResponse:
        with lock:
            report = data_report(store, model_version=model_version, progress=False)
        return HTMLResponse(report.to_html(), headers=_HEADERS)

    @routes.get("/reports/model/{model_version}", response_class=HTMLResponse,
                summary="the model report stored with a version, as a self-contained page")
    def model_page(model_version: str) -> HTMLResponse:
        return HTMLResponse(load_model_report(store, model_version).to_html(), headers=_HEADERS)

    return routes
