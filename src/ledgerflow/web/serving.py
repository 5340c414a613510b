"""uvicorn, configured the ledgerflow way: logs left to ledgerflow, the client's address
taken from X-Forwarded-For only when the peer is a trusted proxy."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside the worker, leaving signals to it (it stops this with ``should_exit``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave the process's signal handlers alone."""
        yield


# Scope keys: the address that actually connected, and whether it is a trusted proxy.
PEER = "ledgerflow.peer"
PEER_TRUSTED = "ledgerflow.peer_trusted"


def behind_proxies(app: Any, trusted_proxies: Sequence[str]) -> Any:
    """``app`` with the client's address resolved from X-Forwarded-For (uvicorn's own
    ProxyHeadersMiddleware, the one list of trusted proxies), and the address that actually
    connected kept in the scope under PEER (and PEER_TRUSTED), for what must come from a
    trusted proxy itself (LEDGERFLOW_TRUSTED_AUTH_HEADER)."""
    resolved = ProxyHeadersMiddleware(app, trusted_hosts=list(trusted_proxies))
    trusted = resolved.trusted_hosts

    async def recorded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            peer = client[0] if client else None
            scope[PEER], scope[PEER_TRUSTED] = peer, peer in trusted
        await resolved(scope, receive, send)  # type: ignore[arg-type]  # uvicorn's own ASGI types

    return recorded


def config(
    app: Any,
    host: str,
    port: int,
    trusted_proxies: Sequence[str],
    lifespan: Literal["on", "off"] = "off",
    tls: tuple[Path, Path] | None = None,
) -> uvicorn.Config:
    """uvicorn's configuration for ``app``.

    ``trusted_proxies`` is the one list of peers whose X-Forwarded-For is believed:
    uvicorn's proxy middleware replaces the peer's address with the last address in the
    header that is not a trusted proxy, so a client cannot forge its address, and
    everything downstream (the access log among it) reads the result from the ASGI scope.
    ``tls`` is a certificate and key: the server then speaks HTTPS only.
    """
    return uvicorn.Config(
        behind_proxies(app, trusted_proxies),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan=lifespan,
        proxy_headers=False,  # applied by behind_proxies, which also keeps the peer
        timeout_graceful_shutdown=20,
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
    )


def server(
    app: Any,
    host: str,
    port: int,
    trusted_proxies: Sequence[str],
    embedded: bool = True,
    lifespan: Literal["on", "off"] = "off",
    tls: tuple[Path, Path] | None = None,
) -> uvicorn.Server:
    """A uvicorn server for ``app`` that leaves logging to ledgerflow.

    Embedded (in the worker), it leaves signals to the worker too; standalone (the API),
    uvicorn handles SIGTERM itself: it stops accepting, finishes the requests in flight,
    then exits.
    """
    settings = config(app, host, port, trusted_proxies, lifespan, tls)
    return EmbeddedServer(settings) if embedded else uvicorn.Server(settings)
