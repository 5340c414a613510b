"""``ledgerflow status``."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from ledgerflow.cli.common import require_migrated, run_or_explain, settings_of
from ledgerflow.db import connections


@click.command(name="status")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def command(ctx: click.Context, as_json: bool) -> None:
    """Report every worker (active and standby) and exit 1 if anything is unhealthy.

    Unhealthy: a heartbeat older than 2 minutes, a worker that does not answer its
    /healthz, an active worker without a publication for 2 minutes, or no healthy active
    worker at all. Made for cron and monitors.
    """
    from ledgerflow.runtime import status as report_status

    settings = settings_of(ctx)
    report: dict[str, Any] = {}

    async def gather() -> dict[str, Any]:
        async with await connections.connect(settings.database_url) as conn:
            await require_migrated(conn)
        return await report_status.gather(settings)

    def collect() -> None:
        report.update(asyncio.run(gather()))

    run_or_explain(collect)
    click.echo(report_status.as_json(report) if as_json else report_status.render(report))
    sys.exit(0 if report["healthy"] else 1)
