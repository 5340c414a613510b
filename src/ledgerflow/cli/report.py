"""``ledgerflow report``: the lineage report as PDF, or one part of it as CSV."""

from __future__ import annotations

import sys
from typing import Any

import click
import psycopg

from ledgerflow.cli.common import with_database
from ledgerflow.lineage import reports
from ledgerflow.lineage.stages import PERIODS, WindowError, window_of
from ledgerflow.transactions.rules import BUILT_IN


@click.command(name="report")
@click.argument("part", type=click.Choice(["lineage", *reports.PARTS]), default="lineage")
@click.option(
    "--format", "fmt", type=click.Choice(["pdf", "csv"]), default="pdf", show_default=True
)
@click.option("--period", type=click.Choice(list(PERIODS)), default="24h", show_default=True)
@click.option("--since", help="The window's start, ISO 8601 (UTC without an offset).")
@click.option("--until", help="The window's end, ISO 8601 (default: now).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here, not stdout.")
@click.pass_context
def report_command(
    ctx: click.Context,
    part: str,
    fmt: str,
    period: str,
    since: str | None,
    until: str | None,
    output: str | None,
) -> None:
    """Write the lineage report (PART lineage, as PDF: graphs, counts, rules, filtered
    messages, comparisons) or one part of it as CSV (PART stages, rules, filtered or
    comparisons)."""
    try:
        window = window_of(period, since, until)
    except WindowError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.parameter}") from None
    if fmt == "pdf" and part != "lineage":
        raise click.BadParameter(
            "a PDF is the whole report: use PART lineage", param_hint="--format"
        )
    if fmt == "csv" and part == "lineage":
        raise click.BadParameter(
            "CSV is one part: stages, rules, filtered or comparisons", param_hint="PART"
        )
    built_in = [(r.value, t, f) for r, (t, f) in BUILT_IN.items()]

    async def work(conn: psycopg.AsyncConnection[Any]) -> bytes:
        if fmt == "pdf":
            return await reports.lineage_pdf(conn, window, built_in)
        rows = await reports.part_rows(conn, window, part)
        return reports.as_csv(part, rows).encode()

    content = with_database(ctx, work)
    if output:
        with open(output, "wb") as out:
            out.write(content)
        click.echo(f"wrote {output} ({len(content):,} bytes)", err=True)
    elif fmt == "pdf" and sys.stdout.isatty():
        raise click.UsageError("a PDF on a terminal is unreadable: give -o FILE")
    else:
        sys.stdout.buffer.write(content)
