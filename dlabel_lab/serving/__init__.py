"""Serving: the ingest and model scoring endpoints, deploy and replay.

Names load on first use (see :mod:`dlabel_lab.lazy`).
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "ScoringResult": ".endpoints",
    "ModelEndpoint": ".endpoints",
    "IngestEndpoint": ".endpoints",
    "deploy": ".endpoints",
    "deploy_version": ".endpoints",
    "replay": ".endpoints",
    "DetectionEndpoint": ".detection",
    "deploy_detector": ".detection",
    "StagedClip": ".endpoints",
    "ServiceConfig": ".service",
    "create_app": ".service",
    "serve": ".service",
    "start_service": ".service",
    "RunningService": ".service",
    "ServiceClient": ".client",
    "RemoteIngest": ".client",
    "connect": ".client",
}

_SUBMODULES = ("endpoints", "detection", "service", "service_models", "client")

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, submodules=_SUBMODULES)

__all__ = sorted(_EXPORTS)
