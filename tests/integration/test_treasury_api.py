"""The treasury's JSON API on the real PostgreSQL: the LCR now and at a past minute (with
and without adjustments), instruments loaded from CSV with errors that name the line and
column, balances, adjustments made and ended, positions; and who may do what."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from ledgerflow.auth import store
from ledgerflow.runtime.api import create_app
from ledgerflow.runtime.treasury import BREACH, OK, WARNING, LiquidityWatch, level_of
from ledgerflow.settings import load_settings
from ledgerflow.treasury.lcr import Flow, Holding, Level, compute_lcr
from ledgerflow.treasury.liquidity import lcr_now, record_minute

from ..polling import eventually

pytestmark = pytest.mark.integration
INSTRUMENTS = """instrument,asset_class,issuer_type,hqla_level,haircut_category,currency,price
USD,currency,,1,,USD,1
UST10,bond,sovereign,1,,USD,100
CORP1,bond,corporate,none,,USD,100
"""


async def seed(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute(
        "INSERT INTO ledgerflow.positions (book, instrument, quantity) VALUES"
        " ('B', 'UST10', 1000), ('B', 'CORP1', 500), ('B', 'MYSTERY', 7)"
    )
    await conn.execute(
        "INSERT INTO ledgerflow.cash_positions (book, currency, amount) VALUES ('B', 'USD', 50000)"
    )


async def seed_priced(conn: psycopg.AsyncConnection[Any]) -> None:
    """The positions of ``seed``, USD and UST10 priced, and a retail balance: an LCR of 30
    (HQLA 150,000 over 5,000 of outflows)."""
    await seed(conn)
    await conn.execute(
        "INSERT INTO ledgerflow.instruments (instrument, asset_class, hqla_level, currency, price)"
        " VALUES ('USD', 'currency', '1', 'USD', 1), ('UST10', 'bond', '1', 'USD', 100)"
    )
    await conn.execute(
        "INSERT INTO ledgerflow.treasury_balances (category, amount, updated_by)"
        " VALUES ('retail_stable', 100000, 't')"
    )


async def test_the_lcr_positions_instruments_balances_and_adjustments_over_http(
    conn: psycopg.AsyncConnection[Any], db_url: str, redis_url: str
) -> None:
    await conn.set_autocommit(True)
    await seed(conn)
    writer = await store.create_token(conn, "desk", ["read", "treasury:write"], "t")
    reader = await store.create_token(conn, "reader", ["read"], "t")
    settings = load_settings(database_url=db_url, redis_url=redis_url, rates_cache_url=redis_url)

    def call() -> dict[str, Any]:
        answers: dict[str, Any] = {}
        with TestClient(create_app(settings)) as client:
            w = {"authorization": f"Bearer {writer}"}
            r = {"authorization": f"Bearer {reader}"}
            csv_headers = {**w, "content-type": "text/csv"}
            refused = client.post("/treasury/instruments", content=INSTRUMENTS, headers=r)
            answers["reader_load"] = refused.status_code
            bad = INSTRUMENTS + "X,bond,,3,,USD,1\n"
            answers["bad_csv"] = client.post(
                "/treasury/instruments", content=bad, headers=csv_headers
            ).json()
            loaded = client.post("/treasury/instruments", content=INSTRUMENTS, headers=csv_headers)
            answers["loaded"] = loaded.json()
            balance = client.put(
                "/treasury/balances/retail_stable", json={"amount": "100000"}, headers=w
            )
            answers["balance"] = balance.status_code
            answers["unknown_category"] = client.put(
                "/treasury/balances/nonsense", json={"amount": "1"}, headers=w
            ).json()
            answers["lcr"] = client.get("/treasury/lcr", headers=r).json()
            answers["positions"] = client.get("/treasury/positions", headers=r).json()
            now = datetime.now(UTC)
            made = client.post(
                "/treasury/adjustments",
                json={
                    "kind": "instrument",
                    "target": "CORP1",
                    "level": "2A",
                    "valid_from": (now - timedelta(minutes=1)).isoformat(),
                    "valid_until": (now + timedelta(days=1)).isoformat(),
                    "reason": "a corporate bond classified as equity by mistake",
                },
                headers=w,
            )
            answers["made"] = (made.status_code, made.json())
            no_reason = client.post(
                "/treasury/adjustments",
                json={**made.json(), "reason": "", "kind": "instrument"},
                headers=w,
            )
            answers["no_reason"] = (no_reason.status_code, no_reason.json().get("parameter"))
            answers["adjusted"] = client.get("/treasury/lcr", headers=r).json()
            answers["unadjusted"] = client.get("/treasury/lcr?adjusted=false", headers=r).json()
            ended = client.post(f"/treasury/adjustments/{made.json()['id']}/end", headers=w)
            answers["ended"] = ended.status_code
            answers["again"] = client.post(
                f"/treasury/adjustments/{made.json()['id']}/end", headers=w
            ).status_code
            answers["after"] = client.get("/treasury/lcr", headers=r).json()
            answers["no_history"] = client.get(
                "/treasury/lcr?at=2020-01-01T00:00:00Z", headers=r
            ).status_code
        return answers

    got = await asyncio.to_thread(call)
    assert got["reader_load"] == 403
    assert got["bad_csv"]["line"] == 5 and got["bad_csv"]["parameter"] == "hqla_level"
    assert got["loaded"] == {"loaded": 3}
    assert got["balance"] == 200
    assert got["unknown_category"]["parameter"] == "category"
    # Level 1: cash 50,000 + 1,000 x 100; CORP1 is not HQLA; MYSTERY is unknown.
    # Outflows: 100,000 x 5 % = 5,000; LCR = 150,000 / 5,000 = 30.
    assert got["lcr"]["hqla"]["level1"] == "150000.00"
    assert got["lcr"]["outflows"] == "5000.00"
    assert got["lcr"]["lcr"] == "30.000000"
    unknown = [p["instrument"] for p in got["positions"]["positions"] if p["unknown_instrument"]]
    assert unknown == ["MYSTERY"]
    status, made = got["made"]
    assert status == 201 and made["effect"]["with"]["hqla"]["level2a"] == "42500.00"
    assert got["no_reason"] == (400, "reason")
    # With the adjustment CORP1 counts as 2A: 500 x 100 x 85 % = 42,500.
    assert got["adjusted"]["lcr"] == "38.500000"
    assert got["unadjusted"]["lcr"] == "30.000000"
    assert (got["ended"], got["again"]) == (200, 422)
    assert got["after"]["lcr"] == "30.000000"
    assert got["no_history"] == 404


async def test_a_past_minute_answers_with_the_figures_recorded_then(
    conn: psycopg.AsyncConnection[Any], db_url: str, redis_url: str
) -> None:
    await conn.set_autocommit(True)
    await seed_priced(conn)
    earlier = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
    await record_minute(conn, earlier)
    await conn.execute("UPDATE ledgerflow.cash_positions SET amount = 0")  # cash gone now
    settings = load_settings(database_url=db_url, redis_url=redis_url, rates_cache_url=redis_url)
    token = await store.create_token(conn, "reader", ["read"], "t")

    def call() -> tuple[dict[str, Any], dict[str, Any]]:
        with TestClient(create_app(settings)) as client:
            h = {"authorization": f"Bearer {token}"}
            then = client.get("/treasury/lcr?at=2026-11-30T09:15:42Z", headers=h).json()
            now = client.get("/treasury/lcr", headers=h).json()
        return then, now

    then, now = await asyncio.to_thread(call)
    assert then["as_of"] == earlier.isoformat() and then["lcr"] == "30.000000"
    assert now["lcr"] == "20.000000"
    assert (await lcr_now(conn, datetime.now(UTC))).lcr == Decimal("20")


def test_the_levels_people_are_told_of() -> None:
    def figures(ratio: str) -> Any:
        holding = Holding("cash", Level.LEVEL_1, None, Decimal(ratio))
        flow = Flow("outflow", "financial_institution", Decimal(1), 0)
        return compute_lcr([holding], [flow])

    warning = Decimal("1.10")
    assert level_of(figures("1.20"), warning) == OK
    assert level_of(figures("1.05"), warning) == WARNING
    assert level_of(figures("0.99"), warning) == BREACH


async def test_a_minute_keeps_the_figures_its_last_change_left_and_each_is_sent(
    conn: psycopg.AsyncConnection[Any], db_url: str, redis_url: str
) -> None:
    await conn.set_autocommit(True)
    await seed_priced(conn)
    sent: list[dict[str, Any]] = []
    told: list[str] = []

    class Events:
        def emit(self, event: Any) -> None:
            sent.append(dict(event))

    settings = load_settings(database_url=db_url, redis_url=redis_url, rates_cache_url=redis_url)
    watch = LiquidityWatch(settings, Events(), lambda level, _figures: told.append(level))
    running = asyncio.create_task(watch.run())
    try:
        await eventually(lambda: [e for e in sent if e["lcr"] == "30.000000"], 10)
        # A batch, as the ledger commits one: 500 CORP1 (not HQLA) bought for all the cash.
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO ledgerflow.trades (trade_id, source, stream, stream_offset, book,"
                " instrument, asset_class, side, quantity, price, currency, settlement_amount,"
                " trade_time, settlement_date) VALUES ('T1', 'bonds', 'trades.test', 0, 'B',"
                " 'CORP1', 'bond', 'buy', 500, 100, 'USD', -50000, now(), current_date)"
            )
            await conn.execute(
                "UPDATE ledgerflow.positions SET quantity = 1000 WHERE instrument = 'CORP1'"
            )
            await conn.execute("UPDATE ledgerflow.cash_positions SET amount = 0")
            await conn.execute(
                "INSERT INTO ledgerflow.stream_offsets (stream, next_offset, normalised_to)"
                " VALUES ('trades.test', 1, 1)"
            )
        watch.changed()
        await eventually(lambda: [e for e in sent if e["lcr"] == "20.000000"], 10)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    cursor = await conn.execute(
        "SELECT figures->>'lcr' FROM ledgerflow.lcr_history WHERE adjusted"
        " ORDER BY minute DESC LIMIT 1"
    )
    assert await cursor.fetchone() == ("20.000000",)  # the minute's last figures
    assert told == []  # far above the warning level: nobody to tell
