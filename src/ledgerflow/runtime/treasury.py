"""The treasury in the active worker: the desks' streams read into the ledger, normalised
trades written on to ``trades.normalised``, each batch announced on the console's live
feed. Runs only with LEDGERFLOW_TREASURY=true, and only where the worker leads, so one
instance reads each stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from ledgerflow.db.connections import DatabaseError, connect, keep_search_path_off_our_schema
from ledgerflow.kv.events import EventSink
from ledgerflow.settings import Settings
from ledgerflow.treasury.ingest import SOURCES, TreasuryIngest, default_stream
from ledgerflow.treasury.lcr import LcrFigures
from ledgerflow.treasury.ledger import BatchResult, normalised_sent, write_on_again
from ledgerflow.treasury.liquidity import RunningLcr, record_figures
from ledgerflow.treasury.normalise import Normaliser, RejectedTrade
from ledgerflow.treasury.registry import HttpSchemaRegistry, schema_registry
from ledgerflow.treasury.streams import RabbitStreams, StreamError

log = structlog.get_logger(__name__)


# Levels of the LCR people are told of when it crosses them: below the warning level
# (LEDGERFLOW_LCR_WARNING), below the 100 % floor, and back above the warning level.
OK, WARNING, BREACH = "ok", "warning", "breach"


def level_of(figures: LcrFigures, warning: Decimal) -> str:
    """Where the ratio stands: ok, warning (under the warning level) or breach (under 1)."""
    if figures.lcr is None or figures.lcr >= warning:
        return OK
    return WARNING if figures.lcr >= 1 else BREACH


class LiquidityWatch:
    """Keeps the LCR of the ledger in view (``RunningLcr``: each turn reads what changed
    since the last): sent to the console's live feed as soon as trades move it, recorded
    as the current minute's at most once a second (a minute keeps its last figures, and
    every minute has a row), and told of (``tell``) when it crosses the warning level or
    the floor. A turn follows each batch (``changed``), and one a second picks up what
    else moves the figures: adjustments, balances, reference data, the day."""

    def __init__(
        self,
        settings: Settings,
        events: EventSink,
        tell: Callable[[str, LcrFigures], None],
    ) -> None:
        self.settings = settings
        self.events = events
        self.tell = tell
        self.level = OK
        self.lcr = RunningLcr(settings.treasury_currency, settings.lcr_rates())
        self._changed = asyncio.Event()

    def changed(self) -> None:
        """Trades were stored: the figures may have moved."""
        self._changed.set()

    async def run(self) -> None:
        """Until cancelled. A database that cannot answer is asked again a second later;
        anything else that fails is logged, and the figures built again from every row."""
        loop = asyncio.get_running_loop()
        conn: psycopg.AsyncConnection[Any] | None = None
        sent: tuple[LcrFigures, dict[str, int]] | None = None
        recorded: tuple[datetime, LcrFigures, LcrFigures] | None = None
        unrecorded: tuple[datetime, LcrFigures, LcrFigures] | None = None
        recorded_at = -1.0
        try:
            while True:
                self._changed.clear()
                try:
                    if conn is None or conn.closed:
                        conn = await connect(self.settings.database_url, autocommit=True)
                    now = datetime.now(UTC)
                    adjusted, unadjusted = await self.lcr.refresh(conn, now)
                    minute = now.replace(second=0, microsecond=0)
                    if unrecorded is not None and unrecorded[0] != minute:
                        await record_figures(conn, *unrecorded)  # its minute's last figures
                        recorded, unrecorded, recorded_at = unrecorded, None, loop.time()
                    current = (minute, adjusted, unadjusted)
                    unrecorded = None if current == recorded else current
                    if unrecorded is not None and loop.time() - recorded_at >= 1.0:
                        await record_figures(conn, *unrecorded)
                        recorded, unrecorded, recorded_at = unrecorded, None, loop.time()
                except (psycopg.Error, DatabaseError) as exc:
                    log.warning("treasury.lcr_failed", error=str(exc))
                    if conn is not None:
                        await conn.close()
                    conn = None
                    await asyncio.sleep(1.0)
                    continue
                except Exception:  # a bug or bad data: logged, never a frozen LCR in silence
                    log.exception("treasury.lcr_failed")
                    await asyncio.sleep(1.0)
                    continue
                if sent != (adjusted, self.lcr.offsets):
                    sent = (adjusted, dict(self.lcr.offsets))
                    self.events.emit(
                        {
                            "type": "lcr",
                            "as_of": now.isoformat(),
                            **adjusted.as_json(),
                            "offsets": sent[1],
                        }
                    )
                level = level_of(adjusted, self.settings.lcr_warning)
                if level != self.level:
                    self.tell(level, adjusted)
                    self.level = level
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 1.0)
        finally:
            if conn is not None:
                if unrecorded is not None and not conn.closed:
                    # The figures not yet recorded are their minute's last: keep them.
                    with contextlib.suppress(psycopg.Error, TimeoutError):
                        await asyncio.wait_for(record_figures(conn, *unrecorded), 2.0)
                await conn.close()


async def treasury_forever(
    settings: Settings, events: EventSink, tell: Callable[[str, LcrFigures], None]
) -> None:
    """Read every source until cancelled (a failure ends the worker's lead, like ingest),
    and keep the LCR in view (``LiquidityWatch``)."""
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
        watch.changed()
        if normalised:
            # After the commit: at least once, a reader keys trades by their id. Noted
            # when sent; after a crash before that, written on again at the start.
            try:
                if result.normalised:
                    await streams.send(normalised, list(result.normalised))
                async with pool.connection() as conn:
                    await normalised_sent(conn, result.stream, result.next_offset)
            except (StreamError, psycopg.Error) as exc:
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

    watch = LiquidityWatch(settings, events, tell)
    watching = asyncio.create_task(watch.run(), name="treasury:lcr")

    try:
        normaliser = await Normaliser.start(registry, encode=bool(normalised))
        if normalised:
            await streams.create(normalised)

            async def send(bodies: list[bytes]) -> None:
                await streams.send(normalised, bodies)

            async with pool.connection() as conn:
                again = await write_on_again(conn, streams.read, normaliser.normalise, send)
            if again:
                log.info("treasury.normalised_written_again", trades=again)
        ingest = TreasuryIngest(
            settings.database_url,
            streams,
            normaliser.normalise,
            (RejectedTrade,),
            batch_size=settings.treasury_batch_size,
            max_wait=settings.treasury_batch_wait,
            on_batch=batch_done,
            control=settings.treasury_control_stream,
            reserved=(normalised,) if normalised else (),
        )
        prefix = settings.treasury_stream_prefix
        await ingest.run({s: default_stream(s, prefix) for s in SOURCES})
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        with contextlib.suppress(Exception):
            await streams.close()
        if isinstance(registry, HttpSchemaRegistry):
            await registry.aclose()
        await pool.close()
