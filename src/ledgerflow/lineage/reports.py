"""Lineage reports: the flow graph with its stage counts, the rules with their
justifications, the filtered messages and the comparisons, as CSV and as PDF."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ledgerflow.db.queries import Queries
from ledgerflow.lineage.comparisons import last_comparisons
from ledgerflow.lineage.flows import prices_flow, transactions_flow
from ledgerflow.lineage.stages import (
    Window,
    filtered_messages,
    price_stages,
    transaction_stages,
)
from ledgerflow.reports.pdf import (
    Figure,
    Heading,
    Paragraph,
    Section,
    Table,
    csv_report,
    pdf_report,
)

QUERIES = Queries.of("ledgerflow.lineage", "reports.sql")
PARTS = ("stages", "rules", "filtered", "comparisons")
MAX_FILTERED_ROWS = 10_000  # in a PDF; the CSV of filtered messages takes a limit of its own
MAX_CSV_ROWS = 1_000_000  # filtered messages in one CSV; a shorter window gives the rest

STAGE_COLUMNS = ("pipeline", "stage", "count")
RULE_COLUMNS = (
    "name",
    "version",
    "enabled",
    "condition",
    "technical",
    "functional",
    "owner",
    "changed_by",
    "changed_at",
    "filtered",
)
FILTERED_COLUMNS = (
    "batch_id",
    "position",
    "committed_at",
    "queue",
    "message_id",
    "body_sha256",
    "provider_id",
    "value",
    "rule",
    "version",
    "technical",
    "functional",
)


COMPARISON_COLUMNS = (
    "comparison_id",
    "source",
    "started_at",
    "ran_by",
    "seconds",
    "explained",
    "unexplained",
)
MAX_COMPARISONS = 200  # the newest runs of the window a report lists


async def stage_rows(conn: psycopg.AsyncConnection[Any], window: Window) -> list[tuple[Any, ...]]:
    """Every stage and branch of both pipelines with its count."""
    stages = await transaction_stages(conn, window)
    rows: list[tuple[Any, ...]] = [
        ("transactions", "received", stages.received),
        ("transactions", "redelivered (already counted)", stages.redelivered),
        ("transactions", "duplicate message id", stages.duplicate),
        *(("transactions", f"rejected: {r}", c) for r, c in stages.rejected_by_reason),
        ("transactions", "parsed", stages.parsed),
        *(("transactions", f"filtered: {n} v{v}", c) for n, v, c in stages.filtered_by_rule),
        ("transactions", "stored", stages.stored),
        ("transactions", "published", stages.published),
    ]
    prices = await price_stages(conn, window)
    if prices is not None:
        rows += [
            ("price batches", "received", prices.received),
            ("price batches", "rejected: invalid_price_batch", prices.rejected),
            ("price batches", "committed", prices.committed),
            ("price batches", "rows served", prices.rows),
        ]
    return rows


async def rule_rows(conn: psycopg.AsyncConnection[Any], window: Window) -> list[tuple[Any, ...]]:
    """Every rule's newest version, with what it filtered in the window."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(QUERIES["rules"], window.params())
        found = await cursor.fetchall()
    return [
        tuple(row[c].isoformat() if isinstance(row[c], datetime) else row[c] for c in RULE_COLUMNS)
        for row in found
    ]


async def filtered_rows(
    conn: psycopg.AsyncConnection[Any], window: Window, rule: str | None, limit: int
) -> list[tuple[Any, ...]]:
    """The filtered messages of the window, newest first."""
    found = await filtered_messages(conn, window, rule, limit)
    return [
        tuple(
            row[c].isoformat() if isinstance(row[c], datetime) else row[c] for c in FILTERED_COLUMNS
        )
        for row in found
    ]


async def comparison_rows(
    conn: psycopg.AsyncConnection[Any], window: Window
) -> list[tuple[Any, ...]]:
    """The comparisons run in the window, newest first, with their counts."""
    runs = await last_comparisons(conn, MAX_COMPARISONS)
    return [
        (
            run.comparison_id,
            run.source,
            run.started_at.isoformat(),
            run.ran_by,
            round(run.seconds, 3),
            run.explained,
            run.unexplained,
        )
        for run in runs
        if window.since <= run.started_at < window.until
    ]


async def part_rows(
    conn: psycopg.AsyncConnection[Any], window: Window, part: str
) -> list[tuple[Any, ...]]:
    """The rows of one part of the report (``PARTS``), every one of them for a CSV."""
    if part == "stages":
        return await stage_rows(conn, window)
    if part == "rules":
        return await rule_rows(conn, window)
    if part == "comparisons":
        return await comparison_rows(conn, window)
    return await filtered_rows(conn, window, None, MAX_CSV_ROWS)


def as_csv(part: str, rows: Sequence[Sequence[Any]]) -> str:
    """One part of the report as CSV text."""
    columns = {
        "stages": STAGE_COLUMNS,
        "rules": RULE_COLUMNS,
        "filtered": FILTERED_COLUMNS,
        "comparisons": COMPARISON_COLUMNS,
    }
    return csv_report(columns[part], rows)


def _narrow(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    keep: Sequence[str],
    numeric: set[str],
) -> Table:
    """The columns of a table that fit a printed page (the CSV has every column)."""
    at = [list(columns).index(c) for c in keep]
    return Table(keep, [[row[i] for i in at] for row in rows], numeric=numeric)


async def lineage_pdf(
    conn: psycopg.AsyncConnection[Any],
    window: Window,
    built_in: Sequence[tuple[str, str, str]],
    extra: Sequence[Section] = (),
    now: datetime | None = None,
) -> bytes:
    """The whole lineage report: the flow graphs, the stage counts, the rules with their
    justifications (and the built-in ones), the filtered messages, then ``extra``."""
    stages = await transaction_stages(conn, window)
    prices = await price_stages(conn, window)
    filtered = await filtered_rows(conn, window, None, MAX_FILTERED_ROWS + 1)
    sections: list[Section] = [
        Heading("Data lineage"),
        Paragraph(
            "Every message received in the period, and where it went: each is counted at "
            "exactly one place (redelivered, duplicate, rejected, filtered or stored)."
        ),
        Figure(transactions_flow(stages), "Transactions: queue to KeyDB"),
    ]
    if prices is not None:
        sections.append(Figure(prices_flow(prices), "Price batches: received to served"))
    sections += [
        Table(STAGE_COLUMNS, await stage_rows(conn, window), numeric={"count"}),
        Heading("Filtering rules"),
        _narrow(
            RULE_COLUMNS,
            await rule_rows(conn, window),
            ("name", "version", "enabled", "condition", "technical", "functional", "filtered"),
            numeric={"version", "filtered"},
        ),
        Heading("Built-in technical rules (validation)"),
        Table(("reason", "technical", "functional"), list(built_in)),
        Heading("Filtered messages"),
    ]
    if len(filtered) > MAX_FILTERED_ROWS:
        sections.append(
            Paragraph(
                f"The newest {MAX_FILTERED_ROWS:,} of {stages.filtered:,}; the CSV export "
                "has them all."
            )
        )
    sections.append(
        _narrow(
            FILTERED_COLUMNS,
            filtered[:MAX_FILTERED_ROWS],
            ("committed_at", "message_id", "provider_id", "value", "rule", "version"),
            numeric={"provider_id", "value", "version"},
        )
    )
    sections += [
        Heading("Comparisons by message id"),
        Table(
            COMPARISON_COLUMNS,
            await comparison_rows(conn, window),
            numeric={"comparison_id", "seconds", "explained", "unexplained"},
        ),
        *extra,
    ]
    # Laying out pages takes a while (1.2 s for 10,000 rows): off the event loop.
    return await asyncio.to_thread(
        pdf_report,
        "ledgerflow lineage report",
        (window.since, window.until),
        sections,
        now or datetime.now(UTC),
    )
