"""What the treasury is doing: each source's stream, since when and how far read, the
control messages refused, and the instruments held that the reference data lacks."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from ledgerflow.db.queries import Queries

QUERIES = Queries.of("ledgerflow.treasury")


async def treasury_status(
    conn: psycopg.AsyncConnection[Any], control_stream: str = "treasury.control"
) -> dict[str, Any]:
    """``sources`` (source, stream, since, control, next_offset, rejected),
    ``refused_controls`` (the last ten) and ``unknown_instruments``."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["source_status"])
        sources = await cursor.fetchall()
        await cursor.execute(QUERIES["refused_controls"], {"queue": f"stream:{control_stream}"})
        refused = await cursor.fetchall()
        await cursor.execute(QUERIES["unknown_instruments"])
        unknown = await cursor.fetchall()
    return {"sources": sources, "refused_controls": refused, "unknown_instruments": unknown}
