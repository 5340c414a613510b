"""Quick checks that a dependency answers, for /readyz."""

from __future__ import annotations

from ledgerflow.core.health import Check
from ledgerflow.db.connections import ping as ping_postgres
from ledgerflow.kv.balance_store import ping as ping_keydb
from ledgerflow.messaging.rabbitmq import ping as ping_rabbitmq
from ledgerflow.settings import Settings


def dependency_checks(settings: Settings) -> dict[str, Check]:
    """One check per dependency: each returns when it answers and raises otherwise."""

    async def postgres() -> None:
        await ping_postgres(settings.database_url)

    async def rabbitmq() -> None:
        await ping_rabbitmq(settings.amqp_url)

    async def keydb() -> None:
        await ping_keydb(settings.redis_url)

    return {"postgres": postgres, "rabbitmq": rabbitmq, "keydb": keydb}
