"""PostgreSQL connections: opening them, creating the database, applying migrations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

APPLICATION_NAME = "ledgerflow"
_MIGRATION_FILE = re.compile(r"^(\d{3})_(\w+)\.sql$")
# pg_advisory_xact_lock key held while migrating ("ledgmigr" in ASCII, as a bigint).
MIGRATION_LOCK_KEY = 0x6C6564676D696772


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
    """Open a connection tagged with ledgerflow's application name."""
    try:
        return await psycopg.AsyncConnection.connect(
            url,
            autocommit=autocommit,
            application_name=APPLICATION_NAME,
            connect_timeout=connect_timeout,
            **kwargs,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL ({describe(url)}): {exc}") from exc


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


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file from ``ledgerflow/sql/migrations``."""

    version: int
    name: str
    text: str


def migrations() -> list[Migration]:
    """Every migration shipped with ledgerflow, in order."""
    found = []
    for entry in files("ledgerflow.sql.migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


async def migrate(conn: psycopg.AsyncConnection[Any]) -> list[Migration]:
    """Apply the migrations not applied yet, each in its own transaction; return them.

    Concurrent callers are serialised by an advisory lock, so two workers starting at
    once never apply the same migration twice.
    """
    applied: list[Migration] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS ledgerflow_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
    for migration in migrations():
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            cursor = await conn.execute(
                "SELECT 1 FROM ledgerflow_migrations WHERE version = %s", (migration.version,)
            )
            if await cursor.fetchone():
                continue
            await conn.execute(migration.text)
            await conn.execute(
                "INSERT INTO ledgerflow_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied.append(migration)
    return applied


async def pending_migrations(conn: psycopg.AsyncConnection[Any]) -> list[Migration]:
    """The shipped migrations this database has not applied."""
    try:
        cursor = await conn.execute("SELECT version FROM ledgerflow_migrations")
        applied = {row[0] for row in await cursor.fetchall()}
    except psycopg.errors.UndefinedTable:
        await conn.rollback()
        applied = set()
    return [m for m in migrations() if m.version not in applied]
