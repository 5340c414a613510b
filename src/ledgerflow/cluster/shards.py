"""Terms per shard (LEDGERFLOW_SHARDS): RabbitMQ chooses each shard's active consumer, the
database fences it. The worker that becomes a shard's active consumer takes the shard's
next term before it reads anything; each of its batches locks that term until it commits
and fails if a newer one exists, so a consumer the broker replaced cannot commit after its
successor started (docs/delivery.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, LiteralString

import psycopg

from ledgerflow.db.queries import Queries

QUERIES = Queries.of("ledgerflow.cluster")


async def take_shard_term(conn: psycopg.AsyncConnection[Any], queue: str, instance: str) -> int:
    """Take shard ``queue``'s next term for ``instance`` (committed); return it. Waits for
    a batch of the previous holder still in flight."""
    async with conn.transaction():
        cursor = await conn.execute(
            QUERIES["take_shard_term"], {"queue": queue, "instance": instance}
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


def shard_fence(queue: str) -> tuple[LiteralString, Mapping[str, Any]]:
    """The query (and its parameters) a shard's batch locks its term with."""
    return QUERIES["lock_shard_term"], {"queue": queue}


async def shard_terms(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    """Each shard's term, holder and how long it has held it."""
    cursor = await conn.execute(QUERIES["shard_terms"])
    names = [c.name for c in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]


class ShardCountMismatch(Exception):
    """The queue's number of shards is not the one configured; says what to do."""


async def claim_shard_count(conn: psycopg.AsyncConnection[Any], queue: str, shards: int) -> None:
    """Agree on ``queue``'s number of shards: set it if none is, else raise
    ShardCountMismatch when it is another (``ledgerflow shards resize`` changes it)."""
    cursor = await conn.execute(QUERIES["claim_shard_count"], {"queue": queue, "shards": shards})
    row = await cursor.fetchone()
    await conn.commit()
    found = int(row[0]) if row else shards
    if found != shards:
        raise ShardCountMismatch(
            f"{queue} has {found} shards and LEDGERFLOW_SHARDS is {shards}: run"
            f" `ledgerflow shards resize {shards}` (docs/scaling.md) or set"
            f" LEDGERFLOW_SHARDS={found}"
        )


async def set_shard_count(conn: psycopg.AsyncConnection[Any], queue: str, shards: int) -> None:
    """Record ``queue``'s new number of shards (``ledgerflow shards resize``)."""
    await conn.execute(QUERIES["set_shard_count"], {"queue": queue, "shards": shards})
    await conn.commit()
