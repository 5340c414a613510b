"""The treasury in the active worker: the desks' streams read into the ledger, normalised
trades written on to ``trades.normalised``, each batch announced on the console's live
feed. Runs only with LEDGERFLOW_TREASURY=true, and only where the worker leads, so one
instance reads each stream."""

from __future__ import annotations

import contextlib

import structlog
from psycopg_pool import AsyncConnectionPool

from ledgerflow.db.connections import keep_search_path_off_our_schema
from ledgerflow.kv.events import EventSink
from ledgerflow.settings import Settings
from ledgerflow.treasury.ingest import SOURCES, TreasuryIngest, default_stream
from ledgerflow.treasury.ledger import BatchResult
from ledgerflow.treasury.normalise import Normaliser, RejectedTrade
from ledgerflow.treasury.registry import HttpSchemaRegistry, schema_registry
from ledgerflow.treasury.streams import RabbitStreams, StreamError

log = structlog.get_logger(__name__)


async def treasury_forever(settings: Settings, events: EventSink) -> None:
    """Read every source until cancelled (a failure ends the worker's lead, like ingest)."""
    streams = RabbitStreams(settings.stream_server())
    pool = AsyncConnectionPool(
        settings.database_url,
        min_size=1,
        max_size=2,
        open=False,
        kwargs={"application_name": "ledgerflow-treasury", "autocommit": True},
        configure=keep_search_path_off_our_schema,
    )
    await pool.open()
    registry = schema_registry(settings.schema_registry_url, pool, settings.schema_registry_token)
    normalised = settings.treasury_normalised_stream

    async def batch_done(source: str, result: BatchResult) -> None:
        if normalised and result.normalised:
            # After the commit: at least once, a reader keys trades by their id.
            try:
                await streams.send(normalised, list(result.normalised))
            except StreamError as exc:
                log.warning("treasury.normalised_not_sent", error=str(exc))
        events.emit(
            {
                "type": "trades",
                "source": source,
                "stored": result.stored,
                "rejected": result.rejected,
                "duplicates": result.duplicates,
            }
        )

    try:
        normaliser = await Normaliser.start(registry)
        if normalised:
            await streams.create(normalised)
        ingest = TreasuryIngest(
            settings.database_url,
            streams,
            normaliser.normalise,
            (RejectedTrade,),
            batch_size=settings.treasury_batch_size,
            on_batch=batch_done,
            control=settings.treasury_control_stream,
        )
        prefix = settings.treasury_stream_prefix
        await ingest.run({s: default_stream(s, prefix) for s in SOURCES})
    finally:
        with contextlib.suppress(Exception):
            await streams.close()
        if isinstance(registry, HttpSchemaRegistry):
            await registry.aclose()
        await pool.close()
