"""uvicorn, configured the ledgerflow way: logs left to ledgerflow, the client's address
taken from X-Forwarded-For only when the peer is a trusted proxy."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import uvicorn


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside the worker, leaving signals to it (it stops this with ``should_exit``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave the process's signal handlers alone."""
        yield


def config(
    app: Any,
    host: str,
    port: int,
    trusted_proxies: Sequence[str],
    lifespan: Literal["on", "off"] = "off",
) -> uvicorn.Config:
    """uvicorn's configuration for ``app``.

    ``trusted_proxies`` is the one list of peers whose X-Forwarded-For is believed: uvicorn
    itself replaces the peer's address with the last address in the header that is not a
    trusted proxy, so a client cannot forge its address, and everything downstream (the
    access log among it) reads the result from the ASGI scope.
    """
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan=lifespan,
        proxy_headers=True,
        forwarded_allow_ips=list(trusted_proxies),
        timeout_graceful_shutdown=20,
    )


def server(
    app: Any,
    host: str,
    port: int,
    trusted_proxies: Sequence[str],
    embedded: bool = True,
    lifespan: Literal["on", "off"] = "off",
) -> uvicorn.Server:
    """A uvicorn server for ``app`` that leaves logging to ledgerflow.

    Embedded (in the worker), it leaves signals to the worker too; standalone (the API),
    uvicorn handles SIGTERM itself: it stops accepting, finishes the requests in flight,
    then exits.
    """
    settings = config(app, host, port, trusted_proxies, lifespan)
    return EmbeddedServer(settings) if embedded else uvicorn.Server(settings)
