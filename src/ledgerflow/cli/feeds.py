"""``ledgerflow feeds``: the feeds detected from the load log."""

from __future__ import annotations

import json
from typing import Any

import click
import psycopg

from ledgerflow.cli.common import with_database
from ledgerflow.feeds.loads import Feed, detect, feeds


def _print(found: list[Feed], as_json: bool, none: str) -> None:
    if as_json:
        click.echo(json.dumps([f.as_json() for f in found], indent=2))
        return
    if not found:
        click.echo(none)
    for feed in found:
        click.echo(
            f"{feed.source:32} {feed.table_name:40} {feed.state:10}"
            f" first load {feed.first_load_at.isoformat()}"
        )


@click.group(name="feeds")
def feeds_command() -> None:
    """Data feeds: each (source, table) pair that loaded successfully."""


@feeds_command.command(name="detect")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@click.pass_context
def detect_command(ctx: click.Context, as_json: bool) -> None:
    """Find the feeds the load log holds and no feed record does yet; print them."""

    async def work(conn: psycopg.AsyncConnection[Any]) -> list[Feed]:
        return await detect(conn)

    _print(with_database(ctx, work), as_json, "no new feed")


@feeds_command.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """Every feed, newest first, with its onboarding state."""

    async def work(conn: psycopg.AsyncConnection[Any]) -> list[Feed]:
        return await feeds(conn)

    _print(with_database(ctx, work), as_json, "no feed yet")
