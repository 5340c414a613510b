"""`ledgerflow api`: the stateless HTTP API process, any number of replicas.

It serves ``GET /rates`` and ``POST /prices/batches``, and the same probes and metrics as
the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypedDict

from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette

from ledgerflow.core.health import Health
from ledgerflow.db.connections import keep_search_path_off_our_schema
from ledgerflow.rates import routes as rates_routes
from ledgerflow.rates.cache import RatesCache
from ledgerflow.rates.lanes import lane_rates
from ledgerflow.runtime.checks import dependency_checks
from ledgerflow.runtime.metrics import ApiMetrics
from ledgerflow.settings import Settings
from ledgerflow.web import probes
from ledgerflow.web.middleware import AccessLog, RequestMetrics


class ApiState(TypedDict):
    """What the lifespan makes and every request sees as ``request.state``."""

    rates: rates_routes.RatesState


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[ApiState]:
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
    try:
        yield {
            "rates": rates_routes.RatesState(
                pool=pool,
                answer=cache.cached() if cache else lane_rates,
                cache=cache,
                max_days=settings.rates_max_days,
                writers=asyncio.Semaphore(max(1, settings.api_pool_size // 4)),
            )
        }
    finally:
        await pool.close()
        if cache is not None:
            await cache.close()


def create_app(settings: Settings) -> Any:
    """The API application: rates, probes, metrics, JSON errors and access logs."""
    checks = dependency_checks(settings)
    health = Health(role="serving", checks={k: checks[k] for k in ("postgres", "keydb")})
    metrics = ApiMetrics()
    routes = [*rates_routes.ROUTES, *probes.ROUTES]
    app = Starlette(routes=routes, exception_handlers=probes.EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    probes.probed(app, health, metrics.registry)
    counted = RequestMetrics(app, metrics.http, {route.path for route in routes})
    return AccessLog(counted)
