"""What the console shows of ingestion: how fast messages are being committed."""

from __future__ import annotations

from typing import Any

import psycopg

from ledgerflow.db.queries import Queries

QUERIES = Queries.of("ledgerflow.transactions")


async def throughput(conn: psycopg.AsyncConnection[Any], seconds: int = 60) -> float:
    """Messages committed a second, over the last ``seconds``."""
    cursor = await conn.execute(QUERIES["throughput"], {"seconds": seconds})
    row = await cursor.fetchone()
    return round(float(row[0]), 1) if row else 0.0
