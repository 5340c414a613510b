import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from ledgerflow.cluster.leadership import LeadershipLost
from ledgerflow.messaging.delivery import Delivery
from ledgerflow.transactions.batching import BatchingConsumer
from ledgerflow.transactions.writer import BatchResult, BatchWriter, Prepared

from .conftest import take_term

pytestmark = pytest.mark.integration


def delivery(body: bytes, tag: int, message_id: str | None = None) -> Delivery:
    return Delivery(
        body=body,
        tag=tag,
        redelivered=False,
        received_at=datetime.now(UTC),
        message_id=message_id,
        properties={"delivery_mode": 2, "headers": {"raw": b"\x00bytes"}},
    )


async def writer_for(conn: psycopg.AsyncConnection[Any]) -> BatchWriter:
    return BatchWriter(conn, "q", "test", await take_term(conn), max_body_bytes=1024)


async def rows(conn: psycopg.AsyncConnection[Any], sql: str) -> list[tuple[Any, ...]]:
    return await (await conn.execute(sql)).fetchall()


async def test_a_batch_stores_valid_messages_and_records_the_rest(seeded: Any) -> None:
    conn = seeded
    writer = await writer_for(conn)
    result = await writer.write(
        [
            delivery(b'{"id": 1, "value": 600}', 1),
            delivery(b"not json", 2),
            delivery(b'{"id": 99, "value": 5}', 3),
            delivery(b'{"id": 2, "value": -0.25}', 4),
            delivery(b'{"id": 1, "value": true}', 5),
        ]
    )
    assert (result.stored, result.rejected, result.duplicates) == (2, 3, 0)
    assert result.rejected_by_reason == Counter(
        {"invalid_json": 1, "unknown_provider": 1, "invalid_value": 1}
    )
    assert await rows(
        conn,
        "SELECT id, provider_id, transaction_value FROM historical_transactions WHERE id > 3 ORDER BY id",
    ) == [
        (4, 1, Decimal(600)),
        (5, 2, Decimal("-0.25")),
    ]
    rejected = await rows(
        conn, "SELECT reason, body, properties FROM ledgerflow.rejected_messages ORDER BY id"
    )
    assert [(r[0], bytes(r[1])) for r in rejected] == [
        ("invalid_json", b"not json"),
        ("unknown_provider", b'{"id": 99, "value": 5}'),
        ("invalid_value", b'{"id": 1, "value": true}'),
    ]
    assert rejected[0][2] == {"delivery_mode": 2, "headers": {"raw": "\\x00bytes"}}
    lineage = await rows(
        conn,
        "SELECT position, outcome, transaction_id, rejected_id IS NOT NULL FROM ledgerflow.messages ORDER BY position",
    )
    assert lineage == [
        (0, "stored", 4, False),
        (1, "rejected", None, True),
        (2, "rejected", None, True),
        (3, "stored", 5, False),
        (4, "rejected", None, True),
    ]


async def test_a_message_id_seen_before_is_a_duplicate_not_a_second_row(seeded: Any) -> None:
    conn = seeded
    writer = await writer_for(conn)
    await writer.write([delivery(b'{"id": 1, "value": 600}', 1, "m-1")])
    again = await writer.write(
        [
            delivery(b'{"id": 1, "value": 600}', 2, "m-1"),  # redelivered after a crash
            delivery(b'{"id": 2, "value": 5}', 3, "m-2"),
            delivery(b'{"id": 2, "value": 5}', 4, "m-2"),  # the same id twice in one batch
            delivery(b"garbage", 5, "m-3"),
        ]
    )
    assert (again.stored, again.rejected, again.duplicates) == (1, 1, 2)
    assert await rows(
        conn,
        "SELECT provider_id, sum(transaction_value) FROM historical_transactions GROUP BY 1 ORDER BY 1",
    ) == [
        (1, Decimal(900)),
        (2, Decimal(-195)),
    ]
    duplicate_of_rejected = await writer.write([delivery(b"garbage", 6, "m-3")])
    assert duplicate_of_rejected.duplicates == 1
    assert await rows(conn, "SELECT count(*) FROM ledgerflow.rejected_messages") == [(1,)]


async def test_a_provider_added_after_start_is_recognised(seeded: Any) -> None:
    conn = seeded
    writer = await writer_for(conn)
    await writer.write([delivery(b'{"id": 1, "value": 1}', 1)])
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO initial_data (provider_name, initial_value) VALUES ('Amex', 5)"
        )
    result = await writer.write([delivery(b'{"id": 3, "value": 1}', 2)])
    assert result.stored == 1


async def test_a_deposed_leader_writes_nothing(seeded: Any) -> None:
    conn = seeded
    writer = await writer_for(conn)
    await take_term(conn, "another instance")
    with pytest.raises(LeadershipLost):
        await writer.write([delivery(b'{"id": 1, "value": 600}', 1)])
    assert await rows(conn, "SELECT count(*) FROM historical_transactions") == [(3,)]
    assert await rows(conn, "SELECT count(*) FROM ledgerflow.messages") == [(0,)]


def tag_of(item: Prepared | Delivery) -> int:
    return item.delivery.tag if isinstance(item, Prepared) else item.tag


def after_each_commit(
    writer: BatchWriter, observe: Callable[[Sequence[Prepared | Delivery], BatchResult], None]
) -> None:
    """Call ``observe`` with each batch and its result once the writer committed it."""
    write = writer.write

    async def observed(items: Sequence[Prepared | Delivery]) -> BatchResult:
        result = await write(items)
        observe(items, result)
        return result

    writer.write = observed  # type: ignore[method-assign]


async def consume(consumer: BatchingConsumer, count: int) -> None:
    """Hand ``count`` deliveries (tags 1..count) to ``consumer`` and let it commit them."""
    for tag in range(1, count + 1):
        consumer.deliver(delivery(b'{"id": 1, "value": 1}', tag))
    consumer.finish()
    await consumer.run()


async def test_batching_consumer_acks_each_batch_after_its_commit(seeded: Any) -> None:
    conn = seeded
    writer = await writer_for(conn)
    events: list[tuple[str, int]] = []
    acked: list[int] = []
    after_each_commit(writer, lambda _batch, result: events.append(("committed", result.batch_id)))

    async def ack(tag: int, batch_id: int) -> None:
        events.append(("ack sent", batch_id))
        await asyncio.sleep(0.01)  # RabbitMQ's transaction commit
        events.append(("ack confirmed", batch_id))
        acked.append(tag)

    await consume(BatchingConsumer(writer, ack=ack, batch_size=3, max_wait=0.05), 7)
    # Batches of 3, 3 and 1; each ack names the batch's last tag.
    assert acked == [3, 6, 7]
    batches = [b for kind, b in events if kind == "committed"]
    assert len(batches) == 3
    for batch_id in batches:  # each ack after its own commit
        assert events.index(("committed", batch_id)) < events.index(("ack sent", batch_id))
    # One acknowledgement in flight at a time, in batch order; run() returns once the last
    # one is confirmed.
    acks = [e for e in events if e[0].startswith("ack")]
    assert acks == [(kind, b) for b in batches for kind in ("ack sent", "ack confirmed")]
    assert events[-1] == ("ack confirmed", batches[-1])
    assert int((await rows(conn, "SELECT count(*) FROM ledgerflow.messages"))[0][0]) == 7


async def test_the_next_batch_commits_while_rabbitmq_confirms_the_previous_ack(
    seeded: Any,
) -> None:
    writer = await writer_for(seeded)
    second_committed = asyncio.Event()

    def note_commit(batch: Sequence[Prepared | Delivery], _result: BatchResult) -> None:
        if tag_of(batch[0]) == 4:
            second_committed.set()

    after_each_commit(writer, note_commit)

    async def ack(tag: int, _batch_id: int) -> None:
        if tag == 3:  # a serial consumer would wait here forever
            async with asyncio.timeout(5):
                await second_committed.wait()

    await consume(BatchingConsumer(writer, ack=ack, batch_size=3, max_wait=0.05), 6)
    assert second_committed.is_set()


async def test_batching_consumer_does_not_ack_a_failed_batch(seeded: Any) -> None:
    conn = seeded
    acked: list[int] = []
    writer = await writer_for(conn)
    await take_term(conn, "another instance")

    async def ack(tag: int, _batch_id: int) -> None:
        acked.append(tag)

    consumer = BatchingConsumer(writer, ack=ack, batch_size=10, max_wait=0.01)
    consumer.deliver(delivery(b'{"id": 1, "value": 1}', 1))
    with pytest.raises(LeadershipLost):
        await consumer.run()
    assert acked == []
    assert consumer.pending == 1
