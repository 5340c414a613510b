"""``ledgerflow rates``: loading and generating rates data."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import click
import psycopg

from ledgerflow.cli.common import actor, log, prepare, run_or_explain, settings_of
from ledgerflow.db.connections import connect, connect_sync
from ledgerflow.feeds.loads import Load, record_load
from ledgerflow.rates import dumps, synthetic
from ledgerflow.rates.cache import RatesCache
from ledgerflow.settings import Settings


@click.group(name="rates")
def command() -> None:
    """Rates data: load a dump or CSV files, or generate a synthetic set."""


@command.command(name="load")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--replace", is_flag=True, help="Empty prices first (regions and ports are kept).")
@click.pass_context
def load_command(ctx: click.Context, paths: tuple[str, ...], replace: bool) -> None:
    """Load a dump like the original rates.sql, or ports/regions/prices CSV files.

    Everything goes in one transaction: all of it, or nothing. The rates tables are
    created first if the database lacks them.
    """
    settings = settings_of(ctx)

    def load() -> None:
        prepare(settings, ["rates"])
        blocks = dumps.read(Path(p) for p in paths)
        started = datetime.now(UTC)
        with connect_sync(settings.database_url) as conn:
            added = dumps.load(conn, blocks, replace=replace)
        log.info("rates.loaded", **added)
        asyncio.run(record_loads(settings.database_url, added, started))
        asyncio.run(clear_cache(settings))

    try:
        run_or_explain(load)
    except dumps.LoadError as exc:
        raise click.ClickException(str(exc)) from None


async def record_loads(url: str, added: dict[str, int], started: datetime) -> None:
    """Each table the load wrote to, in the load log (``rates load`` is a loader too)."""
    finished = datetime.now(UTC)
    conn = await connect(url, autocommit=True)
    async with conn:
        for table, rows in sorted(added.items()):
            load = Load("rates load", f"public.{table}", rows, "succeeded", started, finished)
            await record_load(conn, load, actor())


@command.command(name="generate")
@click.option(
    "--scale",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Size relative to the original dump (56,689 prices).",
)
@click.option("--seed", type=int, default=1, show_default=True, help="For a reproducible set.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="rates-data",
    show_default=True,
    help="Directory for regions.csv, ports.csv and prices.csv.",
)
def generate_command(scale: float, seed: int, out: str) -> None:
    """Write a synthetic dataset of the original's shape (load it with `rates load`)."""
    counts = synthetic.write_csv(synthetic.generate(scale, seed), Path(out))
    log.info("rates.generated", directory=out, **counts)


async def clear_cache(settings: Settings) -> None:
    """Cached /rates answers may all be stale after a load: drop them."""
    cache = RatesCache.from_url(settings.cache_url)
    try:
        await cache.clear()
    finally:
        await cache.close()


def load_sample(conn: psycopg.Connection[object]) -> None:
    """Give the quick start some rates: a synthetic set of the original's size, once."""
    import tempfile

    if dumps.has_prices(conn):
        return
    with tempfile.TemporaryDirectory() as directory:
        synthetic.write_csv(synthetic.generate(1.0), Path(directory))
        names = ("regions", "ports", "prices")
        added = dumps.load(conn, dumps.read(Path(directory) / f"{n}.csv" for n in names))
    log.info("rates.sample_loaded", **added)
