"""Who a request comes from, and whether it may do what it asks.

Credentials, in this order: ``Authorization: Bearer <token>`` (machines); the header named
by LEDGERFLOW_TRUSTED_AUTH_HEADER, only when the request comes straight from a trusted
proxy (single sign-on); the session cookie of a signed-in person. A request made with the
session cookie must also carry the session's CSRF token to change anything; one made with
a token need not (a browser never sends a token by itself).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

import structlog
from fastapi import Depends
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from ledgerflow.auth import store
from ledgerflow.auth.model import AuthError, Identity
from ledgerflow.web.middleware import CSRF_SCOPE
from ledgerflow.web.serving import PEER, PEER_TRUSTED

log = structlog.get_logger(__name__)

SESSION_COOKIE = "ledgerflow_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A verified token is believed this long in each process before it is looked up again:
# a revoked token stops working everywhere within this many seconds.
TOKEN_CACHE_SECONDS = 5.0

bearer = HTTPBearer(auto_error=False, description="An API token: `ledgerflow tokens create`")
session_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="A console session (sign in at /signin)"
)


@dataclass
class AuthState:
    """What authentication needs for the lifetime of the API process."""

    pool: AsyncConnectionPool
    session_seconds: float
    sign_in_attempts: int
    lockout_seconds: int
    trusted_auth_header: str | None
    _tokens: dict[bytes, tuple[float, Identity | None]] = field(default_factory=dict)

    async def token(self, token: str) -> Identity | None:
        """The identity of a token, from the short-lived cache or the database."""
        key, now = store.digest(token), time.monotonic()
        cached = self._tokens.get(key)
        if cached is not None and now - cached[0] < TOKEN_CACHE_SECONDS:
            return cached[1]
        async with self.pool.connection() as conn:
            identity = await store.token_identity(conn, token)
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        self._tokens[key] = (now, identity)
        return identity


def auth_state(connection: HTTPConnection) -> AuthState:
    """The AuthState the lifespan made."""
    state: AuthState = connection.state.auth
    return state


def client_of(connection: HTTPConnection) -> str | None:
    """The client's address as the server resolved it (for the audit log)."""
    return connection.client.host if connection.client else None


async def identify(
    connection: HTTPConnection,
    credentials: HTTPAuthorizationCredentials | None = None,
    session: str | None = None,
) -> Identity | None:
    """Who the request comes from (None: nobody); AuthError 401 for bad credentials."""
    state = auth_state(connection)
    header = connection.headers.get("authorization")
    if header is not None:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise AuthError(401, "the Authorization header must be: Bearer <token>")
        identity = await state.token(credentials.credentials)
        if identity is None:
            raise AuthError(401, "the token is unknown or revoked")
        return identity
    if state.trusted_auth_header:
        name = connection.headers.get(state.trusted_auth_header)
        if name is not None:
            if connection.scope.get(PEER_TRUSTED):
                async with state.pool.connection() as conn:
                    identity = await store.user_identity(conn, name.strip(), via="proxy")
                if identity is None:
                    raise AuthError(401, f"the proxy signed in {name!r}, who is no ledgerflow user")
                # The proxy signs a person in on every request, a forged one too: changes
                # must carry the token of the CSRF cookie (see web.middleware.CsrfCookie).
                return replace(identity, csrf_token=connection.scope.get(CSRF_SCOPE, ""))
            log.warning(
                "auth.untrusted_header",
                header=state.trusted_auth_header,
                peer=connection.scope.get(PEER),
            )
    if session:
        async with state.pool.connection() as conn:
            return await store.session_identity(conn, session)
    return None


def require(scope: str, *alternatives: str) -> Any:
    """A dependency: the request's identity, which must hold ``scope`` or one of the
    ``alternatives`` (401 without credentials, 403 without any of them, 403 for a
    cookie-made change without its CSRF token)."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        session: Annotated[str | None, Depends(session_cookie)],
    ) -> Identity:
        identity = await identify(request, credentials, session)
        if identity is None:
            raise AuthError(401, "sign in, or send a token: Authorization: Bearer <token>")
        if not any(identity.allows(s) for s in alternatives):
            identity.require(scope, *alternatives)
        if identity.csrf_token is not None and request.method not in SAFE_METHODS:
            await check_csrf(request, identity)
        request.state.identity = identity
        return identity

    return Depends(dependency)


def optional() -> Any:
    """A dependency for what is open by default: the identity, or None without credentials
    (credentials that are not valid are refused all the same)."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        session: Annotated[str | None, Depends(session_cookie)],
    ) -> Identity | None:
        return await identify(request, credentials, session)

    return Depends(dependency)


async def check_csrf(request: Request, identity: Identity) -> None:
    """Refuse (403) a change made with a session that does not carry its CSRF token, in
    the X-CSRF-Token header or the form field csrf_token."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not same_secret(sent, identity.csrf_token):
        raise AuthError(403, "the CSRF token is missing or wrong: reload the page and retry")


def same_secret(sent: str | None, expected: str | None) -> bool:
    """Whether a secret sent matches the one expected, in constant time (as bytes: a
    client may send any characters); an empty or missing one never matches."""
    if not sent or not expected:
        return False
    return secrets.compare_digest(sent.encode(), expected.encode())


async def auth_error(request: Request, exc: Exception) -> Response:
    """AuthError as JSON, with WWW-Authenticate on 401."""
    assert isinstance(exc, AuthError)
    headers = {"www-authenticate": "Bearer"} if exc.status == 401 else {}
    log.info("auth.refused", status=exc.status, path=request.url.path, reason=str(exc))
    return JSONResponse({"error": str(exc)}, exc.status, headers=headers)
