"""The live feed's fan-out through KeyDB pub/sub: the worker publishes events, every API
replica subscribes and hands them to its browsers.

Publishing never slows the worker: events wait in a bounded queue and a background task
sends them; when KeyDB is slow or away the oldest are dropped (browsers catch up from a
fresh snapshot, so nothing of record is lost: the ledger is in PostgreSQL). Why KeyDB and
not PostgreSQL's LISTEN/NOTIFY: the same latency measured (bench/live.py), no load on the
database the worker writes to, and no 8,000-byte limit on a payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import redis.asyncio as redis
import structlog
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

CHANNEL = "ledgerflow:live"


class EventSink(Protocol):
    """Where a process sends its live events (the port the domains see)."""

    def emit(self, event: Mapping[str, Any]) -> None:
        """Queue one event (a JSON object with a ``type``); never blocks, never raises."""
        ...


class Discard:
    """An EventSink that keeps nothing (no live feed configured)."""

    def emit(self, event: Mapping[str, Any]) -> None:
        """Drop the event."""


class KeyDBPublisher:
    """An EventSink on KeyDB: events go out in order from a bounded queue."""

    def __init__(self, url: str, capacity: int = 1000, channel: str = CHANNEL) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=capacity)
        self._channel = channel
        self.dropped = 0

    def emit(self, event: Mapping[str, Any]) -> None:
        """Queue the event; drop the oldest when the queue is full."""
        text = json.dumps(event, default=str)
        while True:
            try:
                self._queue.put_nowait(text)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()
                self.dropped += 1

    async def run(self) -> None:
        """Send queued events until cancelled; a KeyDB failure costs the event, not the task."""
        task = asyncio.current_task()
        while True:
            text = await self._queue.get()
            try:
                await self._client.publish(self._channel, text)
            except (RedisError, OSError) as exc:
                self.dropped += 1
                log.debug("live.publish_failed", error=str(exc))
            if task is not None and task.cancelling():
                # redis-py may swallow a cancellation that arrives during a command.
                raise asyncio.CancelledError

    async def close(self) -> None:
        """Release the connection."""
        await self._client.aclose()


async def subscribe(url: str, channel: str = CHANNEL) -> AsyncIterator[dict[str, Any]]:
    """Every event published on ``channel`` from now on, decoded; reconnects after a KeyDB
    failure (each reconnection is yielded as ``{"type": "reconnected"}``: what was
    published meanwhile is gone, and listeners should take a fresh snapshot)."""
    first, task = True, asyncio.current_task()
    while True:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(channel)
            if not first:
                yield {"type": "reconnected"}
            first = False
            async for message in pubsub.listen():
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError  # one the client swallowed
                if message.get("type") != "message":
                    continue
                try:
                    yield json.loads(message["data"])
                except ValueError:
                    log.warning("live.undecodable_event", channel=channel)
        except (RedisError, OSError) as exc:
            log.warning("live.subscription_lost", error=str(exc))
            await asyncio.sleep(1.0)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()
