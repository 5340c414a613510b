"""`ledgerflow api`: the stateless HTTP API process, any number of replicas.

Today it serves the same probes and metrics as the worker; the rates endpoints join it.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledgerflow.dependencies import dependency_checks
from ledgerflow.health import Health
from ledgerflow.http import EXCEPTION_HANDLERS, AccessLog, probe_routes
from ledgerflow.settings import Settings


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
    """The API application: probes, metrics, JSON errors and access logs."""
    checks = dependency_checks(settings)
    health = Health(role="serving", checks={k: checks[k] for k in ("postgres", "keydb")})
    metrics = ApiMetrics()
    routes = probe_routes(health, metrics)
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
    counted = RequestMetrics(app, metrics, {route.path for route in routes})
    return AccessLog(counted, settings.trusted_proxy_list)
