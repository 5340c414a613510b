"""What the commands share: the settings, preparing the database, clear failures."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

import click
import psycopg
import structlog

from ledgerflow.db import connections, migrate
from ledgerflow.db.connections import DatabaseError
from ledgerflow.messaging.rabbitmq import BrokerError
from ledgerflow.settings import ConfigError, Settings

log = structlog.get_logger("ledgerflow")
T = TypeVar("T")

STARTUP_WAIT = 60.0  # seconds a starting worker waits for a restarting PostgreSQL


def settings_of(ctx: click.Context) -> Settings:
    """The settings the ``ledgerflow`` group loaded."""
    settings: Settings = ctx.obj
    return settings


async def apply_migrations(settings: Settings, domains: Collection[str] = ()) -> None:
    """Create the database if needed and apply the migrations (with ``domains``)."""
    if await connections.ensure_database(settings.database_url):
        log.info("database.created", database=connections.describe(settings.database_url))
    conn = await connections.connect(settings.database_url)
    async with conn:
        applied = await migrate.migrate(conn, domains)
    log.info("database.migrated", applied=[m.label for m in applied])


def prepare(settings: Settings, domains: Collection[str] = ()) -> None:
    """``apply_migrations``, from synchronous code (with the treasury's tables when
    LEDGERFLOW_TREASURY is on)."""
    wanted = {*domains, "treasury"} if settings.treasury else set(domains)
    asyncio.run(apply_migrations(settings, sorted(wanted)))


async def until_database_answers(
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
            return await connections.connect(url, connect_timeout=5)
        except DatabaseError as exc:
            if not connections.restarting(exc) or asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("worker.waiting_for_database", error=str(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await stop.wait()
            if stop.is_set():
                return None


async def require_migrated(conn: psycopg.AsyncConnection[Any]) -> None:
    """Raise DatabaseError, saying what to run, if the database lacks a migration."""
    missing = await migrate.pending_migrations(conn)
    if missing:
        names = ", ".join(m.label for m in missing)
        raise DatabaseError(f"the database lacks migrations {names}: run `ledgerflow migrate`")


def run_or_explain(action: Callable[[], Any]) -> None:
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


def actor() -> str:
    """How the audit log names a change made from the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def with_database(
    ctx: click.Context,
    work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
    expected: tuple[type[Exception], ...] = (ValueError,),
) -> T:
    """Migrate if needed, then run ``work`` on a connection; a dependency failure or an
    ``expected`` error (a refused input) becomes one clear line and exit code 1."""
    settings = settings_of(ctx)
    result: list[T] = []

    async def go() -> None:
        conn = await connections.connect(settings.database_url, autocommit=True)
        async with conn:
            result.append(await work(conn))

    def action() -> None:
        prepare(settings)
        asyncio.run(go())

    try:
        run_or_explain(action)
    except expected as exc:
        raise click.ClickException(str(exc)) from None
    return result[0]
