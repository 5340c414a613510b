"""The HTTP side of a ledgerflow process: /healthz, /readyz and /metrics, with access logs."""

from __future__ import annotations

import contextlib
import ipaddress
import time
from collections.abc import Iterable, Iterator
from typing import Any, Literal, Protocol

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledgerflow.health import Health
from ledgerflow.metrics import CONTENT_TYPE_LATEST

log = structlog.get_logger("ledgerflow.http")


def client_address(scope: Scope, trusted_proxies: frozenset[str]) -> str | None:
    """The client's address: the peer's, or the last untrusted one in X-Forwarded-For when
    the peer is a trusted proxy (so a client cannot forge its address through the header)."""
    peer: str | None = scope["client"][0] if scope.get("client") else None
    if peer not in trusted_proxies:
        return peer
    forwarded: list[str] = [
        value.decode("latin-1")
        for name, value in scope.get("headers", [])
        if name == b"x-forwarded-for"
    ]
    hops = [hop.strip() for header in forwarded for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted_proxies:
            return hop
    return hops[0] if hops else peer


class AccessLog:
    """ASGI middleware: one structured line per request, with the real client address."""

    def __init__(self, app: ASGIApp, trusted_proxies: Iterable[str]) -> None:
        self.app = app
        self.trusted = frozenset(_normalise(p) for p in trusted_proxies)

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
            log.info(
                "http.access",
                client=client_address(scope, self.trusted),
                method=scope["method"],
                path=scope["path"],
                status=status,
                bytes=size,
                user_agent=headers.get(b"user-agent", b"").decode("latin-1"),
                ms=round((time.perf_counter() - started) * 1000, 2),
            )


def _normalise(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return address.strip()


class Renders(Protocol):
    """Anything with metrics to expose."""

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        ...


def probe_routes(health: Health, metrics: Renders | None) -> list[Route]:
    """The routes every ledgerflow process serves."""

    async def healthz(_request: Request) -> Response:
        live, body = health.liveness()
        return JSONResponse(body, status_code=200 if live else 500)

    async def readyz(_request: Request) -> Response:
        ready, body = await health.readiness()
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics_endpoint(_request: Request) -> Response:
        content = metrics.render() if metrics else b""
        return Response(content, media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
    ]


async def _not_found(request: Request, _exc: Exception) -> Response:
    return JSONResponse({"error": f"no route {request.url.path}"}, status_code=404)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("http.error", path=request.url.path, error=repr(exc))
    return JSONResponse({"error": "internal error; the server log has the details"}, 500)


EXCEPTION_HANDLERS = {404: _not_found, 500: _internal_error}


def probe_app(health: Health, metrics: Renders | None, trusted_proxies: Iterable[str]) -> Any:
    """The worker's HTTP application."""
    app = Starlette(routes=probe_routes(health, metrics), exception_handlers=EXCEPTION_HANDLERS)
    return AccessLog(app, trusted_proxies)


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside the worker, leaving signals to it (it stops this with ``should_exit``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def server(
    app: Any, host: str, port: int, embedded: bool = True, lifespan: Literal["on", "off"] = "off"
) -> uvicorn.Server:
    """A uvicorn server for ``app`` that leaves logging to ledgerflow.

    Embedded (in the worker), it leaves signals to the worker too; standalone (the API),
    uvicorn handles SIGTERM itself: it stops accepting, finishes the requests in flight,
    then exits.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan=lifespan,
        timeout_graceful_shutdown=20,
    )
    return EmbeddedServer(config) if embedded else uvicorn.Server(config)
