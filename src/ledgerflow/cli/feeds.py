"""``ledgerflow feeds`` and ``ledgerflow models``: the feeds detected from the load log,
and the production models with the tables they read."""

from __future__ import annotations

import json
from typing import Any

import click
import psycopg

from ledgerflow.cli.common import actor, with_database
from ledgerflow.feeds.loads import Feed, detect, feeds
from ledgerflow.feeds.models import ModelError, models, register_model


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


@click.group(name="models")
def models_command() -> None:
    """Production models and the tables they read."""


@models_command.command(name="add")
@click.argument("name")
@click.option("--sql", "sql_file", type=click.File("r"), help="The model's SQL (- for stdin).")
@click.option("--table", "tables", multiple=True, help="A table it reads (schema.table).")
@click.pass_context
def add_model(ctx: click.Context, name: str, sql_file: Any, tables: tuple[str, ...]) -> None:
    """Register model NAME (or replace it) with its SQL or the tables it reads; print the
    tables, views resolved to their base tables."""
    sql = sql_file.read() if sql_file is not None else None
    by = actor()

    async def work(conn: psycopg.AsyncConnection[Any]) -> dict[str, str | None]:
        return await register_model(
            conn, name, by, sql=sql, tables=list(tables) if tables else None
        )

    try:
        found = with_database(ctx, work, ())
    except ModelError as exc:
        option = {"sql": "--sql", "tables": "--table"}.get(exc.field, "NAME")
        raise click.ClickException(f"{option}: {exc.message}") from None
    for table, via in sorted(found.items()):
        click.echo(table + (f"  (through the view {via})" if via else ""))


@models_command.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@click.pass_context
def list_models(ctx: click.Context, as_json: bool) -> None:
    """Every model with the tables it reads."""
    found = with_database(ctx, models)
    if as_json:
        click.echo(json.dumps([m.as_json() for m in found], indent=2))
        return
    for model in found:
        click.echo(f"{model.name}: {', '.join(model.tables)}")
