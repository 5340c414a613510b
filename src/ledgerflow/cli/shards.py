"""``ledgerflow shards``: the number of shards, changed without losing a message."""

from __future__ import annotations

import asyncio
import json

import click
import pika

from ledgerflow.cli.common import run_or_explain, settings_of
from ledgerflow.cluster.registry import HEARTBEAT_EVERY, workers
from ledgerflow.cluster.shards import set_shard_count
from ledgerflow.db.connections import connect
from ledgerflow.messaging.rabbitmq import connection_parameters
from ledgerflow.messaging.shards import ResizeRefused, resize_shards


@click.group(name="shards")
def command() -> None:
    """Sharded ingestion (LEDGERFLOW_SHARDS): see docs/scaling.md."""


@command.command(name="resize")
@click.argument("count", type=click.IntRange(min=1, max=1024))
@click.pass_context
def resize(ctx: click.Context, count: int) -> None:
    """Make the shards COUNT, then start the workers with LEDGERFLOW_SHARDS=COUNT.

    Refused while a worker runs (a fresh heartbeat) or a shard holds messages: drain
    them first (docs/scaling.md, changing the number of shards).
    """
    settings = settings_of(ctx)

    async def record(shards: int) -> None:
        conn = await connect(settings.database_url, autocommit=True, connect_timeout=5)
        async with conn:
            await set_shard_count(conn, settings.queue, shards)

    async def running() -> list[str]:
        conn = await connect(settings.database_url, autocommit=True, connect_timeout=5)
        async with conn:
            found = await workers(conn)
        return [w["instance"] for w in found if w["heartbeat_age"] < 1.5 * HEARTBEAT_EVERY]

    def act() -> None:
        alive = asyncio.run(running())
        if alive:
            raise click.ClickException(
                f"workers are running ({', '.join(alive)}): stop every worker first"
            )
        connection = pika.BlockingConnection(connection_parameters(settings.amqp_url))
        try:
            done = resize_shards(connection, settings.queue, count)
        except ResizeRefused as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            if connection.is_open:
                connection.close()
        asyncio.run(record(count))
        click.echo(json.dumps(done))

    run_or_explain(act)
