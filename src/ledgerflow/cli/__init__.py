"""The ``ledgerflow`` command: one module per command group, all registered here."""

from __future__ import annotations

import click

from ledgerflow.cli import (
    access,
    api,
    database,
    feeds,
    lineage,
    mailbox,
    produce,
    rates,
    reconcile,
    report,
    run,
    shards,
    status,
    treasury,
    worker,
)
from ledgerflow.core import logs
from ledgerflow.settings import ConfigError, load_settings


@click.group()
@click.version_option(package_name="ledgerflow")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Transactions from RabbitMQ into PostgreSQL; balances into KeyDB every minute.

    Configuration comes from LEDGERFLOW_* environment variables (and a .env file).
    """
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logs.configure(settings.log_level, settings.log_format)
    ctx.obj = settings


for module in (database, worker, produce, api, rates, status, run, mailbox, shards):
    main.add_command(module.command)
main.add_command(access.users_command)
main.add_command(access.tokens_command)
main.add_command(lineage.rules_command)
main.add_command(lineage.trace_command)
main.add_command(report.report_command)
main.add_command(reconcile.reconcile_command)
main.add_command(reconcile.sources_command)
main.add_command(feeds.feeds_command)
main.add_command(feeds.models_command)
main.add_command(treasury.treasury_command)
