"""An in-memory broker and its queue consumers, behaving as RabbitMQ and QueueConsumer do
for what the domains rely on (tests/integration/test_contracts.py holds them to it)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ledgerflow.messaging.delivery import Delivery
from ledgerflow.messaging.queue import DeliveryHandler
from ledgerflow.messaging.rabbitmq import BrokerError


@dataclass
class _Message:
    body: bytes
    message_id: str | None
    headers: dict[str, Any] | None
    redelivered: bool = False


@dataclass
class _QueueState:
    ready: deque[_Message] = field(default_factory=deque)
    marker: int | None = None
    consumer: FakeQueue | None = None


class FakeBroker:
    """Durable queues in memory, each with its acknowledgement marker."""

    def __init__(self) -> None:
        self._queues: dict[str, _QueueState] = {}

    def state(self, queue: str) -> _QueueState:
        """A queue, declared on first use (as ledgerflow declares it)."""
        return self._queues.setdefault(queue, _QueueState())

    def publish(
        self,
        queue: str,
        body: bytes,
        message_id: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        """Append a persistent message to ``queue``."""
        state = self.state(queue)
        state.ready.append(_Message(body, message_id, headers))
        if state.consumer is not None:
            state.consumer.pump_soon()

    def consumer(self, queue: str, prefetch: int) -> FakeQueue:
        """A consumer of ``queue`` (exclusive, like QueueConsumer's)."""
        return FakeQueue(self, queue, prefetch)


class FakeQueue:
    """The Queue port on a FakeBroker."""

    def __init__(self, broker: FakeBroker, queue: str, prefetch: int) -> None:
        self._broker, self._queue, self._prefetch = broker, queue, prefetch
        self._handler: DeliveryHandler | None = None
        self._unacked: dict[int, _Message] = {}
        self._next_tag = 1
        self._consuming = False
        self._lost: asyncio.Future[None] | None = None

    @property
    def queue(self) -> str:
        """The queue's name."""
        return self._queue

    async def start(self, on_delivery: DeliveryHandler) -> None:
        """Start consuming; BrokerError if another consumer holds the queue."""
        state = self._broker.state(self._queue)
        if state.consumer is not None and state.consumer is not self:
            raise BrokerError(
                f"RabbitMQ: 403 ACCESS_REFUSED - queue '{self._queue}' in exclusive use"
            )
        state.consumer = self
        self._handler, self._consuming = on_delivery, True
        self._lost = asyncio.get_running_loop().create_future()
        self.pump_soon()

    def pump_soon(self) -> None:
        """Deliver what the prefetch allows, on the next turn of the event loop (RabbitMQ
        delivers asynchronously too)."""
        asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        state = self._broker.state(self._queue)
        while (
            self._consuming
            and state.consumer is self
            and state.ready
            and len(self._unacked) < self._prefetch
        ):
            message = state.ready.popleft()
            tag, self._next_tag = self._next_tag, self._next_tag + 1
            self._unacked[tag] = message
            assert self._handler is not None
            self._handler(
                Delivery(
                    body=message.body,
                    tag=tag,
                    redelivered=message.redelivered,
                    received_at=datetime.now(UTC),
                    message_id=message.message_id,
                    properties={
                        "delivery_mode": 2,
                        **({"message_id": message.message_id} if message.message_id else {}),
                        **({"headers": message.headers} if message.headers else {}),
                    },
                )
            )

    def _require_open(self) -> None:
        if self._lost is None or self._lost.done():
            raise BrokerError("cannot acknowledge: the channel is closed")

    async def ack(self, delivery_tag: int, batch_id: int) -> None:
        """Acknowledge up to ``delivery_tag`` and set the marker, atomically."""
        self._require_open()
        for tag in [t for t in self._unacked if t <= delivery_tag]:
            del self._unacked[tag]
        self._broker.state(self._queue).marker = batch_id
        self.pump_soon()
        await asyncio.sleep(0)  # the broker's commit is a round trip

    def ack_one(self, delivery_tag: int) -> None:
        """Acknowledge one delivery."""
        self._require_open()
        self._unacked.pop(delivery_tag, None)
        self.pump_soon()

    async def mark_acknowledged(self, batch_id: int) -> None:
        """Set the marker without acknowledging anything."""
        self._require_open()
        self._broker.state(self._queue).marker = batch_id

    async def last_acknowledged(self) -> int | None:
        """The marker's batch id, or None."""
        return self._broker.state(self._queue).marker

    async def backlog(self) -> int:
        """Messages ready, not delivered."""
        return len(self._broker.state(self._queue).ready)

    async def stop_consuming(self) -> None:
        """No more deliveries."""
        self._consuming = False

    async def closed(self) -> None:
        """Wait until ``lose_connection``, then raise BrokerError."""
        assert self._lost is not None, "start() first"
        await self._lost

    def lose_connection(self, reason: str = "connection lost") -> None:
        """What a broker restart or a network failure does (for tests)."""
        self._give_back()
        if self._lost is not None and not self._lost.done():
            self._lost.set_exception(BrokerError(f"RabbitMQ: {reason}"))

    async def close(self) -> None:
        """Close; unacknowledged deliveries go back to the head of the queue, redelivered."""
        self._give_back()
        if self._lost is not None and not self._lost.done():
            self._lost.cancel()

    def _give_back(self) -> None:
        state = self._broker.state(self._queue)
        for tag in sorted(self._unacked, reverse=True):
            message = self._unacked.pop(tag)
            message.redelivered = True
            state.ready.appendleft(message)
        self._consuming = False
        if state.consumer is self:
            state.consumer = None
