import asyncio
import contextlib
import os
from collections.abc import Callable, Coroutine
from typing import Any

import pika
import pytest

from ledgerflow.messaging.delivery import Delivery, properties_json
from ledgerflow.messaging.rabbitmq import BrokerError, QueueConsumer, ping

from .conftest import eventually

pytestmark = pytest.mark.integration


def queue_depth(amqp_url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def open_sockets() -> int:
    """How many sockets this process holds open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


async def cancel_after(steps: int, coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run ``coroutine`` for ``steps`` turns of the event loop, then cancel it."""
    task = asyncio.create_task(coroutine)
    for _ in range(steps):
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, BrokerError):
        await task


async def test_consumes_a_queue_the_original_producer_declared(
    amqp_url: str, queue: str, publish: Callable[..., None]
) -> None:
    publish(b'{"id": 1, "value": 600}')
    publish(b'{"id": 2, "value": 1}', message_id="m-2")
    received: list[Delivery] = []
    consumer = QueueConsumer(amqp_url, queue, prefetch=10)
    await consumer.start(received.append)
    await eventually(lambda: len(received) == 2)
    assert [d.body for d in received] == [b'{"id": 1, "value": 600}', b'{"id": 2, "value": 1}']
    assert [d.message_id for d in received] == [None, "m-2"]
    assert properties_json(received[0].properties) == {"delivery_mode": 2}
    assert not received[0].redelivered
    await consumer.ack(received[-1].tag, batch_id=1)
    await consumer.close()
    assert queue_depth(amqp_url, queue) == 0


async def test_unacknowledged_deliveries_return_to_the_queue_marked_redelivered(
    amqp_url: str, queue: str, publish: Callable[..., None]
) -> None:
    for value in range(3):
        publish(f'{{"id": 1, "value": {value}}}'.encode())
    first: list[Delivery] = []
    consumer = QueueConsumer(amqp_url, queue, prefetch=10)
    await consumer.start(first.append)
    await eventually(lambda: len(first) == 3)
    await consumer.ack(first[0].tag, batch_id=1)  # only the first, before the "crash"
    await consumer.close()

    second: list[Delivery] = []
    consumer = QueueConsumer(amqp_url, queue, prefetch=10)
    await consumer.start(second.append)
    await eventually(lambda: len(second) == 2)
    assert [d.body for d in second] == [first[1].body, first[2].body]  # in queue order
    assert all(d.redelivered for d in second)
    await consumer.close()


async def test_a_second_consumer_is_refused_while_the_first_consumes(
    amqp_url: str, queue: str
) -> None:
    first = QueueConsumer(amqp_url, queue, prefetch=10)
    await first.start(lambda _d: None)
    second = QueueConsumer(amqp_url, queue, prefetch=10)
    with pytest.raises(BrokerError, match=r"ACCESS_REFUSED|exclusive"):
        await second.start(lambda _d: None)
    await second.close()
    await first.close()


async def test_a_queue_declared_with_other_arguments_gives_a_clear_error(
    amqp_url: str, queue: str
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    connection.channel().queue_declare(queue, durable=True, arguments={"x-max-length": 10})
    connection.close()
    consumer = QueueConsumer(amqp_url, queue, prefetch=10)
    with pytest.raises(BrokerError, match="PRECONDITION_FAILED"):
        await consumer.start(lambda _d: None)
    await consumer.close()


async def test_unreachable_broker_raises_broker_error() -> None:
    consumer = QueueConsumer("amqp://guest:guest@127.0.0.1:1/%2F", "q", 1)
    with pytest.raises(BrokerError):
        await consumer.start(lambda _d: None)
    await consumer.close()


async def test_losing_the_connection_is_reported(amqp_url: str, queue: str) -> None:
    consumer = QueueConsumer(amqp_url, queue, prefetch=10)
    await consumer.start(lambda _d: None)
    closed = asyncio.create_task(consumer.closed())
    # The broker closes the channel when the consumer acknowledges an unknown tag.
    with pytest.raises(BrokerError, match="PRECONDITION_FAILED"):
        await consumer.ack(999, batch_id=1)
    with pytest.raises(BrokerError):
        await asyncio.wait_for(closed, 5)
    await consumer.close()


async def test_the_marker_names_the_last_acknowledged_batch(
    amqp_url: str, queue: str, publish: Callable[..., None]
) -> None:
    for value in range(3):
        publish(f'{{"id": 1, "value": {value}}}'.encode())
    received: list[Delivery] = []
    consumer = QueueConsumer(amqp_url, queue, prefetch=10)
    await consumer.start(received.append)
    assert await consumer.last_acknowledged() is None
    await consumer.mark_acknowledged(0)
    assert await consumer.last_acknowledged() == 0
    await eventually(lambda: len(received) == 3)
    await consumer.ack(received[0].tag, batch_id=41)
    await consumer.ack(received[1].tag, batch_id=42)
    assert await consumer.last_acknowledged() == 42  # reading it leaves it in place
    assert await consumer.last_acknowledged() == 42
    await consumer.close()

    again = QueueConsumer(amqp_url, queue, prefetch=10)
    await again.start(lambda _d: None)
    assert await again.last_acknowledged() == 42
    await again.close()
    assert queue_depth(amqp_url, queue) == 1  # the third message was never acknowledged


async def test_deliveries_pika_assembles_and_direct_ones_arrive_in_order(
    amqp_url: str, queue: str, publish: Callable[..., None]
) -> None:
    # Small bodies are read straight from the frames; a body larger than a frame and an
    # empty body go through pika. Either way: the same deliveries, in queue order.
    bodies = [b"a", b"x" * 300_000, b"", b'{"id": 1, "value": 1}', b"z" * 131_000, b"b"]
    for i, body in enumerate(bodies):
        publish(body, message_id=f"m-{i}", headers={"n": i})
    received: list[Delivery] = []
    consumer = QueueConsumer(amqp_url, queue, prefetch=10)
    await consumer.start(received.append)
    await eventually(lambda: len(received) == len(bodies))
    assert [d.body for d in received] == bodies
    assert [d.message_id for d in received] == [f"m-{i}" for i in range(len(bodies))]
    assert [d.properties.headers for d in received] == [{"n": i} for i in range(len(bodies))]
    assert [d.tag for d in received] == sorted(d.tag for d in received)
    await consumer.ack(received[-1].tag, batch_id=1)
    await consumer.close()
    assert queue_depth(amqp_url, queue) == 0


async def test_a_consumer_the_broker_cancels_is_reported_and_stops_cleanly(
    amqp_url: str, queue: str, publish: Callable[..., None]
) -> None:
    publish(b'{"id": 1, "value": 1}')
    received: list[Delivery] = []
    consumer = QueueConsumer(amqp_url, queue, prefetch=10)
    await consumer.start(received.append)
    await eventually(lambda: len(received) == 1)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    connection.channel().queue_delete(queue)  # RabbitMQ cancels our consumption
    connection.close()
    with pytest.raises(BrokerError, match="cancelled the consumer"):
        async with asyncio.timeout(10):
            await consumer.closed()
    async with asyncio.timeout(5):  # nothing left to cancel: no wait for an answer
        await consumer.stop_consuming()
    await consumer.close()


async def test_a_consumer_closed_while_it_connects_leaves_no_socket_open(
    amqp_url: str, queue: str
) -> None:
    # start() cancelled at each point of the connection's opening in turn, as a worker
    # stopping early cancels its price feed's.
    before = open_sockets()
    for steps in range(40):
        consumer = QueueConsumer(amqp_url, queue, prefetch=1)
        await cancel_after(steps, consumer.start(lambda _d: None))
        await consumer.close()
        # A connection given up half-way finishes opening, then closes (see
        # _close_once_opened): on a busy machine that takes a few turns of the loop.
        await eventually(lambda: open_sockets() == before, within=5)


async def test_a_ping_given_up_half_way_closes_its_connection(amqp_url: str) -> None:
    # A readiness check that times out cancels its ping wherever the ping is.
    before = open_sockets()
    for steps in range(40):
        await cancel_after(steps, ping(amqp_url))
    await eventually(lambda: open_sockets() == before)


async def test_stopping_while_an_acknowledgement_commits_keeps_the_channel(
    amqp_url: str, queue: str, publish: Callable[..., None]
) -> None:
    # A SIGTERM drain cancels the consumer while the last batch's acknowledgement commits;
    # a queue.declare for the backlog can come at that moment too. Each waits its turn.
    for value in range(3):
        publish(f'{{"id": 1, "value": {value}}}'.encode())
    received: list[Delivery] = []
    consumer = QueueConsumer(amqp_url, queue, prefetch=10)
    await consumer.start(received.append)
    await eventually(lambda: len(received) == 3)
    await asyncio.gather(
        consumer.ack(received[2].tag, batch_id=7),
        consumer.backlog(),
        consumer.stop_consuming(),
    )
    await consumer.mark_acknowledged(8)  # the channel is still open and transactional
    assert await consumer.last_acknowledged() == 8
    await consumer.close()
