"""``ledgerflow treasury``: which streams the sources read, and the example producer."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
from datetime import UTC, datetime
from typing import Any

import click
import psycopg
from psycopg_pool import AsyncConnectionPool

from ledgerflow.cli.common import log, prepare, run_or_explain, settings_of, with_database
from ledgerflow.settings import Settings
from ledgerflow.treasury.example_trades import example_instruments
from ledgerflow.treasury.instruments import (
    InstrumentsCsvError,
    load_instruments,
    parse_instruments_csv,
)
from ledgerflow.treasury.producer import produce
from ledgerflow.treasury.registry import HttpSchemaRegistry, schema_registry
from ledgerflow.treasury.status import treasury_status
from ledgerflow.treasury.streams import RabbitStreams


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
        try:
            return await treasury_status(conn, control)
        except psycopg.errors.UndefinedTable:
            raise click.ClickException(
                "this database has no treasury tables yet: `ledgerflow migrate --treasury`,"
                " or run the worker with LEDGERFLOW_TREASURY=true"
            ) from None

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


@treasury_command.command(name="produce")
@click.option("--count", type=click.IntRange(1), help="Messages to send (default: until stopped).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Messages a second.")
@click.option("--random-seed", "seed", type=int, help="Repeat a run (the seed is logged).")
@click.option("--bad-ratio", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--avro-ratio", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.pass_context
def produce_command(
    ctx: click.Context,
    count: int | None,
    rate: float | None,
    seed: int | None,
    bad_ratio: float,
    avro_ratio: float,
) -> None:
    """Publish realistic trades of every desk's format (JSON and Avro in the Confluent wire
    format; malformed ones with --bad-ratio) to the treasury's streams."""
    settings = settings_of(ctx)
    chosen = seed if seed is not None else secrets.randbelow(2**31)
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")

    async def go() -> None:
        pool = AsyncConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=2,
            open=False,
            kwargs={"autocommit": True},
        )
        await pool.open()
        registry = schema_registry(
            settings.schema_registry_url, pool, settings.schema_registry_token
        )
        streams = RabbitStreams(settings.stream_server())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            report = await produce(
                streams,
                registry,
                count=count,
                rate=rate,
                bad_ratio=bad_ratio,
                avro_ratio=avro_ratio,
                seed=chosen,
                run_id=run_id,
                stream_of=lambda source: f"{settings.treasury_stream_prefix}{source}",
                trading_day=datetime.now(UTC).date(),
                stop=stop,
            )
            log.info("treasury.produced", seed=chosen, sent=report.total, per_kind=report.per_kind)
        finally:
            await streams.close()
            if isinstance(registry, HttpSchemaRegistry):
                await registry.aclose()
            await pool.close()

    prepare_treasury(settings)
    run_or_explain(lambda: asyncio.run(go()))


def prepare_treasury(settings: Settings) -> None:
    """The treasury's tables, whether or not LEDGERFLOW_TREASURY is on."""
    run_or_explain(lambda: prepare(settings, ["treasury"]))


@treasury_command.group(name="instruments")
def instruments_command() -> None:
    """Instruments' reference data: level, haircut category, currency, price."""


@instruments_command.command(name="load")
@click.argument("csv_file", type=click.File("r", encoding="utf-8"), required=False)
@click.option("--example", is_flag=True, help="The instruments the example producer trades.")
@click.pass_context
def load_command(ctx: click.Context, csv_file: Any, example: bool) -> None:
    """Load (or update) instruments from CSV_FILE (- for standard input), with the header
    instrument,asset_class,issuer_type,hqla_level,haircut_category,currency,price."""
    settings = settings_of(ctx)
    if (csv_file is None) == (not example):
        raise click.UsageError("give a CSV_FILE or --example")
    try:
        rows = (
            example_instruments(settings.treasury_currency)
            if example
            else parse_instruments_csv(csv_file.read())
        )
    except InstrumentsCsvError as exc:
        raise click.ClickException(f"CSV_FILE: {exc}") from None
    prepare_treasury(settings)

    async def work(conn: psycopg.AsyncConnection[Any]) -> int:
        return await load_instruments(conn, rows)

    click.echo(f"loaded {with_database(ctx, work):,} instruments")
