"""Hot swap: a control message on ``treasury.control`` names the stream a source reads.

A control message is JSON: ``{"source": "fx", "stream": "trades.fx.v2"}``, with
``"offset": N`` to say where to start a stream never read before (the first message
otherwise). It is applied in one transaction with the control stream's own offset:
the source's new stream and the message are recorded in ``ledgerflow.treasury_sources``.
The swap itself (``TreasuryIngest``) stops the old reader at a batch boundary first.

A message that is not JSON, names an unknown source or a stream that does not exist is
refused: recorded in ``ledgerflow.rejected_messages`` (queue ``stream:treasury.control``)
with its reason, and the sources keep reading what they read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ledgerflow.db.queries import Queries
from ledgerflow.db.rejected import RejectedMessage, record_rejected
from ledgerflow.treasury.streams import StreamMessage

QUERIES = Queries.of("ledgerflow.treasury")
CONTROL_STREAM = "treasury.control"
_STREAM = re.compile(r"[A-Za-z0-9_.\-]{1,255}")


class ControlRefused(ValueError):
    """A control message that cannot be applied, with a stable reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Swap:
    """A control message, read: which source reads which stream from now on."""

    source: str
    stream: str
    offset: int | None
    message: dict[str, Any]


def parse_control(body: bytes, sources: tuple[str, ...]) -> Swap:
    """The swap a control message asks for; ControlRefused when it asks for none."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ControlRefused("not_json", "a control message is a JSON object") from None
    if not isinstance(message, dict):
        raise ControlRefused("not_json", "a control message is a JSON object")
    source, stream, offset = message.get("source"), message.get("stream"), message.get("offset")
    if source not in sources:
        raise ControlRefused("unknown_source", f"source must be one of {', '.join(sources)}")
    if not isinstance(stream, str) or not _STREAM.fullmatch(stream):
        raise ControlRefused("bad_stream", "stream: 1 to 255 letters, digits, '.', '_', '-'")
    if offset is not None and (
        not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < 2**63
    ):
        raise ControlRefused("bad_offset", "offset: a whole number, 0 or more")
    # Only what was checked is kept: the rest of the message is the sender's, not ours.
    kept = {"source": source, "stream": stream} | ({} if offset is None else {"offset": offset})
    return Swap(str(source), stream, offset, kept)


async def current_streams(conn: psycopg.AsyncConnection[Any]) -> dict[str, dict[str, Any]]:
    """Each source's stream, since when, and the control message applied last."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["treasury_sources"])
        return {row["source"]: row for row in await cursor.fetchall()}


async def ensure_sources(
    conn: psycopg.AsyncConnection[Any], streams: dict[str, str]
) -> dict[str, str]:
    """Record the configured stream of each source not recorded yet; return what each
    source reads now (a swap made earlier outlives a restart)."""
    await conn.execute(
        QUERIES["ensure_sources"],
        {"sources": list(streams), "streams": list(streams.values())},
    )
    return {s: row["stream"] for s, row in (await current_streams(conn)).items()}


async def apply_control(
    conn: psycopg.AsyncConnection[Any], message: StreamMessage, swap: Swap | ControlRefused
) -> None:
    """Record a control message's outcome and move the control stream's offset past
    it, in one transaction: the source's new stream, or the refusal with its reason."""
    async with conn.transaction():
        await conn.execute(QUERIES["ensure_offset"], {"stream": message.stream})
        cursor = await conn.execute(QUERIES["lock_offset"], {"stream": message.stream})
        row = await cursor.fetchone()
        if row is not None and message.offset < int(row[0]):
            return  # applied already: the control stream's offset is past it
        if isinstance(swap, Swap):
            await conn.execute(
                QUERIES["swap_source"],
                {
                    "source": swap.source,
                    "stream": swap.stream,
                    "control": Jsonb({**swap.message, "offset_read": message.offset}),
                },
            )
            if swap.offset is not None:
                await conn.execute(
                    QUERIES["start_offset"], {"stream": swap.stream, "next_offset": swap.offset}
                )
        else:
            await record_rejected(
                conn,
                f"stream:{message.stream}",
                [
                    RejectedMessage(
                        message_id=f"{message.stream}@{message.offset}",
                        reason=swap.reason,
                        detail=swap.detail,
                        body=message.body,
                        properties={"stream": message.stream, "offset": message.offset},
                        received_at=message.timestamp or datetime.now(UTC),
                    )
                ],
            )
        await conn.execute(
            QUERIES["move_offset"], {"stream": message.stream, "next_offset": message.offset + 1}
        )
