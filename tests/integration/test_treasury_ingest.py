"""The treasury's ingest on real RabbitMQ streams and PostgreSQL: each trade counted once
across a crash mid-stream, a hot swap under load that loses and repeats nothing, a
control message naming a stream that does not exist refused, a malformed trade recorded
with its reason. The oracle is the positions fold of ``treasury.positions`` over the
trades as the normaliser reads them."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from ledgerflow.treasury.ingest import TreasuryIngest
from ledgerflow.treasury.ledger import next_offset, normalised_sent, write_batch, write_on_again
from ledgerflow.treasury.normalise import Normaliser, RejectedTrade
from ledgerflow.treasury.positions import Positions, Trade
from ledgerflow.treasury.registry import PostgresSchemaStore
from ledgerflow.treasury.streams import RabbitStreams, StreamMessage

from ..polling import eventually

pytestmark = pytest.mark.integration
SEED = 20261130


def fx_trade(rng: random.Random, n: int, prefix: str) -> bytes:
    """An FX trade as the FX desk sends it (JSON), amounts to the cent."""
    amount = Decimal(rng.randint(1, 5_000_000)) / 100
    rate = Decimal(rng.randint(90_000, 130_000)) / 100_000
    return json.dumps(
        {
            "deal_id": f"{prefix}-{n}",
            "desk": "fx-spot",
            "book": rng.choice(["FXLDN1", "FXNY1"]),
            "currency_pair": rng.choice(["EUR/USD", "GBP/USD", "EUR/CHF"]),
            "direction": rng.choice(["BUY", "SELL"]),
            "amount": str(amount),
            "rate": str(rate),
            "counter_amount": str((amount * rate).quantize(Decimal("0.01"))),
            "trade_time": "2026-11-30T09:15:30.250Z",
            "value_date": "2026-12-02",
        }
    ).encode()


@pytest.fixture
async def normaliser(db_url: str) -> AsyncIterator[Normaliser]:
    async with AsyncConnectionPool(db_url, open=False, kwargs={"autocommit": True}) as pool:
        yield await Normaliser.start(PostgresSchemaStore(pool))


async def oracle(normaliser: Normaliser, bodies: list[bytes]) -> dict[str, Any]:
    """Positions and cash as the fold of ``treasury.positions`` says, in any order."""
    positions = Positions()
    for body in bodies:
        try:
            t = (await normaliser.normalise("fx", body)).trade
        except RejectedTrade:
            continue
        if t["trade_id"] in positions:  # sent twice: counted once
            continue
        positions.apply(
            Trade(
                t["trade_id"],
                "fx",
                t["book"],
                t["instrument"],
                "buy" if t["side"] == "BUY" else "sell",
                t["quantity"],
                t["price"],
                t["currency"],
                t["settlement_amount"],
                t["trade_time"],
                t["settlement_date"],
            )
        )
    snapshot = positions.snapshot()
    return {
        "securities": {
            (b, i): q for b, held in snapshot["securities"].items() for i, q in held.items() if q
        },
        "cash": {(b, c): a for b, held in snapshot["cash"].items() for c, a in held.items() if a},
    }


async def ledger(conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
    cursor = await conn.execute("SELECT book, instrument, quantity FROM ledgerflow.positions")
    securities = {(b, i): q for b, i, q in await cursor.fetchall() if q}
    cursor = await conn.execute("SELECT book, currency, amount FROM ledgerflow.cash_positions")
    cash = {(b, c): a for b, c, a in await cursor.fetchall() if a}
    return {"securities": securities, "cash": cash}


async def reached(conn: psycopg.AsyncConnection[Any], stream: str, offset: int) -> bool:
    return await next_offset(conn, stream) >= offset


async def test_each_trade_is_counted_once_across_a_crash_mid_stream(
    conn: psycopg.AsyncConnection[Any],
    db_url: str,
    streams: RabbitStreams,
    normaliser: Normaliser,
) -> None:
    await conn.set_autocommit(True)
    rng = random.Random(SEED)
    stream = f"lf_test_{uuid.uuid4().hex[:8]}.trades.fx"
    await streams.create(stream)
    bodies = [fx_trade(rng, n, stream) for n in range(600)]
    bodies[17] = b"{not json"  # rejected, with its reason, and its offset passed
    bodies[250] = bodies[249]  # the desk sent a trade twice: counted once
    await streams.send(stream, bodies)

    first = TreasuryIngest(db_url, streams, normaliser.normalise, (RejectedTrade,), batch_size=40)
    reader = first.start("fx", stream)
    await eventually(lambda: reached(conn, stream, 200), 20)
    reader.task.cancel()  # a crash: the batch under way is rolled back
    await asyncio.gather(reader.task, return_exceptions=True)
    crashed_at = await next_offset(conn, stream)
    assert 200 <= crashed_at < 600

    again = TreasuryIngest(db_url, streams, normaliser.normalise, (RejectedTrade,), batch_size=40)
    again.start("fx", stream)
    await eventually(lambda: reached(conn, stream, 600), 30)
    await again.close()

    assert await ledger(conn) == await oracle(normaliser, bodies)
    cursor = await conn.execute("SELECT count(*) FROM ledgerflow.trades")
    assert (await cursor.fetchone() or [0])[0] == 598  # 600, one rejected, one repeated
    cursor = await conn.execute(
        "SELECT reason, message_id FROM ledgerflow.rejected_messages WHERE queue = %s",
        (f"stream:{stream}",),
    )
    assert await cursor.fetchall() == [("not_json", f"{stream}@17")]


async def test_a_hot_swap_under_load_loses_and_repeats_nothing(
    conn: psycopg.AsyncConnection[Any],
    db_url: str,
    streams: RabbitStreams,
    normaliser: Normaliser,
) -> None:
    await conn.set_autocommit(True)
    rng = random.Random(SEED + 1)
    tag = uuid.uuid4().hex[:8]
    old, new = f"lf_test_{tag}.trades.fx", f"lf_test_{tag}.trades.fx.v2"
    for stream in (old, new):
        await streams.create(stream)
    old_bodies = [fx_trade(rng, n, old) for n in range(4000)]
    new_bodies = [fx_trade(rng, n, new) for n in range(300)]
    control = f"lf_test_{tag}.control"
    ingest = TreasuryIngest(
        db_url, streams, normaliser.normalise, (RejectedTrade,), batch_size=25, control=control
    )
    running = asyncio.create_task(ingest.run({"fx": old}))
    try:
        # The old stream keeps filling while the swap happens: it is read part way.
        async def feed() -> None:
            for start in range(0, len(old_bodies), 100):
                await streams.send(old, old_bodies[start : start + 100])
                await asyncio.sleep(0.02)

        sending = asyncio.create_task(feed())
        await eventually(lambda: reached(conn, old, 500), 20)
        await streams.send(control, [json.dumps({"source": "fx", "stream": new}).encode()])
        await streams.send(new, new_bodies)
        await sending
        await eventually(lambda: reached(conn, new, 300), 30)
        stopped_at = await next_offset(conn, old)
        assert 500 <= stopped_at < 4000  # the swap met the old stream part way
        # Back to the old stream: it resumes where it stopped, so all of both count once.
        await streams.send(control, [json.dumps({"source": "fx", "stream": old}).encode()])
        await eventually(lambda: reached(conn, old, 4000), 30)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert await ledger(conn) == await oracle(normaliser, old_bodies + new_bodies)
    cursor = await conn.execute(
        "SELECT stream, control->>'stream' FROM ledgerflow.treasury_sources"
    )
    assert await cursor.fetchall() == [(old, old)]


async def test_a_control_message_naming_no_stream_is_refused_and_reading_goes_on(
    conn: psycopg.AsyncConnection[Any],
    db_url: str,
    streams: RabbitStreams,
    normaliser: Normaliser,
) -> None:
    await conn.set_autocommit(True)
    rng = random.Random(SEED + 2)
    stream = f"lf_test_{uuid.uuid4().hex[:8]}.trades.fx"
    control = f"{stream}.control"
    await streams.create(stream)
    await streams.create(control)
    ingest = TreasuryIngest(
        db_url, streams, normaliser.normalise, (RejectedTrade,), control=control
    )
    running = asyncio.create_task(ingest.run({"fx": stream}))
    try:
        control_from = await next_offset(conn, control)
        missing = json.dumps({"source": "fx", "stream": f"{stream}.missing"}).encode()
        await streams.send(control, [missing, b"swap please"])
        await eventually(lambda: reached(conn, control, control_from + 2), 20)
        await streams.send(stream, [fx_trade(rng, n, stream) for n in range(10)])
        await eventually(lambda: reached(conn, stream, 10), 20)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    cursor = await conn.execute(
        "SELECT reason FROM ledgerflow.rejected_messages WHERE queue = %s ORDER BY id",
        (f"stream:{control}",),
    )
    assert [r[0] for r in await cursor.fetchall()] == ["unknown_stream", "not_json"]
    cursor = await conn.execute("SELECT stream FROM ledgerflow.treasury_sources")
    assert await cursor.fetchall() == [(stream,)]


async def test_a_message_the_normaliser_fails_on_is_rejected_not_the_batch(
    conn: psycopg.AsyncConnection[Any], normaliser: Normaliser
) -> None:
    await conn.set_autocommit(True)
    rng = random.Random(SEED + 3)
    good = fx_trade(rng, 1, "s")
    nul = json.dumps({**json.loads(fx_trade(rng, 2, "s")), "deal_id": "X\u0000"}).encode()
    deep = b"[" * 100_000
    late = json.dumps(
        {**json.loads(fx_trade(rng, 3, "s")), "trade_time": "9999-12-31T23:30:00-01:00"}
    ).encode()
    batch = [
        StreamMessage("s", offset, body)
        for offset, body in enumerate([good, nul, deep, late, fx_trade(rng, 4, "s")])
    ]
    result = await write_batch(conn, "fx", batch, normaliser.normalise, (RejectedTrade,))
    assert (result.stored, result.rejected, result.next_offset) == (2, 3, 5)
    cursor = await conn.execute(
        "SELECT reason FROM ledgerflow.rejected_messages WHERE queue = 'stream:s' ORDER BY id"
    )
    assert [r[0] for r in await cursor.fetchall()] == ["bad_field", "not_json", "invalid_trade"]


async def test_offsets_the_broker_no_longer_holds_are_recorded_not_passed_silently(
    conn: psycopg.AsyncConnection[Any], normaliser: Normaliser
) -> None:
    await conn.set_autocommit(True)
    rng = random.Random(SEED + 4)
    batch = [StreamMessage("g", offset, fx_trade(rng, offset, "g")) for offset in (10, 11, 12)]
    result = await write_batch(conn, "fx", batch, normaliser.normalise, (RejectedTrade,))
    assert (result.stored, result.next_offset) == (3, 13)
    cursor = await conn.execute(
        "SELECT reason, message_id FROM ledgerflow.rejected_messages WHERE queue = 'stream:g'"
    )
    assert await cursor.fetchall() == [("offsets_missing", "g@0..9")]


async def test_trades_committed_but_not_written_on_are_written_on_again(
    conn: psycopg.AsyncConnection[Any], normaliser: Normaliser, streams: RabbitStreams
) -> None:
    """A crash between a batch's commit and its send to trades.normalised: at the start,
    the stream is read again from where writing on stopped and its trades sent again;
    a message rejected when stored is not."""
    await conn.set_autocommit(True)
    stream = f"again-{uuid.uuid4().hex[:8]}"
    await streams.create(stream)
    rng = random.Random(SEED + 5)
    bodies = [fx_trade(rng, n, stream) for n in range(30)]
    bodies[15] = b"not json"
    await streams.send(stream, bodies)
    batch = [StreamMessage(stream, offset, body) for offset, body in enumerate(bodies[:20])]
    await write_batch(conn, "fx", batch, normaliser.normalise, (RejectedTrade,))
    await normalised_sent(conn, stream, 12)  # sent up to 12; then the crash
    batch = [StreamMessage(stream, offset, body) for offset, body in enumerate(bodies)][20:]
    await write_batch(conn, "fx", batch, normaliser.normalise, (RejectedTrade,))
    sent: list[bytes] = []

    async def send(chunk: list[bytes]) -> None:
        sent.extend(chunk)

    assert await write_on_again(conn, streams.read, normaliser.normalise, send) == 17
    ids = [(await normaliser.read(body))["trade_id"] for body in sent]
    assert ids == [f"{stream}-{n}" for n in range(12, 30) if n != 15]
    assert await write_on_again(conn, streams.read, normaliser.normalise, send) == 0
