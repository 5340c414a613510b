"""``ledgerflow.rejected_messages``: every message a domain could not use, with its reason.

Transactions that fail validation and price batches that cannot be committed land in the
same table, so an operator finds every rejection in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ledgerflow.db.queries import Queries

QUERIES = Queries.of("ledgerflow.db")


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """One message that cannot be used, and why."""

    message_id: str | None
    reason: str  # a stable code, e.g. invalid_json
    detail: str  # for people
    body: bytes
    properties: Any  # JSON: the delivery's AMQP properties
    received_at: datetime


async def record_rejected(
    conn: psycopg.AsyncConnection[Any], queue: str, rejected: Sequence[RejectedMessage]
) -> list[int]:
    """Insert the rejected messages of ``queue`` in the caller's transaction; return their
    ids, in the order given."""
    cursor = await conn.execute(
        QUERIES["insert_rejected"],
        {
            "queue": queue,
            "message_ids": [r.message_id for r in rejected],
            "reasons": [r.reason for r in rejected],
            "details": [r.detail for r in rejected],
            "bodies": [r.body for r in rejected],
            "properties": [Jsonb(r.properties) for r in rejected],
            "received_at": [r.received_at for r in rejected],
        },
    )
    return sorted(row[0] for row in await cursor.fetchall())


async def rejected_summary(conn: psycopg.AsyncConnection[Any]) -> dict[str, int]:
    """How many messages were rejected in all, and in the last hour."""
    cursor = await conn.execute(QUERIES["rejected_summary"])
    row = await cursor.fetchone()
    assert row is not None
    return {"total": int(row[0]), "last_hour": int(row[1])}


async def rejected_page(
    conn: psycopg.AsyncConnection[Any],
    queue: str | None,
    reason: str | None,
    before: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Rejected messages, newest first: those of ``queue`` and ``reason`` (None: any) with
    an id below ``before`` (None: from the newest), at most ``limit``."""
    cursor = await conn.execute(
        QUERIES["rejected_page"],
        {"queue": queue, "reason": reason, "before": before, "limit": limit},
    )
    columns = [column.name for column in cursor.description or []]
    return [dict(zip(columns, row, strict=True)) for row in await cursor.fetchall()]
