"""The consumers ``make bench`` compares with ledgerflow, each run as its own process.

    python bench/solutions.py SOLUTION AMQP_URL QUEUE COUNT [DATABASE_URL]

where SOLUTION is ceiling, ceiling-direct, naive or faststream.

Each consumes COUNT messages from QUEUE and exits, printing one JSON line with its own
measurements. ledgerflow itself runs as the real ``ledgerflow worker``.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any

import pika
import psycopg

PREFETCH = 2000  # as ledgerflow's default
ACK_EVERY = 500  # as ledgerflow's default batch size
INSERT = "INSERT INTO historical_transactions (provider_id, transaction_value) VALUES (%s, %s)"


def report(**figures: Any) -> None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**figures, "peak_rss_mb": round(peak, 1)}), flush=True)


def ceiling(amqp_url: str, queue: str, count: int) -> None:
    """The broker's ceiling: receive and acknowledge, nothing else (pika, multi-ack)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=PREFETCH)
    seen, times = 0, [0.0, 0.0]

    def on_message(ch: Any, method: Any, _props: Any, _body: bytes) -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            times[0] = time.time()
        if seen % ACK_EVERY == 0 or seen == count:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if seen == count:
            times[1] = time.time()
            ch.stop_consuming()

    channel.basic_consume(queue, on_message)
    channel.start_consuming()
    connection.close()
    report(first=times[0], last=times[1], messages=seen)


def ceiling_direct(amqp_url: str, queue: str, count: int) -> None:
    """The ceiling as ledgerflow receives: deliveries read straight from the frames
    (ledgerflow.messaging.fast_path), on pika's asyncio adapter, multi-ack; nothing else."""
    from ledgerflow.messaging.fast_path import DirectDeliveryConnection

    async def main() -> None:
        loop = asyncio.get_running_loop()
        opened, channel_opened, done = (loop.create_future() for _ in range(3))
        connection = DirectDeliveryConnection(
            pika.URLParameters(amqp_url),
            on_open_callback=opened.set_result,
            on_open_error_callback=lambda _c, error: opened.set_exception(Exception(error)),
            custom_ioloop=loop,
        )
        await opened
        connection.channel(on_open_callback=channel_opened.set_result)
        channel = await channel_opened
        channel.basic_qos(prefetch_count=PREFETCH)
        seen, times = 0, [0.0, 0.0]

        def take(delivery_tag: int) -> None:
            nonlocal seen
            seen += 1
            if seen == 1:
                times[0] = time.time()
            if seen % ACK_EVERY == 0 or seen == count:
                channel.basic_ack(delivery_tag, multiple=True)
            if seen == count:
                times[1] = time.time()
                done.set_result(None)

        tag = channel.basic_consume(queue, lambda _ch, method, _p, _b: take(method.delivery_tag))
        connection.deliver_directly(channel, tag, lambda raw, _at: take(raw.tag))
        await done
        connection.close()
        report(first=times[0], last=times[1], messages=seen)

    asyncio.run(main())


def naive(amqp_url: str, queue: str, count: int, database_url: str) -> None:
    """The brief as usually solved: one INSERT, one COMMIT and one ack per message."""
    db = psycopg.connect(database_url)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=100)
    seen = 0

    def on_message(ch: Any, method: Any, _props: Any, body: bytes) -> None:
        nonlocal seen
        message = json.loads(body)
        db.execute(INSERT, (message["id"], message["value"]))
        db.commit()
        ch.basic_ack(method.delivery_tag)
        seen += 1
        if seen == count:
            ch.stop_consuming()

    channel.basic_consume(queue, on_message)
    channel.start_consuming()
    connection.close()
    db.close()
    report(messages=seen)


def faststream(amqp_url: str, queue: str, count: int, database_url: str) -> None:
    """A FastStream subscriber doing the same per-message insert (acks after the handler)."""
    from faststream.rabbit import Channel, RabbitBroker, RabbitQueue

    async def main() -> None:
        db = await psycopg.AsyncConnection.connect(database_url)
        broker = RabbitBroker(amqp_url, default_channel=Channel(prefetch_count=100), logger=None)
        done = asyncio.Event()
        seen = 0

        @broker.subscriber(RabbitQueue(queue, durable=True))
        async def handle(body: dict[str, Any]) -> None:
            nonlocal seen
            await db.execute(INSERT, (body["id"], body["value"]))
            await db.commit()
            seen += 1
            if seen >= count:
                done.set()

        await broker.start()
        await done.wait()
        await broker.stop()
        await db.close()
        report(messages=seen)

    asyncio.run(main())


if __name__ == "__main__":
    name, amqp_url, queue, count, *rest = sys.argv[1:]
    solutions = {
        "ceiling": ceiling,
        "ceiling-direct": ceiling_direct,
        "naive": naive,
        "faststream": faststream,
    }
    solutions[name](amqp_url, queue, int(count), *rest)
