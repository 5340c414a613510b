"""``ledgerflow treasury``: which streams the sources read, and the example producer."""

from __future__ import annotations

import json
from typing import Any

import click
import psycopg

from ledgerflow.cli.common import settings_of, with_database
from ledgerflow.treasury.status import treasury_status


@click.group(name="treasury")
def treasury_command() -> None:
    """The treasury: trades from the desks' streams into positions and liquidity."""


@treasury_command.command(name="status")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@click.pass_context
def status_command(ctx: click.Context, as_json: bool) -> None:
    """Each source's stream, since when, how far it is read, the last control message
    applied; instruments held that the reference data does not know."""

    control = settings_of(ctx).treasury_control_stream

    async def work(conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
        return await treasury_status(conn, control)

    status = with_database(ctx, work)
    if as_json:
        click.echo(json.dumps(status, indent=2, default=str))
        return
    if not status["sources"]:
        click.echo("no source yet: the worker reads them with LEDGERFLOW_TREASURY=true")
    for s in status["sources"]:
        applied = s["control"] or {}
        click.echo(
            f"{s['source']:10} {s['stream']:32} since {s['since']:%Y-%m-%d %H:%M:%S}"
            f"  read to {s['next_offset']:>10,}  rejected {s['rejected']:,}"
            + (f"  (control: {json.dumps(applied)})" if applied else "")
        )
    for refused in status["refused_controls"]:
        click.echo(
            f"refused control {refused['message_id']}: {refused['reason']}: {refused['detail']}"
        )
    if status["unknown_instruments"]:
        names = ", ".join(u["instrument"] for u in status["unknown_instruments"])
        click.echo(f"instruments without reference data (counted in no HQLA level): {names}")
