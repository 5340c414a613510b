"""The LCR recomputed from the ledger against the incremental path (in ``make bench``).

    python -m bench.lcr [--seed 20261130] [--runs 5] [--sizes 1000 10000 100000]

For each size, a throwaway database, migrated with the treasury's domain, gets a book drawn
with ``--seed`` (printed and saved), as of 2026-11-30 12:00 UTC, reporting in USD:

- the reference data: ``size`` securities (Level 1 sovereign bonds 40 %, Level 2A agency and
  covered bonds 20 %, Level 2B RMBS 5 %, corporate debt 7 %, equities 8 %, not HQLA 20 %;
  0.5 % of them without a price) in USD, EUR, GBP, JPY and CHF, and those five currencies
  priced in USD;
- positions in three books (``banking``, ``trading``, ``treasury``): each security held in one
  to three of them, 3 % of the holdings short in their book; cash in every book and currency;
- 2,500 trades, fixed at every size, booked into those positions and cash as the ledger
  books them: 1,000 repos and reverse repos (collateral drawn from the priced securities, 90 %
  HQLA), 700 interbank loans and deposits, 800 FX trades (70 % settling within the 30 days,
  20 % settled, 10 % after the horizon); 10 % of the repos and interbank deals mature after
  the horizon;
- 10 adjustments in force (instrument overrides) and six run-off balances, sized so that the
  ratio stays near 1.4 whatever the size.

Measured over one connection, medians of ``--runs``:

- first, the reads of ``liquidity_inputs`` (the adjustments in force and the five queries of
  liquidity.sql, in one snapshot, as it runs them), each timed: this call warms plans and
  buffers, and its rows give the inputs (``build_inputs``, timed ``--runs`` times);
(b) the arithmetic alone, ``compute_lcr`` on those inputs; ``Totals.of`` on them, timed
    once;
- ``RunningLcr`` (the worker's path) built from every row, timed once: its one-off cost;
(c) the arithmetic of one change: with those totals, one position changed (a security
    held, one of its books, its quantity moved by -50 % to +50 % of the instrument's net):
    its new value (net quantity x price x the currency's rate, floored to 12 places as
    ``build_inputs`` does), ``remove_holding`` of the old holding, ``add_holding`` of the
    new, ``figures(totals)``;
(d) the same change as a trade stored the way the ledger stores a batch (trade, position,
    cash and the stream's next offset in one transaction), then ``RunningLcr.refresh``
    timed: its snapshot's reads (offsets, reference version, adjustments, balances, the
    trades since the last offsets, the touched instruments' positions, currencies' cash
    and horizon trades) and the running totals moved by the difference;
(a) then ``lcr_now`` on that ledger, timed, with the ``liquidity_inputs`` it calls timed
    within it (the rest of ``lcr_now`` is its arithmetic). The refreshed figures must
    equal the full ones (exactness). The changes accumulate, ``--runs`` of them;
- the mean over 1,000 applications of (c)'s last change, alternately undone and made again
  (the totals must come back to the same): a steadier figure for a few microseconds;
(e) ``--runs`` batches of 250 trades in securities drawn at random (a batch of the worker
  at 5,000 trades/s), ``RunningLcr.refresh`` timed after each and checked against
  ``lcr_now``; ``RunningLcr`` must not have been rebuilt;
- the plan of the positions query (EXPLAIN, not run), where the reads' time goes.

The ratio full / refresh is median ``lcr_now`` over median (d). The
databases are dropped; the figures go to bench/results/lcr-<timestamp>.json.
"""

# Checked on its own (mypy bench/lcr.py), mypy finds ledgerflow installed without a
# py.typed marker and reads none of it: its names are Any here, not errors.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, Context, Decimal, Inexact, localcontext
from pathlib import Path
from typing import Any, LiteralString, TypeVar
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ledgerflow.db import migrate
from ledgerflow.db.connections import connect
from ledgerflow.settings import load_settings
from ledgerflow.treasury import liquidity
from ledgerflow.treasury.holdings_and_flows import LiquidityInputs, Override, build_inputs
from ledgerflow.treasury.lcr import (
    DEFAULT_RATES,
    HORIZON_DAYS,
    Holding,
    Level,
    Totals,
    compute_lcr,
    figures,
)
from ledgerflow.treasury.liquidity import QUERIES, REPORTING_CURRENCY, RunningLcr

RESULTS = Path(__file__).parent / "results"
SETTINGS = load_settings()
SEED = 20261130
SIZES = (1_000, 10_000, 100_000)
AS_OF = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DAY = AS_OF.date()
BOOKS = ("banking", "trading", "treasury")
CURRENCIES = {"USD": "1", "EUR": "1.08", "GBP": "1.27", "JPY": "0.0067", "CHF": "1.13"}
CURRENCY_WEIGHTS = (0.45, 0.30, 0.10, 0.10, 0.05)
# level, haircut category, asset class, issuer type, share
MIX = (
    ("1", None, "bond", "sovereign", 0.40),
    ("2A", None, "bond", "agency", 0.20),
    ("2B", "rmbs", "bond", "securitisation", 0.05),
    ("2B", "corporate_debt", "bond", "corporate", 0.07),
    ("2B", "equity", "equity", "corporate", 0.08),
    ("none", None, "bond", "corporate", 0.20),
)
NO_PRICE_SHARE = 0.005
SHORT_SHARE = 0.03
REPOS, INTERBANK, FX = 1_000, 700, 800
BOOKS_HELD_IN = ((1, 2, 3), (0.7, 0.2, 0.1))  # how many books hold a security
BEYOND_SHARE = 0.10  # repos and interbank deals maturing after the horizon
BANKS = 200
ADJUSTMENTS = 10
TARGET_LCR = Decimal("1.4")
# The run-off balances' share of the outflows they are sized to, and their currency.
BALANCES = {
    "retail_stable": (Decimal("0.15"), "USD"),
    "retail_less_stable": (Decimal("0.15"), "USD"),
    "operational_deposits": (Decimal("0.20"), "EUR"),
    "non_financial_corporate": (Decimal("0.25"), "USD"),
    "non_financial_corporate_insured": (Decimal("0.05"), "GBP"),
    "financial_institution": (Decimal("0.20"), "USD"),
}
STEADY_REPEATS = 1_000
_EXACT = Context(prec=100, traps=[Inexact])
_EXACT_ROUNDING = Context(prec=100)
_QUANTUM = Decimal(1).scaleb(-12)
T = TypeVar("T")


@dataclass(frozen=True)
class Security:
    """One drawn instrument's reference data."""

    instrument: str
    asset_class: str
    issuer_type: str
    level: str
    category: str | None
    currency: str
    price: Decimal | None


@dataclass
class Ledger:
    """What the seeding drew: rows to insert, and the net quantities the changes start from."""

    securities: list[Security]
    positions: dict[tuple[str, str], Decimal]  # (book, instrument) -> quantity
    cash: dict[tuple[str, str], Decimal]  # (book, currency) -> amount
    trades: list[dict[str, Any]]
    balances: dict[str, tuple[Decimal, str]]
    adjusted: list[tuple[str, str, str | None]]  # instrument, level, category


def value_of(quantity: Decimal, price: Decimal, currency: str) -> Decimal:
    """A position's value in USD as ``build_inputs`` makes it: exact, floored to 12 places."""
    with localcontext(_EXACT):
        value = quantity * price * Decimal(CURRENCIES[currency])
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent >= -12:
        return value
    return value.quantize(_QUANTUM, rounding=ROUND_FLOOR, context=_EXACT_ROUNDING)


def _haircut(level: str, category: str | None) -> Decimal:
    if level == "none":
        return Decimal(1)
    haircut: Decimal = DEFAULT_RATES.haircut(Level(level), category)
    return haircut


def draw_securities(rng: random.Random, size: int) -> list[Security]:
    securities = []
    weights = [m[-1] for m in MIX]
    for n in range(size):
        level, category, asset_class, issuer, _ = rng.choices(MIX, weights)[0]
        currency = rng.choices(list(CURRENCIES), CURRENCY_WEIGHTS)[0]
        if asset_class == "equity":
            price: Decimal | None = Decimal(rng.randint(5_00, 500_00)) / 100
        else:
            price = Decimal(rng.randint(85_0000, 110_0000)) / 10_000
        if rng.random() < NO_PRICE_SHARE:
            price = None
        prefix = "EQ" if asset_class == "equity" else "BD"
        securities.append(
            Security(f"{prefix}{n:07d}", asset_class, issuer, level, category, currency, price)
        )
    return securities


def draw(rng: random.Random, size: int) -> Ledger:
    """A book of ``size`` securities, its trades and balances (see the module's docstring)."""
    securities = draw_securities(rng, size)
    positions: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    cash: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for security in securities:
        for book in rng.sample(BOOKS, rng.choices(*BOOKS_HELD_IN)[0]):
            if security.asset_class == "equity":
                quantity = Decimal(rng.randint(100, 100_000))
            else:
                quantity = Decimal(rng.randint(10, 5_000) * 100)
            if rng.random() < SHORT_SHARE:
                quantity = -quantity
            positions[book, security.instrument] += quantity
    scale = Decimal(size) / 1_000
    for book in BOOKS:
        for currency in CURRENCIES:
            cash[book, currency] += Decimal(rng.randint(1, 40) * 1_000_000) * scale
    priced = [s for s in securities if s.price is not None]
    hqla = [s for s in priced if s.level != "none"]
    trades: list[dict[str, Any]] = []

    def horizon_day() -> date:
        if rng.random() < BEYOND_SHARE:
            return DAY + timedelta(days=rng.randint(HORIZON_DAYS + 1, 120))
        return DAY + timedelta(days=rng.randint(0, HORIZON_DAYS))

    def counterparty() -> str | None:
        return rng.choices(
            ("financial_institution", "central_bank", "non_financial_corporate", None),
            (0.70, 0.10, 0.15, 0.05),
        )[0]

    for n in range(REPOS):
        collateral = rng.choice(hqla if rng.random() < 0.9 else priced)
        assert collateral.price is not None
        side = rng.choice(("sell", "buy"))  # a repo posts collateral, a reverse repo takes it
        quantity = Decimal(rng.randint(1, 200) * 100)
        amount = (quantity * collateral.price * Decimal(rng.randint(90, 98)) / 100).quantize(
            Decimal("0.01")
        )
        signed = amount if side == "sell" else -amount
        positions["trading", collateral.instrument] += -quantity if side == "sell" else quantity
        cash["trading", collateral.currency] += signed
        settled = DAY - timedelta(days=rng.randint(1, 20))
        trades.append(
            {
                "trade_id": f"RP{n:06d}",
                "book": "trading",
                "instrument": collateral.instrument,
                "asset_class": "repo",
                "side": side,
                "quantity": quantity,
                "currency": collateral.currency,
                "settlement_amount": signed,
                "settlement_date": settled,
                "maturity_date": horizon_day(),
                "counterparty_type": counterparty(),
                "collateral_instrument": collateral.instrument,
            }
        )
    for n in range(INTERBANK):
        bank = f"BANK-{rng.randrange(BANKS):04d}"
        side = rng.choice(("buy", "sell"))  # a loan made, a deposit taken
        currency = rng.choices(("USD", "EUR", "GBP"), (0.6, 0.3, 0.1))[0]
        amount = Decimal(rng.randint(1, 100) * 100_000)
        signed = -amount if side == "buy" else amount
        positions["treasury", bank] += amount if side == "buy" else -amount
        cash["treasury", currency] += signed
        trades.append(
            {
                "trade_id": f"IB{n:06d}",
                "book": "treasury",
                "instrument": bank,
                "asset_class": "interbank",
                "side": side,
                "quantity": amount,
                "currency": currency,
                "settlement_amount": signed,
                "settlement_date": DAY - timedelta(days=rng.randint(1, 20)),
                "maturity_date": horizon_day(),
                "counterparty_type": counterparty(),
                "collateral_instrument": None,
            }
        )
    for n in range(FX):
        base = rng.choice(("EUR", "GBP", "JPY", "CHF"))
        side = rng.choice(("buy", "sell"))
        quantity = Decimal(rng.randint(10, 5_000) * 1_000)
        if base == "JPY":
            quantity *= 100
        rate = Decimal(CURRENCIES[base]) * Decimal(rng.randint(995, 1005)) / 1000
        amount = (quantity * rate).quantize(Decimal("0.01"))
        signed = -amount if side == "buy" else amount
        positions["treasury", base] += quantity if side == "buy" else -quantity
        cash["treasury", "USD"] += signed
        when = rng.random()
        if when < 0.7:
            settles = DAY + timedelta(days=rng.randint(1, HORIZON_DAYS))
        elif when < 0.9:
            settles = DAY - timedelta(days=rng.randint(0, 5))
        else:
            settles = DAY + timedelta(days=rng.randint(HORIZON_DAYS + 1, 90))
        trades.append(
            {
                "trade_id": f"FX{n:06d}",
                "book": "treasury",
                "instrument": base,
                "asset_class": "fx",
                "side": side,
                "quantity": quantity,
                "currency": "USD",
                "settlement_amount": signed,
                "settlement_date": settles,
                "maturity_date": None,
                "counterparty_type": None,
                "collateral_instrument": None,
            }
        )
    adjusted = []
    for security in rng.sample([s for s in priced if s.level in ("1", "2A")], ADJUSTMENTS):
        # A downgrade: Level 1 to 2A, Level 2A to 2B corporate debt.
        adjusted.append(
            (
                security.instrument,
                *(("2A", None) if security.level == "1" else ("2B", "corporate_debt")),
            )
        )
    return Ledger(
        securities,
        {k: q for k, q in positions.items() if not q.is_zero()},
        dict(cash),
        trades,
        size_balances(securities, positions, cash),
        adjusted,
    )


def size_balances(
    securities: list[Security],
    positions: dict[tuple[str, str], Decimal],
    cash: dict[tuple[str, str], Decimal],
) -> dict[str, tuple[Decimal, str]]:
    """Balances whose outflows, at their rates, are the stock's estimate over ``TARGET_LCR``
    (the trades' own flows move the ratio a little from there)."""
    by_id = {s.instrument: s for s in securities}
    net: dict[str, Decimal] = defaultdict(Decimal)
    for (_, instrument), quantity in positions.items():
        net[instrument] += quantity
    stock = sum(
        (
            value_of(cash_amount, Decimal(1), currency)
            for (_, currency), cash_amount in cash.items()
        ),
        Decimal(0),
    )
    for instrument, quantity in net.items():
        security = by_id.get(instrument)
        if security is None or security.price is None or quantity <= 0:
            continue
        value = value_of(quantity, security.price, security.currency)
        stock += value * (1 - _haircut(security.level, security.category))
    outflows = stock / TARGET_LCR
    balances = {}
    for category, (share, currency) in BALANCES.items():
        rate = DEFAULT_RATES.named(f"outflow_{category}")
        amount = outflows * share / rate / Decimal(CURRENCIES[currency])
        balances[category] = (amount.quantize(Decimal(1)), currency)
    return balances


SEEDING: tuple[LiteralString, ...] = (
    """INSERT INTO ledgerflow.instruments
        (instrument, asset_class, issuer_type, hqla_level, haircut_category, currency, price)
    SELECT * FROM unnest(%(i_instrument)s::text[], %(i_class)s::text[], %(i_issuer)s::text[],
                         %(i_level)s::text[], %(i_category)s::text[], %(i_currency)s::text[],
                         %(i_price)s::numeric[])""",
    """INSERT INTO ledgerflow.positions (book, instrument, quantity)
    SELECT * FROM unnest(%(p_book)s::text[], %(p_instrument)s::text[],
                         %(p_quantity)s::numeric[])""",
    """INSERT INTO ledgerflow.cash_positions (book, currency, amount)
    SELECT * FROM unnest(%(c_book)s::text[], %(c_currency)s::text[], %(c_amount)s::numeric[])""",
    """INSERT INTO ledgerflow.trades (trade_id, source, stream, stream_offset, book, instrument,
        asset_class, side, quantity, currency, settlement_amount, trade_time, settlement_date,
        maturity_date, counterparty_type, collateral_instrument)
    SELECT t.id, 'bench', 'trades.bench', t.o - 1, t.b, t.i, t.a, t.s, t.q, t.c, t.m,
           t.d::timestamptz, t.d, t.md, t.cp, t.ci
    FROM unnest(%(t_trade_id)s::text[], %(t_book)s::text[], %(t_instrument)s::text[],
                %(t_asset_class)s::text[], %(t_side)s::text[], %(t_quantity)s::numeric[],
                %(t_currency)s::text[], %(t_settlement_amount)s::numeric[],
                %(t_settlement_date)s::date[], %(t_maturity_date)s::date[],
                %(t_counterparty_type)s::text[], %(t_collateral_instrument)s::text[])
         WITH ORDINALITY AS t(id, b, i, a, s, q, c, m, d, md, cp, ci, o)""",
    """INSERT INTO ledgerflow.treasury_balances (category, amount, currency, updated_by)
    SELECT *, 'bench' FROM unnest(%(b_category)s::text[], %(b_amount)s::numeric[],
                                  %(b_currency)s::text[])""",
    """INSERT INTO ledgerflow.treasury_adjustments (kind, target, level, haircut_category,
        valid_from, valid_until, reason, created_by, effect)
    SELECT 'instrument', a.t, a.l, a.c, %(from)s, %(until)s, 'bench downgrade', 'bench', '{}'
    FROM unnest(%(a_target)s::text[], %(a_level)s::text[], %(a_category)s::text[]) AS a(t, l, c)""",
)


def columns(ledger: Ledger) -> dict[str, Any]:
    """The drawn rows as the column arrays SEEDING reads."""
    instruments = [
        Security(c, "currency", "", "1", None, "USD", Decimal(p)) for c, p in CURRENCIES.items()
    ] + ledger.securities
    params: dict[str, Any] = {
        "i_instrument": [s.instrument for s in instruments],
        "i_class": [s.asset_class for s in instruments],
        "i_issuer": [s.issuer_type or None for s in instruments],
        "i_level": [s.level for s in instruments],
        "i_category": [s.category for s in instruments],
        "i_currency": [s.currency for s in instruments],
        "i_price": [s.price for s in instruments],
        "p_book": [b for b, _ in ledger.positions],
        "p_instrument": [i for _, i in ledger.positions],
        "p_quantity": list(ledger.positions.values()),
        "c_book": [b for b, _ in ledger.cash],
        "c_currency": [c for _, c in ledger.cash],
        "c_amount": list(ledger.cash.values()),
        "b_category": list(ledger.balances),
        "b_amount": [a for a, _ in ledger.balances.values()],
        "b_currency": [c for _, c in ledger.balances.values()],
        "a_target": [t for t, _, _ in ledger.adjusted],
        "a_level": [level for _, level, _ in ledger.adjusted],
        "a_category": [c for _, _, c in ledger.adjusted],
        "from": AS_OF - timedelta(days=1),
        "until": AS_OF + timedelta(days=7),
    }
    for key in ledger.trades[0]:
        params[f"t_{key}"] = [t[key] for t in ledger.trades]
    return params


def url_for(database: str) -> str:
    """The configured database URL pointing at ``database``."""
    return str(urlsplit(SETTINGS.database_url)._replace(path=f"/{database}").geturl())


def admin(statement: LiteralString, database: str) -> None:
    """CREATE or DROP the database, from the maintenance database."""
    with psycopg.connect(url_for("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL(statement).format(sql.Identifier(database)))


async def migrated(url: str) -> None:
    conn = await connect(url)
    async with conn:
        await migrate.migrate(conn, ["treasury"])


def seed(url: str, ledger: Ledger) -> dict[str, int]:
    """Insert the drawn ledger; the rows of each table."""
    params = columns(ledger)
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            for statement in SEEDING:
                conn.execute(statement, params)
        conn.execute("VACUUM ANALYZE")
        row = conn.execute(
            "SELECT (SELECT count(*) FROM ledgerflow.instruments),"
            " (SELECT count(*) FROM ledgerflow.positions),"
            " (SELECT count(*) FROM ledgerflow.cash_positions),"
            " (SELECT count(*) FROM ledgerflow.trades),"
            " (SELECT count(*) FROM ledgerflow.trades WHERE asset_class <> 'fx'"
            "    AND maturity_date BETWEEN %(day)s AND %(last)s),"
            " (SELECT count(*) FROM ledgerflow.trades WHERE asset_class = 'fx'"
            "    AND settlement_date > %(day)s AND settlement_date <= %(last)s),"
            " (SELECT count(*) FROM ledgerflow.treasury_balances),"
            " (SELECT count(*) FROM ledgerflow.treasury_adjustments)",
            {"day": DAY, "last": DAY + timedelta(days=HORIZON_DAYS)},
        ).fetchone()
    assert row is not None
    names = (
        "instruments",
        "positions",
        "cash_positions",
        "trades",
        "repos_interbank_in_horizon",
        "fx_settling_in_horizon",
        "balances",
        "adjustments",
    )
    return dict(zip(names, row, strict=True))


def timed_sync(call: Callable[[], T], runs: int) -> tuple[list[float], T]:
    """Seconds of each of ``runs`` calls, and the last one's result."""
    seconds = []
    result: Any = None
    for _ in range(runs):
        began = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - began)
    return seconds, result


READS = ("currency_prices", "positions", "settled_cash", "horizon_trades", "balances")
# The reads of every key (null: no filter to the keys a batch touched).
PARAMS = {
    "day": DAY,
    "last_day": DAY + timedelta(days=HORIZON_DAYS),
    "at": AS_OF,
    "instruments": None,
    "currencies": None,
    "trade_ids": None,
}
BATCH = 250  # trades in the batch the worker refreshes after (5,000 trades/s, 50 ms)


@dataclass(frozen=True)
class Read:
    """What ``liquidity_inputs`` reads, and the seconds each read took."""

    overrides: list[Override]
    rows: dict[str, list[dict[str, Any]]]
    seconds: dict[str, float]


async def reads(conn: psycopg.AsyncConnection[Any]) -> Read:
    """The reads of ``liquidity_inputs``, each timed: the adjustments in force and the five
    queries of liquidity.sql it runs, in one snapshot, as it does."""
    params = PARAMS
    seconds: dict[str, float] = {}
    rows = {}
    async with conn.transaction():
        await conn.execute(QUERIES["begin_snapshot"])
        async with conn.cursor(row_factory=dict_row) as cursor:
            began = time.perf_counter()
            await cursor.execute(QUERIES["adjustments_in_force"], {"at": AS_OF})
            overrides = [
                Override(r["kind"], r["target"], Level(r["level"]), r["haircut_category"])
                for r in await cursor.fetchall()
            ]
            seconds["adjustments_in_force"] = time.perf_counter() - began
            for name in READS:
                began = time.perf_counter()
                await cursor.execute(QUERIES[name], params)
                rows[name] = await cursor.fetchall()
                seconds[name] = time.perf_counter() - began
    return Read(overrides, rows, seconds)


def build(read: Read) -> LiquidityInputs:
    """The inputs ``liquidity_inputs`` makes of those rows (adjusted, in USD, default rates)."""
    return build_inputs(
        AS_OF, DAY, REPORTING_CURRENCY, True, DEFAULT_RATES, read.overrides, read.rows
    )


async def plan(conn: psycopg.AsyncConnection[Any], name: str) -> str:
    """The plan of one of liquidity.sql's queries (EXPLAIN, not run)."""
    cursor = await conn.execute(sql.SQL("EXPLAIN {}").format(sql.SQL(QUERIES[name])), PARAMS)
    return "\n".join(str(r[0]) for r in await cursor.fetchall())


def ms(seconds: list[float]) -> dict[str, Any]:
    return {
        "ms": [round(s * 1000, 3) for s in seconds],
        "median_ms": round(statistics.median(seconds) * 1000, 3),
    }


def us(seconds: list[float]) -> dict[str, Any]:
    return {
        "us": [round(s * 1e6, 1) for s in seconds],
        "median_us": round(statistics.median(seconds) * 1e6, 1),
    }


@contextmanager
def inputs_timed(seconds: list[float]) -> Iterator[None]:
    """Within, each call of ``liquidity_inputs`` adds its seconds to ``seconds``: lcr_now
    calls it by its module's name, so it is timed inside lcr_now without a copy of it."""
    original = liquidity.liquidity_inputs

    async def timed(*args: Any, **kwargs: Any) -> LiquidityInputs:
        began = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - began)

    liquidity.liquidity_inputs = timed
    try:
        yield
    finally:
        liquidity.liquidity_inputs = original


def changed_holding(old: Holding, net: Decimal, security: Security) -> Holding:
    """The holding of an instrument whose net quantity is now ``net``; its level and category
    (adjusted or not) are the old holding's."""
    assert security.price is not None
    value = value_of(net, security.price, security.currency)
    return Holding(old.instrument, old.level, old.category, value)


async def store_batch(
    conn: psycopg.AsyncConnection[Any], changes: list[tuple[str, Security, Decimal]], first: int
) -> None:
    """Trades (book, security, signed quantity) stored as the ledger stores a batch, in one
    transaction: the trades at stream ``bench`` from offset ``first``, their positions and
    cash, the stream's next offset."""
    async with conn.transaction():
        for n, (book, security, quantity) in enumerate(changes, first):
            assert security.price is not None
            cash = -quantity * security.price
            await conn.execute(
                "INSERT INTO ledgerflow.trades (trade_id, source, stream, stream_offset, book,"
                " instrument, asset_class, side, quantity, price, currency, settlement_amount,"
                " trade_time, settlement_date) VALUES (%s, 'bonds', 'bench', %s, %s, %s, %s, %s,"
                " %s, %s, %s, %s, %s, %s)",
                (
                    f"bench-{n}",
                    n,
                    book,
                    security.instrument,
                    security.asset_class,
                    "buy" if quantity > 0 else "sell",
                    abs(quantity),
                    security.price,
                    security.currency,
                    cash,
                    AS_OF,
                    DAY,
                ),
            )
            await conn.execute(
                "UPDATE ledgerflow.positions SET quantity = quantity + %s"
                " WHERE book = %s AND instrument = %s",
                (quantity, book, security.instrument),
            )
            await conn.execute(
                "INSERT INTO ledgerflow.cash_positions AS c (book, currency, amount)"
                " VALUES (%s, %s, %s) ON CONFLICT (book, currency)"
                " DO UPDATE SET amount = c.amount + excluded.amount",
                (book, security.currency, cash),
            )
        await conn.execute(
            "INSERT INTO ledgerflow.stream_offsets (stream, next_offset, normalised_to)"
            " VALUES ('bench', %s, 0)"
            " ON CONFLICT (stream) DO UPDATE SET next_offset = excluded.next_offset",
            (first + len(changes),),
        )


@dataclass
class Incremental:
    """The in-memory state of the incremental path: the totals, and per instrument held its
    holding and net quantity, and the books it is held in."""

    totals: Totals
    holdings: dict[str, Holding]
    nets: dict[str, Decimal]
    books: dict[str, list[str]]


def incremental_state(ledger: Ledger, inputs: LiquidityInputs) -> tuple[float, Incremental]:
    """``Totals.of`` the inputs (timed), and the per-instrument state beside it."""
    began = time.perf_counter()
    totals = Totals.of(inputs.holdings, inputs.flows, inputs.rates)
    seconds = time.perf_counter() - began
    nets: dict[str, Decimal] = defaultdict(Decimal)
    books: dict[str, list[str]] = defaultdict(list)
    for (book, instrument), quantity in ledger.positions.items():
        nets[instrument] += quantity
        books[instrument].append(book)
    holdings = {h.instrument: h for h in inputs.holdings if h.instrument != "cash"}
    return seconds, Incremental(totals, holdings, dict(nets), dict(books))


async def measure_size(url: str, ledger: Ledger, rng: random.Random, runs: int) -> dict[str, Any]:
    """(a), (b) and (c) of the module's docstring on the seeded database at ``url``."""
    by_id = {s.instrument: s for s in ledger.securities}
    conn = await connect(url, autocommit=True)
    async with conn:
        # The first call warms plans and buffers; its reads are timed one by one.
        began = time.perf_counter()
        read = await reads(conn)
        first_read = time.perf_counter() - began
        build_s, inputs = timed_sync(lambda: build(read), runs)
        arithmetic, baseline = timed_sync(
            lambda: compute_lcr(inputs.holdings, inputs.flows, inputs.rates), runs
        )
        state_s, state = incremental_state(ledger, inputs)
        figures_s, quick = timed_sync(lambda: figures(state.totals), runs)
        consistent = quick == baseline
        # The valuation this bench makes must be build_inputs' own.
        for instrument in rng.sample(sorted(state.holdings), 20):
            held = changed_holding(
                state.holdings[instrument], state.nets[instrument], by_id[instrument]
            )
            consistent &= held == state.holdings[instrument]
        # The worker's path: RunningLcr, built once from every row.
        running = RunningLcr()
        began = time.perf_counter()
        await running.refresh(conn, AS_OF)
        rebuild_s = time.perf_counter() - began
        refresh_one: list[float] = []
        refresh_batch: list[float] = []
        offset = 0
        full: list[float] = []
        inputs_s: list[float] = []
        full_arithmetic: list[float] = []
        incremental: list[float] = []
        apply_only: list[float] = []
        checks: list[dict[str, Any]] = []
        instrument, previous, net = "", Decimal(0), Decimal(0)
        for _ in range(runs):
            instrument = rng.choice(sorted(state.holdings))
            book = rng.choice(sorted(state.books[instrument]))
            previous = state.nets[instrument]
            delta = (previous * Decimal(rng.randint(-50, 50)) / 100).quantize(Decimal(1))
            net = previous + (delta or Decimal(1))
            old = state.holdings[instrument]
            # (c) The change, incrementally.
            began = time.perf_counter()
            new = changed_holding(old, net, by_id[instrument])
            state.totals = state.totals.remove_holding(old).add_holding(new)
            applied = time.perf_counter()
            quick = figures(state.totals)
            incremental.append(time.perf_counter() - began)
            apply_only.append(applied - began)
            state.holdings[instrument], state.nets[instrument] = new, net
            # (d) The same change as a trade the ledger stores (its cash moves too), and the
            # worker's refresh after it.
            await store_batch(conn, [(book, by_id[instrument], net - previous)], offset)
            offset += 1
            began = time.perf_counter()
            refreshed, _ = await running.refresh(conn, AS_OF)
            refresh_one.append(time.perf_counter() - began)
            # (a) and (b) lcr_now on that ledger: in all, and its liquidity_inputs within.
            with inputs_timed(inputs_s):
                began = time.perf_counter()
                recomputed = await liquidity.lcr_now(conn, AS_OF)
                full.append(time.perf_counter() - began)
            full_arithmetic.append(full[-1] - inputs_s[-1])
            checks.append(
                {
                    "instrument": instrument,
                    "level": str(old.level),
                    "book": book,
                    "quantity_change": str(net - previous),
                    "lcr": None if refreshed.lcr is None else str(refreshed.lcr),
                    "exact": refreshed == recomputed
                    and refreshed.as_json() == recomputed.as_json(),
                }
            )
        # The last change undone and made again, over and over: a steadier figure for a few
        # microseconds; an even number of times, so the totals must come back to the same.
        totals, current, security = state.totals, state.holdings[instrument], by_id[instrument]
        began = time.perf_counter()
        for repeat in range(STEADY_REPEATS):
            following = changed_holding(current, previous if repeat % 2 == 0 else net, security)
            totals = totals.remove_holding(current).add_holding(following)
            figures(totals)
            current = following
        steady = (time.perf_counter() - began) / STEADY_REPEATS
        consistent &= figures(totals) == figures(state.totals)
        # (e) Batches of BATCH trades in securities drawn at random, the worker's refresh
        # after each, checked against lcr_now.
        held = sorted(state.holdings)
        for _ in range(runs):
            changes = []
            for _ in range(BATCH):
                instrument = rng.choice(held)
                if by_id[instrument].price is None:
                    continue
                book = rng.choice(state.books[instrument])
                changes.append(
                    (book, by_id[instrument], Decimal(rng.choice((-1, 1)) * rng.randint(1, 500)))
                )
            await store_batch(conn, changes, offset)
            offset += len(changes)
            began = time.perf_counter()
            refreshed, _ = await running.refresh(conn, AS_OF)
            refresh_batch.append(time.perf_counter() - began)
            consistent &= refreshed == await liquidity.lcr_now(conn, AS_OF)
        consistent &= running.rebuilds == 1
        positions_plan = await plan(conn, "positions")
    return {
        "counts": {
            "holdings": len(inputs.holdings),
            "flows": len(inputs.flows),
            "unknown": len(inputs.unknown),
            "short": len(inputs.short),
            "unconvertible": len(inputs.unconvertible),
            "positions_rows": len(read.rows["positions"]),
            "horizon_trades_rows": len(read.rows["horizon_trades"]),
        },
        "figures": baseline.as_json(),
        "lcr_now": ms(full),
        "liquidity_inputs": ms(inputs_s),
        "lcr_now_arithmetic": ms(full_arithmetic),
        "first_call_reads": {
            "ms": round(first_read * 1000, 3),
            "by_query_ms": {k: round(v * 1000, 3) for k, v in read.seconds.items()},
        },
        "build_inputs": ms(build_s),
        "compute_lcr": ms(arithmetic),
        "totals_of_ms": round(state_s * 1000, 3),
        "figures_alone": us(figures_s),
        "incremental": us(incremental),
        "incremental_without_figures": us(apply_only),
        "incremental_mean_of_1000_us": round(steady * 1e6, 1),
        "running_rebuild_ms": round(rebuild_s * 1000, 3),
        "refresh_after_one_trade": ms(refresh_one),
        "refresh_after_batch": ms(refresh_batch),
        "ratio_full_to_refresh": round(statistics.median(full) / statistics.median(refresh_one), 1),
        "changes": checks,
        "exact": consistent and all(c["exact"] for c in checks),
        "ratio_full_to_arithmetic": round(statistics.median(full) / statistics.median(incremental)),
        "ratio_inputs_to_arithmetic": round(
            statistics.median(inputs_s) / statistics.median(arithmetic), 1
        ),
        "positions_plan": positions_plan,
    }


def measure(size: int, seed_value: int, runs: int) -> dict[str, Any]:
    """Draw, seed and measure one size in its own database, dropped after."""
    rng = random.Random(seed_value)
    began = time.perf_counter()
    ledger = draw(rng, size)
    database = f"ledgerflow_bench_{uuid.uuid4().hex[:8]}"
    url = url_for(database)
    admin("CREATE DATABASE {}", database)
    try:
        asyncio.run(migrated(url))
        rows = seed(url, ledger)
        seeding = time.perf_counter() - began
        print(
            f"bench: {size:,} instruments seeded in {seeding:.1f} s, measuring...",
            file=sys.stderr,
            flush=True,
        )
        measured = asyncio.run(measure_size(url, ledger, rng, runs))
    finally:
        admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", database)
    return {"size": size, "seeding_s": round(seeding, 1), "rows": rows, **measured}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    print(f"bench: seed {args.seed}", file=sys.stderr, flush=True)
    sizes = [measure(size, args.seed, args.runs) for size in args.sizes]
    record: dict[str, Any] = {
        "kind": "lcr",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "seed": args.seed,
        "runs": args.runs,
        "as_of": AS_OF.isoformat(),
        "sizes": sizes,
    }
    print(f"seed {args.seed}, as of {AS_OF.isoformat()}, medians of {args.runs} runs")
    print(
        f"{'instruments':>11} {'positions':>9} {'holdings':>8} {'flows':>5} {'lcr':>8}"
        f" {'lcr_now ms':>10} {'inputs ms':>9} {'compute_lcr ms':>14} {'Totals.of ms':>12}"
        f" {'refresh ms':>10} {f'refresh {BATCH} ms':>14} {'full/refresh':>12}"
        f" {'arith us':>8} {'exact':>5}"
    )
    for s in sizes:
        print(
            f"{s['size']:>11,} {s['rows']['positions']:>9,} {s['counts']['holdings']:>8,}"
            f" {s['counts']['flows']:>5,} {s['figures']['lcr']:>8}"
            f" {s['lcr_now']['median_ms']:>10} {s['liquidity_inputs']['median_ms']:>9}"
            f" {s['compute_lcr']['median_ms']:>14} {s['totals_of_ms']:>12}"
            f" {s['refresh_after_one_trade']['median_ms']:>10}"
            f" {s['refresh_after_batch']['median_ms']:>14} {s['ratio_full_to_refresh']:>12}"
            f" {s['incremental']['median_us']:>8} {'yes' if s['exact'] else 'NO':>5}"
        )
    for s in sizes:
        reads = s["first_call_reads"]
        by_query = ", ".join(f"{k} {v}" for k, v in reads["by_query_ms"].items())
        print(
            f"{s['size']:,}: lcr_now {s['lcr_now']['ms']} ms = liquidity_inputs"
            f" {s['liquidity_inputs']['ms']} ms + compute_lcr {s['lcr_now_arithmetic']['ms']} ms;"
            f" first call's reads {reads['ms']} ms ({by_query}), build_inputs"
            f" {s['build_inputs']['median_ms']} ms; liquidity_inputs / compute_lcr"
            f" x {s['ratio_inputs_to_arithmetic']}; RunningLcr built in"
            f" {s['running_rebuild_ms']} ms, refreshed after one trade"
            f" {s['refresh_after_one_trade']['ms']} ms, after {BATCH}"
            f" {s['refresh_after_batch']['ms']} ms; arithmetic of one change"
            f" {s['incremental']['us']} us"
            f" ({s['incremental_without_figures']['median_us']} us before figures, figures"
            f" alone {s['figures_alone']['median_us']} us)"
        )
    print(f"EXPLAIN positions at {sizes[-1]['size']:,} instruments:\n{sizes[-1]['positions_plan']}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"lcr-{str(record['when']).replace(':', '')}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {path}")
    return 0 if all(s["exact"] for s in sizes) else 1


if __name__ == "__main__":
    sys.exit(main())
