"""Sharded ingestion in the worker (LEDGERFLOW_SHARDS; messaging/shards.py has the
topology): every worker consumes every shard, RabbitMQ makes one consumer active per
shard, and the database fences it with the shard's term (cluster/shards.py). Each shard
is a queue of its own with every guarantee of docs/delivery.md: commit then acknowledge
with its own marker, redeliveries recognised, one writer by term. The leader also runs the
bridge from the original queue to the shards."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pika
import psycopg
import structlog

from ledgerflow.cluster.leadership import LeadershipLost
from ledgerflow.cluster.registry import HEARTBEAT_EVERY, workers
from ledgerflow.cluster.shards import (
    claim_shard_count,
    shard_fence,
    shard_terms,
    take_shard_term,
)
from ledgerflow.db.connections import DatabaseError, connect
from ledgerflow.messaging.delivery import Delivery
from ledgerflow.messaging.rabbitmq import BrokerError, QueueConsumer, connection_parameters
from ledgerflow.messaging.shards import (
    MARKER_ARGUMENTS,
    SHARD_ARGUMENTS,
    ensure_shards,
    exchange_for,
    routing_key,
    shard_queue,
)
from ledgerflow.runtime.metrics import WorkerMetrics
from ledgerflow.settings import Settings
from ledgerflow.transactions.batching import BatchingConsumer
from ledgerflow.transactions.redeliveries import prepare_redeliveries
from ledgerflow.transactions.writer import BatchResult, BatchWriter, Prepared

log = structlog.get_logger(__name__)
RECOVERABLE = (
    LeadershipLost,
    DatabaseError,
    BrokerError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)
RETRY_SECONDS = 1.0
REBALANCE_EVERY = 5.0  # seconds between two looks at how many shards this worker holds
STAGGER_SECONDS = 0.5  # between a worker's consumers of its first shard and the next ones


def declare_topology(url: str, queue: str, shards: int) -> None:
    """Declare the exchange and the shards, over a short blocking connection; refuse
    (MoreShardsThanConfigured) when more exist."""
    connection = None
    try:
        connection = pika.BlockingConnection(connection_parameters(url))
        ensure_shards(connection, queue, shards)
    except pika.exceptions.AMQPError as exc:
        raise BrokerError(f"RabbitMQ: cannot declare the shards: {exc!r}") from exc
    finally:
        if connection is not None and connection.is_open:
            connection.close()


async def agree_on_shards(settings: Settings) -> None:
    """The queue's number of shards, claimed or checked in the database: workers started
    together agree on it; one configured otherwise raises ShardCountMismatch."""
    conn = await connect(settings.database_url)
    async with conn:
        await claim_shard_count(conn, settings.queue, settings.shards)


class ShardWriter:
    """One shard's BatchWriter, made active by its first batch: RabbitMQ delivers to one
    consumer per shard, so a batch means this worker is that consumer. Then, before writing
    anything, it takes the shard's term (waiting for a batch of the previous consumer still
    in flight), learns which committed messages come back (the shard's marker), and loads
    the rules."""

    def __init__(
        self,
        writer: BatchWriter,
        broker: QueueConsumer,
        conn: psycopg.AsyncConnection[Any],
        queue: str,
        instance: str,
    ) -> None:
        self._writer = writer
        self._broker = broker
        self._conn = conn
        self._queue = queue
        self._instance = instance
        self.term: int | None = None

    def prepare(self, delivery: Delivery) -> Prepared:
        return self._writer.prepare(delivery)

    async def write(self, items: Sequence[Prepared | Delivery]) -> BatchResult:
        if self.term is None:
            term = await take_shard_term(self._conn, self._queue, self._instance)
            self._writer.term = term
            await prepare_redeliveries(self._broker, self._writer)
            await self._writer.load_rules()
            self.term = term
            log.info("shard.active", queue=self._queue, term=term, instance=self._instance)
        return await self._writer.write(items)


class ShardIngest:
    """Every shard consumed by this worker, each retried on its own after a failure."""

    def __init__(
        self,
        settings: Settings,
        on_batch: Callable[[BatchResult, float], None] | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.on_batch = on_batch
        self.metrics = metrics
        self.active: dict[str, int] = {}  # shard queue -> term, while this worker is active
        self._stop = asyncio.Event()
        self._draining: list[Callable[[], Any]] = []
        self._release: dict[str, asyncio.Event] = {}

    async def run(self) -> None:
        """Until cancelled or ``stop``: declare the shards, then consume every one."""
        settings = self.settings
        while True:
            try:
                await agree_on_shards(settings)
                await asyncio.to_thread(
                    declare_topology, settings.amqp_url, settings.queue, settings.shards
                )
                break
            except (BrokerError, DatabaseError, psycopg.OperationalError) as exc:
                log.warning("shards.declare_failed", error=str(exc))
                await asyncio.sleep(RETRY_SECONDS * 2)
        rebalancing = asyncio.create_task(self._rebalance_forever(), name="shards:rebalance")
        try:
            # Each worker comes first to a shard of its own (by its name), to the others a
            # little later: workers started together mostly spread at once, and
            # rebalancing does the rest.
            first = zlib.crc32(settings.instance.encode()) % settings.shards
            await asyncio.gather(
                *(
                    self._shard_forever(
                        shard_queue(settings.queue, n),
                        delay=STAGGER_SECONDS * ((n - first) % settings.shards),
                    )
                    for n in range(settings.shards)
                )
            )
        finally:
            rebalancing.cancel()
        await asyncio.Event().wait()  # stopped: the worker ends this task when it ends

    async def _rebalance_forever(self) -> None:
        """RabbitMQ makes the first consumer to come active on a shard and keeps it there,
        so the first worker up would keep every shard. Every few seconds a worker holding
        more than its share (the shards over the live workers, rounded up), while a live
        worker holds less, lets the excess go: it commits and acknowledges what it holds,
        gives the shard up and consumes it again, now behind the others, and RabbitMQ makes
        the next waiting worker active. A worker is live while its heartbeat is fresh."""
        while True:
            await asyncio.sleep(REBALANCE_EVERY)
            try:
                conn = await connect(self.settings.database_url, autocommit=True)
                async with conn:
                    registered = await workers(conn)
                    terms = await shard_terms(conn)
            except (DatabaseError, psycopg.Error) as exc:
                log.warning("shards.rebalance_skipped", error=str(exc))
                continue
            for queue in self.excess(registered, terms):
                log.info("shard.released", queue=queue, held=len(self.active))
                self._release.setdefault(queue, asyncio.Event()).set()

    def excess(self, registered: list[dict[str, Any]], terms: list[dict[str, Any]]) -> list[str]:
        """The shards this worker should let go, given the registry and the shards' holders."""
        live = {w["instance"] for w in registered if w["heartbeat_age"] < 1.5 * HEARTBEAT_EVERY}
        live.add(self.settings.instance)
        share = -(-self.settings.shards // len(live))
        held = Counter(t["instance"] for t in terms if t["instance"] in live)
        if len(self.active) <= share or min(held.get(w, 0) for w in live) >= share:
            return []
        return sorted(self.active)[share:]

    async def stop(self) -> None:
        """Stop taking messages, commit and acknowledge what each shard received."""
        self._stop.set()
        await asyncio.gather(*(drain() for drain in self._draining), return_exceptions=True)

    async def _shard_forever(self, queue: str, delay: float = 0.0) -> None:
        await asyncio.sleep(delay)
        while not self._stop.is_set():
            try:
                await self._consume(queue)
            except RECOVERABLE as exc:
                log.warning("shard.interrupted", queue=queue, error=str(exc))
            finally:
                self.active.pop(queue, None)
            if not self._stop.is_set() and not self._released(queue):
                await asyncio.sleep(RETRY_SECONDS)

    def _released(self, queue: str) -> bool:
        """Whether ``queue`` was just given up (to be consumed again at once)."""
        release = self._release.get(queue)
        return release is not None and release.is_set()

    async def _consume(self, queue: str) -> None:
        settings = self.settings
        async with contextlib.AsyncExitStack() as stack:
            conn = await connect(settings.database_url)
            stack.push_async_callback(conn.close)
            broker = QueueConsumer(
                settings.amqp_url,
                queue,
                settings.prefetch,
                fast_path=settings.amqp_fast_path,
                queue_arguments=SHARD_ARGUMENTS,
                exclusive=False,
                marker_arguments=MARKER_ARGUMENTS,
            )
            stack.push_async_callback(broker.close)
            writer = ShardWriter(
                BatchWriter(
                    conn,
                    queue,
                    settings.instance,
                    0,  # no term until RabbitMQ makes this consumer the active one
                    settings.max_body_bytes,
                    fence=shard_fence(queue),
                ),
                broker,
                conn,
                queue,
                settings.instance,
            )

            def committed(result: BatchResult, seconds: float) -> None:
                if writer.term is not None:
                    self.active[queue] = writer.term
                if self.metrics is not None:
                    self.metrics.shard_active.labels(queue).set(1)
                    for outcome in ("stored", "rejected", "duplicates", "redelivered", "filtered"):
                        count = getattr(result, outcome)
                        if count:
                            self.metrics.shard_messages.labels(queue, outcome).inc(count)
                if self.on_batch is not None:
                    self.on_batch(result, seconds)

            consumer = BatchingConsumer(
                writer,
                ack=broker.ack,
                batch_size=settings.batch_size,
                max_wait=settings.batch_max_wait,
                on_batch=committed,
            )
            accepting = True

            def deliver(delivery: Delivery) -> None:
                if accepting:
                    consumer.deliver(delivery)
                # else: left unacknowledged, it goes back to the shard when the connection
                # closes, ahead of what the next consumer gets

            await broker.start(deliver)
            ingest = asyncio.create_task(consumer.run(), name=f"shard:{queue}")
            closed = asyncio.create_task(broker.closed(), name=f"shard-broker:{queue}")

            async def drain() -> None:
                # Never basic.cancel: RabbitMQ would make the next consumer active while
                # this one still commits, and a provider's messages could be stored out of
                # order. Still the active consumer, it commits and acknowledges what it
                # took, takes nothing more, then closes: what it did not take goes back to
                # the head of the shard, and only then does RabbitMQ move the shard.
                nonlocal accepting
                accepting = False
                consumer.finish()
                await asyncio.wait({ingest})
                await broker.close()

            self._draining.append(drain)
            if self._stop.is_set():  # stopped while this consumer was starting
                self._draining.remove(drain)
                await drain()
                return
            release = self._release.setdefault(queue, asyncio.Event())
            release.clear()
            releasing = asyncio.create_task(release.wait(), name=f"shard-release:{queue}")
            try:
                done, _ = await asyncio.wait(
                    {ingest, closed, releasing}, return_when=asyncio.FIRST_COMPLETED
                )
                if releasing in done and not ingest.done():
                    await drain()  # what it took committed and acknowledged, then given up
                    return
                for task in done:
                    task.result()
            finally:
                self._draining.remove(drain)
                self.active.pop(queue, None)
                if self.metrics is not None:
                    self.metrics.shard_active.labels(queue).set(0)
                for task in (ingest, closed, releasing):
                    task.cancel()
                await asyncio.gather(ingest, closed, releasing, return_exceptions=True)


class BridgeRefused(Exception):
    """The original queue holds committed, unacknowledged messages: bridged, they would be
    stored twice. Says what to do."""


class Bridge:
    """The original queue forwarded to the shards, by the leader: each batch of
    deliveries published to the exchange (keyed by provider) and acknowledged in one
    RabbitMQ transaction, in the queue's order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.forwarded = 0
        self._deliveries: asyncio.Queue[Delivery] = asyncio.Queue()
        self._finishing = asyncio.Event()
        self.broker = QueueConsumer(
            settings.amqp_url,
            settings.queue,
            settings.prefetch,
            fast_path=settings.amqp_fast_path,
        )

    async def start(self) -> None:
        """Declare the shards, become the original queue's exclusive consumer, and refuse
        (BridgeRefused) when batches committed from it were never acknowledged (a
        one-queue worker killed before its acknowledgement): RabbitMQ delivers them again,
        and only a one-queue worker recognises them."""
        settings = self.settings
        await agree_on_shards(settings)
        await asyncio.to_thread(
            declare_topology, settings.amqp_url, settings.queue, settings.shards
        )
        await self.broker.start(self._deliveries.put_nowait)
        acknowledged = await self.broker.last_acknowledged()
        if acknowledged is None:
            return  # never consumed by a one-queue worker, or the marker is gone
        conn = await connect(settings.database_url)
        async with conn:
            writer = BatchWriter(
                conn, settings.queue, settings.instance, 0, settings.max_body_bytes
            )
            unacknowledged = await writer.expect_redeliveries(acknowledged)
        if unacknowledged:
            raise BridgeRefused(
                f"{unacknowledged} messages of {settings.queue} were committed and never"
                " acknowledged (a worker without shards stopped before acknowledging them):"
                " run a worker without LEDGERFLOW_SHARDS until it leads and has taken them,"
                " stop it, then start the sharded workers"
            )

    async def run(self) -> None:
        """Forward batches until ``finish`` (then what was received) or a failure."""
        settings = self.settings
        while True:
            if self._finishing.is_set() and self._deliveries.empty():
                return
            getting = asyncio.create_task(self._deliveries.get())
            finishing = asyncio.create_task(self._finishing.wait())
            done, _ = await asyncio.wait({getting, finishing}, return_when=asyncio.FIRST_COMPLETED)
            finishing.cancel()
            if getting not in done:
                getting.cancel()
                continue
            batch = [getting.result()]
            deadline = asyncio.get_running_loop().time() + settings.batch_max_wait
            while len(batch) < settings.batch_size:
                if not self._deliveries.empty():
                    batch.append(self._deliveries.get_nowait())
                    continue
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0 or self._finishing.is_set():
                    break
                try:
                    batch.append(await asyncio.wait_for(self._deliveries.get(), left))
                except TimeoutError:
                    break
            exchange = exchange_for(settings.queue)
            await self.broker.forward(
                batch[-1].tag,
                [(exchange, routing_key(d.body), d.body, d.properties) for d in batch],
            )
            self.forwarded += len(batch)

    async def finish(self) -> None:
        """Stop taking messages; ``run`` forwards what was received, then returns."""
        await self.broker.stop_consuming()
        self._finishing.set()

    async def close(self) -> None:
        await self.broker.close()
