"""The ``ledgerflow`` command."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click
import psycopg
import structlog

from ledgerflow import database, logs
from ledgerflow.broker import BrokerError
from ledgerflow.database import DatabaseError
from ledgerflow.producer import Pace, produce, provider_ids, seed_example_data
from ledgerflow.settings import ConfigError, Settings, load_settings

log = structlog.get_logger("ledgerflow")


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


@click.group()
@click.version_option(package_name="ledgerflow")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Transactions from RabbitMQ into PostgreSQL; balances into KeyDB every minute.

    Configuration comes from LEDGERFLOW_* environment variables (and a .env file).
    """
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logs.configure(settings.log_level, settings.log_format)
    ctx.obj = settings


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Create the database if needed and apply ledgerflow's migrations."""
    settings = _settings(ctx)

    async def apply() -> None:
        if await database.ensure_database(settings.database_url):
            log.info("database.created", database=database.describe(settings.database_url))
        conn = await database.connect(settings.database_url)
        async with conn:
            applied = await database.migrate(conn)
        log.info("database.migrated", applied=[f"{m.version:03d}_{m.name}" for m in applied])

    _run_or_explain(lambda: asyncio.run(apply()))


@main.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Consume transactions and publish balances; a second worker waits as a standby.

    Stops cleanly on SIGTERM or SIGINT: it stops taking messages, commits and
    acknowledges what it holds, and exits 0.
    """
    # A signal that arrives while the worker starts up still means a clean stop.
    early_stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: early_stop.set())

    from ledgerflow.worker import Worker

    settings = _settings(ctx)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        if early_stop.is_set():
            return
        conn = await _until_database_answers(settings.database_url, stop)
        if conn is None:
            return
        async with conn:
            await _require_migrated(conn)
        log.info("worker.starting", instance=settings.instance, queue=settings.queue)
        await Worker(settings).run(stop)
        log.info("worker.stopped", instance=settings.instance)

    _run_or_explain(lambda: asyncio.run(serve()))


@main.command(name="produce")
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
@click.pass_context
def produce_command(
    ctx: click.Context,
    count: int | None,
    rate: float | None,
    random_seed: int | None,
    seed_data: bool,
) -> None:
    """Publish example transactions to the queue, like the original producer."""
    settings = _settings(ctx)
    seed = random_seed if random_seed is not None else random.SystemRandom().randrange(2**32)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def publish() -> None:
        with psycopg.connect(settings.database_url, connect_timeout=10) as conn:
            if seed_data:
                _prepare(settings)
                if seed_example_data(conn):
                    log.info("producer.seeded", providers=2, transactions=3)
            providers = provider_ids(conn)
        log.info("producer.starting", queue=settings.queue, random_seed=seed, rate=rate)
        sent = produce(
            settings.amqp_url,
            settings.queue,
            providers,
            random.Random(seed),
            Pace(rate),
            stop,
            count,
        )
        log.info("producer.stopped", sent=sent)

    _run_or_explain(publish)


@main.command()
@click.pass_context
def api(ctx: click.Context) -> None:
    """Serve the HTTP API on LEDGERFLOW_HTTP_PORT (stateless: run as many as needed).

    SIGTERM stops it gracefully: no new connections, requests in flight are answered.
    """
    from ledgerflow.api import create_app
    from ledgerflow.http import server

    settings = _settings(ctx)
    log.info("api.starting", port=settings.http_port)
    srv = server(
        create_app(settings), settings.http_host, settings.http_port, embedded=False, lifespan="on"
    )
    # uvicorn re-raises the stop signal once it has shut down gracefully; that signal has
    # been handled, so the process then ends normally, with exit code 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    _run_or_explain(srv.run)
    log.info("api.stopped")


@main.group()
def rates() -> None:
    """Rates data: load a dump or CSV files."""


@rates.command(name="load")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--replace", is_flag=True, help="Empty prices first (regions and ports are kept).")
@click.pass_context
def rates_load(ctx: click.Context, paths: tuple[str, ...], replace: bool) -> None:
    """Load a dump like the original rates.sql, or ports/regions/prices CSV files.

    Everything goes in one transaction: all of it, or nothing.
    """
    from pathlib import Path

    from ledgerflow import dumps

    settings = _settings(ctx)

    def load() -> None:
        _prepare(settings)
        blocks = dumps.read(Path(p) for p in paths)
        with psycopg.connect(settings.database_url, connect_timeout=10) as conn:
            added = dumps.load(conn, blocks, replace=replace)
        log.info("rates.loaded", **added)
        asyncio.run(_clear_rates_cache(settings))

    try:
        _run_or_explain(load)
    except dumps.LoadError as exc:
        raise click.ClickException(str(exc)) from None


@rates.command(name="generate")
@click.option(
    "--scale",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Size relative to the original dump (56,689 prices).",
)
@click.option("--seed", type=int, default=1, show_default=True, help="For a reproducible set.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="rates-data",
    show_default=True,
    help="Directory for regions.csv, ports.csv and prices.csv.",
)
def rates_generate(scale: float, seed: int, out: str) -> None:
    """Write a synthetic dataset of the original's shape (load it with `rates load`)."""
    from pathlib import Path

    from ledgerflow import synthetic

    counts = synthetic.write_csv(synthetic.generate(scale, seed), Path(out))
    log.info("rates.generated", directory=out, **counts)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Report every worker (active and standby) and exit 1 if anything is unhealthy.

    Unhealthy: a heartbeat older than 2 minutes, a worker that does not answer its
    /healthz, an active worker without a publication for 2 minutes, or no healthy active
    worker at all. Made for cron and monitors.
    """
    from ledgerflow import status as report_status

    settings = _settings(ctx)
    report: dict[str, Any] = {}

    async def gather() -> dict[str, Any]:
        async with await database.connect(settings.database_url) as conn:
            await _require_migrated(conn)
        return await report_status.gather(settings)

    def collect() -> None:
        report.update(asyncio.run(gather()))

    _run_or_explain(collect)
    click.echo(report_status.as_json(report) if as_json else report_status.render(report))
    sys.exit(0 if report["healthy"] else 1)


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run everything locally in the foreground: migrate, seed, worker and producer."""
    from ledgerflow.supervisor import run_local

    settings = _settings(ctx)

    def prepare() -> None:
        _prepare(settings)
        with psycopg.connect(settings.database_url, connect_timeout=10) as conn:
            if seed_example_data(conn):
                log.info("producer.seeded", providers=2, transactions=3)
            _load_sample_rates(conn)

    _run_or_explain(prepare)
    sys.exit(run_local(settings))


async def _clear_rates_cache(settings: Settings) -> None:
    """Cached /rates answers may all be stale after a load: drop them."""
    import redis.asyncio as redis
    from redis.exceptions import RedisError

    from ledgerflow.lru import PersistentLRU
    from ledgerflow.rates import CACHE_NAMESPACE

    client = redis.Redis.from_url(settings.cache_url, socket_connect_timeout=2)
    try:
        await PersistentLRU(client, CACHE_NAMESPACE).cache_clear()
    except (RedisError, OSError) as exc:
        log.warning("rates.cache_not_cleared", error=str(exc))
    finally:
        await client.aclose()


def _load_sample_rates(conn: psycopg.Connection[Any]) -> None:
    """Give the quick start some rates: a synthetic set of the original's size, once."""
    import tempfile
    from pathlib import Path

    from ledgerflow import dumps, synthetic

    row = conn.execute("SELECT EXISTS (SELECT 1 FROM prices)").fetchone()
    if row and row[0]:
        return
    with tempfile.TemporaryDirectory() as directory:
        synthetic.write_csv(synthetic.generate(1.0), Path(directory))
        names = ("regions", "ports", "prices")
        added = dumps.load(conn, dumps.read(Path(directory) / f"{n}.csv" for n in names))
    log.info("rates.sample_loaded", **added)


def _prepare(settings: Settings) -> None:
    async def apply() -> None:
        await database.ensure_database(settings.database_url)
        conn = await database.connect(settings.database_url)
        async with conn:
            await database.migrate(conn)

    asyncio.run(apply())


STARTUP_WAIT = 60.0  # seconds a starting worker waits for a restarting PostgreSQL


async def _until_database_answers(
    url: str, stop: asyncio.Event
) -> psycopg.AsyncConnection[Any] | None:
    """A connection, once PostgreSQL answers: waits while it restarts (up to STARTUP_WAIT);
    None if stopped meanwhile.

    A worker restarted by its supervisor in the middle of a database restart waits for
    it, as a running worker does; a configuration mistake still fails at once.
    """
    deadline = asyncio.get_running_loop().time() + STARTUP_WAIT
    while True:
        try:
            return await database.connect(url, connect_timeout=5)
        except DatabaseError as exc:
            if not database.restarting(exc) or asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("worker.waiting_for_database", error=str(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await stop.wait()
            if stop.is_set():
                return None


async def _require_migrated(conn: psycopg.AsyncConnection[Any]) -> None:
    missing = await database.pending_migrations(conn)
    if missing:
        names = ", ".join(f"{m.version:03d}_{m.name}" for m in missing)
        raise DatabaseError(f"the database lacks migrations {names}: run `ledgerflow migrate`")


def _run_or_explain(action: Callable[[], Any]) -> None:
    """Run ``action``; turn a dependency failure into one clear line and exit code 1."""
    try:
        action()
    except (ConfigError, DatabaseError, BrokerError, psycopg.OperationalError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        import pika.exceptions

        if isinstance(exc, pika.exceptions.AMQPError):
            raise click.ClickException(f"RabbitMQ: {exc!r}") from None
        raise
