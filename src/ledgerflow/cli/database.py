"""``ledgerflow migrate``."""

from __future__ import annotations

import click

from ledgerflow.cli.common import prepare, run_or_explain, settings_of


@click.command(name="migrate")
@click.option(
    "--rates",
    is_flag=True,
    help="Also create the rates tables (regions, ports, prices) if this database lacks them.",
)
@click.pass_context
def command(ctx: click.Context, rates: bool) -> None:
    """Create the database if needed and apply ledgerflow's migrations.

    The rates tables come with --rates, `ledgerflow rates load` or `ledgerflow run`; once
    a database has them, every later migrate keeps them up to date.
    """
    settings = settings_of(ctx)
    run_or_explain(lambda: prepare(settings, ["rates"] if rates else []))
