"""Reconciliation: the tables production models read against the tables onboarded feeds
persist into (``persistency_schema.persistency_table``), and what does not match.

Four kinds of finding: a ``gap`` is a table some model reads that no onboarded feed
loads; ``unused``, an onboarded feed whose table no model reads; ``stale``, an onboarded
feed whose last successful load (in ledgerflow's load log, or in another loader's mapped
one when given: ``ledgerflow.feeds.load_logs``) is older than twice its frequency;
``missing_table``, an onboarded feed whose table is not in the database. Findings are
kept across runs, one row per (kind, table, feed): a run opens what it finds for the
first time, opens again what it had closed, and closes what it no longer finds. A run is
one SQL statement in one transaction, one run at a time (an advisory lock).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import psycopg
import structlog
from psycopg import sql
from psycopg.rows import dict_row

from ledgerflow.auth.store import audit
from ledgerflow.db.connections import every
from ledgerflow.db.queries import Queries
from ledgerflow.feeds.load_logs import LoadLogMapping, fetch_reading, load_pairs_query
from ledgerflow.reports.pdf import Heading, Paragraph, Table, csv_report, pdf_report

log = structlog.get_logger(__name__)

# Given the new findings inside the run's transaction (to write their mail there).
Tell = Callable[[psycopg.AsyncConnection[Any], Sequence["Finding"]], Awaitable[object]]
QUERIES = Queries.of("ledgerflow.feeds", "reconcile.sql")
MAX_PDF_FINDINGS = 10_000  # a printed report; the counts above and the CSV have them all
RECONCILE_LOCK = 0x6C66_7265_636E  # the advisory lock a run takes, one run at a time
FINDING_STATUSES = ("open", "investigating", "resolved", "dismissed")
FINDING_KINDS = ("gap", "unused", "stale", "missing_table")
ACTIVE = ("open", "investigating")  # what the pseudo-status 'active' stands for
OWNER = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")
RAN_BY = "ledgerflow"  # who the periodic runs are recorded as


class FindingError(ValueError):
    """A finding that cannot be changed (or listed) as asked, naming the field that is
    wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@dataclass(frozen=True)
class Finding:
    """Something reconciliation found, and what people did about it."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "id",
        "kind",
        "table",
        "feed_id",
        "feed_source",
        "models",
        "detail",
        "status",
        "owner",
        "first_seen_at",
        "last_seen_at",
        "closed_at",
        "updated_by",
        "updated_at",
    )

    id: int
    kind: str  # one of FINDING_KINDS
    table_name: str  # schema.table the finding is about
    feed_id: int | None  # None for a gap
    feed_source: str | None  # the feed's source, None for a gap
    models: tuple[str, ...]  # the models reading the table, by name
    detail: str
    status: str  # one of FINDING_STATUSES
    owner: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    closed_at: datetime | None  # when a run no longer found it
    updated_by: str | None
    updated_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        """The finding as the API and ``--json`` show it (keys as in ``COLUMNS``)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "table": self.table_name,
            "feed_id": self.feed_id,
            "feed_source": self.feed_source,
            "models": list(self.models),
            "detail": self.detail,
            "status": self.status,
            "owner": self.owner,
            "first_seen_at": _iso(self.first_seen_at),
            "last_seen_at": _iso(self.last_seen_at),
            "closed_at": _iso(self.closed_at),
            "updated_by": self.updated_by,
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class Reconciliation:
    """One run: what it compared and what it found."""

    run_id: int
    started_at: datetime  # the moment the run judged against (its ``now``)
    seconds: float
    ran_by: str
    tables_read: int  # distinct tables the models read
    onboarded: int  # onboarded feeds
    found: int  # findings found by the run
    new: tuple[Finding, ...]  # found for the first time, or again after being closed
    closed: int  # findings closed because the run no longer found them
    # How many findings were new: len(new) for a run just made, and what the run recorded
    # for one read back (whose ``new`` is empty).
    new_count: int

    def as_json(self) -> dict[str, Any]:
        """The run as the API and ``--json`` show it."""
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "seconds": self.seconds,
            "ran_by": self.ran_by,
            "tables_read": self.tables_read,
            "onboarded": self.onboarded,
            "found": self.found,
            "new": [finding.as_json() for finding in self.new],
            "new_count": self.new_count,
            "closed": self.closed,
        }


def _finding(row: dict[str, Any]) -> Finding:
    return Finding(
        id=row["id"],
        kind=row["kind"],
        table_name=row["table_name"],
        feed_id=row["feed_id"],
        feed_source=row["feed_source"],
        models=tuple(row["models"]),
        detail=row["detail"],
        status=row["status"],
        owner=row["owner"],
        first_seen_at=row["first_seen_at"],
        last_seen_at=row["last_seen_at"],
        closed_at=row["closed_at"],
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
    )


async def _select(
    conn: psycopg.AsyncConnection[Any],
    *,
    statuses: tuple[str, ...] | None = None,
    kind: str | None = None,
    ids: list[int] | None = None,
    limit: int | None,
) -> list[Finding]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            QUERIES["findings"],
            {
                "statuses": None if statuses is None else list(statuses),
                "kind": kind,
                "ids": ids,
                "kinds": list(FINDING_KINDS),
                "limit": limit,
            },
        )
        return [_finding(row) for row in await cursor.fetchall()]


def reconcile_query(external: LoadLogMapping | None = None) -> sql.Composed:
    """The statement a run executes, counting the successful loads of the ``external``
    load log too when given."""
    return sql.SQL(QUERIES["reconcile"]).format(mapped=load_pairs_query(external))


async def reconcile(
    conn: psycopg.AsyncConnection[Any],
    ran_by: str,
    now: datetime | None = None,
    *,
    external: LoadLogMapping | None = None,
    tell: Tell | None = None,
) -> Reconciliation:
    """Run reconciliation as ``ran_by``, judging staleness at ``now`` (the database's
    clock when None) by the successful loads in ledgerflow's load log and in the
    ``external`` one when given; record the run and return it with its new and reopened
    findings. An external log that cannot be read (no such table or column, no right to
    read it) is logged, and the run judges by ledgerflow's log alone.

    ``tell`` is given the new and reopened findings inside the run's transaction (to
    write their mail), so that they are told of exactly when they are recorded."""
    began = time.perf_counter()
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["reconcile_lock"], {"key": RECONCILE_LOCK})
        await cursor.execute(QUERIES["reconcile_settings"])
        (counts,) = await fetch_reading(cursor, reconcile_query, external, {"now": now})
        ids: list[int] = counts["new"]
        seconds = time.perf_counter() - began
        await cursor.execute(
            QUERIES["record_run"],
            {
                "started_at": counts["started_at"],
                "seconds": seconds,
                "ran_by": ran_by,
                "tables_read": counts["tables_read"],
                "onboarded": counts["onboarded"],
                "found": counts["found"],
                "new": len(ids),
                "closed": counts["closed"],
            },
        )
        run = await cursor.fetchone()
        assert run is not None
        new = await _select(conn, ids=ids, limit=len(ids)) if ids else []
        if new and tell is not None:
            await tell(conn, new)
    return Reconciliation(
        run_id=run["id"],
        started_at=counts["started_at"],
        seconds=seconds,
        ran_by=ran_by,
        tables_read=counts["tables_read"],
        onboarded=counts["onboarded"],
        found=counts["found"],
        new=tuple(new),
        closed=counts["closed"],
        new_count=len(ids),
    )


async def findings(
    conn: psycopg.AsyncConnection[Any],
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int | None = None,
) -> list[Finding]:
    """The findings, open and investigating ones first, then by kind and table; only
    those of ``status`` (or 'active': open or investigating) and ``kind`` when given;
    all of them unless ``limit`` says how many.
    Raise FindingError naming an unknown status or kind."""
    statuses: tuple[str, ...] | None
    if status is None:
        statuses = None
    elif status == "active":
        statuses = ACTIVE
    elif status in FINDING_STATUSES:
        statuses = (status,)
    else:
        raise FindingError("status", f"one of active, {', '.join(FINDING_STATUSES)}")
    if kind is not None and kind not in FINDING_KINDS:
        raise FindingError("kind", f"one of {', '.join(FINDING_KINDS)}")
    return await _select(conn, statuses=statuses, kind=kind, limit=limit)


async def update_finding(
    conn: psycopg.AsyncConnection[Any],
    finding_id: int,
    actor: str,
    *,
    status: str | None = None,
    owner: str | None = None,
) -> Finding:
    """Set a finding's status or owner (an empty owner clears it) as ``actor``, in the
    audit log too; return the finding. Raise FindingError naming the wrong field."""
    if status is None and owner is None:
        raise FindingError("status", "give a status or an owner")
    if status is not None and status not in FINDING_STATUSES:
        raise FindingError("status", f"one of {', '.join(FINDING_STATUSES)}")
    if owner and not OWNER.fullmatch(owner):
        raise FindingError("owner", "1 to 64 characters, no control characters")
    async with conn.transaction():
        cursor = await conn.execute(
            QUERIES["update_finding"],
            {"id": finding_id, "status": status, "owner": owner, "actor": actor},
        )
        if await cursor.fetchone() is None:
            raise FindingError("id", f"no finding {finding_id}")
        await audit(
            conn, actor, "finding.update", str(finding_id), {"status": status, "owner": owner}, None
        )
        (changed,) = await _select(conn, ids=[finding_id], limit=1)
    return changed


async def last_reconciliation(conn: psycopg.AsyncConnection[Any]) -> Reconciliation | None:
    """The newest run, None before the first; its ``new`` is empty (the findings it
    opened are not kept apart from the others), its ``new_count`` is how many there were."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["last_run"])
        row = await cursor.fetchone()
    if row is None:
        return None
    return Reconciliation(
        run_id=row["id"],
        started_at=row["started_at"],
        seconds=row["seconds"],
        ran_by=row["ran_by"],
        tables_read=row["tables_read"],
        onboarded=row["onboarded"],
        found=row["found"],
        new=(),
        closed=row["closed"],
        new_count=row["new_count"],
    )


def _cells(finding: Finding) -> list[object]:
    values = finding.as_json()
    values["models"] = " ".join(finding.models)
    return [values[column] for column in Finding.COLUMNS]


def findings_csv(found: list[Finding]) -> bytes:
    """The findings as CSV (UTF-8): a header of ``Finding.COLUMNS``, one line each;
    models separated by spaces."""
    return csv_report(Finding.COLUMNS, [_cells(f) for f in found]).encode("utf-8")


def findings_pdf(found: list[Finding], run: Reconciliation | None, generated_at: datetime) -> bytes:
    """The findings as a PDF: the last run, the counts per kind and status, then each
    finding."""
    if run is None:
        summary = "Reconciliation has not run yet."
    else:
        summary = (
            f"Last run by {run.ran_by} at {run.started_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
            f" in {run.seconds:.2f} s:"
            f" {run.tables_read:,} tables read by models, {run.onboarded:,} onboarded feeds,"
            f" {run.found:,} findings, {run.closed:,} closed."
        )
    per = Counter((f.kind, f.status) for f in found)
    counts = [
        (
            kind,
            *(per[kind, status] for status in FINDING_STATUSES),
            sum(per[kind, status] for status in FINDING_STATUSES),
        )
        for kind in FINDING_KINDS
    ]
    counts.append(
        ("all", *(sum(per[k, s] for k in FINDING_KINDS) for s in FINDING_STATUSES), len(found))
    )
    return pdf_report(
        "ledgerflow feed findings",
        None,
        [
            Paragraph(summary),
            Heading("Counts"),
            Table(("kind", *FINDING_STATUSES, "total"), counts, {*FINDING_STATUSES, "total"}),
            Heading(
                "Findings"
                if len(found) <= MAX_PDF_FINDINGS
                else f"Findings, the first {MAX_PDF_FINDINGS:,} of {len(found):,} (the CSV has all)"
            ),
            Table(
                ("id", "kind", "table", "feed", "models", "status", "owner", "detail"),
                [
                    (
                        f.id,
                        f.kind,
                        f.table_name,
                        f.feed_source,
                        " ".join(f.models),
                        f.status,
                        f.owner,
                        f.detail,
                    )
                    for f in found[:MAX_PDF_FINDINGS]
                ],
                {"id"},
            ),
        ],
        generated_at,
    )


async def reconcile_forever(
    url: str,
    seconds: float,
    on_new: Callable[[Reconciliation], Awaitable[None]],
    *,
    external: LoadLogMapping | None = None,
    tell: Tell | None = None,
) -> None:
    """Reconcile every ``seconds``, on a connection of its own, until cancelled,
    counting the loads of the ``external`` load log too when given, telling of new
    findings through ``tell`` (see ``reconcile``), and hand each run that found something
    new or reopened to ``on_new``. A database that cannot answer is
    logged and asked again at the next turn."""

    async def turn(conn: psycopg.AsyncConnection[Any]) -> None:
        result = await reconcile(conn, RAN_BY, external=external, tell=tell)
        log.info(
            "feeds.reconciled",
            found=result.found,
            new=len(result.new),
            closed=result.closed,
            seconds=round(result.seconds, 3),
        )
        if result.new:
            await on_new(result)

    await every(url, seconds, turn, "feeds.reconcile_failed")
