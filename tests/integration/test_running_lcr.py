"""The LCR kept current (``RunningLcr``) against the LCR computed from every row
(``lcr_now``) on a real ledger: the example desks' trades stored batch by batch through the
ledger, adjustments, balances, new reference data and a new day. The running figures must
equal the full ones exactly, and come from the keys a batch touched, not from a rebuild."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from ledgerflow.treasury.adjustments import add_adjustment, end_adjustment
from ledgerflow.treasury.example_trades import example_instruments, make_trade
from ledgerflow.treasury.instruments import load_instruments
from ledgerflow.treasury.lcr import Level
from ledgerflow.treasury.ledger import write_batch
from ledgerflow.treasury.liquidity import RunningLcr, lcr_now, set_balance
from ledgerflow.treasury.normalise import Normaliser, RejectedTrade
from ledgerflow.treasury.registry import PostgresSchemaStore
from ledgerflow.treasury.streams import StreamMessage

pytestmark = pytest.mark.integration

SEED = 20261130
SOURCES = ("fx", "repos", "bonds", "equities", "interbank")
Conn = psycopg.AsyncConnection[Any]


@pytest.fixture
async def normaliser(db_url: str) -> AsyncIterator[Normaliser]:
    async with AsyncConnectionPool(db_url, open=False, kwargs={"autocommit": True}) as pool:
        yield await Normaliser.start(PostgresSchemaStore(pool))


class Desks:
    """The example desks' trades, each source on its own stream, stored batch by batch."""

    def __init__(self, conn: Conn, normaliser: Normaliser, now: datetime) -> None:
        self.conn = conn
        self.normaliser = normaliser
        self.rng = random.Random(SEED)
        self.day = now.date()
        self.sent = dict.fromkeys(SOURCES, 0)

    async def batch(self, source: str, count: int) -> None:
        first = self.sent[source]
        messages = [
            StreamMessage(
                f"trades.{source}",
                first + n,
                json.dumps(
                    make_trade(source, self.rng, first + n, run_id="run", trading_day=self.day)
                ).encode(),
            )
            for n in range(count)
        ]
        self.sent[source] += count
        result = await write_batch(
            self.conn, source, messages, self.normaliser.normalise, (RejectedTrade,)
        )
        assert result.stored == count, result


async def same_as_full(conn: Conn, lcr: RunningLcr, now: datetime) -> None:
    adjusted, unadjusted = await lcr.refresh(conn, now)
    assert adjusted == await lcr_now(conn, now)
    assert unadjusted == await lcr_now(conn, now, adjusted=False)


async def test_the_running_lcr_equals_the_full_one_after_every_batch_without_a_rebuild(
    conn: Conn, normaliser: Normaliser
) -> None:
    await conn.set_autocommit(True)
    now = datetime.now(UTC)
    await load_instruments(conn, example_instruments())
    await set_balance(conn, "retail_stable", Decimal("2500000000"), "treasurer")
    desks = Desks(conn, normaliser, now)
    lcr = RunningLcr()
    await same_as_full(conn, lcr, now)  # an empty ledger: no ratio yet
    assert lcr.rebuilds == 1
    for turn in range(12):
        await desks.batch(SOURCES[turn % 5], 40)
        if turn % 3 == 0:
            await desks.batch(SOURCES[(turn + 2) % 5], 15)  # two batches between turns
        await same_as_full(conn, lcr, now)
    assert lcr.rebuilds == 1  # every turn after the first read only what the batches touched
    adjusted, _ = await lcr.refresh(conn, now)
    assert adjusted.lcr is not None and adjusted.hqla_total > 0 and adjusted.inflows > 0
    assert lcr.offsets == {f"trades.{s}": desks.sent[s] for s in SOURCES}


async def test_new_reference_data_an_adjustment_or_a_new_day_rebuild_it(
    conn: Conn, normaliser: Normaliser
) -> None:
    await conn.set_autocommit(True)
    now = datetime.now(UTC)
    instruments = example_instruments()
    await load_instruments(conn, instruments)
    await set_balance(conn, "retail_stable", Decimal("900000000"), "treasurer")
    desks = Desks(conn, normaliser, now)
    for source in SOURCES:
        await desks.batch(source, 30)
    lcr = RunningLcr()
    await same_as_full(conn, lcr, now)
    assert lcr.rebuilds == 1

    # A balance set: read every turn, no rebuild.
    await set_balance(conn, "operational_deposits", Decimal("40000000"), "treasurer")
    await same_as_full(conn, lcr, now)
    assert lcr.rebuilds == 1

    # New prices: the reference data's version moves on.
    bond = next(i for i in instruments if i.asset_class == "bond")
    assert bond.price is not None
    await load_instruments(conn, [replace(bond, price=bond.price / 2)])
    before = lcr.rebuilds
    await same_as_full(conn, lcr, now)
    assert lcr.rebuilds == before + 1

    # An adjustment in force, then ended: each changes the overrides, each a rebuild.
    adjustment = await add_adjustment(
        conn,
        kind="instrument",
        target=bond.instrument,
        level=Level.NONE,
        haircut_category=None,
        valid_from=now - timedelta(minutes=1),
        valid_until=now + timedelta(hours=1),
        reason="a test",
        by="treasurer",
        as_of=now,
    )
    await same_as_full(conn, lcr, now)
    assert lcr.rebuilds == before + 2
    await end_adjustment(conn, adjustment.id, "treasurer", now)
    await same_as_full(conn, lcr, now)
    assert lcr.rebuilds == before + 3

    # Tomorrow: FX trades settle, the horizon moves.
    await same_as_full(conn, lcr, now + timedelta(days=1))
    assert lcr.rebuilds == before + 4

    # And trades after all that: read key by key again.
    await desks.batch("fx", 25)
    await same_as_full(conn, lcr, now + timedelta(days=1))
    assert lcr.rebuilds == before + 4


async def test_a_stream_gone_back_rebuilds_it_and_a_busy_connection_is_refused(
    conn: Conn, normaliser: Normaliser
) -> None:
    await conn.set_autocommit(True)
    now = datetime.now(UTC)
    await load_instruments(conn, example_instruments())
    await set_balance(conn, "retail_stable", Decimal("900000000"), "treasurer")
    desks = Desks(conn, normaliser, now)
    await desks.batch("fx", 40)
    lcr = RunningLcr()
    await same_as_full(conn, lcr, now)
    # A restore: the FX stream's last 20 trades and their effect gone, its offset back.
    async with conn.transaction():
        cursor = await conn.execute(
            "DELETE FROM ledgerflow.trades WHERE stream = 'trades.fx' AND stream_offset >= 20"
            " RETURNING book, instrument, side, quantity, currency, settlement_amount"
        )
        for book, instrument, side, quantity, currency, amount in await cursor.fetchall():
            signed = quantity if side == "buy" else -quantity
            await conn.execute(
                "UPDATE ledgerflow.positions SET quantity = quantity - %s"
                " WHERE book = %s AND instrument = %s",
                (signed, book, instrument),
            )
            await conn.execute(
                "UPDATE ledgerflow.cash_positions SET amount = amount - %s"
                " WHERE book = %s AND currency = %s",
                (amount, book, currency),
            )
        await conn.execute(
            "UPDATE ledgerflow.stream_offsets SET next_offset = 20 WHERE stream = 'trades.fx'"
        )
    await same_as_full(conn, lcr, now)
    assert lcr.rebuilds == 2
    async with conn.transaction():
        with pytest.raises(ValueError, match="idle connection"):
            await lcr.refresh(conn, now)  # refused before reading: nothing to build again
    await same_as_full(conn, lcr, now)
    assert lcr.rebuilds == 2
    # A refresh that fails half-way (here: the version's row gone) leaves nothing half
    # applied: the next one builds everything again.
    await conn.execute("DELETE FROM ledgerflow.treasury_versions")
    with pytest.raises(IndexError):
        await lcr.refresh(conn, now)
    await conn.execute("INSERT INTO ledgerflow.treasury_versions (name) VALUES ('instruments')")
    await desks.batch("fx", 10)
    await same_as_full(conn, lcr, now)
    assert lcr.rebuilds == 3
