"""``ledgerflow feeds`` and ``ledgerflow models``: the feeds detected from the load log,
and the production models with the tables they read."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click
import psycopg

from ledgerflow.cli.common import actor, settings_of, with_database
from ledgerflow.feeds.letters import tell_findings
from ledgerflow.feeds.loads import Feed, detect, feeds
from ledgerflow.feeds.models import ModelError, models, register_model
from ledgerflow.feeds.reconcile import (
    FINDING_KINDS,
    Finding,
    Reconciliation,
    findings,
    findings_csv,
    findings_pdf,
    last_reconciliation,
    reconcile,
)
from ledgerflow.feeds.workflow import FeedRecord, TrailEntry, feed, trail
from ledgerflow.notifications.notify import own_connection
from ledgerflow.runtime.announce import postman


def _print(found: list[Feed], as_json: bool, none: str) -> None:
    if as_json:
        click.echo(json.dumps([f.as_json() for f in found], indent=2))
        return
    if not found:
        click.echo(none)
    for one in found:
        click.echo(
            f"{one.source:32} {one.table_name:40} {one.state:10}"
            f" first load {one.first_load_at.isoformat()}"
        )


@click.group(name="feeds")
def feeds_command() -> None:
    """Data feeds: each (source, table) pair that loaded successfully."""


@feeds_command.command(name="detect")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@click.pass_context
def detect_command(ctx: click.Context, as_json: bool) -> None:
    """Find the feeds the load log holds and no feed record does yet; print them."""

    settings = settings_of(ctx)

    async def work(conn: psycopg.AsyncConnection[Any]) -> list[Feed]:
        found = await detect(conn, settings.feed_letters(), external=settings.feeds_load_log())
        if found:  # the administrators' mails, now rather than at the worker's next round
            await postman(settings, own_connection(settings.database_url)).deliver()
        return found

    _print(with_database(ctx, work), as_json, "no new feed")


@feeds_command.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """Every feed, newest first, with its onboarding state."""

    async def work(conn: psycopg.AsyncConnection[Any]) -> list[Feed]:
        return await feeds(conn)

    _print(with_database(ctx, work), as_json, "no feed yet")


@feeds_command.command(name="show")
@click.argument("feed_id", type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@click.pass_context
def show_command(ctx: click.Context, feed_id: int, as_json: bool) -> None:
    """One feed: what is recorded about it, and its audit trail."""

    async def work(
        conn: psycopg.AsyncConnection[Any],
    ) -> tuple[FeedRecord | None, list[TrailEntry]]:
        return await feed(conn, feed_id), await trail(conn, feed_id)

    record, steps = with_database(ctx, work)
    if record is None:
        raise click.ClickException(f"FEED_ID: no feed {feed_id}")
    if as_json:
        document = record.as_json() | {"trail": [t.as_json() for t in steps]}
        click.echo(json.dumps(document, indent=2, default=str))
        return
    for name, value in record.as_json().items():
        if value is not None:
            click.echo(f"{name:20} {value}")
    click.echo("trail:")
    for t in steps:
        changed = ", ".join(f"{k}={v[1]}" for k, v in t.changes.items() if k != "step")
        click.echo(
            f"  {t.at.isoformat()}  {t.actor:16} {t.changes.get('step', ''):9}"
            f" {t.from_state or '':10} -> {t.to_state:10} {changed}"
        )


def _print_findings(found: list[Finding]) -> None:
    for f in found:
        click.echo(f"{f.id:>6} {f.kind:14} {f.status:13} {f.table_name:40} {f.detail}")


@feeds_command.command(name="reconcile")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@click.pass_context
def reconcile_command(ctx: click.Context, as_json: bool) -> None:
    """Reconcile the tables the models read against the onboarded feeds now; print what
    is new (and mail it to the administrators and analysts)."""
    settings = settings_of(ctx)
    by = actor()

    async def work(conn: psycopg.AsyncConnection[Any]) -> Reconciliation:
        letters = settings.feed_letters()
        result = await reconcile(
            conn,
            by,
            external=settings.feeds_load_log(),
            tell=lambda c, new: tell_findings(c, new, letters),
        )
        if result.new:
            await postman(settings, own_connection(settings.database_url)).deliver()
        return result

    result = with_database(ctx, work)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
        return
    click.echo(
        f"{result.tables_read:,} tables read by models, {result.onboarded:,} onboarded feeds:"
        f" {result.found:,} findings, {len(result.new):,} new, {result.closed:,} closed"
        f" ({result.seconds:.2f} s)"
    )
    _print_findings(list(result.new))


@feeds_command.command(name="findings")
@click.option(
    "--status",
    type=click.Choice(["active", "open", "investigating", "resolved", "dismissed"]),
    help="Only these (active: open or investigating).",
)
@click.option("--kind", type=click.Choice(FINDING_KINDS), help="Only this kind.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv", "pdf"]), default="text")
@click.option("--output", type=click.Path(dir_okay=False, writable=True), help="Write here.")
@click.pass_context
def findings_command(
    ctx: click.Context, status: str | None, kind: str | None, fmt: str, output: str | None
) -> None:
    """What reconciliation found, open and investigating first."""

    async def work(
        conn: psycopg.AsyncConnection[Any],
    ) -> tuple[list[Finding], Reconciliation | None]:
        return await findings(conn, status=status, kind=kind), await last_reconciliation(conn)

    found, run = with_database(ctx, work)
    if fmt == "text" and output is None:
        _print_findings(found)
        return
    content: bytes
    if fmt == "pdf":
        content = findings_pdf(found, run, datetime.now(UTC))
    elif fmt == "csv":
        content = findings_csv(found)
    else:
        content = json.dumps([f.as_json() for f in found], indent=2).encode()
    if output is None:
        sys.stdout.buffer.write(content)
    else:
        with open(output, "wb") as file:
            file.write(content)


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
