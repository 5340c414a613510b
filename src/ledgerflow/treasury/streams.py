"""Where trades come from: streams of messages with offsets, behind a small port.

``StreamSource`` is what the treasury needs of a log-structured broker: whether a stream
exists, and its messages from an offset on, each with its offset. ``RabbitStreams`` is
the adapter on RabbitMQ streams (the ``rabbitmq_stream`` plugin, port 5552, through
rstream). ledgerflow keeps the offsets itself, in PostgreSQL, in the transaction that
stores what the messages produced; the broker's own offset tracking is not used, so a
crash resumes exactly after the last commit.

A Kafka adapter would implement the same port: ``exists`` from the topic's metadata,
``read`` as a consumer assigned the topic's partitions (one stream per partition, named
``topic/partition``) seeking to the stored offset, with ``enable.auto.commit`` off since
the offsets live in PostgreSQL; and ``StreamSink.send`` as an idempotent producer
(``enable.idempotence``, ``acks=all``) with ``linger.ms`` and ``batch.size`` tuned for
throughput. Nothing above the port changes (docs/treasury.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from rstream import (
    ConfirmationStatus,
    ConsumerOffsetSpecification,
    MessageContext,
    OffsetType,
)
from rstream import Consumer as RstreamConsumer
from rstream import Producer as RstreamProducer

from ledgerflow.core import ConfigError

DEFAULT_URL = "rabbitmq-stream://guest:guest@127.0.0.1:5552/%2F"
BUFFER = 1000  # messages read ahead of the writer, per stream


class StreamError(Exception):
    """The broker did not take what was sent."""


@dataclass(frozen=True)
class StreamMessage:
    """One message of a stream, with its offset (the next one to read is offset + 1)."""

    stream: str
    offset: int
    body: bytes
    timestamp: datetime | None = None


class StreamSource(Protocol):
    """Streams to read from an offset on."""

    async def exists(self, stream: str) -> bool:
        """Whether ``stream`` exists."""
        ...

    def read(self, stream: str, offset: int) -> AsyncGenerator[StreamMessage, None]:
        """The messages of ``stream`` from ``offset`` on, as they come, until cancelled."""
        ...

    async def close(self) -> None:
        """Release the connections."""
        ...


class StreamSink(Protocol):
    """Streams to append to."""

    async def create(self, stream: str) -> None:
        """Create ``stream`` unless it exists."""
        ...

    async def send(self, stream: str, bodies: list[bytes]) -> None:
        """Append ``bodies`` to ``stream``, in order, confirmed by the broker."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


@dataclass(frozen=True)
class StreamServer:
    """A RabbitMQ stream endpoint, from ``rabbitmq-stream://user:password@host:port/vhost``."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    vhost: str = "/"

    @classmethod
    def from_url(cls, url: str, variable: str = "LEDGERFLOW_STREAM_URL") -> StreamServer:
        """The endpoint of ``url``; ConfigError naming ``variable`` when it is not one."""
        try:
            parts = urlsplit(url)
            port = parts.port or 5552
        except ValueError:
            raise ConfigError(f"{variable}: not a URL with a valid port") from None
        if parts.scheme not in ("rabbitmq-stream", "rabbitmq-stream+tls"):
            raise ConfigError(f"{variable}: the scheme must be rabbitmq-stream")
        if not parts.hostname:
            raise ConfigError(f"{variable}: no host")
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        return cls(
            parts.hostname,
            port,
            unquote(parts.username or "guest"),
            unquote(parts.password or "guest"),
            vhost,
        )


class RabbitStreams:
    """``StreamSource`` and ``StreamSink`` on RabbitMQ streams (rstream)."""

    def __init__(self, server: StreamServer) -> None:
        self.server = server
        self._consumer: RstreamConsumer | None = None
        self._producer: RstreamProducer | None = None
        self._lock = asyncio.Lock()

    def _options(self) -> dict[str, Any]:
        return {
            "host": self.server.host,
            "port": self.server.port,
            "username": self.server.username,
            "password": self.server.password,
            "vhost": self.server.vhost,
            "load_balancer_mode": True,  # connect where told, not where the node says
        }

    async def _started_consumer(self) -> RstreamConsumer:
        async with self._lock:
            if self._consumer is None:
                consumer = RstreamConsumer(**self._options())
                await consumer.start()
                self._consumer = consumer
            return self._consumer

    async def _started_producer(self) -> RstreamProducer:
        async with self._lock:
            if self._producer is None:
                producer = RstreamProducer(**self._options())
                await producer.start()
                self._producer = producer
            return self._producer

    async def exists(self, stream: str) -> bool:
        """Whether ``stream`` exists."""
        consumer = await self._started_consumer()
        return bool(await consumer.stream_exists(stream))

    async def read(self, stream: str, offset: int) -> AsyncGenerator[StreamMessage, None]:
        """The messages of ``stream`` from ``offset`` on. The broker is given credit as
        they are taken, so a slow writer holds at most ``BUFFER`` of them in memory.
        Close the iterator when done (``contextlib.aclosing``) to unsubscribe at once."""
        consumer = await self._started_consumer()
        queue: asyncio.Queue[StreamMessage] = asyncio.Queue(maxsize=BUFFER)

        async def deliver(body: bytes, context: MessageContext) -> None:
            at = (
                datetime.fromtimestamp(context.timestamp / 1000, UTC) if context.timestamp else None
            )
            await queue.put(StreamMessage(stream, context.offset, bytes(body), at))

        subscriber = await consumer.subscribe(
            stream,
            deliver,
            decoder=lambda raw: raw,
            offset_specification=ConsumerOffsetSpecification(OffsetType.OFFSET, offset),
        )
        try:
            while True:
                message = await queue.get()
                if message.offset >= offset:  # a chunk may start before the offset asked
                    yield message
        finally:
            # Already gone when the connection was closed first: nothing left to undo.
            with contextlib.suppress(KeyError, OSError, asyncio.CancelledError):
                await consumer.unsubscribe(subscriber)

    async def create(self, stream: str) -> None:
        """Create ``stream`` unless it exists."""
        producer = await self._started_producer()
        await producer.create_stream(stream, exists_ok=True)

    async def send(self, stream: str, bodies: list[bytes]) -> None:
        """Append ``bodies`` to ``stream`` and wait for the broker's confirmations."""
        if not bodies:
            return
        producer = await self._started_producer()
        settled: dict[int, bool] = {}  # publishing id → confirmed
        changed = asyncio.Event()

        def on_confirm(status: ConfirmationStatus) -> None:
            settled[status.message_id] = status.is_confirmed
            changed.set()

        ids = await producer.send_batch(stream, list(bodies), on_publish_confirm=on_confirm)
        while any(i not in settled for i in ids):
            changed.clear()
            if all(i in settled for i in ids):
                break
            await changed.wait()
        refused = [i for i in ids if not settled[i]]
        if refused:
            raise StreamError(f"{stream}: the broker refused {len(refused)} of {len(bodies)}")

    async def delete(self, stream: str) -> None:
        """Delete ``stream`` (tests and the example producer's clean-up)."""
        producer = await self._started_producer()
        await producer.delete_stream(stream, missing_ok=True)

    async def close(self) -> None:
        """Close the connections."""
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.close()
        self._consumer = self._producer = None
