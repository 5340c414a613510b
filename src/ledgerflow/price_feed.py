"""Price batches from RabbitMQ (``incoming_price_batches``), with the HTTP endpoint's rules.

Each message is one batch, the JSON of ``POST /prices/batches``. A valid batch is
committed whole and acknowledged after the commit; a batch sent again (same batch_id)
inserts nothing; an invalid one is recorded in ``rejected_messages`` with its reason and
acknowledged in the same way: never lost, never blocking the queue.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import structlog
from psycopg.types.json import Jsonb

from ledgerflow import batches
from ledgerflow.broker import QueueConsumer
from ledgerflow.ingest import Delivery, properties_json
from ledgerflow.queries import query

log = structlog.get_logger(__name__)

PRICE_BATCH_QUEUE = "incoming_price_batches"


class PriceFeed:
    """Commits price batches as they arrive, one at a time."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        amqp_url: str,
        queue: str = PRICE_BATCH_QUEUE,
        on_commit: Callable[[batches.PriceBatch], Awaitable[None]] | None = None,
    ) -> None:
        self._conn, self._queue, self._on_commit = conn, queue, on_commit
        self._arrived: asyncio.Queue[Delivery] = asyncio.Queue()
        self.broker = QueueConsumer(amqp_url, queue, 1, self._arrived.put_nowait, ledger=False)

    async def run(self) -> None:
        """Consume forever (cancel to stop); a database failure propagates, unacknowledged."""
        await self.broker.start()
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
                raise batches.BatchRejected(f"the body is not JSON: {exc}") from None
            batch = batches.from_json(document)
            outcome = await batches.commit(self._conn, batch, source="amqp")
        except batches.BatchRejected as exc:
            await self._reject(delivery, exc)
            return
        log.info("prices.batch", source="amqp", tag=delivery.tag, **outcome.as_json())
        if not outcome.duplicate and self._on_commit is not None:
            await self._on_commit(batch)

    async def _reject(self, delivery: Delivery, error: batches.BatchRejected) -> None:
        detail = json.dumps(error.as_json())
        async with self._conn.transaction():
            await self._conn.execute(
                query("insert_rejected"),
                {
                    "queue": self._queue,
                    "message_ids": [delivery.message_id],
                    "reasons": ["invalid_price_batch"],
                    "details": [detail],
                    "bodies": [delivery.body],
                    "properties": [Jsonb(properties_json(delivery.properties))],
                    "received_at": [delivery.received_at],
                },
            )
        log.warning("prices.batch_rejected", tag=delivery.tag, error=str(error))
