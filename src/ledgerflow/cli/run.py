"""``ledgerflow run``: everything locally, in the foreground."""

from __future__ import annotations

import asyncio
import secrets
import sys

import click

from ledgerflow.auth import store
from ledgerflow.auth.model import Role
from ledgerflow.cli.common import actor, log, prepare, run_or_explain, settings_of
from ledgerflow.cli.rates import load_sample
from ledgerflow.db.connections import connect, connect_sync
from ledgerflow.transactions.producer import seed_example_data


@click.command(name="run")
@click.pass_context
def command(ctx: click.Context) -> None:
    """Run everything locally in the foreground: migrate, seed, worker, producer and API."""
    from ledgerflow.runtime.local import run_local

    settings = settings_of(ctx)
    admin: list[str | None] = [None]

    def setup() -> None:
        prepare(settings, ["rates"])
        with connect_sync(settings.database_url) as conn:
            if seed_example_data(conn):
                log.info("producer.seeded", providers=2, transactions=3)
            load_sample(conn)
        admin[0] = asyncio.run(first_admin(settings.database_url))

    run_or_explain(setup)
    sys.exit(run_local(settings, admin[0]))


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
