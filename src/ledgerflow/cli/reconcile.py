"""``ledgerflow reconcile`` and ``ledgerflow sources``: comparisons by message id.

``reconcile`` exits 0 when every difference is explained, 1 when anything is
unexplained, and 2 when it could not compare (an unknown source, a table or column gone,
a service unreachable, a database lacking migrations): a scheduler can tell the three
apart. ``sources add`` and ``sources remove`` exit 2 when the definition is refused.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import psycopg

from ledgerflow.auth import store
from ledgerflow.cli.common import actor, require_migrated, settings_of
from ledgerflow.db.connections import DatabaseError, connect
from ledgerflow.lineage.comparisons import EXPLAINED_LIMIT, reconcile
from ledgerflow.lineage.results import BUILT_IN, ComparisonError, ComparisonResult, Item
from ledgerflow.lineage.sources import (
    DataSource,
    SourceError,
    list_sources,
    remove_source,
    save_source,
)
from ledgerflow.notifications.notify import Notifier, own_connection
from ledgerflow.runtime.announce import Announcer
from ledgerflow.settings import ConfigError, Settings

T = TypeVar("T")
# How a SourceError's field is given on the command line.
OPTIONS = {
    "name": "NAME",
    "source_table": "--source-table",
    "source_id": "--source-id",
    "persistency_table": "--persistency-table",
    "persistency_id": "--persistency-id",
    "target_table": "--target-table",
    "target_id": "--target-id",
}


class CannotCompare(click.ClickException):
    """A usage, configuration or dependency problem: exit status 2, never 1 (which means
    that a comparison found something unexplained)."""

    exit_code = 2


def _run(
    ctx: click.Context,
    work: Callable[[psycopg.AsyncConnection[Any], Settings], Awaitable[T]],
    name_option: str = "NAME",
) -> T:
    """Run ``work`` on a connection to a migrated database; every failure becomes one
    line and exit status 2."""
    settings = settings_of(ctx)

    async def go() -> T:
        conn = await connect(settings.database_url, autocommit=True)
        async with conn:
            await require_migrated(conn)
            return await work(conn, settings)

    try:
        return asyncio.run(go())
    except SourceError as exc:
        option = name_option if exc.field == "name" else OPTIONS.get(exc.field, exc.field)
        raise CannotCompare(f"{option}: {exc.message}") from None
    except (ComparisonError, ConfigError, DatabaseError, psycopg.Error) as exc:
        raise CannotCompare(str(exc).strip()) from None


def _line(item: Item) -> str:
    text = item.explanation if item.explained else item.detail
    return f"  {item.kind:<9} {item.stages:<19} {item.item_id}  {text or ''}"


def _print(result: ComparisonResult) -> None:
    """The result for people: counts per stage pair, then the first unexplained items."""
    click.echo(
        f"comparison {result.comparison_id} of {result.source} ({result.seconds:.2f} s):"
        f" {result.unexplained:,} unexplained, {result.explained:,} explained"
    )
    for stage in result.stages:
        if stage.left_ids is None:
            click.echo(f"{stage.stages}: not compared: {stage.note}")
            continue
        click.echo(
            f"{stage.stages}: {stage.left} {stage.left_ids:,} ids,"
            f" {stage.right} {stage.right_ids:,} ids"
        )
        click.echo(
            f"  missing {stage.missing:,} ({stage.missing_explained:,} explained),"
            f" foreign {stage.foreign:,} ({stage.foreign_explained:,} explained),"
            f" mismatched {stage.mismatched:,}"
        )
        for label, count in sorted(stage.explanations.items(), key=lambda e: (-e[1], e[0])):
            click.echo(f"    {count:>12,}  {label}")
    if result.items:
        click.echo(f"unexplained (first {len(result.items)} of {result.unexplained:,}):")
        for item in result.items:
            click.echo(_line(item))


@click.command(name="reconcile")
@click.argument("source", default=BUILT_IN)
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
@click.option(
    "--items",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Unexplained items to show (all are stored).",
)
@click.option(
    "--explained-limit",
    type=click.IntRange(min=0),
    default=EXPLAINED_LIMIT,
    show_default=True,
    help="Explained items to store (the counts are exact whatever the limit).",
)
@click.pass_context
def reconcile_command(
    ctx: click.Context, source: str, as_json: bool, items: int, explained_limit: int
) -> None:
    """Compare SOURCE (default: ledgerflow, the queue -> historical_transactions -> KeyDB)
    by message id; exit 1 when anything is unexplained."""
    by = actor()

    async def work(conn: psycopg.AsyncConnection[Any], settings: Settings) -> ComparisonResult:
        result = await reconcile(
            conn, settings.redis_url, source, by, explained_limit, first_items=items
        )
        if result.unexplained:  # a scheduled run tells people, as the console's does
            announce = Announcer(
                Notifier(settings.notify_settings(), own_connection(settings.database_url))
            )
            await announce.comparison_unexplained(result)
            await announce.close()
        return result

    result = _run(ctx, work, name_option="SOURCE")
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        _print(result)
    ctx.exit(1 if result.unexplained else 0)


@click.group(name="sources")
def sources_command() -> None:
    """Data sources that `ledgerflow reconcile` compares by message id."""


@sources_command.command(name="add")
@click.argument("name")
@click.option("--source-table", required=True, help="Where messages come from: [schema.]table.")
@click.option("--source-id", required=True, help="Its column holding the message id.")
@click.option("--persistency-table", required=True, help="Where they are kept: [schema.]table.")
@click.option("--persistency-id", required=True, help="Its column holding the message id.")
@click.option("--target-table", help="Where they go next (optional): [schema.]table.")
@click.option("--target-id", help="Its column holding the message id.")
@click.pass_context
def add_source(
    ctx: click.Context,
    name: str,
    source_table: str,
    source_id: str,
    persistency_table: str,
    persistency_id: str,
    target_table: str | None,
    target_id: str | None,
) -> None:
    """Add data source NAME, its tables and columns checked against the database."""
    by = actor()

    async def work(conn: psycopg.AsyncConnection[Any], _settings: Settings) -> DataSource:
        async with conn.transaction():
            saved = await save_source(
                conn,
                name,
                source_table,
                source_id,
                persistency_table,
                persistency_id,
                target_table,
                target_id,
                created_by=by,
            )
            await store.audit(conn, by, "source.add", name, saved.as_json())
        return saved

    saved = _run(ctx, work)
    labels = " -> ".join(label for label in saved.labels() if label)
    click.echo(f"source {saved.name} added: {labels}")


@sources_command.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the sources as JSON.")
@click.pass_context
def list_sources_command(ctx: click.Context, as_json: bool) -> None:
    """Every data source: the built-in one, then the configured ones."""

    async def work(conn: psycopg.AsyncConnection[Any], _settings: Settings) -> list[DataSource]:
        return await list_sources(conn)

    found = _run(ctx, work)
    if as_json:
        click.echo(json.dumps([source.as_json() for source in found], indent=2))
        return
    click.echo(f"{'NAME':<20} {'SOURCE':<32} {'PERSISTENCY':<32} {'TARGET':<32} CREATED BY")
    for source in found:
        left, middle, right = source.labels()
        click.echo(
            f"{source.name:<20} {left:<32} {middle:<32} {right or '-':<32}"
            f" {source.created_by or '(built in)'}"
        )


@sources_command.command(name="remove")
@click.argument("name")
@click.pass_context
def remove_source_command(ctx: click.Context, name: str) -> None:
    """Remove data source NAME; its past comparisons are kept."""
    by = actor()

    async def work(conn: psycopg.AsyncConnection[Any], _settings: Settings) -> None:
        async with conn.transaction():
            await remove_source(conn, name)
            await store.audit(conn, by, "source.remove", name)

    _run(ctx, work)
    click.echo(f"source {name} removed")
