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
from ledgerflow.treasury.lcr import Level, Rates

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
CURRENCIES = ("USD", "EUR", "GBP", "CHF")
amounts = st.decimals(min_value=-5000, max_value=5000, places=2, allow_nan=False)


class Ledger:
    """The rows of the ledger, as liquidity.sql reads them."""

    def __init__(self) -> None:
        self.positions: dict[tuple[str, str], Decimal] = {}
        self.unsettled: dict[tuple[str, str], Decimal] = {}
        self.cash: dict[str, Decimal] = {}
        self.trades: dict[str, Row] = {}
        self.balances: list[Row] = []

    def rows_of(self, instrument: str) -> list[Row]:
        reference = REFERENCE[instrument]
        asset_class, level, category, currency, price = reference or (None,) * 5
        return [
            {
                "book": book,
                "instrument": instrument,
                "quantity": quantity,
                "asset_class": asset_class,
                "hqla_level": level,
                "haircut_category": category,
                "currency": currency,
                "price": price,
                "fx": instrument in ("CHF", "EUR"),
                "interbank": False,
                "unsettled": self.unsettled.get((book, instrument), D(0)),
            }
            for (book, held), quantity in sorted(self.positions.items())
            if held == instrument
        ]

    def rows(self) -> dict[str, list[Row]]:
        return {
            "currency_prices": CURRENCY_PRICES,
            "positions": [row for i in sorted(REFERENCE) for row in self.rows_of(i)],
            "settled_cash": [{"currency": c, "amount": a} for c, a in sorted(self.cash.items())],
            "horizon_trades": list(self.trades.values()),
            "balances": self.balances,
        }


def trade(n: int, kind: str, side: str, amount: Decimal, days: int, collateral: str) -> Row:
    reference = REFERENCE.get(collateral)
    quantity = abs(amount) or D(1)
    return {
        "trade_id": f"T{n}",
        "book": "banking",
        "instrument": "CHF" if kind == "fx" else collateral,
        "asset_class": kind,
        "side": side,
        "quantity": quantity,
        "currency": "USD",
        "settlement_amount": -quantity if side == "buy" else quantity,
        "settlement_date": DAY + timedelta(days=days),
        "maturity_date": DAY + timedelta(days=days),
        "counterparty_type": "financial_institution",
        "collateral_instrument": collateral if kind == "repo" else None,
        "hqla_level": reference[1] if reference else None,
        "haircut_category": reference[2] if reference else None,
        "collateral_currency": reference[3] if reference else None,
        "price": reference[4] if reference else None,
    }


changes = st.lists(
    st.one_of(
        st.tuples(
            st.just("position"), st.sampled_from(BOOKS), st.sampled_from(sorted(REFERENCE)), amounts
        ),
        st.tuples(
            st.just("unsettled"), st.sampled_from(BOOKS), st.sampled_from(("CHF", "EUR")), amounts
        ),
        st.tuples(st.just("cash"), st.sampled_from(CURRENCIES), amounts),
        st.tuples(
            st.just("trade"),
            st.sampled_from(("repo", "interbank", "fx")),
            st.sampled_from(("buy", "sell")),
            amounts,
            st.integers(min_value=1, max_value=30),
            st.sampled_from(sorted(REFERENCE)),
        ),
        st.tuples(st.just("balance"), amounts),
    ),
    max_size=40,
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
@given(changes, overrides)
def test_changed_key_by_key_it_equals_the_inputs_built_from_every_row(
    steps: list[tuple[Any, ...]], found: list[Override]
) -> None:
    ledger = Ledger()
    rates = Rates()
    running = running_inputs(DAY, "USD", rates, found, ledger.rows())
    for n, step in enumerate(steps):
        match step:
            case ("position", book, instrument, delta):
                ledger.positions[book, instrument] = (
                    ledger.positions.get((book, instrument), D(0)) + delta
                )
                running.set_instrument(instrument, ledger.rows_of(instrument))
            case ("unsettled", book, instrument, delta):
                ledger.unsettled[book, instrument] = delta
                running.set_instrument(instrument, ledger.rows_of(instrument))
            case ("cash", currency, delta):
                ledger.cash[currency] = ledger.cash.get(currency, D(0)) + delta
                running.set_cash(currency, ledger.cash[currency])
            case ("trade", kind, side, amount, days, collateral):
                row = trade(n, kind, side, amount, days, collateral)
                ledger.trades[row["trade_id"]] = row
                running.set_trade(row)
                running.set_trade(row)  # again: a trade counts once
            case ("balance", amount):
                ledger.balances = [
                    {"category": "retail_stable", "amount": abs(amount), "currency": "EUR"}
                ]
                running.set_balances(ledger.balances)
        rebuilt = running_inputs(DAY, "USD", rates, found, ledger.rows())
        assert running.figures() == rebuilt.figures()
        assert running.totals == rebuilt.totals
    at = datetime(2026, 11, 30, 12, tzinfo=UTC)
    rebuilt = running_inputs(DAY, "USD", rates, found, ledger.rows())
    assert counted(running.inputs(at, True)) == counted(rebuilt.inputs(at, True))
