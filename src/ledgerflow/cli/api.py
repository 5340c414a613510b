"""``ledgerflow api``."""

from __future__ import annotations

import signal

import click

from ledgerflow.cli.common import log, run_or_explain, settings_of


@click.command(name="api")
@click.pass_context
def command(ctx: click.Context) -> None:
    """Serve the HTTP API on LEDGERFLOW_HTTP_PORT (stateless: run as many as needed).

    SIGTERM stops it gracefully: no new connections, requests in flight are answered.
    """
    from ledgerflow.runtime.api import create_app
    from ledgerflow.web.serving import server

    settings = settings_of(ctx)
    scheme = "https" if settings.tls_certfile else "http"
    log.info("api.starting", url=f"{scheme}://{settings.http_host}:{settings.http_port}/")
    srv = server(
        create_app(settings),
        settings.http_host,
        settings.http_port,
        settings.trusted_proxy_list,
        embedded=False,
        lifespan="on",
        tls=(settings.tls_certfile, settings.tls_keyfile)
        if settings.tls_certfile and settings.tls_keyfile
        else None,
    )
    # uvicorn re-raises the stop signal once it has shut down gracefully; that signal has
    # been handled, so the process then ends normally, with exit code 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    run_or_explain(srv.run)
    log.info("api.stopped")
