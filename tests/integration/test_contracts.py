"""Each fake of ledgerflow.testing and the real service it stands for, put through the same
scenarios: what a unit test learns from a fake holds for the real thing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pika
import psycopg
import pytest

from ledgerflow.cluster.leadership import LeadershipLost
from ledgerflow.kv.balance_store import BalanceStore, BalanceStoreError, RedisBalanceStore
from ledgerflow.messaging.delivery import Delivery
from ledgerflow.messaging.queue import Queue
from ledgerflow.messaging.rabbitmq import BrokerError, QueueConsumer
from ledgerflow.testing import FakeBalanceLedger, FakeBalanceStore, FakeBroker
from ledgerflow.transactions.publisher import BalanceLedger, PostgresBalanceLedger

from .conftest import eventually, take_term

pytestmark = pytest.mark.integration

BOUNDARY = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)


# The queue: FakeQueue against QueueConsumer on RabbitMQ.


@dataclass
class QueueUnderTest:
    """One kind of queue: how to publish to it and how to consume it."""

    publish: Callable[[bytes, str | None], None]
    consumer: Callable[[int], Queue]


@pytest.fixture(params=["fake", "rabbitmq"])
def queue_under_test(request: pytest.FixtureRequest, queue: str, amqp_url: str) -> QueueUnderTest:
    if request.param == "fake":
        broker = FakeBroker()
        return QueueUnderTest(
            publish=lambda body, message_id: broker.publish(queue, body, message_id),
            consumer=lambda prefetch: broker.consumer(queue, prefetch),
        )

    def publish(body: bytes, message_id: str | None) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        channel = connection.channel()
        channel.queue_declare(queue, durable=True)
        channel.basic_publish(
            "", queue, body, pika.BasicProperties(delivery_mode=2, message_id=message_id)
        )
        connection.close()

    return QueueUnderTest(
        publish=publish, consumer=lambda prefetch: QueueConsumer(amqp_url, queue, prefetch)
    )


async def consume(q: QueueUnderTest, prefetch: int = 100) -> tuple[Queue, list[Delivery]]:
    received: list[Delivery] = []
    consumer = q.consumer(prefetch)
    await consumer.start(received.append)
    return consumer, received


async def test_a_queue_delivers_in_order_with_ids_and_fresh_flags(
    queue_under_test: QueueUnderTest,
) -> None:
    for n in range(3):
        queue_under_test.publish(f"m{n}".encode(), f"id-{n}" if n else None)
    consumer, received = await consume(queue_under_test)
    await eventually(lambda: len(received) == 3)
    assert [d.body for d in received] == [b"m0", b"m1", b"m2"]
    assert [d.message_id for d in received] == [None, "id-1", "id-2"]
    assert not any(d.redelivered for d in received)
    tags = [d.tag for d in received]
    assert tags == sorted(tags) and len(set(tags)) == 3
    await consumer.ack(tags[-1], batch_id=1)
    await consumer.close()


async def test_unacknowledged_deliveries_come_back_first_flagged_and_the_marker_stays(
    queue_under_test: QueueUnderTest,
) -> None:
    for n in range(5):
        queue_under_test.publish(f"m{n}".encode(), None)
    consumer, received = await consume(queue_under_test)
    await eventually(lambda: len(received) == 5)
    assert await consumer.last_acknowledged() is None
    await consumer.ack(received[1].tag, batch_id=7)  # m0 and m1, as batch 7
    await consumer.close()  # m2..m4 were never acknowledged
    queue_under_test.publish(b"m5", None)

    again, received = await consume(queue_under_test)
    await eventually(lambda: len(received) == 4)
    assert [(d.body, d.redelivered) for d in received] == [
        (b"m2", True),
        (b"m3", True),
        (b"m4", True),
        (b"m5", False),
    ]
    assert await again.last_acknowledged() == 7
    await again.mark_acknowledged(8)
    assert await again.last_acknowledged() == 8
    await again.ack(received[-1].tag, batch_id=9)
    await again.close()


async def test_a_second_consumer_is_refused_while_the_first_lives(
    queue_under_test: QueueUnderTest,
) -> None:
    first, _ = await consume(queue_under_test)
    second = queue_under_test.consumer(10)
    with pytest.raises(BrokerError, match="exclusive"):
        await second.start(lambda _delivery: None)
    await second.close()
    await first.close()
    third, _ = await consume(queue_under_test)  # free again
    await third.close()


async def test_prefetch_bounds_the_unacknowledged_and_backlog_counts_the_rest(
    queue_under_test: QueueUnderTest,
) -> None:
    for n in range(6):
        queue_under_test.publish(f"m{n}".encode(), None)
    consumer, received = await consume(queue_under_test, prefetch=2)
    await eventually(lambda: len(received) == 2)
    await asyncio.sleep(0.1)
    assert len(received) == 2
    assert await eventually(lambda: _equals(consumer.backlog(), 4))
    await consumer.ack(received[-1].tag, batch_id=1)
    await eventually(lambda: len(received) == 4)
    await consumer.stop_consuming()  # what is received stays ours to acknowledge
    await consumer.ack(received[-1].tag, batch_id=2)
    await asyncio.sleep(0.1)
    assert len(received) == 4
    await consumer.close()


async def _equals(value: Any, expected: object) -> bool:
    return bool(await value == expected)


# The balance store: FakeBalanceStore against RedisBalanceStore on KeyDB (Redis here).


@pytest.fixture(params=["fake", "keydb"])
async def store(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[BalanceStore]:
    real = RedisBalanceStore(redis_url)
    yield FakeBalanceStore() if request.param == "fake" else real
    await real.close()


async def test_a_store_keeps_exact_strings_and_leaves_other_keys_alone(
    store: BalanceStore,
) -> None:
    await store.write_all({"1_Visa": "1900", "2_Mastercard": "-0.125"})
    await store.write_all({"1_Visa": "2000.5"})
    await store.write_all({})
    assert await store.read_all(["1_Visa", "2_Mastercard", "3_Amex"]) == {
        "1_Visa": "2000.5",
        "2_Mastercard": "-0.125",
        "3_Amex": None,
    }


@pytest.fixture(params=["fake", "keydb"])
async def store_down(request: pytest.FixtureRequest) -> AsyncIterator[BalanceStore]:
    fake = FakeBalanceStore()
    fake.down = True
    real = RedisBalanceStore("redis://127.0.0.1:1/0", timeout=0.5)  # nothing listens there
    yield fake if request.param == "fake" else real
    await real.close()


async def test_an_unreachable_store_raises_its_own_error(store_down: BalanceStore) -> None:
    with pytest.raises(BalanceStoreError, match="KeyDB"):
        await store_down.write_all({"1_Visa": "1"})
    with pytest.raises(BalanceStoreError, match="KeyDB"):
        await store_down.read_all(["1_Visa"])


# The ledger: FakeBalanceLedger against PostgresBalanceLedger on PostgreSQL.


@dataclass
class LedgerUnderTest:
    """A ledger with Visa (1000) and Mastercard (2000), and how to change it."""

    ledger: BalanceLedger
    add_transaction: Callable[[int, Decimal], Any]
    take_term: Callable[[], Any]


@pytest.fixture(params=["fake", "postgresql"])
async def ledger_under_test(
    request: pytest.FixtureRequest, conn: psycopg.AsyncConnection[Any]
) -> AsyncIterator[LedgerUnderTest]:
    if request.param == "fake":
        fake = FakeBalanceLedger()
        fake.add_provider("Visa", Decimal(1000))
        fake.add_provider("Mastercard", Decimal(2000))

        async def add_fake(provider_id: int, value: Decimal) -> None:
            fake.add_transaction(provider_id, value)

        async def take_fake() -> int:
            return fake.take_term()

        yield LedgerUnderTest(fake, add_fake, take_fake)
        return

    async with conn.transaction():
        await conn.execute(
            "INSERT INTO initial_data (provider_name, initial_value)"
            " VALUES ('Visa', 1000), ('Mastercard', 2000)"
        )
    other = await psycopg.AsyncConnection.connect(conn.info.dsn, autocommit=True)

    async def add_real(provider_id: int, value: Decimal) -> None:
        await other.execute(
            "INSERT INTO historical_transactions (provider_id, transaction_value) VALUES (%s, %s)",
            (provider_id, value),
        )

    async def take_real() -> int:
        return await take_term(other)

    yield LedgerUnderTest(PostgresBalanceLedger(conn), add_real, take_real)
    await other.close()


async def test_a_snapshot_holds_every_balance_exactly(ledger_under_test: LedgerUnderTest) -> None:
    term = await ledger_under_test.take_term()
    await ledger_under_test.add_transaction(1, Decimal("0.1"))
    await ledger_under_test.add_transaction(1, Decimal("0.2"))
    await ledger_under_test.add_transaction(2, Decimal(-2000))
    async with ledger_under_test.ledger.snapshot(BOUNDARY, term, "w") as snapshot:
        assert not snapshot.skipped
        assert snapshot.keys == {"1_Visa": "1000.3", "2_Mastercard": "0"}


async def test_a_recorded_boundary_is_skipped_by_the_next_term_only(
    ledger_under_test: LedgerUnderTest,
) -> None:
    first = await ledger_under_test.take_term()
    async with ledger_under_test.ledger.snapshot(BOUNDARY, first, "w1") as snapshot:
        snapshot.record(BOUNDARY, 0.002)
    async with ledger_under_test.ledger.snapshot(BOUNDARY, first, "w1") as snapshot:
        assert not snapshot.skipped  # the same term may publish its boundary again
    second = await ledger_under_test.take_term()
    async with ledger_under_test.ledger.snapshot(BOUNDARY, second, "w2") as snapshot:
        assert snapshot.skipped and snapshot.keys == {}


async def test_a_failed_publication_records_nothing(ledger_under_test: LedgerUnderTest) -> None:
    first = await ledger_under_test.take_term()
    with pytest.raises(BalanceStoreError):
        async with ledger_under_test.ledger.snapshot(BOUNDARY, first, "w1") as snapshot:
            snapshot.record(BOUNDARY, 0.002)
            raise BalanceStoreError("KeyDB refused")
    second = await ledger_under_test.take_term()
    async with ledger_under_test.ledger.snapshot(BOUNDARY, second, "w2") as snapshot:
        assert not snapshot.skipped


async def test_a_deposed_term_gets_no_snapshot(ledger_under_test: LedgerUnderTest) -> None:
    old = await ledger_under_test.take_term()
    await ledger_under_test.take_term()
    with pytest.raises(LeadershipLost):
        async with ledger_under_test.ledger.snapshot(BOUNDARY, old, "old"):
            pass


async def test_pikas_own_path_reads_the_same_deliveries(queue: str, amqp_url: str) -> None:
    """LEDGERFLOW_AMQP_FAST_PATH=false: every delivery read by pika, the same as the fast
    path reads them (a pika upgrade's way out)."""
    from ledgerflow.messaging import fast_path

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    for n in range(3):
        props = pika.BasicProperties(delivery_mode=2, message_id=f"m{n}", headers={"n": n})
        channel.basic_publish("", queue, f"body {n}".encode(), props)
    connection.close()
    bodies: dict[bool, list[tuple[bytes, str | None, bool]]] = {}
    for fast in (False, True):
        received: list[Delivery] = []
        consumer = QueueConsumer(amqp_url, queue, 10, fast_path=fast)
        await consumer.start(received.append)
        await eventually(lambda: len(received) == 3)  # noqa: B023
        uses_fast_path = isinstance(consumer._connection, fast_path.DirectDeliveryConnection)
        assert uses_fast_path is fast
        bodies[fast] = [(d.body, d.message_id, d.redelivered) for d in received]
        await consumer.close()  # not acknowledged: the next round reads them again
    assert [(b, m) for b, m, _ in bodies[False]] == [(b, m) for b, m, _ in bodies[True]]
    assert [r for _, _, r in bodies[True]] == [True, True, True]
