"""The treasury's ledger: a batch of one stream's messages becomes trades, positions and
cash in one PostgreSQL transaction, with the stream's next offset.

Exactly once, by offset: the batch's transaction locks the stream's offset row, skips the
messages below it (read again after a crash or a swap), stores the rest and moves the
offset past them. A crash before the commit leaves the offset where it was, so the same
messages are read and counted again, once; a crash after it, so they are not read again.
A trade id seen before (a desk sending the same trade twice) is a duplicate and adds
nothing. A message that cannot be decoded or mapped is recorded in
``ledgerflow.rejected_messages`` (queue ``stream:<name>``) with its reason, in the same
transaction, and its offset is passed like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog

from ledgerflow.db.queries import Queries
from ledgerflow.db.rejected import RejectedMessage, record_rejected
from ledgerflow.treasury.normalise import NormalisedTrade
from ledgerflow.treasury.registry import SchemaRegistryError
from ledgerflow.treasury.streams import StreamError, StreamMessage

QUERIES = Queries.of("ledgerflow.treasury")
log = structlog.get_logger(__name__)
READ_AGAIN_SECONDS = 60.0  # at start, reading a stream again to write its trades on

# A source's message (its body) → one canonical trade and its message for
# ``trades.normalised``; raises an exception with ``reason`` and ``detail`` when it cannot.
Normalise = Callable[[str, bytes], Awaitable[NormalisedTrade]]


class _Unexpected(Exception):
    """A message the normaliser failed on in a way it did not foresee."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.reason = "invalid_trade"
        self.detail = f"{type(error).__name__}: {error}"[:1000]


@dataclass(frozen=True)
class BatchResult:
    """What one batch did."""

    stream: str
    next_offset: int
    stored: int
    duplicates: int
    rejected: int
    skipped: int  # read again: below the offset already committed
    normalised: tuple[bytes, ...] = ()  # the stored trades, for ``trades.normalised``


def _column(trades: Sequence[dict[str, Any]], name: str) -> list[Any]:
    return [t.get(name) for t in trades]


async def next_offset(conn: psycopg.AsyncConnection[Any], stream: str) -> int:
    """Where reading ``stream`` resumes: the offset after the last one committed."""
    cursor = await conn.execute(QUERIES["next_offset"], {"stream": stream})
    row = await cursor.fetchone()
    return 0 if row is None else int(row[0])


async def write_batch(
    conn: psycopg.AsyncConnection[Any],
    source: str,
    messages: Sequence[StreamMessage],
    normalise: Normalise,
    refusals: tuple[type[Exception], ...],
) -> BatchResult:
    """Store one stream's batch in one transaction (see the module's docstring).

    ``refusals`` are the exception types ``normalise`` raises for a message it cannot
    use (each with ``reason`` and ``detail``); anything else is a fault and rolls the
    batch back.
    """
    if not messages:
        raise ValueError("an empty batch")
    stream = messages[0].stream
    if any(m.stream != stream for m in messages):
        raise ValueError("a batch reads one stream")
    async with conn.transaction():
        await conn.execute(QUERIES["ensure_offset"], {"stream": stream})
        cursor = await conn.execute(QUERIES["lock_offset"], {"stream": stream})
        row = await cursor.fetchone()
        assert row is not None
        committed = int(row[0])
        fresh = [m for m in messages if m.offset >= committed]
        if fresh and fresh[0].offset > committed:
            # The broker no longer holds what follows the last commit (its retention
            # removed it): say so where rejections are seen, never pass it in silence.
            missing = f"{committed}..{fresh[0].offset - 1}"
            log.error("treasury.offsets_missing", stream=stream, offsets=missing)
            await record_rejected(
                conn,
                f"stream:{stream}",
                [
                    RejectedMessage(
                        message_id=f"{stream}@{missing}",
                        reason="offsets_missing",
                        detail=f"offsets {missing} were no longer in the stream when read: "
                        "its retention removed them before they were stored",
                        body=b"",
                        properties={"stream": stream, "from": committed, "to": fresh[0].offset - 1},
                        received_at=datetime.now(UTC),
                    )
                ],
            )
        trades: list[dict[str, Any]] = []
        bodies: dict[str, bytes] = {}
        rejected: list[RejectedMessage] = []
        for message in fresh:
            try:
                normalised = await normalise(source, message.body)
            except refusals as exc:
                rejected.append(_rejected(message, exc))
                continue
            except (psycopg.Error, SchemaRegistryError):
                raise  # the database or the registry: the batch is tried again
            except Exception as exc:
                # Anything else one message makes the normaliser raise is that message's
                # fault: it is rejected with what was raised, never the whole stream's.
                log.warning("treasury.unexpected_refusal", error=repr(exc)[:300])
                rejected.append(_rejected(message, _Unexpected(exc)))
                continue
            trade = normalised.trade
            bodies.setdefault(str(trade["trade_id"]), normalised.body)
            trades.append(
                {
                    **trade,
                    "source": source,
                    "stream": stream,
                    "stream_offset": message.offset,
                    "side": str(trade["side"]).lower(),
                }
            )
        stored: list[str] = []
        if trades:
            cursor = await conn.execute(QUERIES["store_trades"], _arrays(trades))
            counts = await cursor.fetchone()
            assert counts is not None
            stored = list(counts[0] or [])
        if rejected:
            await record_rejected(conn, f"stream:{stream}", rejected)
        following = max(committed, messages[-1].offset + 1)
        await conn.execute(QUERIES["move_offset"], {"stream": stream, "next_offset": following})
    return BatchResult(
        stream,
        following,
        len(stored),
        len(trades) - len(stored),
        len(rejected),
        len(messages) - len(fresh),
        tuple(bodies[t] for t in stored),
    )


def _arrays(trades: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    names = {
        "trade_ids": "trade_id",
        "sources": "source",
        "streams": "stream",
        "offsets": "stream_offset",
        "books": "book",
        "instruments": "instrument",
        "asset_classes": "asset_class",
        "sides": "side",
        "quantities": "quantity",
        "prices": "price",
        "currencies": "currency",
        "settlement_amounts": "settlement_amount",
        "trade_times": "trade_time",
        "settlement_dates": "settlement_date",
        "maturity_dates": "maturity_date",
        "counterparty_types": "counterparty_type",
        "collateral_instruments": "collateral_instrument",
        "rates": "rate",
    }
    return {array: _column(trades, field) for array, field in names.items()}


def _rejected(message: StreamMessage, exc: Exception) -> RejectedMessage:
    return RejectedMessage(
        message_id=f"{message.stream}@{message.offset}",
        reason=str(getattr(exc, "reason", "invalid")),
        detail=str(getattr(exc, "detail", exc)).replace("\x00", "\\0")[:1000],
        body=message.body,
        properties={"stream": message.stream, "offset": message.offset},
        received_at=message.timestamp or datetime.now(UTC),
    )


async def normalised_sent(conn: psycopg.AsyncConnection[Any], stream: str, to: int) -> None:
    """Note that ``stream``'s normalised trades below offset ``to`` were written on."""
    await conn.execute(QUERIES["normalised_sent"], {"stream": stream, "to": to})


async def write_on_again(
    conn: psycopg.AsyncConnection[Any],
    read: Callable[[str, int], AsyncGenerator[StreamMessage, None]],
    normalise: Normalise,
    send: Callable[[list[bytes]], Awaitable[None]],
    chunk: int = 500,
) -> int:
    """Write on again the normalised trades of the batches committed but not written on
    (a crash between a batch's commit and its send): each stream read again from where
    its writing on stopped to its next offset, normalised again, sent; return how many.
    Messages that cannot be normalised are skipped (they were rejected when stored)."""
    cursor = await conn.execute(QUERIES["normalised_behind"])
    sent = 0
    for stream, normalised_to, next_offset, source in await cursor.fetchall():
        if source is not None:
            try:
                async with asyncio.timeout(READ_AGAIN_SECONDS):
                    sent += await _write_on_again(
                        stream, source, normalised_to, next_offset, read, normalise, send, chunk
                    )
            except (StreamError, TimeoutError) as exc:
                # The stream is gone or no longer holds them: said, not waited for forever.
                log.error(
                    "treasury.normalised_not_written_again",
                    stream=stream,
                    offsets=f"{normalised_to}..{next_offset - 1}",
                    error=repr(exc),
                )
        await normalised_sent(conn, stream, next_offset)
        log.info("treasury.normalised_written_again", stream=stream, since=normalised_to)
    return sent


async def _write_on_again(
    stream: str,
    source: str,
    normalised_to: int,
    next_offset: int,
    read: Callable[[str, int], AsyncGenerator[StreamMessage, None]],
    normalise: Normalise,
    send: Callable[[list[bytes]], Awaitable[None]],
    chunk: int,
) -> int:
    sent = 0
    bodies: list[bytes] = []
    async with contextlib.aclosing(read(stream, normalised_to)) as messages:
        async for message in messages:
            if message.offset >= next_offset:
                break
            # One that fails was rejected when it was stored: nothing to write on.
            with contextlib.suppress(Exception):
                bodies.append((await normalise(source, message.body)).body)
            if len(bodies) >= chunk:
                await send(bodies)
                sent, bodies = sent + len(bodies), []
            if message.offset == next_offset - 1:
                break
    if bodies:
        await send(bodies)
        sent += len(bodies)
    return sent
