"""``ledgerflow produce``: the example producer."""

from __future__ import annotations

import asyncio
import random
import signal
import threading

import click

from ledgerflow.cli.common import log, prepare, run_or_explain, settings_of
from ledgerflow.db.connections import connect_sync
from ledgerflow.runtime.shards import agree_on_shards
from ledgerflow.transactions.producer import Pace, produce, provider_ids, seed_example_data


@click.command(name="produce")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many messages.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Messages per second (default: one every 10 to 40 s, like the original).",
)
@click.option("--random-seed", type=int, help="Seed for the random providers, values and pauses.")
@click.option(
    "--seed-data/--no-seed-data",
    default=True,
    show_default=True,
    help="Seed the example providers and transactions into an empty database first.",
)
@click.option(
    "--sharded",
    is_flag=True,
    help="Publish to the shards' exchange, keyed by provider (needs LEDGERFLOW_SHARDS).",
)
@click.pass_context
def command(
    ctx: click.Context,
    count: int | None,
    rate: float | None,
    random_seed: int | None,
    seed_data: bool,
    sharded: bool,
) -> None:
    """Publish example transactions to the queue, like the original producer."""
    settings = settings_of(ctx)
    if sharded and not settings.shards:
        raise click.UsageError("--sharded needs LEDGERFLOW_SHARDS: the number of shards")
    seed = random_seed if random_seed is not None else random.SystemRandom().randrange(2**32)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def publish() -> None:
        with connect_sync(settings.database_url) as conn:
            if seed_data:
                prepare(settings)
                if seed_example_data(conn):
                    log.info("producer.seeded", providers=2, transactions=3)
            providers = provider_ids(conn)
        if sharded:
            asyncio.run(agree_on_shards(settings))
        log.info("producer.starting", queue=settings.queue, random_seed=seed, rate=rate)
        sent = produce(
            settings.amqp_url,
            settings.queue,
            providers,
            random.Random(seed),
            Pace(rate),
            stop,
            count,
            settings.shards if sharded else 0,
        )
        log.info("producer.stopped", sent=sent)

    run_or_explain(publish)
