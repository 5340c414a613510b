"""The worker: standby until elected, then consumer and minute publisher under supervision."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import structlog

from ledgerflow.broker import BrokerError, QueueConsumer
from ledgerflow.cache import CacheError, RedisBalanceCache
from ledgerflow.clock import BoundarySchedule, Clock, SystemClock
from ledgerflow.consumer import BatchingConsumer
from ledgerflow.database import DatabaseError, connect
from ledgerflow.ingest import BatchResult, BatchWriter
from ledgerflow.leadership import Leadership, LeadershipLost
from ledgerflow.publisher import BalancePublisher
from ledgerflow.settings import Settings

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Losing a dependency sends the worker back to standby; anything else is a bug and ends it.
RECOVERABLE = (LeadershipLost, DatabaseError, BrokerError, psycopg.OperationalError)


class Worker:
    """One ledgerflow instance: waits as a standby, leads when it holds the leader lock."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.leadership = Leadership(settings.database_url, settings.instance)
        self.retry_delay = 2.0

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; return after a clean shutdown."""
        try:
            while not stop.is_set():
                term = await _until_stopped(self.leadership.acquire(), stop)
                if term is None:
                    return
                try:
                    await self._lead(term, stop)
                except RECOVERABLE as exc:
                    log.warning("worker.lead_interrupted", error=str(exc), term=term)
                finally:
                    await self.leadership.release()
                if not stop.is_set():
                    await _until_stopped(asyncio.sleep(self.retry_delay), stop)
        finally:
            await self.leadership.release()

    async def _lead(self, term: int, stop: asyncio.Event) -> None:
        settings = self.settings
        async with contextlib.AsyncExitStack() as stack:
            ingest_conn = await connect(settings.database_url)
            stack.push_async_callback(ingest_conn.close)
            publish_conn = await connect(settings.database_url)
            stack.push_async_callback(publish_conn.close)
            cache = RedisBalanceCache(settings.redis_url)
            stack.push_async_callback(cache.close)

            writer = BatchWriter(
                ingest_conn, settings.queue, settings.instance, term, settings.max_body_bytes
            )
            publisher = BalancePublisher(publish_conn, cache, self.clock, term, settings.instance)
            broker: QueueConsumer
            consumer = BatchingConsumer(
                writer,
                ack=lambda tag, batch_id: broker.ack(tag, batch_id),
                batch_size=settings.batch_size,
                max_wait=settings.batch_max_wait,
                on_batch=_log_batch,
            )
            broker = QueueConsumer(
                settings.amqp_url, settings.queue, settings.prefetch, consumer.deliver
            )
            stack.push_async_callback(broker.close)
            await broker.start()
            await prepare_redeliveries(broker, writer)
            log.info("worker.active", term=term, queue=settings.queue)

            tasks = {
                asyncio.create_task(self.leadership.watch(), name="leadership"),
                asyncio.create_task(consumer.run(), name="ingest"),
                asyncio.create_task(self._publish_forever(publisher), name="publish"),
                asyncio.create_task(broker.closed(), name="broker"),
            }
            stopping = asyncio.create_task(stop.wait(), name="stop")
            try:
                done, _ = await asyncio.wait(
                    {*tasks, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                if stopping in done:
                    await self._drain(tasks, broker, consumer)
                    return
                for task in done:
                    task.result()  # raises the failure that ended leadership
                raise RuntimeError(f"task {next(iter(done)).get_name()} ended unexpectedly")
            finally:
                for task in (*tasks, stopping):
                    task.cancel()
                await asyncio.gather(*tasks, stopping, return_exceptions=True)

    async def _drain(
        self, tasks: set[asyncio.Task[Any]], broker: QueueConsumer, consumer: BatchingConsumer
    ) -> None:
        """Stop taking messages, commit and acknowledge what was received, then return."""
        log.info("worker.draining", pending=consumer.pending)
        ingest = next(t for t in tasks if t.get_name() == "ingest")
        await broker.stop_consuming()
        # The commit in progress finishes rather than being cancelled half-way.
        consumer.finish()
        await ingest
        log.info("worker.drained")

    async def _publish_forever(self, publisher: BalancePublisher) -> None:
        schedule = BoundarySchedule(self.settings.publish_interval, self.clock)
        while True:
            boundary = await schedule.wait()
            try:
                publication = await publisher.publish(boundary)
            except CacheError as exc:
                log.error("balances.publish_failed", error=str(exc), boundary=_iso(boundary))
                continue
            if publication.skipped:
                log.info("balances.already_published", boundary=_iso(boundary))
                continue
            log.info(
                "balances.published",
                boundary=_iso(boundary),
                lag_ms=round(publication.lag * 1000, 1),
                balances=publication.keys,
            )


async def prepare_redeliveries(broker: QueueConsumer, writer: BatchWriter) -> None:
    """Learn which committed messages RabbitMQ will deliver again (see QueueConsumer)."""
    acknowledged = await broker.last_acknowledged()
    if acknowledged is None:
        if await writer.has_batches():
            log.warning(
                "worker.ack_marker_missing",
                detail="the acknowledgement marker queue was emptied or deleted; assuming "
                "every committed batch was acknowledged",
            )
            return
        await broker.mark_acknowledged(0)
        acknowledged = 0
    expected = await writer.expect_redeliveries(acknowledged)
    if expected:
        log.info("worker.expecting_redeliveries", messages=expected, after_batch=acknowledged)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _log_batch(result: BatchResult, seconds: float) -> None:
    log.debug(
        "batch.committed",
        batch_id=result.batch_id,
        stored=result.stored,
        rejected=result.rejected,
        duplicates=result.duplicates,
        commit_ms=round(seconds * 1000, 1),
    )
    if result.rejected:
        log.info("batch.rejected_messages", reasons=dict(result.rejected_by_reason))


async def _until_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """Run ``work`` unless ``stop`` is set first; then cancel it and return None."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None
