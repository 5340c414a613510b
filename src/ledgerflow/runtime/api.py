"""`ledgerflow api`: the stateless HTTP API process and the console, any number of replicas.

It serves ``GET /rates`` and ``POST /prices/batches``, the console's pages, the OpenAPI
document at ``/openapi.json`` with its reference at ``/docs``, and the same probes and
metrics as the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypedDict

from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import Response

import ledgerflow
from ledgerflow.auth import pages as auth_pages
from ledgerflow.auth.access import AuthState, auth_error
from ledgerflow.auth.model import AuthError
from ledgerflow.core.health import Health
from ledgerflow.db.connections import keep_search_path_off_our_schema
from ledgerflow.rates import routes as rates_routes
from ledgerflow.rates.cache import RatesCache
from ledgerflow.rates.lanes import lane_rates
from ledgerflow.runtime import console, live
from ledgerflow.runtime.checks import dependency_checks
from ledgerflow.runtime.live import LiveHub
from ledgerflow.runtime.metrics import ApiMetrics
from ledgerflow.settings import Settings
from ledgerflow.web import probes
from ledgerflow.web.errors import EXCEPTION_HANDLERS
from ledgerflow.web.middleware import (
    AccessLog,
    BodyLimit,
    CsrfCookie,
    RequestMetrics,
    SecurityHeaders,
)
from ledgerflow.web.pages import STATIC_PATH, Pages, static_files

DESCRIPTION = """\
ledgerflow's HTTP API. `GET /rates` answers as the original rates service did, without
credentials unless the server requires a token. Every change needs a token with its scope
(`Authorization: Bearer <token>`, made with `ledgerflow tokens create`) or a signed-in
console session with the role that allows it and the session's CSRF token
(`X-CSRF-Token`). Errors are JSON: `{"error": "...", "parameter": "..."}`.
"""


class ApiState(TypedDict):
    """What the lifespan makes and every request sees as ``request.state``."""

    auth: AuthState
    rates: rates_routes.RatesState
    live: LiveHub


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[ApiState]:
    """Open the database pool and the rates cache for the process's lifetime."""
    settings: Settings = app.state.settings
    metrics: ApiMetrics = app.state.metrics
    pool = AsyncConnectionPool(
        settings.database_url,
        min_size=1,
        max_size=settings.api_pool_size,
        open=False,
        kwargs={"application_name": "ledgerflow-api", "autocommit": True},
        check=AsyncConnectionPool.check_connection,  # a connection that died is replaced
        configure=keep_search_path_off_our_schema,
    )
    cache = (
        RatesCache.from_url(settings.cache_url, settings.rates_cache_size, metrics.rates_cache)
        if settings.rates_cache_size
        else None
    )
    await pool.open(wait=False)
    hub = LiveHub(settings.redis_url, snapshot=lambda: console.snapshot(pool, settings.redis_url))
    fan_out = asyncio.create_task(hub.run(), name="live")
    health: Health = app.state.health
    health.supervise(fan_out)  # a replica without its live feed is not live
    try:
        yield {
            "live": hub,
            "auth": AuthState(
                pool=pool,
                session_seconds=settings.session_hours * 3600,
                sign_in_attempts=settings.sign_in_attempts,
                lockout_seconds=settings.lockout_seconds,
                trusted_auth_header=settings.trusted_auth_header,
            ),
            "rates": rates_routes.RatesState(
                pool=pool,
                answer=cache.cached() if cache else lane_rates,
                cache=cache,
                max_days=settings.rates_max_days,
                writers=asyncio.Semaphore(max(1, settings.api_pool_size // 4)),
                require_token=settings.rates_require_token,
            ),
        }
    finally:
        fan_out.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fan_out
        await pool.close()
        if cache is not None:
            await cache.close()


async def reference(request: Request) -> Response:
    """The API's reference, drawn from the OpenAPI document (no script needed)."""
    app: FastAPI = request.app
    pages: Pages = app.state.pages
    return pages.render(request, "reference.html", spec=app.openapi())


def create_app(settings: Settings) -> Any:
    """The API application: rates, console, probes, metrics, JSON errors, access logs."""
    checks = dependency_checks(settings)
    health = Health(role="serving", checks={k: checks[k] for k in ("postgres", "keydb")})
    metrics = ApiMetrics()
    app = FastAPI(
        title="ledgerflow",
        version=ledgerflow.__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        exception_handlers={
            **EXCEPTION_HANDLERS,
            AuthError: auth_error,
            auth_pages.PageRefused: auth_pages.page_refused,
        },
    )
    app.include_router(rates_routes.router)
    app.include_router(auth_pages.router)
    app.include_router(console.router)
    app.include_router(live.router)
    app.include_router(probes.router)
    app.add_api_route(
        "/docs",
        reference,
        methods=["GET"],
        summary="This reference",
        tags=["console"],
        response_class=Response,
        responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
    )
    app.mount(STATIC_PATH, static_files(), name="static")
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.pages = Pages(["ledgerflow.auth", "ledgerflow.runtime"])
    probes.probed(app, health, metrics.registry)
    limited = BodyLimit(CsrfCookie(app), settings.max_request_bytes)
    counted = RequestMetrics(SecurityHeaders(limited), metrics.http)
    return AccessLog(counted)
