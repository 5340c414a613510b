"""The registry of running workers: heartbeats in, `ledgerflow status` out."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog

from ledgerflow.database import DatabaseError, connect
from ledgerflow.health import Health
from ledgerflow.queries import query

log = structlog.get_logger(__name__)

HEARTBEAT_EVERY = 10.0


@dataclass(frozen=True)
class WorkerRecord:
    """Who a worker is, as written with every heartbeat."""

    instance: str
    queue: str
    http_address: str | None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))


async def beat(database_url: str, record: WorkerRecord, role: str) -> None:
    """Write one heartbeat (a short connection of its own, so it works in any role)."""
    conn = await connect(database_url, autocommit=True, connect_timeout=5)
    async with conn:
        await conn.execute(
            query("heartbeat"),
            {
                "instance": record.instance,
                "role": role,
                "host": record.host,
                "pid": record.pid,
                "http_address": record.http_address,
                "queue": record.queue,
                "started_at": record.started_at,
            },
        )


async def heartbeat_forever(database_url: str, record: WorkerRecord, health: Health) -> None:
    """Beat every HEARTBEAT_EVERY seconds; a failed beat is logged, not fatal."""
    while True:
        try:
            await beat(database_url, record, health.role)
        except (DatabaseError, psycopg.Error) as exc:
            log.warning("registry.heartbeat_failed", error=str(exc))
        await asyncio.sleep(HEARTBEAT_EVERY)


async def forget(database_url: str, instance: str) -> None:
    """Remove a worker's row (it stopped cleanly, or an operator retired it)."""
    conn = await connect(database_url, autocommit=True, connect_timeout=5)
    async with conn:
        await conn.execute(query("forget_worker"), {"instance": instance})


async def snapshot(database_url: str) -> dict[str, Any]:
    """Workers, last publication and rejections, as `ledgerflow status` reports them."""
    conn = await connect(database_url, autocommit=True, connect_timeout=5)
    async with conn:
        cursor = await conn.execute(query("workers"))
        columns = [c.name for c in cursor.description or []]
        workers = [dict(zip(columns, row, strict=True)) for row in await cursor.fetchall()]
        cursor = await conn.execute(query("last_publication"))
        row = await cursor.fetchone()
        columns = [c.name for c in cursor.description or []]
        publication = dict(zip(columns, row, strict=True)) if row else None
        cursor = await conn.execute(query("rejected_summary"))
        total, last_hour = await cursor.fetchone() or (0, 0)
    return {
        "workers": workers,
        "last_publication": publication,
        "rejected": {"total": total, "last_hour": last_hour},
    }
