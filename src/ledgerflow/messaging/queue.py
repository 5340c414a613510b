"""The port of a consumed queue: what the domains need of RabbitMQ.

``rabbitmq.QueueConsumer`` is the adapter; ``ledgerflow.testing.FakeQueue`` the in-memory
fake for unit tests, held to the same behaviour by tests/integration/test_contracts.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ledgerflow.messaging.delivery import Delivery

DeliveryHandler = Callable[[Delivery], None]


class Queue(Protocol):
    """One queue consumed by one consumer, acknowledgements committed with a marker."""

    @property
    def queue(self) -> str:
        """The queue's name."""
        ...

    async def start(self, on_delivery: DeliveryHandler) -> None:
        """Start handing deliveries to ``on_delivery``, in queue order (a redelivered
        message first); raise BrokerError if the queue cannot be consumed."""
        ...

    async def ack(self, delivery_tag: int, batch_id: int) -> None:
        """Acknowledge every delivery up to ``delivery_tag``, atomically with the marker
        naming ``batch_id``; return once the broker has committed both."""
        ...

    def ack_one(self, delivery_tag: int) -> None:
        """Acknowledge one delivery (consumers without a marker)."""
        ...

    async def mark_acknowledged(self, batch_id: int) -> None:
        """Set the marker to ``batch_id`` without acknowledging anything."""
        ...

    async def last_acknowledged(self) -> int | None:
        """The batch id in the marker, or None when there is none."""
        ...

    async def backlog(self) -> int:
        """Messages ready in the queue (not counting those delivered, not yet acked)."""
        ...

    async def stop_consuming(self) -> None:
        """Stop deliveries; those received stay this consumer's to acknowledge."""
        ...

    async def closed(self) -> None:
        """Wait until the connection is lost, then raise BrokerError."""
        ...

    async def close(self) -> None:
        """Close: every delivery not acknowledged goes back to the queue, redelivered."""
        ...
