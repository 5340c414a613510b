"""The batching consumer's logic, on the in-memory queue (see test_contracts.py)."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Sequence

import pytest

from ledgerflow.cluster.leadership import LeadershipLost
from ledgerflow.messaging.delivery import Delivery
from ledgerflow.testing import FakeBroker, FakeQueue
from ledgerflow.transactions.batching import BatchingConsumer
from ledgerflow.transactions.messages import parse_transaction
from ledgerflow.transactions.writer import BatchResult, Prepared

from ..polling import eventually

QUEUE = "incoming_transactions"
BODY = b'{"id": 1, "value": 1}'


class RecordingWriter:
    """Commits nothing anywhere: records each batch's tags, numbering batches from 1."""

    def __init__(self, fail_from_batch: int | None = None, delay: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.fail_from_batch = fail_from_batch
        self.delay = delay

    def prepare(self, delivery: Delivery) -> Prepared:
        digest = hashlib.sha256(delivery.body).digest()
        return Prepared(delivery, digest, parse_transaction(delivery.body, 1024))

    async def write(self, items: Sequence[Prepared | Delivery]) -> BatchResult:
        await asyncio.sleep(self.delay)
        number = len(self.batches) + 1
        if self.fail_from_batch is not None and number >= self.fail_from_batch:
            raise LeadershipLost("term 1 is over; the current term is 2")
        tags = [i.delivery.tag if isinstance(i, Prepared) else i.tag for i in items]
        self.batches.append(tags)
        return BatchResult(number, len(tags), 0, 0, 0, Counter(), list(range(len(tags))))


async def run_until_drained(
    broker: FakeBroker, writer: RecordingWriter, count: int, batch_size: int, max_wait: float
) -> FakeQueue:
    """Publish ``count`` messages, consume them all, stop; return the consumer."""
    for _ in range(count):
        broker.publish(QUEUE, BODY)
    queue = broker.consumer(QUEUE, prefetch=100)
    consumer = BatchingConsumer(writer, queue.ack, batch_size=batch_size, max_wait=max_wait)
    received: list[int] = []

    def deliver(delivery: Delivery) -> None:
        received.append(delivery.tag)
        consumer.deliver(delivery)

    await queue.start(deliver)
    running = asyncio.create_task(consumer.run())
    await eventually(lambda: len(received) == count, every=0.001)
    await queue.stop_consuming()
    consumer.finish()
    await running
    return queue


async def test_full_batches_close_at_once_and_each_is_acknowledged_as_itself() -> None:
    broker, writer = FakeBroker(), RecordingWriter()
    async with asyncio.timeout(2):  # max_wait is 60 s: only full batches can close
        queue = await run_until_drained(broker, writer, 9, batch_size=3, max_wait=60)
    assert writer.batches == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert await queue.last_acknowledged() == 3  # the marker names the last batch
    await queue.close()
    assert await queue.backlog() == 0  # every message acknowledged: none comes back


async def test_a_partial_batch_closes_after_max_wait() -> None:
    broker, writer = FakeBroker(), RecordingWriter()
    broker.publish(QUEUE, BODY)
    queue = broker.consumer(QUEUE, prefetch=100)
    consumer = BatchingConsumer(writer, queue.ack, batch_size=100, max_wait=0.05)
    await queue.start(consumer.deliver)
    running = asyncio.create_task(consumer.run())
    started = asyncio.get_running_loop().time()
    await eventually(lambda: writer.batches, every=0.005)
    assert asyncio.get_running_loop().time() - started >= 0.04
    assert writer.batches == [[1]]
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


async def test_a_batch_that_fails_is_not_acknowledged_and_comes_back() -> None:
    broker, writer = FakeBroker(), RecordingWriter(fail_from_batch=2)
    for _ in range(4):
        broker.publish(QUEUE, BODY)
    queue = broker.consumer(QUEUE, prefetch=100)
    consumer = BatchingConsumer(writer, queue.ack, batch_size=2, max_wait=60)
    await queue.start(consumer.deliver)
    with pytest.raises(LeadershipLost):
        await consumer.run()
    await queue.close()  # the worker steps down
    assert writer.batches == [[1, 2]]
    assert await queue.last_acknowledged() == 1
    again = broker.consumer(QUEUE, prefetch=100)
    redelivered: list[Delivery] = []
    await again.start(redelivered.append)
    await asyncio.sleep(0)
    assert [d.redelivered for d in redelivered] == [True, True]  # batch 2 only


async def test_at_most_one_acknowledgement_is_in_flight_and_in_batch_order() -> None:
    broker, writer = FakeBroker(), RecordingWriter(delay=0.001)
    for _ in range(8):
        broker.publish(QUEUE, BODY)
    queue = broker.consumer(QUEUE, prefetch=100)
    in_flight, most, order = 0, 0, []

    async def ack(tag: int, batch_id: int) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)  # RabbitMQ's commit, slower than PostgreSQL's
        order.append(batch_id)
        await queue.ack(tag, batch_id)
        in_flight -= 1

    consumer = BatchingConsumer(writer, ack, batch_size=2, max_wait=60)
    await queue.start(consumer.deliver)
    running = asyncio.create_task(consumer.run())
    await eventually(lambda: len(writer.batches) == 4, every=0.001)
    consumer.finish()
    await running
    assert most == 1 and order == [1, 2, 3, 4]
    assert await queue.last_acknowledged() == 4
