"""The registry of running workers: heartbeats in, the list `ledgerflow status` reports out."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog

from ledgerflow.core.health import Health
from ledgerflow.db.connections import DatabaseError, connect
from ledgerflow.db.queries import Queries

log = structlog.get_logger(__name__)
QUERIES = Queries.of("ledgerflow.cluster")

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
            QUERIES["heartbeat"],
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
    """Beat every HEARTBEAT_EVERY seconds and at once when the role changes; a failed beat
    is logged, not fatal."""
    while True:
        health.role_changed.clear()
        try:
            await beat(database_url, record, health.role)
        except (DatabaseError, psycopg.Error) as exc:
            log.warning("registry.heartbeat_failed", error=str(exc))
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that arrives as the event is set (which is what happens at shutdown).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HEARTBEAT_EVERY):
                await health.role_changed.wait()


async def forget(database_url: str, instance: str) -> None:
    """Remove a worker's row (it stopped cleanly, or an operator retired it)."""
    conn = await connect(database_url, autocommit=True, connect_timeout=5)
    async with conn:
        await conn.execute(QUERIES["forget_worker"], {"instance": instance})


async def workers(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    """Every registered worker, with the age of its heartbeat and how long it has led."""
    cursor = await conn.execute(QUERIES["workers"])
    columns = [column.name for column in cursor.description or []]
    return [dict(zip(columns, row, strict=True)) for row in await cursor.fetchall()]
