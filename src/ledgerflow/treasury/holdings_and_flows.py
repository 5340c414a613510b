"""The LCR's holdings and flows (:mod:`ledgerflow.treasury.lcr`) made from the ledger's rows
as :mod:`ledgerflow.treasury.liquidity` reads them: pure, no I/O.

The stock (holdings), as the ledger holds it at the as-of instant:

- Cash is Level 1: ``cash_positions`` and the positions in currencies (a position whose
  instrument is a ``currency`` in the reference data, or one traded by FX), over every book,
  netted per currency, converted, then netted across currencies into one holding ``cash``.
  Cash short overall (an overdraft) is no asset: it is an outflow to a financial
  institution due today (100 %), so it is neither dropped nor netted against securities.
- An FX trade that settles after the as-of date is a flow, not stock: its two legs are
  taken back out of the cash, and its settlement cash counts in the flows (below).
- A security is valued at quantity times price times its currency's rate, at its HQLA
  level and Level 2B haircut category, netted over books. A net short position is not HQLA (it is
  a delivery owed, not an asset) and does not reduce the stock either: it is listed in
  ``short``. A position whose instrument is not in the reference data, or has no price,
  counts nowhere and is listed in ``unknown`` (instrument, book, quantity), as is a Level
  2B one without a valid haircut category; an interbank deal's "position" (a claim on, or
  debt to, a counterparty) is no security and counts only as its flow.
- Other trades are stock from their trade date, as the ledger books them: a bond or equity
  bought and not yet settled is held, its cash paid.

Conversion: a currency's price is the value of one unit in the currency its reference row
names (``EUR``, price 1.08 in ``USD``). A currency converts when it is the reporting
currency (rate 1) or when its price is quoted in the reporting currency; no cross rates are
derived. Anything in a currency that does not convert is listed in ``unconvertible``, never
counted silently at a wrong rate nor dropped unseen.

The flows within the horizon (due from the as-of date to 30 days after it, days in UTC):

- a repo (side sell) maturing: an outflow ``secured_funding`` (``..._central_bank`` when the
  counterparty is a central bank) of the cash to repay; a reverse repo (buy): an inflow
  ``secured_lending``. The cash is the start leg's |settlement_amount|: interest is *not*
  modelled (the canonical trade has the rate, not its day count). The collateral is the
  repo's quantity of its collateral instrument, valued as a holding, at its level. A repo
  whose collateral cannot be classified or valued takes non-HQLA collateral (100 %
  run-off); a reverse repo in that case counts no inflow (a 100 % inflow would flatter the
  ratio); the collateral is listed in ``unknown`` either way;
- an interbank loan (buy) maturing: an inflow ``financial_institution`` when the
  counterparty is a financial institution or a central bank, else ``retail_non_financial``
  (50 %, also for an unknown type); a deposit taken (sell): an outflow
  ``financial_institution`` (100 %) whatever the depositor. Principal only, as for repos;
- FX trades settling within the horizon: their legs netted per currency and settlement
  day; a net receipt is an inflow, a net payment an outflow, ``fx_derivative_settlement``;
- ``treasury_balances``: outflows at their category's rate, due today, converted from
  their currency.

The ledger books a repo's or a deal's start leg only, so one that matured before the as-of
date counts nowhere: its closing is the desk's trade to book.

Amounts that a conversion or a valuation leaves with more than 12 decimal places are
rounded so as never to flatter the ratio: assets and inflows down, outflows up.

Adjustments in force at the as-of instant (``valid_from <= as_of < valid_until``, not ended
by then) override an instrument's level and category (kind ``instrument``, wherever the
instrument appears, collateral included) or one repo's collateral (kind ``trade``); the
later of two on one target wins. ``adjusted=False`` ignores them all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Any, Literal

from ledgerflow.core.amounts import MAX_FRACTION_DIGITS
from ledgerflow.treasury.lcr import (
    LEVEL_2B_CATEGORIES,
    Flow,
    Holding,
    LcrFigures,
    Level,
    Rates,
    compute_lcr,
)

_FINANCIAL = ("financial_institution", "central_bank")
# Sums and products: exact, or an error. Rounding: only in _fit, in the direction it names.
_EXACT = Context(prec=100, traps=[Inexact, InvalidOperation, Overflow])
_ROUNDING = Context(prec=100, traps=[InvalidOperation, Overflow])
_QUANTUM = Decimal(1).scaleb(-MAX_FRACTION_DIGITS)
ZERO = Decimal(0)

Row = dict[str, Any]  # a row as liquidity.sql's queries return it


@dataclass(frozen=True)
class UnknownPosition:
    """A position (or a repo's collateral) that counts nowhere, and why."""

    instrument: str
    book: str
    quantity: Decimal
    reason: str


@dataclass(frozen=True)
class ShortPosition:
    """An instrument held short, net over the books: not HQLA, not counted."""

    instrument: str
    quantity: Decimal


@dataclass(frozen=True)
class Unconvertible:
    """An amount in a currency with no rate to the reporting currency, not counted:
    ``source`` says what it is (``cash``, ``instrument X``, ``trade T``...)."""

    currency: str
    source: str
    amount: Decimal


@dataclass(frozen=True)
class CashBalance:
    """Cash in one currency over every book, settled; ``value`` in the reporting currency,
    ``None`` when the currency does not convert."""

    currency: str
    amount: Decimal
    value: Decimal | None


@dataclass(frozen=True)
class Override:
    """A reclassification: of an instrument (``kind`` instrument) or of one repo's
    collateral (``kind`` trade), ``target`` being the instrument's or the trade's id."""

    kind: Literal["instrument", "trade"]
    target: str
    level: Level
    haircut_category: str | None


@dataclass(frozen=True)
class LiquidityInputs:
    """What the LCR is computed from on ``as_of``, in ``currency``, and what could not be
    counted (see the module's docstring)."""

    as_of: datetime
    currency: str
    adjusted: bool
    rates: Rates
    holdings: tuple[Holding, ...]
    flows: tuple[Flow, ...]
    cash: tuple[CashBalance, ...]
    unknown: tuple[UnknownPosition, ...]
    short: tuple[ShortPosition, ...]
    unconvertible: tuple[Unconvertible, ...]

    def figures(self) -> LcrFigures:
        """The LCR of these holdings and flows."""
        return compute_lcr(self.holdings, self.flows, self.rates)


def _fit(value: Decimal, rounding: str) -> Decimal:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent >= -MAX_FRACTION_DIGITS:
        return value
    return value.quantize(_QUANTUM, rounding=rounding, context=_ROUNDING)


@dataclass
class _Book:
    """The inputs under construction (private: the result is a LiquidityInputs)."""

    rates: dict[str, Decimal]  # currency -> value of one unit in the reporting currency
    holdings: list[Holding] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)
    unknown: list[UnknownPosition] = field(default_factory=list)
    short: list[ShortPosition] = field(default_factory=list)
    unconvertible: list[Unconvertible] = field(default_factory=list)

    def convert(self, amount: Decimal, currency: str, rounding: str, source: str) -> Decimal | None:
        rate = self.rates.get(currency)
        if rate is None:
            self.unconvertible.append(Unconvertible(currency, source, amount))
            return None
        return _fit(_EXACT.multiply(amount, rate), rounding)

    def flow(
        self,
        kind: Literal["outflow", "inflow"],
        category: str,
        amount: Decimal,
        currency: str,
        days: int,
        source: str,
        **collateral: Any,
    ) -> None:
        rounding = ROUND_CEILING if kind == "outflow" else ROUND_FLOOR
        value = self.convert(amount, currency, rounding, source)
        if value is not None:
            self.flows.append(Flow(kind, category, value, days, **collateral))


def _currency_rates(rows: list[Row], reporting: str) -> dict[str, Decimal]:
    rates = {reporting: Decimal(1)}
    for row in rows:
        if row["currency"] == reporting and row["price"] is not None:
            rates.setdefault(row["instrument"], row["price"])
    return rates


def _classification(
    level: str | None, category: str | None, override: Override | None
) -> tuple[Level, str | None] | None:
    """An asset's level and category, overridden or as its reference row says; ``None``
    when that is no level the standard has."""
    if override is not None:
        return override.level, override.haircut_category
    if level is None:
        return None
    found = Level(level)
    if found is not Level.LEVEL_2B:
        return found, None
    return (found, category) if category in LEVEL_2B_CATEGORIES else None


def _held(
    book: _Book, positions: list[Row], cash_rows: list[Row], instruments: dict[str, Override]
) -> list[CashBalance]:
    cash: dict[str, Decimal] = defaultdict(Decimal)
    for row in cash_rows:
        cash[row["currency"]] += row["amount"]
    net: dict[str, Decimal] = defaultdict(Decimal)
    reference: dict[str, tuple[Row, tuple[Level, str | None]]] = {}
    for row in positions:
        quantity: Decimal = _EXACT.subtract(row["quantity"], row["unsettled"])
        instrument = row["instrument"]
        if quantity.is_zero():
            continue
        if row["asset_class"] == "currency" or (row["asset_class"] is None and row["fx"]):
            cash[instrument] += quantity
        elif row["asset_class"] is None:
            if not row["interbank"]:
                book.unknown.append(
                    UnknownPosition(instrument, row["book"], quantity, "not in the reference data")
                )
        elif row["price"] is None:
            book.unknown.append(UnknownPosition(instrument, row["book"], quantity, "no price"))
        else:
            classified = _classification(
                row["hqla_level"], row["haircut_category"], instruments.get(instrument)
            )
            if classified is None:
                book.unknown.append(
                    UnknownPosition(
                        instrument, row["book"], quantity, "Level 2B without a haircut category"
                    )
                )
                continue
            net[instrument] += quantity
            reference[instrument] = (row, classified)
    for instrument, quantity in net.items():
        row, (level, category) = reference[instrument]
        if quantity < 0:
            book.short.append(ShortPosition(instrument, quantity))
            continue
        value = book.convert(
            quantity * row["price"], row["currency"], ROUND_FLOOR, f"instrument {instrument}"
        )
        if value is not None:
            book.holdings.append(Holding(instrument, level, category, value))
    balances = []
    for currency, amount in sorted(cash.items()):
        if not amount.is_zero():
            value = book.convert(amount, currency, ROUND_FLOOR, "cash")
            balances.append(CashBalance(currency, amount, value))
    total = sum((b.value for b in balances if b.value is not None), ZERO)
    if total > 0:
        book.holdings.insert(0, Holding("cash", Level.LEVEL_1, None, total))
    elif total < 0:
        book.flows.append(Flow("outflow", "financial_institution", -total, 0))
    return balances


def _collateral(
    book: _Book, trade: Row, trades: dict[str, Override], instruments: dict[str, Override]
) -> dict[str, Any] | None:
    """A repo's collateral as ``Flow`` fields; ``None`` when it cannot be classified or
    valued (listed as unknown)."""
    instrument = trade["collateral_instrument"] or trade["instrument"]
    override = trades.get(trade["trade_id"]) or instruments.get(instrument)
    classified = _classification(trade["hqla_level"], trade["haircut_category"], override)
    problem = None
    if classified is None:
        problem = "repo collateral not in the reference data"
    elif classified[0] is Level.NONE:
        return {"collateral_level": Level.NONE}
    elif trade["price"] is None:
        problem = "repo collateral without a price"
    else:
        value = book.convert(
            _EXACT.multiply(trade["quantity"], trade["price"]),
            trade["collateral_currency"],
            ROUND_FLOOR,
            f"collateral of trade {trade['trade_id']}",
        )
        if value is not None:
            return {
                "collateral_level": classified[0],
                "collateral_category": classified[1],
                "collateral_value": value,
            }
        problem = "repo collateral in a currency that does not convert"
    book.unknown.append(UnknownPosition(instrument, trade["book"], trade["quantity"], problem))
    return None


def _due(
    book: _Book,
    day: date,
    trades_rows: list[Row],
    balances: list[Row],
    trades: dict[str, Override],
    instruments: dict[str, Override],
) -> None:
    legs: dict[tuple[str, date], Decimal] = defaultdict(Decimal)
    for trade in trades_rows:
        source = f"trade {trade['trade_id']}"
        amount = abs(trade["settlement_amount"])
        if trade["asset_class"] == "fx":
            when = trade["settlement_date"]
            bought = trade["quantity"] if trade["side"] == "buy" else -trade["quantity"]
            legs[trade["instrument"], when] += bought
            legs[trade["currency"], when] += trade["settlement_amount"]
            continue
        days = (trade["maturity_date"] - day).days
        if trade["asset_class"] == "interbank":
            if trade["side"] == "buy":
                financial = trade["counterparty_type"] in _FINANCIAL
                category = "financial_institution" if financial else "retail_non_financial"
                book.flow("inflow", category, amount, trade["currency"], days, source)
            else:
                book.flow(
                    "outflow", "financial_institution", amount, trade["currency"], days, source
                )
            continue
        collateral = _collateral(book, trade, trades, instruments)
        if trade["side"] == "sell":
            central = trade["counterparty_type"] == "central_bank"
            category = "secured_funding_central_bank" if central else "secured_funding"
            book.flow(
                "outflow",
                category,
                amount,
                trade["currency"],
                days,
                source,
                **(collateral or {"collateral_level": Level.NONE}),
            )
        elif collateral is not None:
            book.flow(
                "inflow", "secured_lending", amount, trade["currency"], days, source, **collateral
            )
    for (currency, when), net in sorted(legs.items()):
        if not net.is_zero():
            kind: Literal["outflow", "inflow"] = "inflow" if net > 0 else "outflow"
            book.flow(
                kind,
                "fx_derivative_settlement",
                abs(net),
                currency,
                (when - day).days,
                f"FX settlement on {when}",
            )
    for balance in balances:
        book.flow(
            "outflow",
            balance["category"],
            balance["amount"],
            balance["currency"],
            0,
            f"balance {balance['category']}",
        )


def build_inputs(
    as_of: datetime,
    day: date,
    currency: str,
    adjusted: bool,
    rates: Rates,
    overrides: Iterable[Override],
    rows: dict[str, list[Row]],
) -> LiquidityInputs:
    """The inputs on ``as_of`` (``day``: its date in UTC) in ``currency``: ``overrides`` in
    order (a later one on a target wins), ``rows`` the results of liquidity.sql's queries
    ``currency_prices``, ``positions``, ``settled_cash``, ``horizon_trades`` and ``balances``.
    """
    found = list(overrides)
    instruments = {o.target: o for o in found if o.kind == "instrument"}
    trades = {o.target: o for o in found if o.kind == "trade"}
    book = _Book(_currency_rates(rows["currency_prices"], currency))
    with localcontext(_EXACT):
        cash = _held(book, rows["positions"], rows["settled_cash"], instruments)
        _due(book, day, rows["horizon_trades"], rows["balances"], trades, instruments)
    return LiquidityInputs(
        as_of,
        currency,
        adjusted,
        rates,
        tuple(book.holdings),
        tuple(book.flows),
        tuple(cash),
        tuple(book.unknown),
        tuple(book.short),
        tuple(book.unconvertible),
    )
