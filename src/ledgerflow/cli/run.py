"""``ledgerflow run``: everything locally, in the foreground."""

from __future__ import annotations

import sys

import click

from ledgerflow.cli.common import log, prepare, run_or_explain, settings_of
from ledgerflow.cli.rates import load_sample
from ledgerflow.db.connections import connect_sync
from ledgerflow.transactions.producer import seed_example_data


@click.command(name="run")
@click.pass_context
def command(ctx: click.Context) -> None:
    """Run everything locally in the foreground: migrate, seed, worker, producer and API."""
    from ledgerflow.runtime.local import run_local

    settings = settings_of(ctx)

    def setup() -> None:
        prepare(settings, ["rates"])
        with connect_sync(settings.database_url) as conn:
            if seed_example_data(conn):
                log.info("producer.seeded", providers=2, transactions=3)
            load_sample(conn)

    run_or_explain(setup)
    sys.exit(run_local(settings))
