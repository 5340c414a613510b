"""The worker: standby until elected, then consumer and minute publisher under supervision."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import redis.asyncio as redis
import structlog
from redis.exceptions import RedisError

from ledgerflow.batches import PriceBatch, changed_lanes
from ledgerflow.broker import BrokerError, QueueConsumer
from ledgerflow.cache import CacheError, RedisBalanceCache
from ledgerflow.clock import BoundarySchedule, Clock, SystemClock
from ledgerflow.consumer import BatchingConsumer
from ledgerflow.database import DatabaseError, connect
from ledgerflow.dependencies import dependency_checks
from ledgerflow.health import Health
from ledgerflow.http import probe_app, server
from ledgerflow.ingest import BatchResult, BatchWriter
from ledgerflow.leadership import Leadership, LeadershipLost
from ledgerflow.lru import PersistentLRU
from ledgerflow.metrics import Metrics
from ledgerflow.price_feed import PriceFeed
from ledgerflow.publisher import BalancePublisher
from ledgerflow.rates import CACHE_NAMESPACE, touches
from ledgerflow.registry import WorkerRecord, forget, heartbeat_forever
from ledgerflow.settings import Settings
from ledgerflow.tracing import configure as configure_tracing

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Losing a dependency sends the worker back to standby; anything else is a bug and ends it.
RECOVERABLE = (
    LeadershipLost,
    DatabaseError,
    BrokerError,
    psycopg.OperationalError,
    psycopg.InterfaceError,  # a connection that was already closed under us
)


class Worker:
    """One ledgerflow instance: waits as a standby, leads when it holds the leader lock."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.leadership = Leadership(settings.database_url, settings.instance)
        self.retry_delay = 2.0
        self.metrics = Metrics()
        self.health = Health(checks=dependency_checks(settings))
        self.tracer = configure_tracing(settings)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set and return; raise if a supervised task dies.

        Besides the worker itself this runs its heartbeat and, unless
        LEDGERFLOW_METRICS_PORT is 0, the HTTP endpoints. If any of them ends, the others
        are stopped and the failure propagates, so the process never lingers half-alive.
        """
        settings = self.settings
        http = None
        if settings.metrics_port:
            app = probe_app(self.health, self.metrics, settings.trusted_proxy_list)
            http = server(app, settings.http_host, settings.metrics_port)
        address = f"{socket.gethostname()}:{settings.metrics_port}" if http else None
        record = WorkerRecord(settings.instance, settings.queue, address)
        supervised = [
            asyncio.create_task(self._serve(stop), name="worker"),
            asyncio.create_task(
                heartbeat_forever(settings.database_url, record, self.health), name="heartbeat"
            ),
        ]
        if http is not None:
            supervised.append(asyncio.create_task(http.serve(), name="http"))
        for task in supervised:
            self.health.supervise(task)
        clean = False
        try:
            done, _ = await asyncio.wait(supervised, return_when=asyncio.FIRST_COMPLETED)
            ended = done.pop()
            ended.result()  # a failure propagates from here
            if ended.get_name() != "worker":
                raise RuntimeError(f"the {ended.get_name()} task stopped on its own")
            clean = True
        except BaseException as exc:
            log.error("worker.task_failed", error=repr(exc))
            raise
        finally:
            if http is not None:
                http.should_exit = True
            for task in supervised:
                if task.get_name() != "http":
                    task.cancel()
            await asyncio.gather(*supervised, return_exceptions=True)
            if clean:  # a clean stop leaves the registry; a crash stays there, to be seen
                with contextlib.suppress(DatabaseError, psycopg.Error):
                    await forget(settings.database_url, settings.instance)

    async def _serve(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                self._role("standby")
                term = await _until_stopped(self.leadership.acquire(), stop)
                if term is None:
                    return
                try:
                    self._role("active")
                    await self._lead(term, stop)
                except RECOVERABLE as exc:
                    log.warning("worker.lead_interrupted", error=str(exc), term=term)
                    self.metrics.reconnects.labels(_dependency(exc)).inc()
                finally:
                    await self.leadership.release()
                if not stop.is_set():
                    await _until_stopped(asyncio.sleep(self.retry_delay), stop)
        finally:
            self._role("standby")
            await self.leadership.release()

    def _role(self, role: str) -> None:
        if role != self.health.role:
            self.health.role = role
            self.health.role_changed.set()
        self.metrics.leader.set(1 if role == "active" else 0)

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
                on_batch=self._batch_committed,
                tracer=self.tracer,
            )
            broker = QueueConsumer(
                settings.amqp_url, settings.queue, settings.prefetch, consumer.deliver, self.tracer
            )
            stack.push_async_callback(broker.close)
            await broker.start()
            await prepare_redeliveries(broker, writer)
            feed = await self._price_feed(stack)
            log.info("worker.active", term=term, queue=settings.queue)

            tasks = {
                asyncio.create_task(self.leadership.watch(), name="leadership"),
                asyncio.create_task(consumer.run(), name="ingest"),
                asyncio.create_task(self._publish_forever(publisher), name="publish"),
                asyncio.create_task(broker.closed(), name="broker"),
                asyncio.create_task(self._watch_backlog(broker), name="backlog"),
            }
            if feed is not None:
                tasks.add(asyncio.create_task(feed.run(), name="prices"))
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
                self.metrics.publishes.labels("failed").inc()
                log.error("balances.publish_failed", error=str(exc), boundary=_iso(boundary))
                continue
            if publication.skipped:
                self.metrics.publishes.labels("skipped").inc()
                log.info("balances.already_published", boundary=_iso(boundary))
                continue
            self.metrics.publishes.labels("published").inc()
            self.tracer.published(int(boundary * 1e9), boundary)
            self.metrics.publish_lag.observe(publication.lag)
            self.metrics.last_publish.set(boundary + publication.lag)
            self.health.last_publish = boundary + publication.lag
            log.info(
                "balances.published",
                boundary=_iso(boundary),
                lag_ms=round(publication.lag * 1000, 1),
                balances=publication.keys,
            )

    async def _price_feed(self, stack: contextlib.AsyncExitStack) -> PriceFeed | None:
        """Price batches from their queue, while this worker leads (see price_feed)."""
        settings = self.settings
        if not settings.price_batch_queue:
            return None
        conn = await connect(settings.database_url)
        stack.push_async_callback(conn.close)
        keydb = redis.Redis.from_url(settings.cache_url, socket_timeout=1, socket_connect_timeout=1)
        stack.push_async_callback(keydb.aclose)
        cache = PersistentLRU(keydb, CACHE_NAMESPACE)

        async def invalidate(batch: PriceBatch) -> None:
            changed = changed_lanes(batch)
            with contextlib.suppress(RedisError, OSError):
                await cache.invalidate(lambda tags: touches(tags, changed))

        feed = PriceFeed(conn, settings.amqp_url, settings.price_batch_queue, invalidate)
        stack.push_async_callback(feed.broker.close)
        return feed

    async def _watch_backlog(self, broker: QueueConsumer, every: float = 5.0) -> None:
        while True:
            self.metrics.backlog.set(await broker.backlog())
            await asyncio.sleep(every)

    def _batch_committed(self, result: BatchResult, seconds: float) -> None:
        self.metrics.batch(result, seconds)
        log.debug(
            "batch.committed",
            batch_id=result.batch_id,
            stored=result.stored,
            rejected=result.rejected,
            duplicates=result.duplicates,
            redelivered=result.redelivered,
            commit_ms=round(seconds * 1000, 1),
        )
        if result.rejected:
            log.info(
                "batch.rejected_messages",
                batch_id=result.batch_id,
                reasons=dict(result.rejected_by_reason),
            )


def _dependency(error: BaseException) -> str:
    if isinstance(error, BrokerError):
        return "rabbitmq"
    if isinstance(error, LeadershipLost):
        return "leadership"
    return "postgres"


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
