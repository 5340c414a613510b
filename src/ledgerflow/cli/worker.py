"""``ledgerflow worker``."""

from __future__ import annotations

import asyncio
import signal
import threading

import click

from ledgerflow.cli.common import (
    log,
    require_migrated,
    run_or_explain,
    settings_of,
    until_database_answers,
)


@click.command(name="worker")
@click.pass_context
def command(ctx: click.Context) -> None:
    """Consume transactions and publish balances; a second worker waits as a standby.

    Stops cleanly on SIGTERM or SIGINT: it stops taking messages, commits and
    acknowledges what it holds, and exits 0.
    """
    # A signal that arrives while the worker starts up still means a clean stop.
    early_stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: early_stop.set())

    from ledgerflow.runtime.worker import Worker

    settings = settings_of(ctx)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        if early_stop.is_set():
            return
        conn = await until_database_answers(settings.database_url, stop)
        if conn is None:
            return
        async with conn:
            await require_migrated(conn)
        log.info("worker.starting", instance=settings.instance, queue=settings.queue)
        await Worker(settings).run(stop)
        log.info("worker.stopped", instance=settings.instance)

    run_or_explain(lambda: asyncio.run(serve()))
