"""PostgreSQL connections: opening them, creating the database, checking that it answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import structlog
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ledgerflow.db.queries import Queries

log = structlog.get_logger(__name__)

APPLICATION_NAME = "ledgerflow"
QUERIES = Queries.of("ledgerflow.db")


class DatabaseError(Exception):
    """PostgreSQL is unreachable or refused an operation ledgerflow needs."""


# What a server that is restarting answers (or its port, while nothing listens yet).
_RESTARTING = (
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "Connection refused",
)


def restarting(error: BaseException) -> bool:
    """Whether a connection failure looks like a server restart (worth waiting for), not
    a mistake in the configuration (a wrong password, database or host name)."""
    cause = error.__cause__ if isinstance(error, DatabaseError) else error
    return isinstance(cause, psycopg.OperationalError) and any(
        sign in str(cause) for sign in _RESTARTING
    )


async def connect(
    url: str, *, autocommit: bool = False, connect_timeout: int = 10, **kwargs: Any
) -> psycopg.AsyncConnection[Any]:
    """Open a connection tagged with ledgerflow's application name, its search path
    without ledgerflow's schema (see ``keep_search_path_off_our_schema``)."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            url,
            autocommit=autocommit,
            application_name=APPLICATION_NAME,
            connect_timeout=connect_timeout,
            **kwargs,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL ({describe(url)}): {exc}") from exc
    try:
        await keep_search_path_off_our_schema(conn)
    except BaseException:
        await conn.close()
        raise
    return conn


def connect_sync(url: str, connect_timeout: int = 10) -> psycopg.Connection[Any]:
    """``connect`` for synchronous code (loading dumps, seeding the example)."""
    try:
        conn = psycopg.connect(
            url, application_name=APPLICATION_NAME, connect_timeout=connect_timeout
        )
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL ({describe(url)}): {exc}") from exc
    conn.execute(QUERIES["search_path_without_ledgerflow"])
    conn.commit()
    return conn


async def keep_search_path_off_our_schema(conn: psycopg.AsyncConnection[Any]) -> None:
    """Drop ledgerflow's schema from the connection's search path.

    ledgerflow names its own tables with their schema (``ledgerflow.batches``) and the
    fixtures' tables without one (``initial_data``), so those are found, and created, where
    the database's search path says: ``public`` unless the operator chose otherwise. A role
    named ``ledgerflow`` would otherwise find the schema ``ledgerflow`` first, through
    PostgreSQL's default ``"$user", public``.
    """
    await conn.execute(QUERIES["search_path_without_ledgerflow"])
    if not conn.autocommit:
        await conn.commit()  # a session setting made in a transaction lasts once committed


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    params = conninfo_to_dict(url)
    params.pop("password", None)
    return make_conninfo("", **params)


async def ensure_database(url: str) -> bool:
    """Create the database named in ``url`` if it does not exist; return True if created."""
    params = conninfo_to_dict(url)
    name = params.get("dbname")
    try:
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=10)
    except psycopg.OperationalError as exc:
        if not name or "does not exist" not in str(exc):
            raise DatabaseError(f"cannot connect to PostgreSQL ({describe(url)}): {exc}") from exc
    else:
        await conn.close()
        return False
    maintenance = make_conninfo(url, dbname="postgres")
    admin = await connect(maintenance, autocommit=True)
    async with admin:
        try:
            await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(name))))
        except psycopg.errors.DuplicateDatabase:
            return False
    return True


async def ping(url: str, connect_timeout: int = 2) -> None:
    """Open a connection and run a trivial query; raise DatabaseError if that fails."""
    conn = await connect(url, connect_timeout=connect_timeout)
    async with conn:
        await conn.execute(QUERIES["ping"])


async def every(
    url: str,
    seconds: float,
    turn: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]],
    failed: str,
) -> None:
    """Call ``turn`` every ``seconds`` on a connection of its own (autocommit) until
    cancelled. A database that cannot answer is logged as ``failed`` and asked again, on
    a new connection, at the next turn: a periodic task never ends its process."""
    conn: psycopg.AsyncConnection[Any] | None = None
    try:
        while True:
            try:
                if conn is None or conn.closed:
                    conn = await connect(url, autocommit=True)
                await turn(conn)
            except (psycopg.Error, DatabaseError) as exc:
                log.warning(failed, error=str(exc))
                if conn is not None:
                    await conn.close()
                conn = None
            await asyncio.sleep(seconds)
    finally:
        if conn is not None:
            await conn.close()
