"""ASGI middleware: one access-log line and the request metrics for every request."""

from __future__ import annotations

import time
from collections.abc import Collection

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledgerflow.web.metrics import HttpMetrics

log = structlog.get_logger("ledgerflow.http")


class AccessLog:
    """One structured line per request, with the client's address as the server resolved it
    (see ``serving.config``: X-Forwarded-For counts only from trusted proxies)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, size = 500, 0

        async def sending(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            headers = dict(scope.get("headers", []))
            client = scope.get("client")
            log.info(
                "http.access",
                client=client[0] if client else None,
                method=scope["method"],
                path=scope["path"],
                status=status,
                bytes=size,
                user_agent=headers.get(b"user-agent", b"").decode("latin-1"),
                ms=round((time.perf_counter() - started) * 1000, 2),
            )


class RequestMetrics:
    """Counts requests by route; unknown paths count as ``other``."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, routes: Collection[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, frozenset(routes)

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
