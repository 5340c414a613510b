"""Price batches over RabbitMQ: the same all-or-nothing and idempotence, nothing lost."""

import json
from collections.abc import Callable
from typing import Any

import pika
import pytest

from .conftest import eventually, scalar

pytestmark = pytest.mark.integration


def send(amqp_url: str, queue: str, body: bytes) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    connection.close()


def batch(batch_id: str, *prices: int, dest: str = "EETLL") -> bytes:
    rows = [
        {"orig_code": "CNGGZ", "dest_code": dest, "day": "2021-02-01", "price": p} for p in prices
    ]
    return json.dumps({"batch_id": batch_id, "prices": rows}).encode()


async def test_the_active_worker_commits_batches_from_the_queue(
    seeded: Any, queue: str, amqp_url: str, start_worker: Callable[..., Any]
) -> None:
    conn = seeded
    async with conn.transaction():
        await conn.execute("INSERT INTO regions VALUES ('world', 'World', NULL)")
        await conn.execute(
            "INSERT INTO ports VALUES ('CNGGZ', 'G', 'world'), ('EETLL', 'T', 'world')"
        )
    running = await start_worker()
    prices = f"{queue}_prices"
    send(amqp_url, prices, batch("q-1", 10, 20, 30))
    send(amqp_url, prices, batch("q-1", 10, 20, 30))  # sent twice: counted once
    send(amqp_url, prices, batch("q-2", 40, dest="NOWHERE"))  # unknown port: rejected whole
    send(amqp_url, prices, b"not a batch")
    send(amqp_url, prices, batch("q-3", 50))
    await eventually(lambda: scalar(conn, "SELECT count(*) = 4 FROM prices"))
    await eventually(lambda: scalar(conn, "SELECT count(*) = 2 FROM ledgerflow.rejected_messages"))
    await running.stop()
    assert await scalar(conn, "SELECT sum(price) FROM prices") == 10 + 20 + 30 + 50
    cursor = await conn.execute(
        "SELECT queue, reason, body FROM ledgerflow.rejected_messages ORDER BY id"
    )
    rejected = await cursor.fetchall()
    assert [(q, r) for q, r, _ in rejected] == [(prices, "invalid_price_batch")] * 2
    assert bytes(rejected[1][2]) == b"not a batch"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    depth = connection.channel().queue_declare(prices, passive=True).method.message_count
    connection.close()
    assert depth == 0  # every message acknowledged, none stuck
