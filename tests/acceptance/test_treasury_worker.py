"""The treasury in the real worker process on real RabbitMQ streams: kill -9 mid-stream,
start again, and every trade is counted once (the oracle is the positions fold over the
trades as the normaliser reads them)."""

from __future__ import annotations

import asyncio
import random
import signal
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from ledgerflow.treasury.normalise import Normaliser
from ledgerflow.treasury.registry import PostgresSchemaStore
from ledgerflow.treasury.streams import DEFAULT_URL, RabbitStreams, StreamServer

from ..integration.test_treasury_ingest import fx_trade, ledger, oracle
from .conftest import Process, eventually, query

SEED = 20261130
COUNT = 3000


def read_to(db_url: str, stream: str) -> int:
    rows = query(
        db_url, "SELECT next_offset FROM ledgerflow.stream_offsets WHERE stream = %s", stream
    )
    return int(rows[0][0]) if rows else 0


def test_kill_9_mid_stream_then_restart_counts_each_trade_once(
    db_url: str, make_env: Callable[..., dict[str, str]], spawn: Callable[..., Process]
) -> None:
    prefix = f"lf_test_{uuid.uuid4().hex[:8]}."
    stream = f"{prefix}fx"
    env = make_env(
        db_url,
        treasury="true",
        treasury_stream_prefix=prefix,
        treasury_control_stream=f"{prefix}control",
        treasury_normalised_stream=f"{prefix}normalised",
        treasury_batch_size="50",
    )
    rng = random.Random(SEED)
    bodies = [fx_trade(rng, n, stream) for n in range(COUNT)]
    print(f"seed {SEED}, {COUNT} trades on {stream}")  # the trades are the seed's

    async def publish() -> None:
        broker = RabbitStreams(StreamServer.from_url(DEFAULT_URL))
        await broker.create(stream)
        for start in range(0, COUNT, 100):
            await broker.send(stream, bodies[start : start + 100])
        await broker.close()

    worker = spawn(["worker"], env)
    asyncio.run(publish())
    eventually(lambda: read_to(db_url, stream) >= 500, 60, "the worker to read a part")
    worker.signal(signal.SIGKILL)
    worker.wait(10)
    killed_at = read_to(db_url, stream)
    assert killed_at < COUNT, "the kill came after the whole stream: nothing was tested"
    spawn(["worker"], env)
    eventually(lambda: read_to(db_url, stream) >= COUNT, 90, "the whole stream")

    async def compare() -> tuple[dict[str, Any], dict[str, Any], int]:
        async with (
            AsyncConnectionPool(db_url, open=False, kwargs={"autocommit": True}) as pool,
            await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn,
        ):
            normaliser = await Normaliser.start(PostgresSchemaStore(pool))
            expected = await oracle(normaliser, bodies)
            got = await ledger(conn)
        broker = RabbitStreams(StreamServer.from_url(DEFAULT_URL))
        normalised = 0
        try:
            async with asyncio.timeout(10):
                async for message in broker.read(f"{prefix}normalised", 0):
                    normalised = message.offset + 1
                    if normalised >= COUNT:
                        break
        except TimeoutError:
            pass
        for name in (
            stream,
            f"{prefix}control",
            f"{prefix}normalised",
            *(f"{prefix}{s}" for s in ("repos", "bonds", "equities", "interbank")),
        ):
            await broker.delete(name)
        await broker.close()
        return expected, got, normalised

    expected, got, normalised = asyncio.run(compare())
    assert got == expected, f"killed at offset {killed_at}"
    (stored,) = query(db_url, "SELECT count(*) FROM ledgerflow.trades")[0]
    assert stored == COUNT
    assert normalised >= COUNT  # written on at least once each
