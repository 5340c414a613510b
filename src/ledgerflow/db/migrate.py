"""The one ordered sequence of migrations, and the optional domains within it.

Migrations are the numbered files in ``ledgerflow/db/migrations``. Tables reference each
other across domains, so there is one sequence, applied in order. A migration whose first
line is ``-- domain: <name>`` belongs to an optional domain: it is applied only to a
database that uses that domain, which is one that asked for it (``ledgerflow migrate
--rates``, ``ledgerflow rates load``, ``ledgerflow run``) or already has one of its
migrations. Every other migration is applied to every database.

Which migrations a database has is recorded in ``ledgerflow.migrations``.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import psycopg

from ledgerflow.db.queries import Queries

_MIGRATION_FILE = re.compile(r"^(\d{3})_(\w+)\.sql$")
_DOMAIN = re.compile(r"\A-- domain: (\w+)\s*$", re.MULTILINE)
# pg_advisory_xact_lock key held while migrating ("ledgmigr" in ASCII, as a bigint).
MIGRATION_LOCK_KEY = 0x6C6564676D696772
# The domains a database may do without.
OPTIONAL_DOMAINS = frozenset({"rates", "treasury"})
QUERIES = Queries.of("ledgerflow.db")


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file from ``ledgerflow/db/migrations``."""

    version: int
    name: str
    text: str
    domain: str | None = None  # an optional domain, or None: every database gets it

    @property
    def label(self) -> str:
        """``007_workers``, as logs and messages name it."""
        return f"{self.version:03d}_{self.name}"


def migrations() -> list[Migration]:
    """Every migration shipped with ledgerflow, in order."""
    found = []
    for entry in files("ledgerflow.db.migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            text = entry.read_text("utf-8")
            domain = _DOMAIN.match(text)
            if domain and domain[1] not in OPTIONAL_DOMAINS:
                raise ValueError(f"{entry.name}: unknown domain {domain[1]!r}")
            found.append(Migration(int(match[1]), match[2], text, domain[1] if domain else None))
    return sorted(found, key=lambda m: m.version)


def _check_domains(domains: Collection[str]) -> None:
    unknown = set(domains) - OPTIONAL_DOMAINS
    if unknown:
        raise ValueError(f"unknown domains {sorted(unknown)}; known: {sorted(OPTIONAL_DOMAINS)}")


async def _bookkeeping(conn: psycopg.AsyncConnection[Any]) -> None:
    """Create ``ledgerflow.migrations``, or move it there from where ledgerflow 0.1 kept it
    (``public.ledgerflow_migrations``, before migration 010 gave ledgerflow a schema)."""
    await conn.execute(QUERIES["create_schema"])
    cursor = await conn.execute(QUERIES["old_migrations_table"])
    row = await cursor.fetchone()
    if row and row[0]:
        await conn.execute(QUERIES["move_old_migrations_table"])
    else:
        await conn.execute(QUERIES["create_migrations_table"])


async def _applied(conn: psycopg.AsyncConnection[Any]) -> set[int]:
    cursor = await conn.execute(QUERIES["applied_migrations"])
    return {row[0] for row in await cursor.fetchall()}


def _wanted(applied: set[int], domains: Collection[str]) -> list[Migration]:
    """The migrations this database should have: those of no domain, those of ``domains``,
    and those of every domain the database already has a migration of."""
    everything = migrations()
    installed = {m.domain for m in everything if m.version in applied and m.domain}
    chosen = installed | set(domains)
    return [m for m in everything if m.domain is None or m.domain in chosen]


async def migrate(
    conn: psycopg.AsyncConnection[Any], domains: Collection[str] = ()
) -> list[Migration]:
    """Apply the migrations not applied yet, each in its own transaction; return them.

    ``domains`` names optional domains to install (see the module's docstring). Concurrent
    callers are serialised by an advisory lock, so two workers starting at once never apply
    the same migration twice.
    """
    _check_domains(domains)
    applied: list[Migration] = []
    async with conn.transaction():
        await conn.execute(QUERIES["lock_migrations"], {"key": MIGRATION_LOCK_KEY})
        await _bookkeeping(conn)
        done = await _applied(conn)
    for migration in _wanted(done, domains):
        if migration.version in done:
            continue
        async with conn.transaction():
            await conn.execute(QUERIES["lock_migrations"], {"key": MIGRATION_LOCK_KEY})
            if migration.version in await _applied(conn):
                continue  # another process applied it meanwhile
            await conn.execute(migration.text)
            await conn.execute(
                QUERIES["record_migration"],
                {"version": migration.version, "name": migration.name},
            )
            applied.append(migration)
    return applied


async def installed_domains(conn: psycopg.AsyncConnection[Any]) -> set[str]:
    """The optional domains this database has (one of their migrations applied)."""
    applied = await _applied_or_none(conn)
    return {m.domain for m in migrations() if m.domain and m.version in applied}


async def pending_migrations(
    conn: psycopg.AsyncConnection[Any], domains: Collection[str] = ()
) -> list[Migration]:
    """The migrations this database lacks, for its installed domains and ``domains``."""
    _check_domains(domains)
    applied = await _applied_or_none(conn)
    return [m for m in _wanted(applied, domains) if m.version not in applied]


async def _applied_or_none(conn: psycopg.AsyncConnection[Any]) -> set[int]:
    """The applied versions; none when the database was never migrated. A database that
    ledgerflow 0.1 migrated keeps its record in ``public`` until it is migrated again."""
    for query in (QUERIES["applied_migrations"], QUERIES["applied_migrations_before_010"]):
        try:
            cursor = await conn.execute(query)
            return {row[0] for row in await cursor.fetchall()}
        except psycopg.errors.UndefinedTable:
            await conn.rollback()
    return set()
