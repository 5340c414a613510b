"""The worker in process: ingest, publication, drain on stop, recovery, KeyDB trouble."""

import asyncio
import statistics
from collections.abc import Callable
from typing import Any

import pika
import pytest
import redis.asyncio as redis

from .conftest import eventually, scalar

pytestmark = pytest.mark.integration


async def test_worker_stores_messages_and_publishes_on_every_boundary(
    seeded: Any,
    redis_url: str,
    start_worker: Callable[..., Any],
    publish: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    conn = seeded
    running = await start_worker()
    publish(b'{"id": 1, "value": 600}')
    publish(b"this is not a transaction")
    await eventually(lambda: scalar(conn, "SELECT count(*) = 4 FROM historical_transactions"))
    await eventually(lambda: scalar(conn, "SELECT count(*) >= 6 FROM ledgerflow.publishes"))
    await running.stop()

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert await client.mget("1_Visa", "2_Mastercard") == ["1900", "1800"]
    await client.aclose()
    assert await scalar(conn, "SELECT reason FROM ledgerflow.rejected_messages") == "invalid_json"
    cursor = await conn.execute("SELECT lag_seconds FROM ledgerflow.publishes ORDER BY boundary")
    offsets = [row[0] for row in await cursor.fetchall()]
    # The brief tolerates one second; every publication must be well inside it.
    assert all(0 <= offset < 1.0 for offset in offsets), offsets
    with capsys.disabled():
        print(
            f"\npublish offsets over {len(offsets)} boundaries: "
            f"median {statistics.median(offsets) * 1000:.1f} ms, max {max(offsets) * 1000:.1f} ms"
        )


async def test_stopping_commits_and_acknowledges_what_was_received(
    seeded: Any,
    queue: str,
    amqp_url: str,
    start_worker: Callable[..., Any],
    publish: Callable[..., None],
) -> None:
    conn = seeded
    # A long batch window: without the drain on stop, these messages would still be pending.
    running = await start_worker(batch_max_wait=10, batch_size=1000, publish_interval=60)
    for value in range(50):
        publish(f'{{"id": 2, "value": {value}}}'.encode())
    await eventually(lambda: scalar(conn, "SELECT term = 1 FROM ledgerflow.leadership"))
    await asyncio.sleep(0.5)  # the deliveries arrive and wait for the batch window
    assert await scalar(conn, "SELECT count(*) FROM ledgerflow.messages") == 0
    await running.stop()
    assert await scalar(conn, "SELECT count(*) FROM ledgerflow.messages") == 50
    assert await scalar(
        conn, "SELECT sum(transaction_value) FROM historical_transactions WHERE id > 3"
    ) == sum(range(50))
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    depth = connection.channel().queue_declare(queue, passive=True).method.message_count
    connection.close()
    assert depth == 0  # acknowledged, so nothing comes back after a restart


async def test_worker_recovers_when_its_database_sessions_are_killed(
    seeded: Any, start_worker: Callable[..., Any], publish: Callable[..., None]
) -> None:
    conn = seeded
    running = await start_worker(retry_delay=0.2)
    await eventually(lambda: scalar(conn, "SELECT term = 1 FROM ledgerflow.leadership"))
    # PostgreSQL restarts, an administrator or a network fault ends every worker session.
    await conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'ledgerflow' AND datname = current_database()"
        " AND pid <> pg_backend_pid()"
    )
    await conn.commit()
    # It went back to standby and was elected again.
    await eventually(lambda: scalar(conn, "SELECT term = 2 FROM ledgerflow.leadership"))
    publish(b'{"id": 2, "value": 5}')
    await eventually(lambda: scalar(conn, "SELECT count(*) = 4 FROM historical_transactions"))
    await running.stop()
    registry = running.worker.metrics.registry
    assert registry.get_sample_value("ledgerflow_reconnects_total", {"dependency": "postgres"})


async def test_ingestion_goes_on_while_keydb_is_down(
    seeded: Any, start_worker: Callable[..., Any], publish: Callable[..., None]
) -> None:
    conn = seeded
    running = await start_worker(redis_url="redis://127.0.0.1:1/0")
    publish(b'{"id": 1, "value": 600}')
    await eventually(lambda: scalar(conn, "SELECT count(*) = 4 FROM historical_transactions"))
    await asyncio.sleep(1.5)  # at least one boundary passes with KeyDB unreachable
    assert not running.task.done()
    assert await scalar(conn, "SELECT count(*) FROM ledgerflow.publishes") == 0
    registry = running.worker.metrics.registry
    assert registry.get_sample_value("ledgerflow_publishes_total", {"result": "failed"})
    await running.stop()


async def test_an_emptied_keydb_is_rewritten_at_the_next_boundary(
    redis_url: str, start_worker: Callable[..., Any]
) -> None:
    running = await start_worker()
    client = redis.Redis.from_url(redis_url, decode_responses=True)

    async def balances() -> bool:
        return await client.mget("1_Visa", "2_Mastercard") == ["1300", "1800"]

    await eventually(balances)
    await client.flushdb()  # emptied, or restarted without persistence
    await client.set("1_Visa", "999999")  # or holding a value the database does not support
    await eventually(balances, within=3)
    await running.stop()
    await client.aclose()
