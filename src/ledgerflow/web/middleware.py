"""ASGI middleware: the access log, request metrics, security headers and the body limit."""

from __future__ import annotations

import json
import secrets
import time

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
    """Counts requests by the route that answered them (its path template, a fixed set);
    a request no route answered counts as ``other``."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The router notes in the scope the route that matched.
            matched = getattr(scope.get("route"), "path", None)
            route = matched if isinstance(matched, str) and status != 404 else "other"
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.duration.labels(route).observe(time.perf_counter() - started)


# Every response: a policy that allows no inline script or style and no framing, no
# content-type sniffing, and no referrer outside the site.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
HSTS = (b"strict-transport-security", b"max-age=31536000")


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response (and HSTS over HTTPS)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = SECURITY_HEADERS + ([HSTS] if scope.get("scheme") == "https" else [])

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *(header for header in extra if header[0] not in present),
                ]
            await send(message)

        await self.app(scope, receive, sending)


class BodyTooLarge(Exception):
    """A request body past LEDGERFLOW_MAX_REQUEST_BYTES (answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


class BodyLimit:
    """Refuses bodies over ``limit`` bytes without reading them: at once when the declared
    Content-Length is over, else as soon as the bytes received pass it (the app's handler
    for BodyTooLarge answers 413)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await too_large(send, self.limit)
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)


async def too_large(send: Send, limit: int) -> None:
    """Answer 413 with a JSON error, and close the connection (the body stays unread)."""
    body = json.dumps({"error": f"the request body is larger than {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


CSRF_COOKIE = "ledgerflow_csrf"
CSRF_SCOPE = "ledgerflow.csrf"  # the scope key holding the request's CSRF token


class CsrfCookie:
    """Gives every browser a random CSRF token in a cookie (HttpOnly, SameSite=Strict), and
    puts the request's token in the scope under CSRF_SCOPE: a form or script of ours
    carries it back, a page of another site cannot read it. People signed in through a
    trusted proxy have no session to hold a CSRF token; this cookie is theirs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token = _cookie(scope, CSRF_COOKIE)
        fresh = token is None or len(token) != 43
        if fresh:
            token = secrets.token_urlsafe(32)
        scope[CSRF_SCOPE] = token
        if not fresh or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = f"{CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}".encode()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie)]
            await send(message)

        await self.app(scope, receive, sending)


def _cookie(scope: Scope, name: str) -> str | None:
    """One cookie's value from the request's Cookie headers."""
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for header, value in headers:
        if header != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            key, _, found = part.strip().partition("=")
            if key == name:
                return found
    return None
