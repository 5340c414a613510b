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
@click.option(
    "--treasury",
    is_flag=True,
    help="Also create the treasury's tables (also with LEDGERFLOW_TREASURY=true).",
)
@click.pass_context
def command(ctx: click.Context, rates: bool, treasury: bool) -> None:
    """Create the database if needed and apply ledgerflow's migrations.

    The rates tables come with --rates, `ledgerflow rates load` or `ledgerflow run`, the
    treasury's with --treasury or LEDGERFLOW_TREASURY=true; once a database has a domain's
    tables, every later migrate keeps them up to date.
    """
    settings = settings_of(ctx)
    domains = [d for d, wanted in (("rates", rates), ("treasury", treasury)) if wanted]
    run_or_explain(lambda: prepare(settings, domains))
