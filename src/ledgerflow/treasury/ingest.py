"""Reading the desks' streams into the ledger, one task per source, and swapping a
source's stream at run time.

Each source (``fx``, ``repos``, ...) reads the stream ``ledgerflow.treasury_sources``
names for it, from the offset ``ledgerflow.stream_offsets`` holds, in batches of at most
``batch_size`` messages or ``max_wait`` seconds; each batch is one transaction
(``ledger.write_batch``).

A swap (``swap``) stops the source's task at a batch boundary: the batch under way is
committed, nothing more is read from the old stream, the new stream is recorded for the
source in the same transaction as the control message's offset, and a task starts on the
new stream from its own stored offset (or the one the control message gives, for a
stream never read). So nothing between the two is lost or counted twice: what the old
stream holds past the swap stays unread until a swap back, which resumes it where it
stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
import structlog

from ledgerflow.db.connections import connect
from ledgerflow.treasury.control import (
    CONTROL_STREAM,
    ControlRefused,
    Swap,
    apply_control,
    ensure_sources,
    parse_control,
)
from ledgerflow.treasury.ledger import BatchResult, Normalise, next_offset, write_batch
from ledgerflow.treasury.streams import StreamMessage, StreamSink, StreamSource


class Streams(StreamSource, StreamSink, Protocol):
    """A broker to read streams from and create them on (RabbitStreams is one)."""


log = structlog.get_logger(__name__)

SOURCES = ("fx", "repos", "bonds", "equities", "interbank")


def default_stream(source: str, prefix: str = "trades.") -> str:
    """The stream a source reads until told otherwise: ``trades.<source>``."""
    return f"{prefix}{source}"


@dataclass
class Reader:
    """One source's task and the event that stops it at the next batch boundary."""

    source: str
    stream: str
    task: asyncio.Task[None]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    since: datetime = field(default_factory=lambda: datetime.now(UTC))


class TreasuryIngest:
    """The sources' readers, on connections of their own to ``database_url``."""

    def __init__(
        self,
        database_url: str,
        streams: Streams,
        normalise: Normalise,
        refusals: tuple[type[Exception], ...],
        *,
        batch_size: int = 500,
        max_wait: float = 0.05,
        on_batch: Callable[[str, BatchResult], Awaitable[None]] | None = None,
        control: str = CONTROL_STREAM,
        reserved: tuple[str, ...] = (),
    ) -> None:
        self.database_url = database_url
        self.streams = streams
        self.normalise = normalise
        self.refusals = refusals
        self.batch_size = batch_size
        self.max_wait = max_wait
        self.on_batch = on_batch
        self.readers: dict[str, Reader] = {}
        self.control_stream = control
        self.reserved = reserved  # streams no source may read (where trades are written on)

    def start(self, source: str, stream: str) -> Reader:
        """Start reading ``stream`` for ``source`` (from its stored offset)."""
        stop = asyncio.Event()
        task = asyncio.create_task(self._read(source, stream, stop), name=f"treasury:{source}")
        reader = Reader(source, stream, task, stop)
        self.readers[source] = reader
        return reader

    async def stop(self, source: str) -> None:
        """Stop ``source``'s reader at a batch boundary and wait for it."""
        reader = self.readers.pop(source, None)
        if reader is None:
            return
        reader.stop.set()
        await reader.task

    async def close(self) -> None:
        """Stop every reader at a batch boundary."""
        for source in list(self.readers):
            await self.stop(source)

    async def _read(self, source: str, stream: str, stop: asyncio.Event) -> None:
        conn = await connect(self.database_url, autocommit=True)
        async with conn:
            offset = await next_offset(conn, stream)
            log.info("treasury.reading", source=source, stream=stream, offset=offset)
            queue: asyncio.Queue[StreamMessage] = asyncio.Queue(maxsize=self.batch_size * 2)
            pump = asyncio.create_task(self._pump(stream, offset, queue), name=f"pump:{stream}")
            try:
                while not stop.is_set():
                    batch = await self._batch(queue, stop, pump)
                    if batch:
                        await self._write(conn, source, batch)
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump

    async def _pump(self, stream: str, offset: int, queue: asyncio.Queue[StreamMessage]) -> None:
        async with contextlib.aclosing(self.streams.read(stream, offset)) as messages:
            async for message in messages:
                await queue.put(message)

    async def _batch(
        self, queue: asyncio.Queue[StreamMessage], stop: asyncio.Event, pump: asyncio.Task[None]
    ) -> list[StreamMessage]:
        """Up to ``batch_size`` messages: what is there, or what comes within ``max_wait``
        of the first; nothing when asked to stop first."""
        batch: list[StreamMessage] = []
        stopping = asyncio.create_task(stop.wait())
        try:
            while not batch:
                getting = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait(
                    {getting, stopping, pump}, return_when=asyncio.FIRST_COMPLETED
                )
                if getting in done:
                    batch.append(getting.result())
                else:
                    getting.cancel()
                    if pump in done:
                        pump.result()  # the stream failed: raise it
                    return []
            deadline = asyncio.get_running_loop().time() + self.max_wait
            while len(batch) < self.batch_size:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), left))
                except TimeoutError:
                    break
            return batch
        finally:
            stopping.cancel()

    async def _write(
        self, conn: psycopg.AsyncConnection[Any], source: str, batch: list[StreamMessage]
    ) -> None:
        result = await write_batch(conn, source, batch, self.normalise, self.refusals)
        log.debug(
            "treasury.batch",
            source=source,
            stream=result.stream,
            stored=result.stored,
            rejected=result.rejected,
            duplicates=result.duplicates,
            next_offset=result.next_offset,
        )
        if self.on_batch is not None:
            await self.on_batch(source, result)

    async def run(self, configured: dict[str, str]) -> None:
        """Read every source (its recorded stream, or the configured one the first time)
        and follow the control stream, until cancelled; a reader that fails ends it."""
        for stream in {*configured.values(), self.control_stream}:
            await self.streams.create(stream)
        conn = await connect(self.database_url, autocommit=True)
        async with conn:
            for source, stream in (await ensure_sources(conn, configured)).items():
                self.start(source, stream)
            control = asyncio.create_task(self._follow_control(conn), name="treasury:control")
            try:
                while True:
                    # Looked at again each second: a swap starts readers of its own.
                    watched = {control, *(r.task for r in self.readers.values())}
                    done, _ = await asyncio.wait(
                        watched, timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in done:
                        task.result()  # a failure ends the ingest; a swap's stop does not
                        if task is control:
                            raise RuntimeError("the control stream's reader ended")
            finally:
                control.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await control
                await self.close()

    async def _follow_control(self, conn: psycopg.AsyncConnection[Any]) -> None:
        offset = await next_offset(conn, self.control_stream)
        async with contextlib.aclosing(self.streams.read(self.control_stream, offset)) as messages:
            async for message in messages:
                await self.control(conn, message)

    async def control(self, conn: psycopg.AsyncConnection[Any], message: StreamMessage) -> None:
        """Apply one control message: swap the source at a batch boundary, or refuse it."""
        outcome: Swap | ControlRefused
        try:
            outcome = parse_control(message.body, tuple(self.readers) or SOURCES)
            taken = {r.stream for s, r in self.readers.items() if s != outcome.source}
            if outcome.stream in taken | {self.control_stream, *self.reserved}:
                # Offsets are kept per stream: two readers of one stream would each take
                # the other's messages for rejections and pass them.
                raise ControlRefused("stream_in_use", f"{outcome.stream!r} is read already")
            if not await self.streams.exists(outcome.stream):
                raise ControlRefused("unknown_stream", f"no stream {outcome.stream!r}")
        except ControlRefused as refused:
            log.warning("treasury.control_refused", reason=refused.reason, detail=refused.detail)
            await apply_control(conn, message, refused)
            return
        old = self.readers.get(outcome.source)
        await self.stop(outcome.source)  # its last batch is committed
        try:
            await apply_control(conn, message, outcome)
        except BaseException:
            if old is not None:  # nothing was recorded: the source reads on as it did
                self.start(outcome.source, old.stream)
            raise
        self.start(outcome.source, outcome.stream)
        log.info("treasury.swapped", source=outcome.source, stream=outcome.stream)
