"""``ledgerflow run``: everything locally, in the foreground."""

from __future__ import annotations

import asyncio
import secrets
import socket
import sys

import click

from ledgerflow.auth import store
from ledgerflow.auth.model import Role
from ledgerflow.cli.common import actor, log, prepare, run_or_explain, settings_of
from ledgerflow.cli.rates import load_sample
from ledgerflow.db.connections import connect, connect_sync
from ledgerflow.settings import Settings
from ledgerflow.transactions.producer import seed_example_data
from ledgerflow.treasury.example_trades import example_instruments
from ledgerflow.treasury.instruments import load_instruments


@click.command(name="run")
@click.pass_context
def command(ctx: click.Context) -> None:
    """Run everything locally in the foreground: migrate, seed, worker, producer and API."""
    from ledgerflow.runtime.local import run_local

    # The example treasury runs too, where RabbitMQ's stream plugin answers.
    settings = settings_of(ctx).model_copy(update={"treasury": streams_answer(settings_of(ctx))})
    admin: list[str | None] = [None]

    def setup() -> None:
        prepare(settings, ["rates", "treasury"] if settings.treasury else ["rates"])
        with connect_sync(settings.database_url) as conn:
            if seed_example_data(conn):
                log.info("producer.seeded", providers=2, transactions=3)
            load_sample(conn)
        admin[0] = asyncio.run(first_admin(settings.database_url))
        if settings.treasury:
            asyncio.run(load_example_instruments(settings))

    run_or_explain(setup)
    sys.exit(run_local(settings, admin[0]))


def streams_answer(settings: Settings) -> bool:
    """Whether RabbitMQ's stream endpoint answers (the treasury needs it)."""
    server = settings.stream_server()
    try:
        socket.create_connection((server.host, server.port), timeout=1).close()
    except OSError:
        log.warning(
            "run.no_streams",
            address=f"{server.host}:{server.port}",
            hint="rabbitmq-plugins enable rabbitmq_stream, for the treasury",
        )
        return False
    return True


async def load_example_instruments(settings: Settings) -> None:
    """The reference data of the instruments the example producer trades."""
    conn = await connect(settings.database_url, autocommit=True)
    async with conn:
        await load_instruments(conn, example_instruments(settings.treasury_currency))


async def first_admin(database_url: str) -> str | None:
    """Create the console's user ``admin`` with a random password the first time; return
    the password then, None afterwards."""
    password = secrets.token_urlsafe(12)
    conn = await connect(database_url, autocommit=True)
    async with conn:
        try:
            await store.add_user(conn, "admin", Role.ADMIN, password)
        except store.Conflict:
            return None
        await store.audit(conn, actor(), "user.add", "admin", {"role": "admin", "by": "run"})
    return password
