"""RabbitMQ: consuming a queue with pika's asyncio adapter.

pika parses frames several times faster than the pure-asyncio clients (see
docs/design.md for the measurements), and its asyncio adapter runs on ledgerflow's own
event loop, so deliveries reach the batcher without crossing threads. Unless
LEDGERFLOW_AMQP_FAST_PATH is off, deliveries themselves are read straight from the frames
(fast_path.py, the one module that knows pika's internals); pika does everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pika
import pika.channel
import pika.exceptions
import pika.spec
from pika.adapters.asyncio_connection import AsyncioConnection

from ledgerflow.core.tracing import MessageTracer
from ledgerflow.messaging import fast_path
from ledgerflow.messaging.delivery import Delivery
from ledgerflow.messaging.queue import DeliveryHandler


class BrokerError(Exception):
    """RabbitMQ is unreachable, refused an operation, or closed the connection."""


def connection_parameters(url: str) -> pika.URLParameters:
    """pika parameters for ``url`` with ledgerflow's timeouts and client name."""
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 10
    params.blocked_connection_timeout = 60
    params.client_properties = {"connection_name": "ledgerflow"}
    return params


def _describe(reason: object) -> str:
    if isinstance(
        reason, pika.exceptions.ChannelClosedByBroker | pika.exceptions.ConnectionClosedByBroker
    ):
        return f"{reason.reply_code} {reason.reply_text}"
    text = str(reason)
    if isinstance(reason, pika.exceptions.AMQPConnectionError) and reason.args:
        text = str(reason.args[0])  # the connection workflow's own account of the failure
    return text or repr(reason)


def _retrieve(future: asyncio.Future[Any]) -> None:
    # A failure nobody waits for any more (the worker is shutting down) is not news.
    if not future.cancelled():
        future.exception()


def _close_once_opened(connection: AsyncioConnection, opened: asyncio.Future[Any]) -> None:
    """Close ``connection`` now if it is open, or as soon as it has finished opening.

    pika cannot safely abandon a connection half-way through opening: closing it then may
    leave its socket open. So a connection whose opener gave up is allowed to finish
    opening, then closed; one that fails to open closes itself.
    """

    def close(_opened: object) -> None:
        if connection.is_open:
            connection.close()

    if opened.done():
        close(opened)
    else:
        opened.add_done_callback(close)


def marker_queue(queue: str) -> str:
    """The queue holding the id of the last batch of ``queue`` RabbitMQ acknowledged."""
    return f"ledgerflow.acked.{queue}"


class QueueConsumer:
    """Consumes one queue as its exclusive consumer, handing each delivery to a handler
    (the Queue port of ledgerflow.messaging.queue).

    The queue is declared as the original producer declares it (durable, no arguments),
    so it can exist before ledgerflow starts. The consumer is exclusive: RabbitMQ itself
    refuses a second consumer on the queue while this one lives.

    The channel is transactional: each batch's acknowledgement is committed together with
    a persistent marker naming the batch, in ledgerflow's own one-message queue. After a
    crash the next leader reads the marker and knows exactly which committed batches
    RabbitMQ has not seen acknowledged, and so which redeliveries to recognise.
    """

    def __init__(
        self,
        url: str,
        queue: str,
        prefetch: int,
        tracer: MessageTracer | None = None,
        ledger: bool = True,
        fast_path: bool = True,
        queue_arguments: dict[str, Any] | None = None,
        exclusive: bool | None = None,
        marker_arguments: dict[str, Any] | None = None,
    ) -> None:
        # ledger=False: a plain, shared consumer acknowledging one message at a time, for
        # queues whose messages carry their own identity (price batches).
        # A shard (messaging/shards.py): its queue's arguments (quorum, a single active
        # consumer), not exclusive, its marker a quorum queue.
        self._ledger = ledger
        self._queue_arguments = queue_arguments
        self._exclusive = ledger if exclusive is None else exclusive
        self._marker_arguments = marker_arguments or {"x-max-length": 1}
        self._fast_path = fast_path
        self._params = connection_parameters(url)
        self._queue = queue
        self._marker_queue = marker_queue(queue)
        self._prefetch = prefetch
        self._on_delivery: DeliveryHandler | None = None
        self._tracer = tracer if tracer is not None and tracer.enabled else None
        self._connection: AsyncioConnection | None = None
        self._channel: pika.channel.Channel | None = None
        self._consumer_tag: str | None = None
        self._waiting: set[asyncio.Future[Any]] = set()
        self._closed: asyncio.Future[None] | None = None
        self._opened: asyncio.Future[Any] | None = None
        self._closing = False
        # One synchronous method at a time on the channel: RabbitMQ closes a transactional
        # channel that gets, say, a basic.cancel or a queue.declare while it commits
        # ("unexpected command while processing 'tx.commit'").
        self._rpc = asyncio.Lock()

    @property
    def queue(self) -> str:
        """The queue consumed."""
        return self._queue

    async def start(self, on_delivery: DeliveryHandler) -> None:
        """Connect, declare the queue and start handing deliveries to ``on_delivery``;
        raise BrokerError on failure."""
        loop = asyncio.get_running_loop()
        self._on_delivery = on_delivery
        self._closed = loop.create_future()
        self._closed.add_done_callback(_retrieve)
        opened = self._opened = self._future()
        connection_class = fast_path.connection_class() if self._fast_path else AsyncioConnection
        self._connection = connection_class(
            self._params,
            on_open_callback=lambda conn: self._resolve(opened, conn),
            on_open_error_callback=lambda _conn, err: self._fail_all(err),
            on_close_callback=lambda _conn, reason: self._fail_all(reason),
            custom_ioloop=loop,
        )
        await asyncio.shield(opened)  # if start() is cancelled, close() waits for it
        channel_opened: asyncio.Future[Any] = self._future()
        self._connection.channel(on_open_callback=lambda ch: self._resolve(channel_opened, ch))
        self._channel = await channel_opened
        self._channel.add_on_close_callback(lambda _ch, reason: self._fail_all(reason))
        self._channel.add_on_cancel_callback(self._cancelled_by_broker)
        await self._call(
            self._channel.queue_declare,
            queue=self._queue,
            durable=True,
            arguments=self._queue_arguments,
        )
        if self._ledger:
            await self._call(
                self._channel.queue_declare,
                queue=self._marker_queue,
                durable=True,
                arguments=self._marker_arguments,  # the newest marker is the one that matters
            )
            await self._call(self._channel.tx_select)
        await self._call(self._channel.basic_qos, prefetch_count=self._prefetch)
        consumed: asyncio.Future[Any] = self._future()
        self._consumer_tag = self._channel.basic_consume(
            self._queue,
            self._on_message,
            auto_ack=False,
            exclusive=self._exclusive,
            callback=lambda frame: self._resolve(consumed, frame),
        )
        if isinstance(self._connection, fast_path.DirectDeliveryConnection):
            self._connection.deliver_directly(self._channel, self._consumer_tag, self._on_direct)
        await consumed

    async def ack(self, delivery_tag: int, batch_id: int) -> None:
        """Acknowledge every delivery up to ``delivery_tag`` as batch ``batch_id``, atomically
        with the marker naming the batch; return once RabbitMQ has committed both."""
        async with self._rpc:
            channel = self._open_channel()
            channel.basic_ack(delivery_tag, multiple=True)
            await self._commit_marker(channel, batch_id)

    async def forward(
        self, delivery_tag: int, publishes: list[tuple[str, str, bytes, Any]]
    ) -> None:
        """Publish ``publishes`` (exchange, routing key, body, properties) and acknowledge
        every delivery up to ``delivery_tag``, in one RabbitMQ transaction: after a crash
        either all of it happened or none of it (the bridge to the shards)."""
        async with self._rpc:
            channel = self._open_channel()
            for exchange, key, body, properties in publishes:
                channel.basic_publish(exchange, key, body, properties)
            channel.basic_ack(delivery_tag, multiple=True)
            await self._call(channel.tx_commit)

    def ack_one(self, delivery_tag: int) -> None:
        """Acknowledge one delivery (consumers made with ``ledger=False``)."""
        self._open_channel().basic_ack(delivery_tag)

    async def mark_acknowledged(self, batch_id: int) -> None:
        """Set the marker to ``batch_id`` without acknowledging anything."""
        async with self._rpc:
            await self._commit_marker(self._open_channel(), batch_id)

    async def backlog(self) -> int:
        """Messages ready in the queue (not counting those delivered and not yet acked)."""
        async with self._rpc:
            frame = await self._call(
                self._open_channel().queue_declare, queue=self._queue, passive=True
            )
        return int(frame.method.message_count)

    async def last_acknowledged(self) -> int | None:
        """The batch id in the marker, or None when there is no marker.

        Call it after ``start``: the consumer is exclusive, so no previous leader's
        channel can still commit a marker.
        """
        assert self._connection is not None, "start() first"
        opened: asyncio.Future[Any] = self._future()
        self._connection.channel(on_open_callback=lambda ch: self._resolve(opened, ch))
        peek: pika.channel.Channel = await opened
        got: asyncio.Future[Any] = self._future()
        peek.add_callback(lambda _frame: self._resolve(got, None), [pika.spec.Basic.GetEmpty])
        peek.basic_get(
            self._marker_queue,
            lambda _ch, _method, _props, body: self._resolve(got, body),
            auto_ack=False,
        )
        body = await got
        closed: asyncio.Future[Any] = self._future()
        peek.add_on_close_callback(lambda _ch, _reason: self._resolve(closed, None))
        peek.close()  # the unacknowledged marker stays in its queue
        await closed
        return None if body is None else int(body)

    async def _commit_marker(self, channel: pika.channel.Channel, batch_id: int) -> None:
        channel.basic_publish(
            "",
            self._marker_queue,
            str(batch_id).encode(),
            pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
        )
        await self._call(channel.tx_commit)

    def _cancelled_by_broker(self, _frame: Any) -> None:
        # RabbitMQ ends a consumption itself when its queue is deleted, or on failover.
        self._consumer_tag = None
        self._stop_direct_delivery()
        self._fail_all(f"cancelled the consumer of {self._queue} (was the queue deleted?)")

    def _open_channel(self) -> pika.channel.Channel:
        if self._channel is None or not self._channel.is_open:
            raise BrokerError("cannot acknowledge: the channel is closed")
        return self._channel

    async def stop_consuming(self) -> None:
        """Ask RabbitMQ to stop delivering; deliveries already received stay ours to ack."""
        if self._channel is not None and self._channel.is_open and self._consumer_tag:
            tag, self._consumer_tag = self._consumer_tag, None
            self._stop_direct_delivery()
            async with self._rpc:  # after an acknowledgement in flight has committed
                if self._channel is not None and self._channel.is_open:
                    await self._call(self._channel.basic_cancel, consumer_tag=tag)

    def _stop_direct_delivery(self) -> None:
        if isinstance(self._connection, fast_path.DirectDeliveryConnection):
            self._connection.stop_direct_delivery()

    async def closed(self) -> None:
        """Wait until the connection closes unexpectedly, then raise BrokerError."""
        assert self._closed is not None, "start() first"
        await self._closed

    async def close(self) -> None:
        """Close the connection; unacknowledged deliveries go back to the queue."""
        self._closing = True
        connection, self._connection = self._connection, None
        if connection is None or connection.is_closed:
            return
        done: asyncio.Future[Any] = self._future()
        if not connection.is_closing and self._opened is not None:
            _close_once_opened(connection, self._opened)
        with contextlib.suppress(BrokerError, TimeoutError):
            async with asyncio.timeout(5):
                await done

    def _on_message(
        self,
        _channel: pika.channel.Channel,
        method: pika.spec.Basic.Deliver,
        props: pika.spec.BasicProperties,
        body: bytes,
    ) -> None:
        # Deliveries pika assembled itself: all of them without the fast path, else the
        # rare ones the fast path leaves to it.
        self._hand_over(body, method.delivery_tag, method.redelivered, props, datetime.now(UTC))

    def _on_direct(self, raw: fast_path.RawDelivery, received_at: datetime) -> None:
        self._hand_over(raw.body, raw.tag, raw.redelivered, raw.properties, received_at)

    def _hand_over(
        self,
        body: bytes,
        tag: int,
        redelivered: bool,
        props: pika.spec.BasicProperties,
        received_at: datetime,
    ) -> None:
        trace = None
        if self._tracer is not None:
            trace = self._tracer.received(
                props.headers,
                {
                    "messaging.system": "rabbitmq",
                    "messaging.destination.name": self._queue,
                    "messaging.message.id": props.message_id or "",
                    "messaging.rabbitmq.delivery_tag": tag,
                },
            )
        delivery = Delivery(body, tag, redelivered, received_at, props.message_id, props, trace)
        assert self._on_delivery is not None, "start() first"
        self._on_delivery(delivery)

    def _future(self) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.add(future)
        future.add_done_callback(self._waiting.discard)
        future.add_done_callback(_retrieve)
        return future

    async def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        done = self._future()
        try:
            method(callback=lambda frame: self._resolve(done, frame), **kwargs)
        except pika.exceptions.AMQPError as exc:  # e.g. the channel closed a moment ago
            done.cancel()
            raise BrokerError(f"RabbitMQ: {_describe(exc)}") from exc
        return await done

    @staticmethod
    def _resolve(future: asyncio.Future[Any], value: Any) -> None:
        if not future.done():
            future.set_result(value)

    def _fail_all(self, reason: object) -> None:
        error = BrokerError(f"RabbitMQ: {_describe(reason)}")
        for future in list(self._waiting):
            if not future.done():
                future.set_exception(error)
        if self._closed is not None and not self._closed.done():
            if self._closing:
                self._closed.set_result(None)
            else:
                self._closed.set_exception(error)


async def ping(url: str) -> None:
    """Open a connection to RabbitMQ and close it; raise BrokerError if that fails."""
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[Any] = loop.create_future()
    closed: asyncio.Future[Any] = loop.create_future()
    opened.add_done_callback(_retrieve)

    def settle(future: asyncio.Future[Any], value: Any) -> None:
        if not future.done():
            future.set_result(value)

    def fail(error: object) -> None:
        if not opened.done():
            opened.set_exception(BrokerError(f"RabbitMQ: {_describe(error)}"))
        settle(closed, None)

    connection = AsyncioConnection(
        connection_parameters(url),
        on_open_callback=lambda conn: settle(opened, conn),
        on_open_error_callback=lambda _conn, err: fail(err),
        on_close_callback=lambda _conn, reason: fail(reason),
        custom_ioloop=loop,
    )
    try:
        await asyncio.shield(opened)
    except asyncio.CancelledError:
        _close_once_opened(connection, opened)  # in the background: the caller gave up
        raise
    connection.close()
    await closed


def queue_backlog(url: str, queue: str) -> int | None:
    """Messages ready in ``queue``, asked over a short blocking connection; None when
    RabbitMQ does not answer or the queue does not exist."""
    try:
        connection = pika.BlockingConnection(connection_parameters(url))
    except pika.exceptions.AMQPError:
        return None
    try:
        frame = connection.channel().queue_declare(queue, passive=True)
        return int(frame.method.message_count)
    except pika.exceptions.AMQPError:
        return None
    finally:
        if connection.is_open:
            connection.close()
