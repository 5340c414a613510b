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
import redis.asyncio as redis
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
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
from ledgerflow.lru import PersistentLRU, persistent_lru_cache
from ledgerflow.rates import (
    CACHE_NAMESPACE,
    BadRequest,
    Lanes,
    lane_rates,
    lanes_for,
    parse_rates_query,
    touches,
)
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
        self.cache_lookups = Counter(
            "ledgerflow_rates_cache_lookups",
            "Rates answers looked up in the cache, by result.",
            ["result"],
            registry=self.registry,
        )
        self.cache_size = Gauge(
            "ledgerflow_rates_cache_entries",
            "Answers in the persistent rates cache.",
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

    keydb = redis.Redis.from_url(settings.cache_url, socket_timeout=1, socket_connect_timeout=1)
    cache = PersistentLRU(
        keydb,
        CACHE_NAMESPACE,
        maxsize=max(1, settings.rates_cache_size),
        on_lookup=lambda hit: metrics.cache_lookups.labels("hit" if hit else "miss").inc(),
        on_size=metrics.cache_size.set,
    )

    async def compute(lanes: Lanes, conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
        return await lane_rates(conn, lanes)

    cached = persistent_lru_cache(  # keyed by the lanes alone: the connection is the request's
        cache, key=lambda lanes, _conn: lanes.cache_key(), tags=lambda lanes, _conn: lanes.tags()
    )(compute)
    answer_for = cached if settings.rates_cache_size else compute

    async def rates(request: Request) -> Response:
        try:
            asked = parse_rates_query(request.query_params, settings.rates_max_days)
            async with pool.connection() as conn:  # one connection for the whole request
                lanes = await lanes_for(conn, asked)
                answer = await answer_for(lanes, conn)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc), "parameter": exc.parameter}, 400)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.warning("api.database_unavailable", error=str(exc))
            return JSONResponse({"error": "the database is unavailable; try again"}, 503)
        return JSONResponse({"rates": answer})

    # Large batches take connections for a while; readers must always find one.
    writers = asyncio.Semaphore(max(1, settings.api_pool_size // 4))

    def parse_batch(body: bytes, content_type: str, batch_id: str | None) -> batches.PriceBatch:
        if content_type.startswith("text/csv"):
            return batches.from_csv(batch_id, body.decode())
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise batches.BatchRejected(f"the body is not JSON: {exc}") from None
        return batches.from_json(document)

    async def price_batches(request: Request) -> Response:
        body = await request.body()
        try:
            # Parsing tens of thousands of rows takes tens of milliseconds: off the event
            # loop, so that /rates readers keep being answered meanwhile.
            batch = await asyncio.to_thread(
                parse_batch,
                body,
                request.headers.get("content-type", ""),
                request.query_params.get("batch_id"),
            )
            async with writers, pool.connection() as conn:
                outcome = await batches.commit(conn, batch, source="http")
            if not outcome.duplicate and settings.rates_cache_size:
                changed = batches.changed_lanes(batch)
                dropped = await cache.invalidate(lambda tags: touches(tags, changed))
                log.info("rates.cache_invalidated", batch_id=batch.batch_id, entries=dropped)
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
            await keydb.aclose()

    routes = [
        Route("/rates", rates),
        Route("/prices/batches", price_batches, methods=["POST"]),
        *probe_routes(health, metrics),
    ]
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    counted = RequestMetrics(app, metrics, {route.path for route in routes})
    return AccessLog(counted, settings.trusted_proxy_list)
