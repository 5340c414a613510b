"""Turning a stream of deliveries into committed, acknowledged batches."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog

from ledgerflow.core.tracing import MessageTracer
from ledgerflow.messaging.delivery import Delivery
from ledgerflow.transactions.writer import BatchResult, Prepared

log = structlog.get_logger(__name__)


class Writer(Protocol):
    """What the consumer needs of BatchWriter."""

    def prepare(self, delivery: Delivery) -> Prepared:
        """Hash and parse a delivery as it arrives."""
        ...

    async def write(self, items: Sequence[Prepared | Delivery]) -> BatchResult:
        """Commit a batch; raise if it cannot be committed (nothing is then written)."""
        ...


class BatchingConsumer:
    """Collects deliveries and commits them in batches, acknowledging after each commit.

    A batch closes when it holds ``batch_size`` messages or ``max_wait`` seconds after its
    first message arrived, whichever comes first. While one batch is being committed the
    next one fills, and while RabbitMQ commits one batch's acknowledgement PostgreSQL
    commits the next batch, so the broker and the database work at the same time. A
    message is acknowledged (multiple=True up to the batch's last delivery tag) only once
    the transaction that recorded it has committed; acknowledgements go out in batch order,
    one at a time, each once RabbitMQ confirmed the one before. So at most two committed
    batches are unacknowledged at any moment, and after a crash RabbitMQ delivers their
    messages again first, in order, as BatchWriter.expect_redeliveries expects.
    """

    def __init__(
        self,
        writer: Writer,
        ack: Callable[[int, int], Awaitable[None]],
        batch_size: int,
        max_wait: float,
        on_batch: Callable[[BatchResult, float], None] | None = None,
        tracer: MessageTracer | None = None,
    ) -> None:
        self._writer = writer
        self._ack = ack
        self._batch_size = batch_size
        self._max_wait = max_wait
        self._on_batch = on_batch
        self._tracer = tracer
        self._pending: list[Prepared] = []
        self._nonempty = asyncio.Event()
        self._full = asyncio.Event()
        self._finishing = False
        self._acking: asyncio.Task[None] | None = None

    def deliver(self, delivery: Delivery) -> None:
        """Take one delivery from the broker (called on the event loop, never blocks)."""
        self._pending.append(self._writer.prepare(delivery))
        self._nonempty.set()
        if len(self._pending) >= self._batch_size:
            self._full.set()

    @property
    def pending(self) -> int:
        """Deliveries received and not yet committed."""
        return len(self._pending)

    def finish(self) -> None:
        """Commit what is pending without waiting for full batches, then let ``run`` return.

        Call it once the broker has stopped delivering.
        """
        self._finishing = True
        self._nonempty.set()
        self._full.set()

    async def run(self) -> None:
        """Commit batches until ``finish`` was called and nothing is pending."""
        try:
            while True:
                if not self._pending:
                    await self._acknowledged()  # idle: nothing left in flight
                await self._nonempty.wait()
                if not self._pending:
                    return
                await self._collect_and_commit()
        finally:
            acking, self._acking = self._acking, None
            if acking is not None:
                if acking.done():
                    if not acking.cancelled() and acking.exception() is not None:
                        log.warning("ingest.ack_failed", error=str(acking.exception()))
                else:
                    acking.cancel()  # the batch's messages come back, recognised

    async def _collect_and_commit(self) -> None:
        if not self._full.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._max_wait):  # see cluster/registry.py
                    await self._full.wait()
        await self._commit_one()

    async def _acknowledged(self) -> None:
        """Wait until RabbitMQ confirmed the last acknowledgement sent (raise if it failed)."""
        acking, self._acking = self._acking, None
        if acking is not None:
            await acking

    async def _commit_one(self) -> None:
        batch = self._pending[: self._batch_size]
        started = asyncio.get_running_loop().time()
        started_ns = time.time_ns()
        result = await self._writer.write(batch)
        # Only now may the batch leave the queue; concurrent deliveries were appended after it.
        await self._acknowledged()
        self._acking = asyncio.ensure_future(self._ack(batch[-1].delivery.tag, result.batch_id))
        del self._pending[: len(batch)]
        if not self._finishing:
            if not self._pending:
                self._nonempty.clear()
            if len(self._pending) < self._batch_size:
                self._full.clear()
        elapsed = asyncio.get_running_loop().time() - started
        if self._tracer is not None:
            self._tracer.committed((p.delivery.trace for p in batch), started_ns, result.batch_id)
        if self._on_batch is not None:
            self._on_batch(result, elapsed)
