"""Publishing every provider's balance to KeyDB from one consistent snapshot."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
import structlog
from psycopg.types.json import Jsonb

from ledgerflow.cluster.leadership import check_term
from ledgerflow.core.amounts import format_amount
from ledgerflow.core.clock import BoundarySchedule, Clock
from ledgerflow.core.health import Health
from ledgerflow.core.tracing import MessageTracer
from ledgerflow.db.queries import Queries
from ledgerflow.kv.balance_store import BalanceStore, BalanceStoreError
from ledgerflow.kv.events import EventSink
from ledgerflow.transactions.metrics import IngestMetrics

log = structlog.get_logger(__name__)
QUERIES = Queries.of("ledgerflow.transactions")


@dataclass(frozen=True)
class Publication:
    """What one boundary's publish did."""

    boundary: float
    keys: dict[str, str]
    lag: float
    skipped: bool = False


def balance_key(provider_id: int, provider_name: str) -> str:
    """The KeyDB key of a provider's balance, as the brief defines it: ``1_Visa``."""
    return f"{provider_id}_{provider_name}"


@dataclass
class Snapshot:
    """The balances at one boundary, read by the leader of one term."""

    keys: dict[str, str]  # balance_key -> formatted amount
    skipped: bool  # another term already published this boundary
    published_at: datetime | None = field(default=None)
    lag: float | None = field(default=None)

    def record(self, published_at: datetime, lag: float) -> None:
        """Note when the balances reached KeyDB; recorded when the snapshot closes."""
        self.published_at, self.lag = published_at, lag


class BalanceLedger(Protocol):
    """Where the balances come from and publications are recorded (PostgreSQL)."""

    def snapshot(
        self, boundary: datetime, term: int, instance: str
    ) -> contextlib.AbstractAsyncContextManager[Snapshot]:
        """Open a snapshot of every balance for ``boundary``, holding ``term`` (raise
        LeadershipLost if it is over) until it closes; a publication noted with
        ``Snapshot.record`` is recorded when it closes without an error, and nothing is
        recorded when the block raises."""
        ...


class PostgresBalanceLedger:
    """BalanceLedger on the ledger's database: one REPEATABLE READ transaction a snapshot.

    The transaction locks the leader's term and stays open until KeyDB has acknowledged,
    so a deposed leader cannot publish, and a publication is recorded in
    ``ledgerflow.publishes`` only when it happened.
    """

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    @contextlib.asynccontextmanager
    async def snapshot(
        self, boundary: datetime, term: int, instance: str
    ) -> AsyncIterator[Snapshot]:
        """See BalanceLedger.snapshot."""
        conn = self._conn
        async with conn.transaction():
            await conn.execute(QUERIES["repeatable_read"])
            await check_term(conn, term)
            cursor = await conn.execute(
                QUERIES["published_by_other_term"], {"boundary": boundary, "term": term}
            )
            row = await cursor.fetchone()
            if row and row[0]:
                # A previous leader already published this boundary (clock skew at failover).
                yield Snapshot({}, skipped=True)
                return
            cursor = await conn.execute(QUERIES["balances"])
            snapshot = Snapshot(
                {
                    balance_key(provider_id, name): format_amount(balance)
                    for provider_id, name, balance in await cursor.fetchall()
                },
                skipped=False,
            )
            yield snapshot
            if snapshot.published_at is not None and snapshot.lag is not None:
                await conn.execute(
                    QUERIES["record_publish"],
                    {
                        "boundary": boundary,
                        "term": term,
                        "instance": instance,
                        "provider_count": len(snapshot.keys),
                        "published_at": snapshot.published_at,
                        "lag_seconds": snapshot.lag,
                        "balances": Jsonb(snapshot.keys),
                    },
                )


class BalancePublisher:
    """Reads the balances in one snapshot and writes them to KeyDB in one MULTI/EXEC."""

    def __init__(
        self,
        ledger: BalanceLedger,
        store: BalanceStore,
        clock: Clock,
        term: int,
        instance: str,
    ) -> None:
        self._ledger = ledger
        self._store = store
        self._clock = clock
        self._term = term
        self._instance = instance

    async def publish(self, boundary: float) -> Publication:
        """Publish the balances for ``boundary``; raise BalanceStoreError if KeyDB fails
        (nothing is recorded then) and LeadershipLost if this term is over."""
        at = datetime.fromtimestamp(boundary, UTC)
        async with self._ledger.snapshot(at, self._term, self._instance) as snapshot:
            if snapshot.skipped:
                return Publication(boundary, {}, 0.0, skipped=True)
            await self._store.write_all(snapshot.keys)
            published = self._clock.wall()
            snapshot.record(datetime.fromtimestamp(published, UTC), published - boundary)
        return Publication(boundary, snapshot.keys, published - boundary)


async def publish_forever(
    publisher: BalancePublisher,
    schedule: BoundarySchedule,
    metrics: IngestMetrics,
    health: Health,
    tracer: MessageTracer,
    events: EventSink | None = None,
    on_failure: Callable[[str], None] | None = None,
) -> None:
    """Publish at every boundary until cancelled, telling ``events`` of each publication.

    A boundary KeyDB refuses is logged and counted, and the next boundary publishes again
    (every key, from a new snapshot); LeadershipLost and database errors propagate.
    ``on_failure`` hears of the first boundary that fails after one that did not (one
    notification an outage, not one a minute).
    """
    failing = False
    while True:
        boundary = await schedule.wait()
        try:
            publication = await publisher.publish(boundary)
        except BalanceStoreError as exc:
            metrics.publishes.labels("failed").inc()
            log.error("balances.publish_failed", error=str(exc), boundary=_iso(boundary))
            if not failing and on_failure is not None:
                on_failure(str(exc))
            failing = True
            continue
        failing = False
        if publication.skipped:
            metrics.publishes.labels("skipped").inc()
            log.info("balances.already_published", boundary=_iso(boundary))
            continue
        metrics.publishes.labels("published").inc()
        tracer.published(int(boundary * 1e9), boundary)
        metrics.publish_lag.observe(publication.lag)
        metrics.last_publish.set(boundary + publication.lag)
        health.last_publish = boundary + publication.lag
        log.info(
            "balances.published",
            boundary=_iso(boundary),
            lag_ms=round(publication.lag * 1000, 1),
            balances=publication.keys,
        )
        if events is not None:
            events.emit(
                {
                    "type": "balances",
                    "boundary": _iso(boundary),
                    "lag_ms": round(publication.lag * 1000, 1),
                    "balances": publication.keys,
                }
            )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


async def last_publications(conn: psycopg.AsyncConnection[Any]) -> dict[str, dict[str, Any]]:
    """Each instance's latest publication, by instance."""
    cursor = await conn.execute(QUERIES["last_publications"])
    columns = [column.name for column in cursor.description or []]
    rows = [dict(zip(columns, row, strict=True)) for row in await cursor.fetchall()]
    return {row["instance"]: row for row in rows}


async def stored_balances(conn: psycopg.AsyncConnection[Any]) -> dict[str, str]:
    """Every provider's balance as stored now, by KeyDB key, formatted as published."""
    cursor = await conn.execute(QUERIES["balances"])
    return {
        balance_key(provider_id, name): format_amount(balance)
        for provider_id, name, balance in await cursor.fetchall()
    }
