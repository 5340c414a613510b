"""A message committed but not acknowledged comes back; without a message_id it must be
recognised, and a new message that merely looks the same must not be."""

from collections.abc import Callable
from typing import Any

import pytest

from ledgerflow.messaging.delivery import Delivery
from ledgerflow.messaging.rabbitmq import QueueConsumer
from ledgerflow.transactions.redeliveries import prepare_redeliveries
from ledgerflow.transactions.writer import BatchWriter

from .conftest import eventually, take_term

pytestmark = pytest.mark.integration

SAME = b'{"id": 1, "value": 600}'


async def lead(
    conn: Any, amqp_url: str, queue: str
) -> tuple[QueueConsumer, BatchWriter, list[Delivery]]:
    """Become the leader of a new term the way the worker does."""
    received: list[Delivery] = []
    broker = QueueConsumer(amqp_url, queue, prefetch=100)
    await broker.start(received.append)
    writer = BatchWriter(conn, queue, "test", await take_term(conn), max_body_bytes=1024)
    await prepare_redeliveries(broker, writer)
    return broker, writer, received


async def stored(conn: Any) -> int:
    row = await (
        await conn.execute("SELECT count(*) FROM historical_transactions WHERE id > 3")
    ).fetchone()
    await conn.commit()
    return int(row[0])


async def test_a_batch_committed_but_not_acknowledged_is_not_stored_twice(
    seeded: Any, amqp_url: str, queue: str, publish: Callable[..., None]
) -> None:
    conn = seeded
    for _ in range(3):
        publish(SAME)  # three real messages that look exactly alike, no message_id
    broker, writer, received = await lead(conn, amqp_url, queue)
    await eventually(lambda: len(received) == 3)
    await writer.write(received[:2])  # committed...
    await broker.close()  # ...and the worker dies before acknowledging: all three come back

    broker, writer, received = await lead(conn, amqp_url, queue)
    await eventually(lambda: len(received) == 3)
    assert all(d.redelivered for d in received)
    result = await writer.write(received)
    await broker.ack(received[-1].tag, result.batch_id)
    assert (result.redelivered, result.stored) == (2, 1)
    assert await stored(conn) == 3  # each message once
    await broker.close()


async def test_an_acknowledged_batch_is_not_mistaken_for_lookalike_new_messages(
    seeded: Any, amqp_url: str, queue: str, publish: Callable[..., None]
) -> None:
    conn = seeded
    for _ in range(3):
        publish(SAME)
    broker, writer, received = await lead(conn, amqp_url, queue)
    await eventually(lambda: len(received) == 3)
    result = await writer.write(received[:2])
    await broker.ack(received[1].tag, result.batch_id)  # RabbitMQ took the acknowledgement
    await broker.close()  # the third, uncommitted, comes back
    publish(SAME)
    publish(SAME)

    broker, writer, received = await lead(conn, amqp_url, queue)
    await eventually(lambda: len(received) == 3)
    assert [d.redelivered for d in received] == [True, False, False]
    result = await writer.write(received)
    assert (result.redelivered, result.stored) == (0, 3)
    assert await stored(conn) == 5  # five messages published, five stored
    await broker.close()


async def test_a_crash_during_recovery_still_counts_each_message_once(
    seeded: Any, amqp_url: str, queue: str, publish: Callable[..., None]
) -> None:
    conn = seeded
    for value in (1, 1, 2, 2):
        publish(f'{{"id": 2, "value": {value}}}'.encode())
    broker, writer, received = await lead(conn, amqp_url, queue)
    await eventually(lambda: len(received) == 4)
    await writer.write(received[:2])  # batch A committed, never acknowledged
    await broker.close()

    broker, writer, received = await lead(conn, amqp_url, queue)
    await eventually(lambda: len(received) == 4)
    first = await writer.write(received[:3])  # recognises A, stores the third message
    assert (first.redelivered, first.stored) == (2, 1)
    await broker.close()  # and dies before acknowledging that batch either

    broker, writer, received = await lead(conn, amqp_url, queue)
    await eventually(lambda: len(received) == 4)
    result = await writer.write(received)
    await broker.ack(received[-1].tag, result.batch_id)
    assert (result.redelivered, result.stored) == (3, 1)
    row = await (
        await conn.execute(
            "SELECT sum(transaction_value) FROM historical_transactions WHERE id > 3"
        )
    ).fetchone()
    assert row[0] == 1 + 1 + 2 + 2
    await broker.close()
