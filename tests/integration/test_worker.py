import asyncio
import statistics
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as redis

from ledgerflow.settings import load_settings
from ledgerflow.worker import Worker

from .conftest import eventually

pytestmark = pytest.mark.integration


async def scalar(conn: Any, sql: str) -> Any:
    row = await (await conn.execute(sql)).fetchone()
    await conn.commit()
    return row[0]


async def test_worker_stores_messages_and_publishes_on_every_boundary(
    seeded: Any,
    db_url: str,
    redis_url: str,
    queue: str,
    amqp_url: str,
    publish: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    conn = seeded
    await conn.commit()
    settings = load_settings(
        database_url=db_url,
        redis_url=redis_url,
        queue=queue,
        amqp_url=amqp_url,
        publish_interval=1,
        instance="in-process",
        metrics_port=0,
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(Worker(settings).run(stop))
    publish(b'{"id": 1, "value": 600}')
    publish(b"this is not a transaction")

    async def stored() -> bool:
        return bool(await scalar(conn, "SELECT count(*) = 4 FROM historical_transactions"))

    await eventually(stored)

    async def published_after_store() -> bool:
        return bool(await scalar(conn, "SELECT count(*) >= 6 FROM ledgerflow_publishes"))

    await eventually(published_after_store)
    stop.set()
    await asyncio.wait_for(worker, 10)

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert await client.mget("1_Visa", "2_Mastercard") == ["1900", "1800"]
    await client.aclose()
    assert await scalar(conn, "SELECT reason FROM rejected_messages") == "invalid_json"
    cursor = await conn.execute("SELECT lag_seconds FROM ledgerflow_publishes ORDER BY boundary")
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
    db_url: str,
    redis_url: str,
    queue: str,
    amqp_url: str,
    publish: Callable[..., None],
) -> None:
    conn = seeded
    await conn.commit()
    # A long batch window: without the drain on stop, these messages would still be pending.
    settings = load_settings(
        database_url=db_url,
        redis_url=redis_url,
        queue=queue,
        amqp_url=amqp_url,
        batch_max_wait=10,
        batch_size=1000,
        instance="in-process",
        metrics_port=0,
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(Worker(settings).run(stop))
    for value in range(50):
        publish(f'{{"id": 2, "value": {value}}}'.encode())

    async def active() -> bool:
        return bool(await scalar(conn, "SELECT term = 1 FROM ledgerflow_leadership"))

    await eventually(active)
    await asyncio.sleep(0.5)  # the deliveries arrive and wait for the batch window
    assert await scalar(conn, "SELECT count(*) FROM ledgerflow_messages") == 0
    stop.set()
    await asyncio.wait_for(worker, 10)
    assert await scalar(conn, "SELECT count(*) FROM ledgerflow_messages") == 50
    assert await scalar(
        conn, "SELECT sum(transaction_value) FROM historical_transactions WHERE id > 3"
    ) == sum(range(50))
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    depth = connection.channel().queue_declare(queue, passive=True).method.message_count
    connection.close()
    assert depth == 0  # acknowledged, so nothing comes back after a restart


async def test_worker_recovers_when_its_database_sessions_are_killed(
    seeded: Any,
    db_url: str,
    redis_url: str,
    queue: str,
    amqp_url: str,
    publish: Callable[..., None],
) -> None:
    conn = seeded
    await conn.commit()
    settings = load_settings(
        database_url=db_url,
        redis_url=redis_url,
        queue=queue,
        amqp_url=amqp_url,
        publish_interval=1,
        instance="in-process",
        metrics_port=0,
    )
    worker_instance = Worker(settings)
    worker_instance.retry_delay = 0.2
    stop = asyncio.Event()
    worker = asyncio.create_task(worker_instance.run(stop))

    async def term() -> int:
        return int(await scalar(conn, "SELECT term FROM ledgerflow_leadership"))

    await eventually(term)
    # PostgreSQL restarts, an administrator or a network fault ends every worker session.
    await conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'ledgerflow' AND datname = current_database()"
        " AND pid <> pg_backend_pid()"
    )
    await conn.commit()

    async def new_term() -> bool:
        return await term() == 2

    await eventually(new_term)  # it went back to standby and was elected again
    publish(b'{"id": 2, "value": 5}')

    async def stored() -> bool:
        return bool(await scalar(conn, "SELECT count(*) = 4 FROM historical_transactions"))

    await eventually(stored)
    stop.set()
    await asyncio.wait_for(worker, 10)
    assert not worker.exception()


async def test_ingestion_goes_on_while_keydb_is_down(
    seeded: Any, db_url: str, queue: str, amqp_url: str, publish: Callable[..., None]
) -> None:
    conn = seeded
    await conn.commit()
    settings = load_settings(
        database_url=db_url,
        redis_url="redis://127.0.0.1:1/0",
        queue=queue,
        amqp_url=amqp_url,
        publish_interval=1,
        instance="in-process",
        metrics_port=0,
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(Worker(settings).run(stop))
    publish(b'{"id": 1, "value": 600}')

    async def stored() -> bool:
        return bool(await scalar(conn, "SELECT count(*) = 4 FROM historical_transactions"))

    await eventually(stored)
    await asyncio.sleep(1.5)  # at least one boundary passes with KeyDB unreachable
    assert not worker.done()
    assert await scalar(conn, "SELECT count(*) FROM ledgerflow_publishes") == 0
    stop.set()
    await asyncio.wait_for(worker, 10)


async def test_an_emptied_keydb_is_rewritten_at_the_next_boundary(
    seeded: Any, db_url: str, redis_url: str, queue: str, amqp_url: str
) -> None:
    conn = seeded
    await conn.commit()
    settings = load_settings(
        database_url=db_url,
        redis_url=redis_url,
        queue=queue,
        amqp_url=amqp_url,
        publish_interval=1,
        instance="in-process",
        metrics_port=0,
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(Worker(settings).run(stop))
    client = redis.Redis.from_url(redis_url, decode_responses=True)

    async def balances() -> bool:
        return await client.mget("1_Visa", "2_Mastercard") == ["1300", "1800"]

    await eventually(balances)
    await client.flushdb()  # emptied, or restarted without persistence
    await client.set("1_Visa", "999999")  # or holding a value the database does not support
    await eventually(balances, within=3)
    stop.set()
    await asyncio.wait_for(worker, 10)
    await client.aclose()
