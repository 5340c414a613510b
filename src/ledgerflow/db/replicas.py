"""Reads sent to PostgreSQL streaming replicas (LEDGERFLOW_DATABASE_READ_URLS), writes to
the primary; a replica that lags or fails is out of rotation until it is back.

How far a replica is behind, without trusting clocks: every ``check_every`` seconds the
primary's WAL position is noted (``pg_current_wal_lsn``) with the time, on this process's
monotonic clock. A replica that has replayed (``pg_last_wal_replay_lsn``) everything the
primary had at the last check is 0 s behind; otherwise it is as far behind as the newest
check whose position it has reached. A replica more than ``max_lag`` seconds behind, one
that does not answer, or a server that is not in recovery (a promoted standby, a wrong
URL) is out of rotation; reads go to the replicas in rotation in turn, and to the primary
when there is none. A read whose replica fails as it takes its connection goes to the
primary at once; one that fails mid-query fails (the caller answers 503) and takes the
replica out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import psycopg
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ledgerflow.db.connections import keep_search_path_off_our_schema

log = structlog.get_logger(__name__)

PRIMARY_POSITION = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
REPLICA_POSITION = (
    "SELECT pg_is_in_recovery(),"
    " coalesce(pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0'), 0)::bigint"
)


class Connections(Protocol):
    """Where a request takes its connection: a pool, or :class:`ReadPools`."""

    def connection(
        self,
    ) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]: ...


def shown(url: str) -> str:
    """A database URL without its password, to log and show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


class ReplicaMetrics:
    """Reads by where they went, and each replica's rotation and lag, in a registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.reads = Counter(
            "ledgerflow_reads",
            "Reads of /rates and the console, by where they went (primary or a replica).",
            ["target"],
            registry=registry,
        )
        self.in_rotation = Gauge(
            "ledgerflow_read_replica_in_rotation",
            "1 while the replica takes reads, 0 while it is out.",
            ["replica"],
            registry=registry,
        )
        self.lag = Gauge(
            "ledgerflow_read_replica_lag_seconds",
            "How far the replica was behind the primary at the last check.",
            ["replica"],
            registry=registry,
        )


@dataclass
class Replica:
    """One replica: its pool and what the last check found."""

    url: str
    pool: AsyncConnectionPool
    in_rotation: bool = False
    lag_seconds: float | None = None
    problem: str | None = "not checked yet"


@dataclass
class ReadPools:
    """Connections for reads: a replica in rotation, else the primary's pool."""

    primary: AsyncConnectionPool
    urls: Sequence[str]
    max_lag: float = 5.0
    check_every: float = 1.0
    pool_size: int = 10
    application_name: str = "ledgerflow-api-read"
    metrics: ReplicaMetrics | None = None
    replicas: list[Replica] = field(default_factory=list)
    _positions: deque[tuple[float, int]] = field(default_factory=deque)
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    _checking: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Open a pool per replica and start checking them (the first check before
        returning, so that reads use the replicas from the first request)."""
        for url in self.urls:
            pool = AsyncConnectionPool(
                url,
                min_size=1,
                max_size=self.pool_size,
                open=False,
                timeout=2.0,
                kwargs={
                    "application_name": self.application_name,
                    "autocommit": True,
                    "connect_timeout": 2,
                },
                check=AsyncConnectionPool.check_connection,
                configure=keep_search_path_off_our_schema,
            )
            await pool.open(wait=False)
            self.replicas.append(Replica(url, pool))
        if self.replicas:
            await self.check()
            self._checking = asyncio.create_task(self._check_forever(), name="read-replicas")

    async def close(self) -> None:
        if self._checking is not None:
            self._checking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checking
        for replica in self.replicas:
            await replica.pool.close()

    def _pick(self) -> Replica | None:
        ready = [r for r in self.replicas if r.in_rotation]
        return ready[next(self._turn) % len(ready)] if ready else None

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection to a replica in rotation, or to the primary."""
        replica = self._pick()
        async with contextlib.AsyncExitStack() as stack:
            conn = None
            if replica is not None:
                try:
                    conn = await stack.enter_async_context(replica.pool.connection(timeout=0.5))
                except PoolTimeout:
                    pass  # busy, or gone: the primary answers this one; the check decides
                except psycopg.OperationalError as exc:
                    self._out(replica, f"no connection: {exc}")  # the primary answers
            if replica is None or conn is None:
                conn = await stack.enter_async_context(self.primary.connection())
                self._count("primary")
                yield conn
                return
            self._count(shown(replica.url))
            try:
                yield conn
            except psycopg.OperationalError as exc:
                self._out(replica, f"failed mid-query: {exc}")
                raise

    def _count(self, target: str) -> None:
        if self.metrics is not None:
            self.metrics.reads.labels(target).inc()

    def _show(self, replica: Replica) -> None:
        if self.metrics is not None:
            name = shown(replica.url)
            self.metrics.in_rotation.labels(name).set(1 if replica.in_rotation else 0)
            self.metrics.lag.labels(name).set(
                -1 if replica.lag_seconds is None else replica.lag_seconds
            )

    def _out(self, replica: Replica, problem: str) -> None:
        if replica.in_rotation:
            log.warning("db.replica_out", replica=shown(replica.url), problem=problem)
        replica.in_rotation, replica.problem = False, problem
        self._show(replica)

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(self.check_every)
            try:
                async with asyncio.timeout(max(3.0, 3 * self.check_every)):
                    await self.check()
            except Exception as exc:  # a check must never end the API's reads
                log.warning("db.replica_check_failed", error=repr(exc))

    async def check(self) -> None:
        """Note the primary's position, and put each replica in or out of rotation."""
        now = time.monotonic()
        try:
            async with self.primary.connection(timeout=2.0) as conn:
                cursor = await conn.execute(PRIMARY_POSITION)
                row = await cursor.fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("db.primary_position_unknown", error=str(exc))
            row = None
        if row is not None:
            self._positions.append((now, int(row[0])))
        while self._positions and now - self._positions[0][0] > 2 * self.max_lag + 10:
            self._positions.popleft()
        await asyncio.gather(*(self._check_one(r, now) for r in self.replicas))

    async def _check_one(self, replica: Replica, now: float) -> None:
        try:
            conn = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(
                    replica.url,
                    autocommit=True,
                    connect_timeout=2,
                    application_name=f"{self.application_name}-check",
                ),
                3.0,
            )
            async with conn:
                cursor = await asyncio.wait_for(conn.execute(REPLICA_POSITION), 2.0)
                row = await cursor.fetchone()
        except (psycopg.Error, OSError, TimeoutError) as exc:
            self._out(replica, f"does not answer: {exc}".strip())
            replica.lag_seconds = None
            return
        assert row is not None
        recovering, replayed = bool(row[0]), int(row[1])
        if not recovering:
            self._out(replica, "not a standby: pg_is_in_recovery() is false")
            return
        if not self._positions or self._positions[-1][0] != now:
            # The primary's position now is unknown: how far behind it is, too.
            self._out(replica, "the primary's position is unknown, so is the replica's lag")
            replica.lag_seconds = None
            return
        reached = [at for at, position in self._positions if position <= replayed]
        lag = now - reached[-1] if reached else now - self._positions[0][0]
        replica.lag_seconds = round(lag, 3)
        if lag > self.max_lag:
            self._out(replica, f"{lag:.1f} s behind the primary (at most {self.max_lag} s)")
            return
        if not replica.in_rotation:
            log.info("db.replica_in", replica=shown(replica.url), lag_seconds=lag)
        replica.in_rotation, replica.problem = True, None
        self._show(replica)
