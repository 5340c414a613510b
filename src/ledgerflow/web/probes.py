"""What every ledgerflow process answers over HTTP: /healthz, /readyz and /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledgerflow.core.health import Health
from ledgerflow.web.errors import EXCEPTION_HANDLERS
from ledgerflow.web.metrics import CONTENT_TYPE_LATEST, render
from ledgerflow.web.middleware import AccessLog, SecurityHeaders

router = APIRouter(tags=["probes"])


@router.get(
    "/healthz",
    summary="Liveness",
    responses={
        200: {"description": "Every supervised task runs."},
        500: {"description": "A supervised task has died: restart the process."},
    },
)
async def healthz(request: Request) -> JSONResponse:
    """Live while every supervised task runs; never touches a dependency."""
    live, body = _health(request).liveness()
    return JSONResponse(body, status_code=200 if live else 500)


@router.get(
    "/readyz",
    summary="Readiness",
    responses={
        200: {"description": "Every dependency answers."},
        503: {"description": "A dependency does not answer, or balances are stale."},
    },
)
async def readyz(request: Request) -> JSONResponse:
    """Ready when every dependency answers (and, when active, balances are fresh)."""
    ready, body = await _health(request).readiness()
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    """The Prometheus text exposition of this process's metrics."""
    registry: CollectorRegistry | None = request.app.state.registry
    return Response(render(registry), media_type=CONTENT_TYPE_LATEST)


def _health(request: Request) -> Health:
    health: Health = request.app.state.health
    return health


def probed(app: FastAPI, health: Health, registry: CollectorRegistry | None) -> FastAPI:
    """``app`` with what the probe routes read: the process's health and metrics."""
    app.state.health = health
    app.state.registry = registry
    return app


def probe_app(health: Health, registry: CollectorRegistry | None) -> Any:
    """The worker's HTTP application: the probes, with access logs."""
    app = FastAPI(
        title="ledgerflow worker",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.include_router(router)
    return AccessLog(SecurityHeaders(probed(app, health, registry)))
