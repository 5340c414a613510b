"""Quick checks that a dependency answers, for /readyz and `ledgerflow status`."""

from __future__ import annotations

import redis.asyncio as redis

from ledgerflow.broker import ping as ping_broker
from ledgerflow.database import connect
from ledgerflow.health import Check
from ledgerflow.settings import Settings


def dependency_checks(settings: Settings) -> dict[str, Check]:
    """One check per dependency: each returns when it answers and raises otherwise."""

    async def postgres() -> None:
        conn = await connect(settings.database_url, connect_timeout=2)
        async with conn:
            await conn.execute("SELECT 1")

    async def rabbitmq() -> None:
        await ping_broker(settings.amqp_url)

    async def keydb() -> None:
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        try:
            await client.ping()
        finally:
            await client.aclose()

    return {"postgres": postgres, "rabbitmq": rabbitmq, "keydb": keydb}
