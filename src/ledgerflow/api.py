"""`ledgerflow api`: the stateless HTTP API process, any number of replicas.

It serves ``GET /rates`` and the same probes and metrics as the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledgerflow import batches
from ledgerflow.dependencies import dependency_checks
from ledgerflow.health import Health
from ledgerflow.http import EXCEPTION_HANDLERS, AccessLog, probe_routes
from ledgerflow.rates import BadRequest, daily_rates, parse_rates_query
from ledgerflow.settings import Settings

log = structlog.get_logger(__name__)


class ApiMetrics:
    """Request counts and durations, labelled by route (a fixed set), not by raw path."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ledgerflow_http_requests",
            "HTTP requests answered.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "ledgerflow_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware counting requests by route; unknown paths count as ``other``."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, routes: set[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else "other"
        started, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.duration.labels(route).observe(time.perf_counter() - started)


def create_app(settings: Settings) -> Any:
    """The API application: rates, probes, metrics, JSON errors and access logs."""
    checks = dependency_checks(settings)
    health = Health(role="serving", checks={k: checks[k] for k in ("postgres", "keydb")})
    metrics = ApiMetrics()
    pool = AsyncConnectionPool(
        settings.database_url,
        min_size=1,
        max_size=settings.api_pool_size,
        open=False,
        kwargs={"application_name": "ledgerflow-api", "autocommit": True},
        check=AsyncConnectionPool.check_connection,  # a connection that died is replaced
    )

    async def rates(request: Request) -> Response:
        try:
            asked = parse_rates_query(request.query_params, settings.rates_max_days)
            async with pool.connection() as conn:
                answer = await daily_rates(conn, asked)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc), "parameter": exc.parameter}, 400)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.warning("api.database_unavailable", error=str(exc))
            return JSONResponse({"error": "the database is unavailable; try again"}, 503)
        return JSONResponse({"rates": answer})

    # Large batches take connections for a while; readers must always find one.
    writers = asyncio.Semaphore(max(1, settings.api_pool_size // 4))

    async def price_batches(request: Request) -> Response:
        body = await request.body()
        try:
            if request.headers.get("content-type", "").startswith("text/csv"):
                batch = batches.from_csv(request.query_params.get("batch_id"), body.decode())
            else:
                try:
                    document = json.loads(body)
                except (ValueError, UnicodeDecodeError) as exc:
                    raise batches.BatchRejected(f"the body is not JSON: {exc}") from None
                batch = batches.from_json(document)
            async with writers, pool.connection() as conn:
                outcome = await batches.commit(conn, batch, source="http")
        except batches.BatchRejected as exc:
            return JSONResponse(exc.as_json(), 422)
        except UnicodeDecodeError:
            return JSONResponse({"error": "the CSV body is not UTF-8"}, 422)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.warning("api.database_unavailable", error=str(exc))
            return JSONResponse({"error": "the database is unavailable; try again"}, 503)
        log.info("prices.batch", **outcome.as_json())
        return JSONResponse(outcome.as_json(), 200 if outcome.duplicate else 201)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await pool.open(wait=False)
        try:
            yield
        finally:
            await pool.close()

    routes = [
        Route("/rates", rates),
        Route("/prices/batches", price_batches, methods=["POST"]),
        *probe_routes(health, metrics),
    ]
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    counted = RequestMetrics(app, metrics, {route.path for route in routes})
    return AccessLog(counted, settings.trusted_proxy_list)
