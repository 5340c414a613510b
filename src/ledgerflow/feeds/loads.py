"""The load log and detection: every successful load is a row of ``ledgerflow.load_log``
(ledgerflow's own batches and price batches, and the loads other loaders report), and a
(source, table) pair that loaded successfully and has no feed yet becomes a feed. Another
loader's own load-log table, mapped by configuration (``ledgerflow.feeds.load_logs``),
is read by detection too.

Detection is idempotent and safe to run from several places at once: one transaction at
a time detects (an advisory lock), and a feed is unique by its source and table. Its cost
follows the number of (source, table) pairs, not of loads (``ledgerflow.load_pairs``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import structlog
from psycopg import sql
from psycopg.rows import dict_row

from ledgerflow.db.connections import every
from ledgerflow.db.queries import Queries
from ledgerflow.feeds.letters import Letters
from ledgerflow.feeds.load_logs import LoadLogMapping, fetch_reading, load_pairs_query
from ledgerflow.feeds.workflow import record_detection

log = structlog.get_logger(__name__)

QUERIES = Queries.of("ledgerflow.feeds")
DETECT_LOCK = 0x6C66_6665_6564  # the advisory lock detection takes, one at a time
TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}\.[A-Za-z_][A-Za-z0-9_$]{0,62}$")
PRINTABLE = re.compile(r"^[^\x00-\x1f]{1,200}$")


class LoadError(ValueError):
    """A reported load that cannot be recorded, naming the field that is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Load:
    """A load as a loader reports it."""

    source: str
    table_name: str  # schema.table
    row_count: int
    status: str  # succeeded or failed
    started_at: datetime
    finished_at: datetime

    def check(self) -> None:
        """Raise LoadError naming the first field that cannot be recorded."""
        if not PRINTABLE.fullmatch(self.source):
            raise LoadError("source", "1 to 200 characters, no control characters")
        if not TABLE.fullmatch(self.table_name):
            raise LoadError("table", "schema.table, e.g. public.trades")
        if self.row_count < 0:
            raise LoadError("rows", "a count of rows, 0 or more")
        if self.status not in ("succeeded", "failed"):
            raise LoadError("status", "succeeded or failed")
        if self.started_at.tzinfo is None or self.finished_at.tzinfo is None:
            raise LoadError("started_at", "give a time zone (2026-11-30T09:00:00Z)")
        if self.finished_at < self.started_at:
            raise LoadError("finished_at", "before started_at")


@dataclass(frozen=True)
class Feed:
    """A (source, table) pair that loaded successfully, and where its onboarding is."""

    feed_id: int
    source: str
    table_name: str
    state: str
    first_load_at: datetime
    detected_at: datetime

    def as_json(self) -> dict[str, Any]:
        """The feed as the API and ``--json`` show it."""
        return {
            "id": self.feed_id,
            "source": self.source,
            "table": self.table_name,
            "state": self.state,
            "first_load_at": self.first_load_at.isoformat(),
            "detected_at": self.detected_at.isoformat(),
        }


def _feed(row: dict[str, Any]) -> Feed:
    return Feed(
        row["id"],
        row["source"],
        row["table_name"],
        row["state"],
        row["first_load_at"],
        row["detected_at"],
    )


async def record_load(conn: psycopg.AsyncConnection[Any], load: Load, reported_by: str) -> int:
    """Record a reported load; return its id. Raise LoadError naming a wrong field."""
    load.check()
    cursor = await conn.execute(
        QUERIES["record_load"],
        {
            "source": load.source,
            "table_name": load.table_name,
            "row_count": load.row_count,
            "status": load.status,
            "started_at": load.started_at,
            "finished_at": load.finished_at,
            "reported_by": reported_by,
        },
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


def detect_query(external: LoadLogMapping | None = None) -> sql.Composed:
    """The statement detection runs, reading the ``external`` load log too when given."""
    return sql.SQL(QUERIES["detect"]).format(mapped=load_pairs_query(external))


async def detect(
    conn: psycopg.AsyncConnection[Any],
    letters: Letters,
    *,
    external: LoadLogMapping | None = None,
) -> list[Feed]:
    """Make a feed of every (source, table) pair that loaded successfully and has none,
    in ledgerflow's load log and in the ``external`` one when given; return the new ones.
    Each new feed's trail starts, and its mail to the administrators is written, in the
    same transaction. An external log that cannot be read (no such table or column, no
    right to read it) is logged, and the rest detected all the same."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["detect_lock"], {"key": DETECT_LOCK})
        rows = await fetch_reading(cursor, detect_query, external)
        found = [_feed(row) for row in rows]
        found.sort(key=lambda f: (f.first_load_at, f.source, f.table_name))
        for new in found:
            await record_detection(conn, new.feed_id, new.source, new.table_name, letters)
    return found


async def feeds(conn: psycopg.AsyncConnection[Any], limit: int = 1000) -> list[Feed]:
    """The feeds, newest first."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["feeds"], {"limit": limit})
        return [_feed(row) for row in await cursor.fetchall()]


async def detect_forever(
    url: str,
    seconds: float,
    letters: Letters,
    on_new: Callable[[list[Feed]], None] = lambda found: None,
    *,
    external: LoadLogMapping | None = None,
) -> None:
    """Detect every ``seconds``, on a connection of its own, until cancelled (the
    active worker runs it, so exactly one instance does), reading the ``external`` load
    log too when given; ``on_new`` is given the feeds a detection found, if any. A
    database that cannot answer is logged and asked again at the next turn: detection
    never ends the worker's lead."""

    async def turn(conn: psycopg.AsyncConnection[Any]) -> None:
        found = await detect(conn, letters, external=external)
        for feed in found:
            log.info("feeds.detected", source=feed.source, table=feed.table_name)
        if found:
            on_new(found)  # their mails are in the outbox

    await every(url, seconds, turn, "feeds.detect_failed")
