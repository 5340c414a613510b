"""Price batches from RabbitMQ (``incoming_price_batches``), with the HTTP endpoint's rules.

Each message is one batch, the JSON of ``POST /prices/batches``. A valid batch is
committed whole and acknowledged after the commit; a batch sent again (same batch_id)
inserts nothing; an invalid one is recorded in ``ledgerflow.rejected_messages`` with its
reason and acknowledged in the same way: never lost, never blocking the queue.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import structlog

from ledgerflow.db.rejected import RejectedMessage, record_rejected
from ledgerflow.messaging.delivery import Delivery, properties_json
from ledgerflow.messaging.rabbitmq import QueueConsumer
from ledgerflow.rates import price_batches

log = structlog.get_logger(__name__)

PRICE_BATCH_QUEUE = "incoming_price_batches"
REJECTED_REASON = "invalid_price_batch"


class PriceFeed:
    """Commits price batches as they arrive, one at a time."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        broker: QueueConsumer,
        on_commit: Callable[[price_batches.PriceBatch], Awaitable[object]] | None = None,
    ) -> None:
        self._conn, self._on_commit = conn, on_commit
        self._arrived: asyncio.Queue[Delivery] = asyncio.Queue()
        self.broker = broker

    async def run(self) -> None:
        """Consume forever (cancel to stop); a database failure propagates, unacknowledged."""
        await self.broker.start(self._arrived.put_nowait)
        while True:
            delivery = await self._arrived.get()
            await self.handle(delivery)
            self.broker.ack_one(delivery.tag)

    async def handle(self, delivery: Delivery) -> None:
        """Commit the batch, or record why it cannot be committed."""
        try:
            try:
                document = json.loads(delivery.body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise price_batches.BatchRejected(f"the body is not JSON: {exc}") from None
            batch = price_batches.from_json(document)
            outcome = await price_batches.commit(self._conn, batch, source="amqp")
        except price_batches.BatchRejected as exc:
            await self._reject(delivery, exc)
            return
        log.info("prices.batch", source="amqp", tag=delivery.tag, **outcome.as_json())
        if not outcome.duplicate and self._on_commit is not None:
            await self._on_commit(batch)

    async def _reject(self, delivery: Delivery, error: price_batches.BatchRejected) -> None:
        rejected = RejectedMessage(
            delivery.message_id,
            REJECTED_REASON,
            json.dumps(error.as_json()),
            delivery.body,
            properties_json(delivery.properties),
            delivery.received_at,
        )
        async with self._conn.transaction():
            await record_rejected(self._conn, self.broker.queue, [rejected])
        log.warning("prices.batch_rejected", tag=delivery.tag, error=str(error))
