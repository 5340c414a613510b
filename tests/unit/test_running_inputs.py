"""``RunningInputs`` kept up to date key by key gives what building it from every row gives,
whatever the changes and their order: the same totals (hence the same LCR, exactly), the
same holdings, flows and lists of what could not be counted."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.treasury.holdings_and_flows import (
    LiquidityInputs,
    Override,
    Row,
    running_inputs,
)
from ledgerflow.treasury.lcr import Level, Rates, compute_lcr

DAY = date(2026, 11, 30)
D = Decimal
# instrument: (asset class, level, haircut category, currency, price); None: not known
REFERENCE: dict[str, tuple[str, str, str | None, str, Decimal | None] | None] = {
    "EUR": ("currency", "1", None, "USD", D("1.10")),
    "GBP": ("currency", "1", None, "USD", None),
    "UST": ("bond", "1", None, "USD", D("99.875")),
    "AGY": ("bond", "2A", None, "USD", D("50")),
    "RMBS": ("bond", "2B", "rmbs", "EUR", D("20.5")),
    "EQ": ("equity", "2B", "equity", "USD", D("10.01")),
    "BAD2B": ("equity", "2B", None, "USD", D("3")),
    "NOPRICE": ("bond", "1", None, "USD", None),
    "JUNK": ("equity", "none", None, "USD", D("5")),
    "CHF": None,  # traded by FX, not in the reference data
    "MYSTERY": None,
}
CURRENCY_PRICES = [
    {"instrument": i, "currency": r[3], "price": r[4]}
    for i, r in REFERENCE.items()
    if r is not None and r[0] == "currency"
]
BOOKS = ("banking", "trading")
SECURITIES = ("UST", "AGY", "RMBS", "EQ", "BAD2B", "NOPRICE", "JUNK", "MYSTERY")
quantities = st.decimals(min_value=1, max_value=5000, places=2, allow_nan=False)


def reference_of(instrument: str) -> dict[str, Any]:
    asset_class, level, category, currency, price = REFERENCE.get(instrument) or (None,) * 5
    return {
        "asset_class": asset_class,
        "hqla_level": level,
        "haircut_category": category,
        "currency": currency,
        "price": price,
    }


class Ledger:
    """Trades stored as the ledger stores them, and the rows liquidity.sql reads of them."""

    def __init__(self) -> None:
        self.positions: dict[tuple[str, str], Decimal] = {}
        self.cash: dict[str, Decimal] = {}
        self.trades: list[Row] = []
        self.balances: list[Row] = []

    def store(self, trade: Row) -> None:
        key = (trade["book"], trade["instrument"])
        signed = trade["quantity"] if trade["side"] == "buy" else -trade["quantity"]
        self.positions[key] = self.positions.get(key, D(0)) + signed
        currency = trade["currency"]
        self.cash[currency] = self.cash.get(currency, D(0)) + trade["settlement_amount"]
        self.trades.append(trade)

    def held_positions(self, instrument: str) -> list[Row]:
        return [
            {"book": book, "instrument": instrument, "quantity": q, **reference_of(instrument)}
            for (book, held), q in sorted(self.positions.items())
            if held == instrument
        ]

    def positions_rows(self) -> list[Row]:
        rows = []
        for instrument in sorted({i for _, i in self.positions}):
            for row in self.held_positions(instrument):
                mine = [
                    t
                    for t in self.trades
                    if (t["book"], t["instrument"]) == (row["book"], instrument)
                ]
                unsettled = sum(
                    (
                        t["quantity"] if t["side"] == "buy" else -t["quantity"]
                        for t in mine
                        if t["asset_class"] == "fx" and t["settlement_date"] > DAY
                    ),
                    D(0),
                )
                rows.append(
                    {
                        **row,
                        "fx": any(t["asset_class"] == "fx" for t in mine),
                        "interbank": any(t["asset_class"] == "interbank" for t in mine),
                        "unsettled": unsettled,
                    }
                )
        return rows

    def rows(self) -> dict[str, list[Row]]:
        last = DAY + timedelta(days=30)
        unsettled: dict[str, Decimal] = {}
        for t in self.trades:
            if t["asset_class"] == "fx" and t["settlement_date"] > DAY:
                unsettled[t["currency"]] = (
                    unsettled.get(t["currency"], D(0)) + t["settlement_amount"]
                )
        return {
            "currency_prices": CURRENCY_PRICES,
            "positions": self.positions_rows(),
            "settled_cash": [
                {"currency": c, "held": self.cash.get(c, D(0)), "unsettled": unsettled.get(c, D(0))}
                for c in sorted(set(self.cash) | set(unsettled))
            ],
            "horizon_trades": [
                t
                for t in self.trades
                if (t["asset_class"] in ("repo", "interbank") and DAY <= t["maturity_date"] <= last)
                or (t["asset_class"] == "fx" and DAY < t["settlement_date"] <= last)
            ],
            "balances": self.balances,
        }


def trade(
    n: int,
    kind: str,
    book: str,
    instrument: str,
    side: str,
    quantity: Decimal,
    days: int,
    currency: str = "USD",
) -> Row:
    if kind == "fx":
        instrument = {"UST": "EUR", "AGY": "GBP"}.get(instrument, "CHF")
    elif kind == "interbank":
        instrument = "BANKA"
    reference = reference_of(instrument)
    cash = (quantity * D("1.1")).quantize(D("0.01"))
    return {
        "trade_id": f"T{n}",
        "book": book,
        "instrument": instrument,
        "asset_class": kind,
        "side": side,
        "quantity": quantity,
        "currency": currency,
        "settlement_amount": -cash if side == "buy" else cash,
        "settlement_date": DAY + timedelta(days=days),
        "maturity_date": DAY + timedelta(days=days) if kind in ("repo", "interbank") else None,
        "counterparty_type": "financial_institution",
        "collateral_instrument": instrument if kind == "repo" else None,
        "hqla_level": reference["hqla_level"] if kind == "repo" else None,
        "haircut_category": reference["haircut_category"] if kind == "repo" else None,
        "collateral_currency": reference["currency"] if kind == "repo" else None,
        "price": reference["price"] if kind == "repo" else None,
    }


trades = st.tuples(
    st.sampled_from(("bond", "repo", "interbank", "fx")),
    st.sampled_from(BOOKS),
    st.sampled_from(SECURITIES),
    st.sampled_from(("buy", "sell")),
    quantities,
    st.integers(min_value=-3, max_value=40),
    st.sampled_from(("USD", "EUR", "GBP")),
)
# A batch: trades stored together, told to the running inputs as the worker does (every
# trade first, then the instruments and currencies they touched).
changes = st.lists(
    st.one_of(
        st.tuples(st.just("batch"), st.lists(trades, min_size=1, max_size=4)),
        st.tuples(st.just("balance"), quantities),
    ),
    max_size=25,
)
overrides = st.lists(
    st.builds(
        Override,
        st.just("instrument"),
        st.sampled_from(("JUNK", "AGY", "BAD2B", "MYSTERY")),
        st.sampled_from((Level.LEVEL_2A, Level.NONE)),
        st.none(),
    ),
    max_size=2,
)


def counted(inputs: LiquidityInputs) -> tuple[Any, ...]:
    return (
        Counter(inputs.holdings),
        Counter(inputs.flows),
        inputs.cash,
        Counter(inputs.unknown),
        Counter(inputs.short),
        Counter(inputs.unconvertible),
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(trades, max_size=6), changes, overrides)
def test_changed_key_by_key_it_equals_the_inputs_built_from_every_row(
    first: list[tuple[Any, ...]], steps: list[tuple[Any, ...]], found: list[Override]
) -> None:
    ledger = Ledger()
    for n, drawn in enumerate(first):  # a ledger with trades before the inputs are built
        ledger.store(trade(-1 - n, *drawn))
    rates = Rates()
    running = running_inputs(DAY, "USD", rates, found, ledger.rows())
    for n, step in enumerate(steps):
        match step:
            case ("batch", drawn):
                stored = [trade(n * 10 + i, *d) for i, d in enumerate(drawn)]
                for each in stored:
                    ledger.store(each)
                for each in stored:
                    running.add_stored(each)
                for instrument in {each["instrument"] for each in stored}:
                    running.set_instrument(instrument, ledger.held_positions(instrument))
                for currency in {each["currency"] for each in stored}:
                    running.set_cash(currency, ledger.cash[currency])
                for each in ledger.rows()["horizon_trades"]:
                    running.set_trade(each)  # again: a trade counts once
            case ("balance", amount):
                ledger.balances = [
                    {"category": "retail_stable", "amount": amount, "currency": "EUR"}
                ]
                running.set_balances(ledger.balances)
        rebuilt = running_inputs(DAY, "USD", rates, found, ledger.rows())
        assert running.figures() == rebuilt.figures()
        assert running.totals == rebuilt.totals
    at = datetime(2026, 11, 30, 12, tzinfo=UTC)
    inputs = running.inputs(at, True)
    assert counted(inputs) == counted(
        running_inputs(DAY, "USD", rates, found, ledger.rows()).inputs(at, True)
    )
    # The running totals are those of the holdings and flows, summed afresh.
    assert inputs.figures() == compute_lcr(inputs.holdings, inputs.flows, rates)
