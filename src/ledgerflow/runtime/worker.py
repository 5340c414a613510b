"""The worker: standby until elected, then consumer and minute publisher under supervision."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Coroutine
from typing import Any, TypeVar

import psycopg
import structlog

from ledgerflow.cluster.leadership import Leadership, LeadershipLost
from ledgerflow.cluster.registry import WorkerRecord, forget, heartbeat_forever
from ledgerflow.core.clock import BoundarySchedule, Clock, SystemClock
from ledgerflow.core.health import Health
from ledgerflow.core.tracing import MessageTracer
from ledgerflow.core.tracing import configure as configure_tracing
from ledgerflow.db.connections import DatabaseError, connect
from ledgerflow.db.migrate import installed_domains
from ledgerflow.feeds.letters import tell_findings
from ledgerflow.feeds.loads import Feed, detect_forever
from ledgerflow.feeds.reconcile import Reconciliation, reconcile_forever
from ledgerflow.feeds.workflow import feed_event
from ledgerflow.kv.balance_store import RedisBalanceStore
from ledgerflow.kv.events import EventSink, KeyDBPublisher
from ledgerflow.lineage.fanout import Fanout
from ledgerflow.messaging.rabbitmq import BrokerError, QueueConsumer
from ledgerflow.notifications.notify import Notifier, own_connection
from ledgerflow.rates.cache import RatesCache
from ledgerflow.rates.price_feed import PriceFeed
from ledgerflow.runtime.announce import Announcer, postman
from ledgerflow.runtime.checks import dependency_checks
from ledgerflow.runtime.metrics import WorkerMetrics
from ledgerflow.runtime.shards import Bridge, ShardIngest
from ledgerflow.runtime.treasury import treasury_forever
from ledgerflow.settings import ConfigError, Settings
from ledgerflow.transactions.batching import BatchingConsumer
from ledgerflow.transactions.publisher import (
    BalancePublisher,
    PostgresBalanceLedger,
    publish_forever,
)
from ledgerflow.transactions.redeliveries import prepare_redeliveries
from ledgerflow.transactions.writer import BatchResult, BatchWriter
from ledgerflow.web.probes import probe_app
from ledgerflow.web.serving import server

log = structlog.get_logger(__name__)
# Seconds between two rounds of the outbox: mail written by another process (the API
# kicks its own at once) and retries that fell due.
MAIL_ROUND_SECONDS = 5.0
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

    def __init__(
        self, settings: Settings, clock: Clock | None = None, tracer: MessageTracer | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.leadership = Leadership(settings.database_url, settings.instance)
        self.retry_delay = 2.0
        self.metrics = WorkerMetrics()
        self.health = Health(checks=dependency_checks(settings))
        self.tracer = tracer or configure_tracing(settings)
        # The console's live feed: every API replica hears what this worker does.
        self.live = KeyDBPublisher(settings.redis_url)
        self.lineage = openlineage_sink(settings)
        self.events: EventSink = (
            self.live if self.lineage is None else Fanout(self.live, self.lineage)
        )
        self.announce = Announcer(
            Notifier(settings.notify_settings(), own_connection(settings.database_url))
        )
        self.postman = postman(settings, own_connection(settings.database_url))
        # LEDGERFLOW_SHARDS: every worker consumes every shard, leader or not.
        self.shards = (
            ShardIngest(settings, self._batch_committed, self.metrics) if settings.shards else None
        )

    def _feeds_detected(self, found: list[Feed]) -> None:
        """Send the new feeds' mails now, and show them in the console."""
        self.postman.kick()
        for feed in found:
            self.live.emit(feed_event(feed.feed_id, feed.state, "ledgerflow"))

    async def _findings_told(self, result: Reconciliation) -> None:
        """Send the mail of the findings a scheduled reconciliation found new (written
        in its transaction)."""
        self.postman.kick()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set and return; raise if a supervised task dies.

        Besides the worker itself this runs its heartbeat and, unless
        LEDGERFLOW_METRICS_PORT is 0, the HTTP endpoints. If any of them ends, the others
        are stopped and the failure propagates, so the process never lingers half-alive.
        """
        settings = self.settings
        http = None
        if settings.metrics_port:
            app = probe_app(self.health, self.metrics.registry)
            http = server(
                app, settings.http_host, settings.metrics_port, settings.trusted_proxy_list
            )
        address = advertised(settings.http_host, settings.metrics_port) if http else None
        record = WorkerRecord(settings.instance, settings.queue, address)
        supervised = [
            asyncio.create_task(self._serve(stop), name="worker"),
            asyncio.create_task(
                heartbeat_forever(settings.database_url, record, self.health), name="heartbeat"
            ),
            asyncio.create_task(self.live.run(), name="live"),
        ]
        if self.shards is not None:
            supervised.append(asyncio.create_task(self.shards.run(), name="shards"))
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
            await self.live.close()
            await self.announce.close()
            if self.lineage is not None:
                await asyncio.to_thread(self.lineage.close)
            if clean:  # a clean stop leaves the registry; a crash stays there, to be seen
                with contextlib.suppress(DatabaseError, psycopg.Error):
                    await forget(settings.database_url, settings.instance)

    async def _serve(self, stop: asyncio.Event) -> None:
        try:
            await self._lead_while_elected(stop)
        finally:
            if self.shards is not None:
                await self.shards.stop()  # commit and acknowledge what the shards received

    async def _lead_while_elected(self, stop: asyncio.Event) -> None:
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
            self.events.emit({"type": "worker", "instance": self.settings.instance, "role": role})
        self.metrics.leader.set(1 if role == "active" else 0)

    async def _lead(self, term: int, stop: asyncio.Event) -> None:
        settings = self.settings
        async with contextlib.AsyncExitStack() as stack:
            ingest_conn = await connect(settings.database_url)
            stack.push_async_callback(ingest_conn.close)
            publish_conn = await connect(settings.database_url)
            stack.push_async_callback(publish_conn.close)
            store = RedisBalanceStore(settings.redis_url)
            stack.push_async_callback(store.close)

            publisher = BalancePublisher(
                PostgresBalanceLedger(publish_conn), store, self.clock, term, settings.instance
            )
            if settings.shards:
                # The shards are every worker's (ShardIngest); the leader bridges the
                # original queue to them.
                bridge = Bridge(settings)
                stack.push_async_callback(bridge.close)
                await bridge.start()
                broker = bridge.broker
                ingesting = bridge.run()

                async def drain() -> None:
                    await bridge.finish()
            else:
                writer = BatchWriter(
                    ingest_conn, settings.queue, settings.instance, term, settings.max_body_bytes
                )
                broker = QueueConsumer(
                    settings.amqp_url,
                    settings.queue,
                    settings.prefetch,
                    self.tracer,
                    fast_path=settings.amqp_fast_path,
                )
                stack.push_async_callback(broker.close)
                consumer = BatchingConsumer(
                    writer,
                    ack=broker.ack,
                    batch_size=settings.batch_size,
                    max_wait=settings.batch_max_wait,
                    on_batch=self._batch_committed,
                    tracer=self.tracer,
                )
                await broker.start(consumer.deliver)
                await prepare_redeliveries(broker, writer)
                await writer.load_rules()  # so that the first batch needs no second attempt
                ingesting = consumer.run()

                async def drain() -> None:
                    log.info("worker.draining", pending=consumer.pending)
                    await broker.stop_consuming()
                    # The commit in progress finishes rather than being cancelled half-way.
                    consumer.finish()

            feed = await self._price_feed(stack)
            log.info("worker.active", term=term, queue=settings.queue)
            letters = settings.feed_letters()

            tasks = {
                asyncio.create_task(self.leadership.watch(), name="leadership"),
                asyncio.create_task(ingesting, name="ingest"),
                asyncio.create_task(self._publish_forever(publisher), name="publish"),
                asyncio.create_task(broker.closed(), name="broker"),
                asyncio.create_task(self._watch_backlog(broker), name="backlog"),
                asyncio.create_task(
                    detect_forever(
                        settings.database_url,
                        settings.feeds_detect_interval,
                        letters,
                        on_new=self._feeds_detected,
                        external=settings.feeds_load_log(),
                    ),
                    name="feeds",
                ),
                asyncio.create_task(
                    reconcile_forever(
                        settings.database_url,
                        settings.feeds_reconcile_interval,
                        self._findings_told,
                        external=settings.feeds_load_log(),
                        tell=lambda conn, new: tell_findings(conn, new, letters),
                    ),
                    name="reconcile",
                ),
                asyncio.create_task(self.postman.forever(MAIL_ROUND_SECONDS), name="outbox"),
            }
            if feed is not None:
                tasks.add(asyncio.create_task(feed.run(), name="prices"))
            if settings.treasury:
                tasks.add(
                    asyncio.create_task(
                        treasury_forever(settings, self.live, self.announce.lcr_level),
                        name="treasury",
                    )
                )
            stopping = asyncio.create_task(stop.wait(), name="stop")
            try:
                done, _ = await asyncio.wait(
                    {*tasks, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                if stopping in done:
                    await drain()
                    await next(t for t in tasks if t.get_name() == "ingest")
                    log.info("worker.drained")
                    return
                for task in done:
                    task.result()  # raises the failure that ended leadership
                raise RuntimeError(f"task {next(iter(done)).get_name()} ended unexpectedly")
            finally:
                for task in (*tasks, stopping):
                    task.cancel()
                await asyncio.gather(*tasks, stopping, return_exceptions=True)

    async def _publish_forever(self, publisher: BalancePublisher) -> None:
        schedule = BoundarySchedule(self.settings.publish_interval, self.clock)
        await publish_forever(
            publisher,
            schedule,
            self.metrics.ingest,
            self.health,
            self.tracer,
            self.events,
            on_failure=lambda error: self.announce.publishing_stopped(
                self.settings.instance, error
            ),
        )

    async def _price_feed(self, stack: contextlib.AsyncExitStack) -> PriceFeed | None:
        """Price batches from their queue, while this worker leads (see rates.price_feed),
        if a queue is configured and the database has the rates tables."""
        settings = self.settings
        if not settings.price_batch_queue:
            return None
        conn = await connect(settings.database_url)
        stack.push_async_callback(conn.close)
        rates_installed = "rates" in await installed_domains(conn)
        await conn.rollback()
        if not rates_installed:
            log.info(
                "worker.price_feed_off",
                queue=settings.price_batch_queue,
                reason="this database has no rates tables (ledgerflow migrate --rates adds them)",
            )
            return None
        cache = RatesCache.from_url(settings.cache_url)
        stack.push_async_callback(cache.close)
        broker = QueueConsumer(
            settings.amqp_url,
            settings.price_batch_queue,
            1,
            ledger=False,
            fast_path=settings.amqp_fast_path,
        )
        stack.push_async_callback(broker.close)
        return PriceFeed(conn, broker, on_commit=cache.invalidate)

    async def _watch_backlog(self, broker: QueueConsumer, every: float = 5.0) -> None:
        while True:
            self.metrics.ingest.backlog.set(await broker.backlog())
            await asyncio.sleep(every)

    def _batch_committed(self, result: BatchResult, seconds: float) -> None:
        self.metrics.ingest.batch(result, seconds)
        self.events.emit(
            {
                "type": "batch",
                "queue": self.settings.queue,
                "batch_id": result.batch_id,
                "stored": result.stored,
                "rejected": result.rejected,
                "duplicates": result.duplicates,
                "redelivered": result.redelivered,
                "filtered": result.filtered,
                "commit_ms": round(seconds * 1000, 1),
            }
        )
        if result.rejected:
            self.events.emit(
                {
                    "type": "rejected",
                    "queue": self.settings.queue,
                    "batch_id": result.batch_id,
                    "count": result.rejected,
                    "reasons": dict(result.rejected_by_reason),
                }
            )
        log.debug(
            "batch.committed",
            batch_id=result.batch_id,
            stored=result.stored,
            rejected=result.rejected,
            duplicates=result.duplicates,
            redelivered=result.redelivered,
            filtered=result.filtered,
            commit_ms=round(seconds * 1000, 1),
        )
        if result.rejected:
            log.info(
                "batch.rejected_messages",
                batch_id=result.batch_id,
                reasons=dict(result.rejected_by_reason),
            )


def openlineage_sink(settings: Settings) -> Any:
    """The OpenLineage sink, when LEDGERFLOW_OPENLINEAGE_URL is set (its client is an
    optional extra, imported only then)."""
    if not settings.openlineage_url:
        return None
    try:
        from ledgerflow.lineage.openlineage import Datasets, OpenLineageSink
    except ImportError:
        raise ConfigError(
            "LEDGERFLOW_OPENLINEAGE_URL is set but the OpenLineage client is not installed:"
            " pip install 'ledgerflow[openlineage]'"
        ) from None
    return OpenLineageSink(
        settings.openlineage_url,
        settings.openlineage_namespace,
        Datasets.from_urls(settings.amqp_url, settings.database_url, settings.redis_url),
    )


def advertised(host: str, port: int) -> str:
    """Where others reach this worker's endpoints (for `ledgerflow status`): the address it
    listens on, or its host name when it listens on every interface."""
    if host in ("0.0.0.0", "::", ""):
        return f"{socket.gethostname()}:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _dependency(error: BaseException) -> str:
    if isinstance(error, BrokerError):
        return "rabbitmq"
    if isinstance(error, LeadershipLost):
        return "leadership"
    return "postgres"


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
