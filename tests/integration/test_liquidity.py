"""The LCR of a ledger stored in PostgreSQL: cash, securities, trades and balances read as
holdings and flows, the adjustments, the minute-by-minute history, the reference data.

The book of ``seed`` (as of 2026-03-02 12:00 UTC, reporting in USD), worked by hand:

Stock
- cash, USD: treasury 50,000 + repo desk 42,000 (two repos' cash received) + money market
  4,000 (-8,000 lent, +12,000 taken) + FX desk -6,450 (two FX buys of EUR), of which
  -5,400 settles on 03-09 (FX7) and is taken back out: 94,950
- cash, EUR: treasury 9,000 + FX desk's EUR position 6,000, of which 5,000 settles on 03-09:
  10,000 at 1.10 = 11,000 USD
- cash, GBP 500: GBP has no price, so it does not convert: flagged, not counted
  Cash, Level 1: 94,950 + 11,000 = 105,950
- UST (Level 1, USD 100): 1,000 = 100,000
- XS2A (corporate bond, Level 2A, USD 50): 1,600 held - 900 delivered in repos = 700:
  35,000, after 15 %: 29,750
- DE2B (equity, Level 2B, EUR 20): 500 = 10,000 EUR = 11,000 USD, after 50 %: 5,500
- XSMIS (a corporate bond classified as an equity outside HQLA, USD 10): 1,000 = 10,000, 0
- MYSTERY: not in the reference data: listed, not counted
- the money market's "positions" BANKA and BANKB are interbank claims: flows only
  Level 1 = 105,950 + 100,000 = 205,950; Level 2A = 29,750; Level 2B = 5,500

Flows within 30 days (to 2026-04-01)
- balances: retail stable 200,000 x 5 % = 10,000; non-financial corporates 50,000 x 40 %
  = 20,000
- repo R10 (10 days): 14,000 to repay, XS2A collateral 300 x 50 = 15,000 (2A): 15 % =
  2,100 out; repo R40 (40 days, 28,000 against 600 XS2A): outside the horizon
- interbank deposit D3 (3 days): 12,000 out at 100 %; loan L20 (20 days) to a bank:
  8,000 in at 100 %
- FX7 (7 days): EUR 5,000 received = 5,500 USD in; USD 5,400 paid out (100 % each)
  Outflows = 10,000 + 20,000 + 2,100 + 12,000 + 5,400 = 49,500
  Inflows = 8,000 + 5,500 = 13,500 (cap 75 % x 49,500 = 37,125: not reached)
  Net outflows = 36,000

Caps, on the stocks with R10 unwound (Level 1 -14,000, Level 2A +15,000 x 0.85 = 12,750):
adjusted 1 = 191,950, 2A = 42,500, 2B = 5,500; 15 %: 5,500 - 15/85 x 234,450 < 0 and
5,500 - 15/60 x 191,950 < 0, so 0; 40 %: 42,500 + 5,500 - 2/3 x 191,950 < 0, so 0.
HQLA = 205,950 + 29,750 + 5,500 = 241,200; LCR = 241,200 / 36,000 = 6.7.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from ledgerflow.treasury.adjustments import (
    AdjustmentError,
    add_adjustment,
    adjustments,
    end_adjustment,
)
from ledgerflow.treasury.instruments import (
    InstrumentsCsvError,
    load_instruments,
    parse_instruments_csv,
)
from ledgerflow.treasury.lcr import Flow, Holding, Level
from ledgerflow.treasury.liquidity import (
    CashBalance,
    Unconvertible,
    UnknownPosition,
    lcr_at,
    lcr_history,
    lcr_now,
    liquidity_inputs,
    record_minute,
    set_balance,
)

pytestmark = pytest.mark.integration

D = Decimal
AS_OF = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
Conn = psycopg.AsyncConnection[Any]

INSTRUMENTS = """instrument,asset_class,issuer_type,hqla_level,haircut_category,currency,price
USD,currency,,1,,USD,1
EUR,currency,,1,,USD,1.10
GBP,currency,,1,,USD,
UST,bond,sovereign,1,,USD,100
XS2A,bond,corporate,2A,,USD,50
DE2B,equity,corporate,2B,equity,EUR,20
XSMIS,equity,corporate,none,,USD,10
"""
POSITIONS = [
    ("rates", "UST", "1000"),
    ("credit", "XS2A", "1600"),
    ("repo", "XS2A", "-900"),
    ("equity", "DE2B", "500"),
    ("credit", "XSMIS", "1000"),
    ("credit", "MYSTERY", "250"),
    ("mm", "BANKA", "8000"),
    ("mm", "BANKB", "-12000"),
    ("fxdesk", "EUR", "6000"),
]
CASH = [
    ("treasury", "USD", "50000"),
    ("treasury", "EUR", "9000"),
    ("treasury", "GBP", "500"),
    ("repo", "USD", "42000"),
    ("mm", "USD", "4000"),
    ("fxdesk", "USD", "-6450"),
]
# trade id, book, instrument, asset class, side, quantity, settlement amount, settled,
# maturity, counterparty type
TRADES = [
    ("R10", "repo", "XS2A", "repo", "sell", "300", "14000", "2026-02-20", "2026-03-12", "fi"),
    ("R40", "repo", "XS2A", "repo", "sell", "600", "28000", "2026-02-20", "2026-04-11", "fi"),
    ("L20", "mm", "BANKA", "interbank", "buy", "8000", "-8000", "2026-02-25", "2026-03-22", "fi"),
    ("D3", "mm", "BANKB", "interbank", "sell", "12000", "12000", "2026-02-27", "2026-03-05", "fi"),
    ("FX7", "fxdesk", "EUR", "fx", "buy", "5000", "-5400", "2026-03-09", None, None),
    ("FX0", "fxdesk", "EUR", "fx", "buy", "1000", "-1050", "2026-02-26", None, None),
]
SEEDED: dict[str, Any] = {
    "hqla": {
        "level1": "205950.00",
        "level2a": "29750.00",
        "level2b": "5500.00",
        "cap_adjustment_15": "0.00",
        "cap_adjustment_40": "0.00",
        "total": "241200.00",
    },
    "outflows": "49500.00",
    "inflows": "13500.00",
    "net_outflows": "36000.00",
    "lcr": "6.700000",
}


async def seed(conn: Conn) -> None:
    """The book of the module's docstring, committed."""
    await load_instruments(conn, parse_instruments_csv(INSTRUMENTS))
    for book, instrument, quantity in POSITIONS:
        await conn.execute(
            "INSERT INTO ledgerflow.positions (book, instrument, quantity) VALUES (%s, %s, %s)",
            (book, instrument, D(quantity)),
        )
    for book, currency, amount in CASH:
        await conn.execute(
            "INSERT INTO ledgerflow.cash_positions (book, currency, amount) VALUES (%s, %s, %s)",
            (book, currency, D(amount)),
        )
    for offset, trade in enumerate(TRADES):
        trade_id, book, instrument, asset_class, side, quantity, cash = trade[:7]
        settled, maturity, counterparty = trade[7:]
        repo = asset_class == "repo"
        await conn.execute(
            "INSERT INTO ledgerflow.trades (trade_id, source, stream, stream_offset, book,"
            " instrument, asset_class, side, quantity, currency, settlement_amount, trade_time,"
            " settlement_date, maturity_date, counterparty_type, collateral_instrument)"
            " VALUES (%s, 'test', 'trades.test', %s, %s, %s, %s, %s, %s, 'USD', %s, %s, %s, %s,"
            " %s, %s)",
            (
                trade_id,
                offset,
                book,
                instrument,
                asset_class,
                side,
                D(quantity),
                D(cash),
                datetime.fromisoformat(settled).replace(tzinfo=UTC),
                date.fromisoformat(settled),
                None if maturity is None else date.fromisoformat(maturity),
                "financial_institution" if counterparty else None,
                instrument if repo else None,
            ),
        )
    await conn.commit()
    await set_balance(conn, "retail_stable", D("200000"), "treasurer")
    await set_balance(conn, "non_financial_corporate", D("50000"), "treasurer")
    await conn.commit()


async def figures(conn: Conn, at: datetime = AS_OF, adjusted: bool = True) -> dict[str, Any]:
    return (await lcr_now(conn, at, adjusted=adjusted)).as_json()


async def audited(conn: Conn, action: str) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(
        "SELECT actor, target, detail FROM ledgerflow.audit_log WHERE action = %s ORDER BY id",
        (action,),
    )
    return await cursor.fetchall()


async def test_the_lcr_of_the_ledger_counts_cash_securities_trades_and_balances(
    conn: Conn,
) -> None:
    await seed(conn)
    inputs = await liquidity_inputs(conn, AS_OF)
    assert inputs.figures().as_json() == SEEDED
    assert inputs.holdings == (
        Holding("cash", Level.LEVEL_1, None, D("105950")),
        Holding("DE2B", Level.LEVEL_2B, "equity", D("11000")),
        Holding("UST", Level.LEVEL_1, None, D("100000")),
        Holding("XS2A", Level.LEVEL_2A, None, D("35000")),
        Holding("XSMIS", Level.NONE, None, D("10000")),
    )
    assert inputs.cash == (
        CashBalance("EUR", D("10000"), D("11000")),
        CashBalance("GBP", D("500"), None),
        CashBalance("USD", D("94950"), D("94950")),
    )
    assert set(inputs.flows) == {
        Flow("outflow", "secured_funding", D("14000"), 10, Level.LEVEL_2A, None, D("15000")),
        Flow("inflow", "financial_institution", D("8000"), 20),
        Flow("outflow", "financial_institution", D("12000"), 3),
        Flow("inflow", "fx_derivative_settlement", D("5500"), 7),
        Flow("outflow", "fx_derivative_settlement", D("5400"), 7),
        Flow("outflow", "retail_stable", D("200000"), 0),
        Flow("outflow", "non_financial_corporate", D("50000"), 0),
    }
    assert inputs.unknown == (
        UnknownPosition("MYSTERY", "credit", D("250"), "not in the reference data"),
    )
    assert inputs.unconvertible == (Unconvertible("GBP", "cash", D("500")),)
    assert inputs.short == ()


async def test_a_repo_counts_when_it_matures_within_30_days_and_not_after(conn: Conn) -> None:
    await seed(conn)
    assert await figures(conn) == SEEDED  # R40 matures in 40 days: not counted
    await conn.execute(
        "UPDATE ledgerflow.trades SET maturity_date = '2026-03-12' WHERE trade_id = 'R40'"
    )
    await conn.commit()
    # R40 now in 10 days: 28,000 against 2A collateral, 15 % = 4,200 more out: 53,700;
    # net 53,700 - 13,500 = 40,200; its unwinding (Level 1 -28,000, 2A +25,500) leaves the
    # caps at 0 (adjusted 1 = 163,950, 2A = 68,000: 68,000 + 5,500 < 2/3 x 163,950).
    # LCR = 241,200 / 40,200 = 6.
    assert await figures(conn) == {
        **SEEDED,
        "outflows": "53700.00",
        "net_outflows": "40200.00",
        "lcr": "6.000000",
    }
    # On 2026-04-12 neither repo is due any more, nor anything else but the balances.
    later = await figures(conn, datetime(2026, 4, 12, tzinfo=UTC))
    assert later["outflows"] == "30000.00"


async def test_an_unknown_instrument_is_listed_and_not_counted(conn: Conn) -> None:
    await seed(conn)
    await conn.execute(
        "UPDATE ledgerflow.positions SET quantity = 1000000 WHERE instrument = 'MYSTERY'"
    )
    await conn.commit()
    inputs = await liquidity_inputs(conn, AS_OF)
    assert inputs.figures().as_json() == SEEDED
    assert [(u.instrument, u.book, u.quantity) for u in inputs.unknown] == [
        ("MYSTERY", "credit", D("1000000"))
    ]


async def test_a_currency_without_a_price_is_flagged_until_it_has_one(conn: Conn) -> None:
    await seed(conn)
    assert (await liquidity_inputs(conn, AS_OF)).unconvertible == (
        Unconvertible("GBP", "cash", D("500")),
    )
    await conn.execute("UPDATE ledgerflow.instruments SET price = 1.25 WHERE instrument = 'GBP'")
    await conn.commit()
    inputs = await liquidity_inputs(conn, AS_OF)
    assert inputs.unconvertible == ()
    # GBP 500 at 1.25 = 625 more Level 1: 241,825 / 36,000 = 6.7173611... -> 6.717361.
    assert inputs.figures().as_json()["hqla"]["level1"] == "206575.00"
    assert inputs.figures().as_json()["lcr"] == "6.717361"


async def test_another_reporting_currency_needs_prices_quoted_in_it(conn: Conn) -> None:
    await seed(conn)
    inputs = await liquidity_inputs(conn, AS_OF, currency="EUR")
    # Nothing is quoted in EUR: only EUR itself converts (rate 1), nothing is guessed.
    assert {u.currency for u in inputs.unconvertible} == {"USD", "GBP"}
    assert inputs.holdings[0] == Holding("cash", Level.LEVEL_1, None, D("10000"))


async def test_an_adjustment_reclassifies_a_bond_with_its_effect_until_it_expires(
    conn: Conn,
) -> None:
    await seed(conn)
    until = AS_OF + timedelta(days=2)
    adjustment = await add_adjustment(
        conn,
        kind="instrument",
        target="XSMIS",
        level="2A",
        haircut_category=None,
        valid_from=AS_OF - timedelta(hours=1),
        valid_until=until,
        reason="a corporate bond booked as an equity",
        by="treasurer",
        as_of=AS_OF,
    )
    await conn.commit()
    # XSMIS: 10,000 at 2A, after 15 %: 8,500 more HQLA: 249,700. Caps still 0 (adjusted
    # 2A = 51,000: 51,000 + 5,500 < 2/3 x 191,950). LCR = 249,700 / 36,000 = 6.9361111...
    adjusted = {
        **SEEDED,
        "hqla": {**SEEDED["hqla"], "level2a": "38250.00", "total": "249700.00"},
        "lcr": "6.936111",
    }
    effect = {"as_of": AS_OF.isoformat(), "currency": "USD", "without": SEEDED, "with": adjusted}
    assert adjustment.effect == effect
    assert adjustment.level is Level.LEVEL_2A
    assert await figures(conn) == adjusted
    assert await figures(conn, adjusted=False) == SEEDED
    assert await figures(conn, AS_OF - timedelta(hours=2)) == SEEDED  # not yet
    assert await figures(conn, until - timedelta(microseconds=1)) == adjusted
    assert await figures(conn, until) == SEEDED  # expired, with nothing run
    assert [a.id for a in await adjustments(conn, AS_OF)] == [adjustment.id]
    assert await adjustments(conn, until) == []
    assert [a.id for a in await adjustments(conn, until, include_ended=True)] == [adjustment.id]
    [(actor, target, detail)] = await audited(conn, "treasury.adjustment.add")
    assert (actor, target) == ("treasurer", str(adjustment.id))
    assert detail["effect"] == effect
    assert (detail["target"], detail["level"]) == ("XSMIS", "2A")


async def test_an_adjustment_can_be_ended_early_once(conn: Conn) -> None:
    await seed(conn)
    adjustment = await add_adjustment(
        conn,
        kind="instrument",
        target="XSMIS",
        level="2A",
        haircut_category=None,
        valid_from=AS_OF,
        valid_until=AS_OF + timedelta(days=30),
        reason="a corporate bond booked as an equity",
        by="treasurer",
        as_of=AS_OF,
    )
    ended = await end_adjustment(conn, adjustment.id, "controller", AS_OF + timedelta(hours=1))
    await conn.commit()
    assert (ended.ended_at, ended.ended_by) == (AS_OF + timedelta(hours=1), "controller")
    assert (await figures(conn, AS_OF + timedelta(minutes=30)))["lcr"] == "6.936111"
    assert await figures(conn, AS_OF + timedelta(hours=1)) == SEEDED
    assert not ended.in_force(AS_OF + timedelta(hours=1))
    [(actor, target, detail)] = await audited(conn, "treasury.adjustment.end")
    assert (actor, target, detail["effect"]) == ("controller", str(adjustment.id), ended.effect)
    with pytest.raises(AdjustmentError, match=r"^id: adjustment .* was ended") as caught:
        await end_adjustment(conn, adjustment.id, "controller", AS_OF + timedelta(hours=2))
    assert caught.value.field == "id"
    with pytest.raises(AdjustmentError, match=r"^id: no adjustment 999"):
        await end_adjustment(conn, 999, "controller", AS_OF)


async def test_a_trade_adjustment_reclassifies_one_repos_collateral(conn: Conn) -> None:
    await seed(conn)
    await add_adjustment(
        conn,
        kind="trade",
        target="R10",
        level=Level.LEVEL_1,
        haircut_category=None,
        valid_from=AS_OF,
        valid_until=AS_OF + timedelta(days=1),
        reason="collateral substituted with gilts",
        by="treasurer",
        as_of=AS_OF,
    )
    await conn.commit()
    # R10 against Level 1 collateral runs off at 0 %: outflows 49,500 - 2,100 = 47,400, net
    # 33,900; unwound, Level 1 -14,000 +15,000: caps still 0. HQLA 241,200 (the holding of
    # XS2A is unchanged): 241,200 / 33,900 = 7.1150442... -> 7.115044.
    assert await figures(conn) == {
        **SEEDED,
        "outflows": "47400.00",
        "net_outflows": "33900.00",
        "lcr": "7.115044",
    }


VALID = {
    "kind": "instrument",
    "target": "XSMIS",
    "level": "2A",
    "haircut_category": None,
    "valid_from": AS_OF,
    "valid_until": AS_OF + timedelta(days=1),
    "reason": "misclassified",
    "by": "treasurer",
    "as_of": AS_OF,
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reason": "  "}, "reason"),
        ({"valid_until": AS_OF}, "valid_until"),
        ({"valid_until": AS_OF - timedelta(days=1)}, "valid_until"),
        ({"valid_from": datetime(2026, 3, 2)}, "valid_from"),
        ({"target": "NOSUCH"}, "target"),
        ({"target": "EUR"}, "target"),  # a currency
        ({"kind": "trade", "target": "D3"}, "target"),  # not a repo
        ({"kind": "trade", "target": "NOSUCH"}, "target"),
        ({"kind": "position"}, "kind"),
        ({"level": "3"}, "level"),
        ({"level": "2B"}, "haircut_category"),
        ({"level": "2B", "haircut_category": "gold"}, "haircut_category"),
        ({"level": "1", "haircut_category": "equity"}, "haircut_category"),
        ({"by": ""}, "by"),
    ],
)
async def test_an_adjustment_is_refused_naming_the_field(
    conn: Conn, change: dict[str, Any], field: str
) -> None:
    await seed(conn)
    with pytest.raises(AdjustmentError, match=f"^{field}: ") as caught:
        await add_adjustment(conn, **{**VALID, **change})
    assert caught.value.field == field
    await conn.rollback()
    assert await adjustments(conn, AS_OF, include_ended=True) == []
    assert await audited(conn, "treasury.adjustment.add") == []


async def test_record_minute_keeps_each_minutes_figures(conn: Conn) -> None:
    await seed(conn)
    first = AS_OF + timedelta(seconds=42)  # recorded as 12:00
    await record_minute(conn, first)
    await record_minute(conn, first)  # again: replaced, not added
    await set_balance(conn, "retail_stable", D("300000"), "treasurer")
    await conn.commit()
    second = AS_OF + timedelta(minutes=5)
    await record_minute(conn, second)
    await conn.commit()
    # Retail stable 300,000 x 5 % = 15,000: outflows 54,500, net 41,000;
    # 241,200 / 41,000 = 5.8829268... -> 5.882927.
    later = {**SEEDED, "outflows": "54500.00", "net_outflows": "41000.00", "lcr": "5.882927"}
    assert await lcr_at(conn, AS_OF + timedelta(minutes=3), adjusted=True) == (AS_OF, SEEDED)
    assert await lcr_at(conn, AS_OF + timedelta(minutes=3), adjusted=False) == (AS_OF, SEEDED)
    assert await lcr_at(conn, second, adjusted=True) == (second, later)
    assert await lcr_at(conn, AS_OF - timedelta(seconds=1), adjusted=True) is None
    assert await lcr_history(conn, AS_OF, second, adjusted=True) == [(AS_OF, SEEDED)]
    assert await lcr_history(conn, AS_OF, second + timedelta(minutes=1), adjusted=False) == [
        (AS_OF, SEEDED),
        (second, later),
    ]
    cursor = await conn.execute("SELECT count(*) FROM ledgerflow.lcr_history")
    assert await cursor.fetchone() == (4,)


async def test_a_balance_of_an_unknown_category_is_refused_naming_it(conn: Conn) -> None:
    with pytest.raises(ValueError, match=r"^category: 'secured_funding' is not a balance's"):
        await set_balance(conn, "secured_funding", D("1"), "treasurer")
    with pytest.raises(ValueError, match=r"^amount: -1 is negative"):
        await set_balance(conn, "retail_stable", D("-1"), "treasurer")
    await set_balance(conn, "retail_stable", D("10.50"), "treasurer")
    [(actor, target, detail)] = await audited(conn, "treasury.balance.set")
    assert (actor, target, detail) == (
        "treasurer",
        "retail_stable",
        {"amount": "10.50", "currency": "USD"},
    )


async def test_instruments_load_in_one_upsert_and_a_bad_csv_names_line_and_column(
    conn: Conn,
) -> None:
    assert await load_instruments(conn, parse_instruments_csv(INSTRUMENTS)) == 7
    changed = INSTRUMENTS.splitlines()[0] + "\nUST,bond,sovereign,1,,USD,101.5\n"
    assert await load_instruments(conn, parse_instruments_csv(changed)) == 1
    cursor = await conn.execute("SELECT price FROM ledgerflow.instruments WHERE instrument = 'UST'")
    assert await cursor.fetchone() == (D("101.5"),)
    bad = INSTRUMENTS + "XS9,bond,corporate,2A,,USD,1O.5\n"
    with pytest.raises(InstrumentsCsvError, match=r"^line 9, column price: '1O\.5'"):
        parse_instruments_csv(bad)
