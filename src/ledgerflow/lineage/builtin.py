"""The built-in source ``ledgerflow``: ledgerflow's own pipeline, queue ->
historical_transactions -> KeyDB, compared from its lineage.

- source -> persistency: every message the queue delivered (from ``ledgerflow.batches``;
  a redelivery is the same message again and is left out), named by its message_id, or
  the hex SHA-256 of its body when it had none. A message filtered, rejected or
  recognised as a duplicate is explained by that outcome; a stored message whose row is
  gone is not. The other way, a row of historical_transactions that no batch stored is
  foreign: explained when it predates the first row ledgerflow stored (the fixture's
  initial rows), unexplained otherwise.
- persistency -> target: KeyDB's current value of every key of the last publication
  against what that publication wrote (``ledgerflow.publishes.balances``): a key missing
  or different is a mismatch; a balance-shaped key the publication did not write is
  foreign. KeyDB is read before the database snapshot is taken, and again should a
  publication land meanwhile (it writes KeyDB first, records itself right after).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg
import redis.asyncio as redis
from redis.exceptions import RedisError

from ledgerflow.db.queries import Queries
from ledgerflow.lineage.results import (
    PERSISTENCY_TARGET,
    SOURCE_PERSISTENCY,
    ComparisonError,
    StageCounts,
)
from ledgerflow.lineage.sources import BUILT_IN_STAGES

QUERIES = Queries.of("ledgerflow.lineage")
# A balance's key, as the publisher writes it: `<provider id>_<provider name>`.
BALANCE_KEY = re.compile(r"\d+_.+", re.DOTALL)
BEFORE_FIRST_BATCH = "loaded before ledgerflow's first batch"


@dataclass(frozen=True)
class TargetItem:
    """A KeyDB key that disagrees with the last publication."""

    kind: str  # mismatch or foreign
    key: str
    detail: str
    expected: str | None
    actual: str | None


@dataclass(frozen=True)
class TargetCheck:
    """KeyDB against the last publication, as read before the snapshot."""

    compared: bool
    note: str | None = None
    boundary: datetime | None = None
    published: int = 0  # keys the publication wrote
    present: int = 0  # balance keys KeyDB holds
    items: list[TargetItem] = field(default_factory=list)


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _same(expected: str, actual: str | None) -> bool:
    """Whether KeyDB holds the published amount: equal as exact decimals (``1900`` and
    ``1900.00`` are the same balance), else as text."""
    if actual is None:
        return False
    try:
        return Decimal(expected) == Decimal(actual)
    except InvalidOperation:
        return expected == actual


async def _last_publication(
    conn: psycopg.AsyncConnection[Any],
) -> tuple[datetime, datetime, dict[str, str] | None] | None:
    async with conn.transaction():
        cursor = await conn.execute(QUERIES["last_publication"])
        row = await cursor.fetchone()
    return None if row is None else (row[0], row[1], row[2])


async def _read_keydb(
    client: redis.Redis, balances: dict[str, str], boundary: datetime
) -> TargetCheck:
    keys = sorted(balances)
    values = [_text(v) for v in await client.mget(keys)] if keys else []
    present = set()
    async for raw in client.scan_iter(match="[0-9]*_*", count=1000):
        key = _text(raw)
        if key is not None and BALANCE_KEY.fullmatch(key):
            present.add(key)
    items = [
        TargetItem(
            "mismatch",
            key,
            "KeyDB has no such key"
            if actual is None
            else f"KeyDB holds {actual}; the publication of {boundary.isoformat()} wrote "
            f"{balances[key]}",
            balances[key],
            actual,
        )
        for key, actual in zip(keys, values, strict=True)
        if not _same(balances[key], actual)
    ]
    extra = sorted(present - set(balances))
    for key, actual in zip(extra, await client.mget(extra) if extra else [], strict=True):
        detail = f"not written by the publication of {boundary.isoformat()}"
        items.append(TargetItem("foreign", key, detail, None, _text(actual)))
    return TargetCheck(True, None, boundary, len(keys), len(present), items)


async def read_target(
    conn: psycopg.AsyncConnection[Any], client: redis.Redis, attempts: int = 3, pause: float = 0.2
) -> TargetCheck:
    """KeyDB against the last publication; raise ComparisonError if KeyDB cannot be read.

    A publication writes KeyDB before it records itself, so KeyDB can be a moment ahead
    of the newest recorded publication: a read that found differences, or during which a
    publication landed, is made again (``attempts`` times in all).
    """
    check = TargetCheck(False, "no publication yet: KeyDB not compared")
    for attempt in range(attempts):
        before = await _last_publication(conn)
        if before is None:
            return check
        boundary, _published_at, balances = before
        if balances is None:
            return TargetCheck(
                False,
                f"the publication of {boundary.isoformat()} recorded no balances: "
                "KeyDB not compared",
            )
        try:
            check = await _read_keydb(client, balances, boundary)
        except (RedisError, OSError) as exc:
            raise ComparisonError(f"cannot read KeyDB: {exc}") from exc
        if await _last_publication(conn) == before and not check.items:
            break
        if attempt < attempts - 1:
            await asyncio.sleep(pause)
    return check


async def compare(
    conn: psycopg.AsyncConnection[Any],
    comparison_id: int,
    explained_limit: int,
    target: TargetCheck,
) -> tuple[list[StageCounts], int]:
    """Compare the built-in source in the caller's snapshot and store its items; return
    the counts per stage pair and how many explained items were stored."""
    cursor = await conn.execute(QUERIES["ledgerflow_counts"])
    counts = await cursor.fetchone()
    assert counts is not None
    messages, rows = counts

    cursor = await conn.execute(
        QUERIES["ledgerflow_missing"],
        {"comparison_id": comparison_id, "explained_limit": explained_limit},
    )
    explanations: dict[str, int] = {}
    missing = kept = 0
    for label, n, stored in await cursor.fetchall():
        missing += n
        kept = stored
        if label is not None:
            explanations[label] = n
    missing_explained = sum(explanations.values())

    cursor = await conn.execute(
        QUERIES["ledgerflow_foreign"],
        {"comparison_id": comparison_id, "explained_limit": explained_limit - kept},
    )
    found = await cursor.fetchone()
    assert found is not None
    before_first, foreign_unexplained, foreign_kept = found
    if before_first:
        explanations[BEFORE_FIRST_BATCH] = before_first
    source_persistency = StageCounts(
        SOURCE_PERSISTENCY,
        BUILT_IN_STAGES[0],
        BUILT_IN_STAGES[1],
        left_ids=messages,
        right_ids=rows,
        missing=missing,
        missing_explained=missing_explained,
        foreign=before_first + foreign_unexplained,
        foreign_explained=before_first,
        explanations=explanations,
    )
    return [source_persistency, await _store_target(conn, comparison_id, target)], (
        kept + foreign_kept
    )


async def _store_target(
    conn: psycopg.AsyncConnection[Any], comparison_id: int, target: TargetCheck
) -> StageCounts:
    if not target.compared or target.boundary is None:
        return StageCounts(
            PERSISTENCY_TARGET, BUILT_IN_STAGES[1], BUILT_IN_STAGES[2], note=target.note
        )
    if target.items:
        await conn.execute(
            QUERIES["insert_target_items"],
            {
                "comparison_id": comparison_id,
                "kinds": [i.kind for i in target.items],
                "keys": [i.key for i in target.items],
                "details": [i.detail for i in target.items],
                "expected": [i.expected for i in target.items],
                "actual": [i.actual for i in target.items],
            },
        )
    return StageCounts(
        PERSISTENCY_TARGET,
        f"balances published at {target.boundary.isoformat()}",
        BUILT_IN_STAGES[2],
        left_ids=target.published,
        right_ids=target.present,
        foreign=sum(1 for i in target.items if i.kind == "foreign"),
        mismatched=sum(1 for i in target.items if i.kind == "mismatch"),
    )
