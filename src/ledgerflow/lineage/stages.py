"""Stage counts: how many messages reached each stage of a pipeline over a time window,
and where the others went (redelivered, duplicate, rejected by reason, filtered by rule).

The transactions pipeline:

    received ─┬─ redelivered (already counted) / duplicate / rejected: <reason>
              └─ parsed ─┬─ filtered: <rule> v<version>
                         └─ stored ── published (seen by the newest publication)

Price batches: received → validated → committed → served (rows /rates now answers from).
Every figure comes from the batches' own counts, read through the index on commit time,
so a window of any length costs one pass over its batches, never over its messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ledgerflow.db.queries import Queries

QUERIES = Queries.of("ledgerflow.lineage", "stages.sql")


PERIODS = {
    "1h": timedelta(hours=1),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "365d": timedelta(days=365),
}


@dataclass(frozen=True)
class Window:
    """A time window [since, until), and optionally one queue."""

    since: datetime
    until: datetime
    queue: str | None = None

    def params(self) -> dict[str, Any]:
        """The window as query parameters."""
        return {"since": self.since, "until": self.until, "queue": self.queue}


class WindowError(ValueError):
    """A time window that cannot be used, naming the parameter."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


def window_of(
    period: str, since: str | None, until: str | None, queue: str | None = None
) -> Window:
    """The window asked for: ``since``/``until`` (ISO 8601, UTC if no offset) or the
    ``period`` up to now."""
    now = datetime.now(UTC)
    end = _moment("until", until) if until else now
    try:
        start = _moment("since", since) if since else end - PERIODS[period]
    except OverflowError:
        raise WindowError("until", "is too early for the period before it") from None
    if start >= end:
        raise WindowError("since", "must be before until")
    return Window(start, end, queue or None)


def _moment(parameter: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise WindowError(
            parameter, f"{text!r} is not a date and time (2026-11-30T09:00)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TransactionStages:
    """The transactions pipeline's counts over a window."""

    received: int
    redelivered: int
    duplicate: int
    rejected: int
    filtered: int
    stored: int
    published: int
    batches: int
    rejected_by_reason: tuple[tuple[str, int], ...]
    filtered_by_rule: tuple[tuple[str, int, int], ...]  # (rule, version, count)

    @property
    def parsed(self) -> int:
        """Messages that reached the rules: valid, counted for the first time."""
        return self.filtered + self.stored


@dataclass(frozen=True)
class PriceStages:
    """The price batches' counts over a window."""

    received: int
    rejected: int
    committed: int
    rows: int


async def transaction_stages(
    conn: psycopg.AsyncConnection[Any], window: Window
) -> TransactionStages:
    """The transactions pipeline's stage counts over ``window``."""
    params = window.params()
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["transaction_stages"], params)
        totals = await cursor.fetchone()
        assert totals is not None
        await cursor.execute(QUERIES["rejected_by_reason"], params)
        reasons = tuple((row["reason"], row["count"]) for row in await cursor.fetchall())
        await cursor.execute(QUERIES["filtered_by_rule"], params)
        rules = tuple(
            (row["name"], row["version"], row["count"]) for row in await cursor.fetchall()
        )
    return TransactionStages(
        **{k: int(v) for k, v in totals.items()},
        rejected_by_reason=reasons,
        filtered_by_rule=rules,
    )


async def price_stages(conn: psycopg.AsyncConnection[Any], window: Window) -> PriceStages | None:
    """The price batches' stage counts over ``window``; None where rates are not used."""
    cursor = await conn.execute(QUERIES["has_price_batches"])
    row = await cursor.fetchone()
    if not row or not row[0]:
        return None
    params = window.params()
    cursor = await conn.execute(QUERIES["price_batch_stages"], params)
    committed = await cursor.fetchone()
    cursor = await conn.execute(QUERIES["price_batches_rejected"], params)
    rejected = await cursor.fetchone()
    assert committed is not None and rejected is not None
    return PriceStages(
        received=int(committed[0]) + int(rejected[0]),
        rejected=int(rejected[0]),
        committed=int(committed[0]),
        rows=int(committed[1]),
    )


async def filtered_over_time(
    conn: psycopg.AsyncConnection[Any], window: Window, buckets: int = 60
) -> tuple[list[datetime], dict[str, list[int]]]:
    """Filtered messages per rule over ``window`` in about ``buckets`` equal steps: the
    bucket starts, and per rule name a count for each (zeros included, for charts)."""
    span = max(1.0, (window.until - window.since).total_seconds())
    bucket = max(60, int(span / buckets) // 60 * 60 or 60)
    cursor = await conn.execute(
        QUERIES["filtered_over_time"], {**window.params(), "bucket": bucket}
    )
    rows = await cursor.fetchall()
    starts = sorted({row[0] for row in rows})
    index = {at: i for i, at in enumerate(starts)}
    series: dict[str, list[int]] = {}
    for at, name, count in rows:
        series.setdefault(name, [0] * len(starts))[index[at]] = int(count)
    return starts, series


async def filtered_messages(
    conn: psycopg.AsyncConnection[Any], window: Window, rule: str | None, limit: int
) -> list[dict[str, Any]]:
    """The filtered messages of ``window`` (of one rule, if named), newest first."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            QUERIES["filtered_messages"], {**window.params(), "rule": rule, "limit": limit}
        )
        return await cursor.fetchall()
