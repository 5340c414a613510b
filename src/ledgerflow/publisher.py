"""Publishing every provider's balance to KeyDB from one consistent snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog

from ledgerflow.amounts import format_amount
from ledgerflow.cache import BalanceCache
from ledgerflow.clock import Clock
from ledgerflow.leadership import check_term
from ledgerflow.queries import query

log = structlog.get_logger(__name__)


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


class BalancePublisher:
    """Reads the balances in one REPEATABLE READ snapshot and writes them in one MULTI/EXEC.

    The snapshot transaction also locks the leader's term and stays open until KeyDB has
    acknowledged, so a deposed leader cannot publish, and the publication is recorded in
    ``ledgerflow_publishes`` only when it happened.
    """

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        cache: BalanceCache,
        clock: Clock,
        term: int,
        instance: str,
    ) -> None:
        self._conn = conn
        self._cache = cache
        self._clock = clock
        self._term = term
        self._instance = instance

    async def publish(self, boundary: float) -> Publication:
        """Publish the balances for ``boundary``; raise CacheError if KeyDB fails."""
        at = datetime.fromtimestamp(boundary, UTC)
        async with self._conn.transaction():
            await self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            await check_term(self._conn, self._term)
            cursor = await self._conn.execute(
                query("published_by_other_term"), {"boundary": at, "term": self._term}
            )
            row = await cursor.fetchone()
            if row and row[0]:
                # A previous leader already published this boundary (clock skew at failover).
                return Publication(boundary, {}, 0.0, skipped=True)
            cursor = await self._conn.execute(query("balances"))
            keys = {
                balance_key(provider_id, name): format_amount(balance)
                for provider_id, name, balance in await cursor.fetchall()
            }
            await self._cache.write_all(keys)
            published = self._clock.wall()
            lag = published - boundary
            await self._conn.execute(
                query("record_publish"),
                {
                    "boundary": at,
                    "term": self._term,
                    "instance": self._instance,
                    "provider_count": len(keys),
                    "published_at": datetime.fromtimestamp(published, UTC),
                    "lag_seconds": lag,
                },
            )
        return Publication(boundary, keys, lag)
