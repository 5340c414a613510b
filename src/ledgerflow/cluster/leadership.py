"""One active instance: a PostgreSQL advisory lock elects the leader, terms fence it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, LiteralString

import psycopg
import structlog

from ledgerflow.db.connections import DatabaseError, connect
from ledgerflow.db.queries import Queries

# pg_try_advisory_lock key of the leader ("ledgflow" in ASCII, as a bigint). Advisory locks
# are per database, so every database has its own leader.
LEADER_LOCK_KEY = 0x6C656467666C6F77

log = structlog.get_logger(__name__)
QUERIES = Queries.of("ledgerflow.cluster")


class LeadershipLost(Exception):
    """This instance is no longer the leader; it must stop consuming and publishing."""


async def check_term(conn: psycopg.AsyncConnection[Any], term: int) -> None:
    """Inside a transaction: lock the current term until commit and verify it is ``term``."""
    await ensure_term(await conn.execute(QUERIES["lock_term"]), term)


def lock_term_query() -> LiteralString:
    """The query that locks the current term until commit (for a caller's pipeline; check
    its result with ``ensure_term``)."""
    return QUERIES["lock_term"]


async def ensure_term(locked: psycopg.AsyncCursor[Any], term: int) -> None:
    """Verify the result of the ``lock_term`` query, which may still be in a pipeline."""
    row = await locked.fetchone()
    current = row[0] if row else None
    if current != term:
        raise LeadershipLost(f"term {term} is over; the current term is {current}")


class Leadership:
    """Holds the leader lock on a dedicated connection while this instance is active.

    The lock lives as long as the connection: if the process dies or the connection
    drops, PostgreSQL releases it and a standby takes over. Taking the lock also takes
    a new term, which every write of the leader checks.
    """

    def __init__(
        self, database_url: str, instance: str, poll: float = 0.5, check_every: float = 1.0
    ) -> None:
        self._url = database_url
        self._instance = instance
        self._poll = poll
        self._check_every = check_every
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self.term: int | None = None

    async def acquire(self) -> int:
        """Wait until this instance holds the lock; return its new term."""
        announced = False
        while True:
            try:
                term = await self._try_acquire()
            except DatabaseError as exc:
                log.warning("leadership.database_unavailable", error=str(exc))
                await asyncio.sleep(max(self._poll, 2.0))
                continue
            if term is not None:
                log.info("leadership.acquired", term=term, instance=self._instance)
                return term
            if not announced:
                log.info("leadership.standby", instance=self._instance)
                announced = True
            await asyncio.sleep(self._poll)

    async def _try_acquire(self) -> int | None:
        if self._conn is None or self._conn.closed:
            self._conn = await connect(self._url, autocommit=True)
        try:
            cursor = await self._conn.execute(QUERIES["try_leader_lock"], {"key": LEADER_LOCK_KEY})
            row = await cursor.fetchone()
            if not (row and row[0]):
                return None
            cursor = await self._conn.execute(QUERIES["take_term"], {"instance": self._instance})
            row = await cursor.fetchone()
        except psycopg.OperationalError as exc:
            await self._drop()
            raise DatabaseError(str(exc)) from exc
        assert row is not None
        self.term = int(row[0])
        return self.term

    async def watch(self) -> None:
        """Return never; raise LeadershipLost as soon as the lock connection fails."""
        assert self._conn is not None, "acquire() first"
        while True:
            await asyncio.sleep(self._check_every)
            try:
                await self._conn.execute(QUERIES["still_connected"])
            except psycopg.Error as exc:
                await self._drop()
                raise LeadershipLost(f"lost the leader lock connection: {exc}") from exc

    async def release(self) -> None:
        """Give the lock up (closing its connection releases it)."""
        self.term = None
        await self._drop()

    async def _drop(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(psycopg.Error):
                await conn.close()
