"""What every ledgerflow process answers over HTTP: /healthz, /readyz, /metrics, and errors
as JSON."""

from __future__ import annotations

from typing import Any

import structlog
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ledgerflow.core.health import Health
from ledgerflow.web.metrics import CONTENT_TYPE_LATEST, render
from ledgerflow.web.middleware import AccessLog

log = structlog.get_logger("ledgerflow.http")


async def healthz(request: Request) -> Response:
    """Live while every supervised task runs."""
    live, body = _health(request).liveness()
    return JSONResponse(body, status_code=200 if live else 500)


async def readyz(request: Request) -> Response:
    """Ready when every dependency answers (and, when active, balances are fresh)."""
    ready, body = await _health(request).readiness()
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    """The Prometheus exposition."""
    registry: CollectorRegistry | None = request.app.state.registry
    return Response(render(registry), media_type=CONTENT_TYPE_LATEST)


def _health(request: Request) -> Health:
    health: Health = request.app.state.health
    return health


ROUTES = [
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", metrics),
]


async def _not_found(request: Request, _exc: Exception) -> Response:
    return JSONResponse({"error": f"no route {request.url.path}"}, status_code=404)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("http.error", path=request.url.path, error=repr(exc))
    return JSONResponse({"error": "internal error; the server log has the details"}, 500)


EXCEPTION_HANDLERS = {404: _not_found, 500: _internal_error}


def probed(app: Starlette, health: Health, registry: CollectorRegistry | None) -> Starlette:
    """``app`` with what the probe routes read: the process's health and metrics."""
    app.state.health = health
    app.state.registry = registry
    return app


def probe_app(health: Health, registry: CollectorRegistry | None) -> Any:
    """The worker's HTTP application: the probes, with access logs."""
    app = Starlette(routes=ROUTES, exception_handlers=EXCEPTION_HANDLERS)
    return AccessLog(probed(app, health, registry))
