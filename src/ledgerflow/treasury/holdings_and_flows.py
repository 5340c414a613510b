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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
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
from itertools import groupby
from typing import Any, Literal

from ledgerflow.core.amounts import MAX_FRACTION_DIGITS
from ledgerflow.treasury.lcr import (
    HORIZON_DAYS,
    LEVEL_2B_CATEGORIES,
    Flow,
    Holding,
    LcrFigures,
    Level,
    Rates,
    Totals,
    figures,
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
    counted (see the module's docstring); ``totals`` are the running sums of these holdings
    and flows."""

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
    totals: Totals

    def figures(self) -> LcrFigures:
        """The LCR of these holdings and flows."""
        return figures(self.totals)


def _fit(value: Decimal, rounding: str) -> Decimal:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent >= -MAX_FRACTION_DIGITS:
        return value
    return value.quantize(_QUANTUM, rounding=rounding, context=_ROUNDING)


@dataclass(frozen=True)
class _Piece:
    """What one key of the ledger (an instrument, the cash, a trade, an FX settlement day,
    the balances) contributes to the inputs."""

    holdings: tuple[Holding, ...] = ()
    flows: tuple[Flow, ...] = ()
    unknown: tuple[UnknownPosition, ...] = ()
    short: tuple[ShortPosition, ...] = ()
    unconvertible: tuple[Unconvertible, ...] = ()


_NOTHING = _Piece()


@dataclass
class _Book:
    """One piece under construction."""

    rates: Mapping[str, Decimal]  # currency -> value of one unit in the reporting currency
    holdings: list[Holding] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)
    unknown: list[UnknownPosition] = field(default_factory=list)
    short: list[ShortPosition] = field(default_factory=list)
    unconvertible: list[Unconvertible] = field(default_factory=list)

    def piece(self) -> _Piece:
        if not (self.holdings or self.flows or self.unknown or self.short or self.unconvertible):
            return _NOTHING
        return _Piece(
            tuple(self.holdings),
            tuple(self.flows),
            tuple(self.unknown),
            tuple(self.short),
            tuple(self.unconvertible),
        )

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


def _instrument(
    book: _Book, instrument: str, rows: list[Row], override: Override | None
) -> dict[str, Decimal]:
    """One instrument's positions over every book: a holding, a short or unknown position
    in ``book``; returned, the quantities that are cash, per currency."""
    cash: dict[str, Decimal] = defaultdict(Decimal)
    net = ZERO
    reference: tuple[Row, tuple[Level, str | None]] | None = None
    for row in rows:
        quantity: Decimal = _EXACT.subtract(row["quantity"], row["unsettled"])
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
            classified = _classification(row["hqla_level"], row["haircut_category"], override)
            if classified is None:
                book.unknown.append(
                    UnknownPosition(
                        instrument, row["book"], quantity, "Level 2B without a haircut category"
                    )
                )
                continue
            net += quantity
            reference = (row, classified)
    if reference is None:
        return cash
    row, (level, category) = reference
    if net < 0:
        book.short.append(ShortPosition(instrument, net))
        return cash
    value = book.convert(
        net * row["price"], row["currency"], ROUND_FLOOR, f"instrument {instrument}"
    )
    if value is not None:
        book.holdings.append(Holding(instrument, level, category, value))
    return cash


def _cash(book: _Book, cash: Mapping[str, Decimal]) -> list[CashBalance]:
    """Cash per currency, netted into one Level 1 holding, or an outflow when short."""
    balances = []
    for currency, amount in sorted(cash.items()):
        if not amount.is_zero():
            value = book.convert(amount, currency, ROUND_FLOOR, "cash")
            balances.append(CashBalance(currency, amount, value))
    total = sum((b.value for b in balances if b.value is not None), ZERO)
    if total > 0:
        book.holdings.append(Holding("cash", Level.LEVEL_1, None, total))
    elif total < 0:
        book.flows.append(Flow("outflow", "financial_institution", -total, 0))
    return balances


def _collateral(
    book: _Book, trade: Row, trades: Mapping[str, Override], instruments: Mapping[str, Override]
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


def _fx_legs(trade: Row) -> dict[tuple[str, date], Decimal]:
    """An FX trade's two legs, by currency and settlement day."""
    when = trade["settlement_date"]
    bought = trade["quantity"] if trade["side"] == "buy" else -trade["quantity"]
    legs: dict[tuple[str, date], Decimal] = defaultdict(Decimal)
    legs[trade["instrument"], when] += bought
    legs[trade["currency"], when] += trade["settlement_amount"]
    return legs


def _deal(
    book: _Book,
    day: date,
    trade: Row,
    trades: Mapping[str, Override],
    instruments: Mapping[str, Override],
) -> None:
    """A repo's or an interbank deal's flow at maturity."""
    source = f"trade {trade['trade_id']}"
    amount = abs(trade["settlement_amount"])
    days = (trade["maturity_date"] - day).days
    if trade["asset_class"] == "interbank":
        if trade["side"] == "buy":
            financial = trade["counterparty_type"] in _FINANCIAL
            category = "financial_institution" if financial else "retail_non_financial"
            book.flow("inflow", category, amount, trade["currency"], days, source)
        else:
            book.flow("outflow", "financial_institution", amount, trade["currency"], days, source)
        return
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


def _settlement(book: _Book, day: date, currency: str, when: date, net: Decimal) -> None:
    """FX legs netted for one currency and settlement day: an inflow or an outflow."""
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


class RunningInputs:
    """The inputs of one day, in one currency, with one set of overrides, kept up to date
    key by key: each ``set_*`` replaces what one instrument, one currency's settled cash or
    one trade contributes, and the running :class:`Totals` move by the difference, so a
    change costs what it touches, not the book. Built from every row by
    :func:`build_inputs`; a new day, new reference data or other overrides need a new one.

    The rows are those of liquidity.sql's queries. Built from every row
    (:func:`running_inputs`), it learns from ``positions`` which positions hold FX or
    interbank claims and how much of them is unsettled, and from ``settled_cash`` the cash
    FX trades leave unsettled; from then on ``add_stored`` tells it of each trade stored
    since (those sums move, and a trade whose cash moves within the horizon adds its flow),
    ``set_instrument`` takes an instrument's ``held_positions`` rows (every book; none when
    it has no position), ``set_cash`` a currency's ``held_cash``, ``set_balances`` every
    ``balances`` row. So a batch costs reads of its own trades and of the keys they touched,
    never of every FX trade still to settle.
    """

    def __init__(
        self,
        day: date,
        currency: str,
        rates: Rates,
        overrides: Iterable[Override],
        currency_prices: list[Row],
    ) -> None:
        found = list(overrides)
        self.day = day
        self.currency = currency
        self.rates = rates
        self.overrides = tuple(found)
        self._instruments = {o.target: o for o in found if o.kind == "instrument"}
        self._trades = {o.target: o for o in found if o.kind == "trade"}
        self._conversion = _currency_rates(currency_prices, currency)
        self.totals = Totals(rates=rates)
        self._pieces: dict[tuple[Any, ...], _Piece] = {}
        self._instrument_cash: dict[str, dict[str, Decimal]] = {}
        self._settled: dict[str, Decimal] = {}
        self._cash: dict[str, Decimal] = defaultdict(Decimal)
        self._balances: tuple[CashBalance, ...] = ()
        self._fx: set[str] = set()
        # (book, instrument) -> [holds FX, holds interbank claims, unsettled quantity]
        self._kinds: dict[tuple[str, str], list[Any]] = {}
        self._unsettled_cash: dict[str, Decimal] = defaultdict(Decimal)
        self._legs: dict[tuple[str, date], Decimal] = defaultdict(Decimal)
        self._stale_cash = False
        self._stale_legs: set[tuple[str, date]] = set()

    def _replace(self, key: tuple[Any, ...], piece: _Piece) -> None:
        old = self._pieces.get(key, _NOTHING)
        if old == piece:
            return
        totals = self.totals
        for holding in old.holdings:
            totals = totals.remove_holding(holding)
        for flow in old.flows:
            totals = totals.remove_flow(flow)
        for holding in piece.holdings:
            totals = totals.add_holding(holding)
        for flow in piece.flows:
            totals = totals.add_flow(flow)
        self.totals = totals
        if piece is _NOTHING:
            self._pieces.pop(key, None)
        else:
            self._pieces[key] = piece

    def _move_cash(self, before: Mapping[str, Decimal], after: Mapping[str, Decimal]) -> None:
        with localcontext(_EXACT):
            for currency, amount in before.items():
                self._cash[currency] -= amount
            for currency, amount in after.items():
                self._cash[currency] += amount
        if before or after:
            self._stale_cash = True

    def _kind(self, book: str, instrument: str) -> list[Any]:
        return self._kinds.setdefault((book, instrument), [False, False, ZERO])

    def learn(self, positions: list[Row], settled_cash: list[Row]) -> None:
        """What the reads of every row (``positions``, ``settled_cash``) say of FX,
        interbank claims and unsettled cash; before anything is set."""
        for row in positions:
            if row["fx"] or row["interbank"] or not row["unsettled"].is_zero():
                self._kinds[row["book"], row["instrument"]] = [
                    row["fx"],
                    row["interbank"],
                    row["unsettled"],
                ]
        for row in settled_cash:
            self._unsettled_cash[row["currency"]] = row["unsettled"]

    def add_stored(self, trade: Row) -> None:
        """A trade stored since the inputs were built (a ``trades_since`` row): call
        ``set_instrument`` and ``set_cash`` for its instrument and currency after."""
        with localcontext(_EXACT):
            self._add_stored(trade)

    def _add_stored(self, trade: Row) -> None:
        kind = trade["asset_class"]
        if kind == "fx":
            found = self._kind(trade["book"], trade["instrument"])
            found[0] = True
            when = trade["settlement_date"]
            if when > self.day:
                quantity: Decimal = trade["quantity"]
                signed = quantity if trade["side"] == "buy" else quantity.copy_negate()
                found[2] = _EXACT.add(found[2], signed)
                currency = trade["currency"]
                self._unsettled_cash[currency] = _EXACT.add(
                    self._unsettled_cash[currency], trade["settlement_amount"]
                )
            if self.day < when <= self.day + timedelta(days=HORIZON_DAYS):
                self.set_trade(trade)
        elif kind in ("repo", "interbank"):
            if kind == "interbank":
                self._kind(trade["book"], trade["instrument"])[1] = True
            maturity = trade["maturity_date"]
            if maturity is not None and 0 <= (maturity - self.day).days <= HORIZON_DAYS:
                self.set_trade(trade)

    def _with_kind(self, row: Row) -> Row:
        fx, interbank, unsettled = self._kinds.get((row["book"], row["instrument"])) or (
            False,
            False,
            ZERO,
        )
        return {**row, "fx": fx, "interbank": interbank, "unsettled": unsettled}

    def set_instrument(self, instrument: str, rows: list[Row]) -> None:
        """An instrument's positions, in every book, as they are now."""
        book = _Book(self._conversion)
        if rows and "fx" not in rows[0]:  # held_positions rows: what the trades told it
            rows = [self._with_kind(row) for row in rows]
        with localcontext(_EXACT):
            cash = _instrument(book, instrument, rows, self._instruments.get(instrument))
        self._move_cash(self._instrument_cash.pop(instrument, {}), cash)
        if cash:
            self._instrument_cash[instrument] = cash
        self._replace(("instrument", instrument), book.piece())

    def set_cash(self, currency: str, held: Decimal) -> None:
        """A currency's cash over every book (trade date), as it is now."""
        amount = _EXACT.subtract(held, self._unsettled_cash.get(currency, ZERO))
        before = self._settled.pop(currency, None)
        if not amount.is_zero():
            self._settled[currency] = amount
        self._move_cash({} if before is None else {currency: before}, {currency: amount})

    def set_trade(self, trade: Row) -> None:
        """A trade whose cash moves within the horizon (see the module's docstring)."""
        trade_id = trade["trade_id"]
        if trade["asset_class"] == "fx":
            if trade_id in self._fx:
                return
            self._fx.add(trade_id)
            with localcontext(_EXACT):
                for key, amount in _fx_legs(trade).items():
                    self._legs[key] += amount
                    self._stale_legs.add(key)
            return
        if ("trade", trade_id) in self._pieces:
            return
        book = _Book(self._conversion)
        with localcontext(_EXACT):
            _deal(book, self.day, trade, self._trades, self._instruments)
        self._replace(("trade", trade_id), book.piece())

    def set_balances(self, rows: list[Row]) -> None:
        """Every balance of a run-off category, as it is now."""
        book = _Book(self._conversion)
        for balance in rows:
            book.flow(
                "outflow",
                balance["category"],
                balance["amount"],
                balance["currency"],
                0,
                f"balance {balance['category']}",
            )
        self._replace(("balances",), book.piece())

    def _settle(self) -> None:
        """The pieces that net several keys: the cash, and FX legs per currency and day."""
        if self._stale_cash:
            book = _Book(self._conversion)
            with localcontext(_EXACT):
                self._balances = tuple(_cash(book, self._cash))
            self._replace(("cash",), book.piece())
            self._stale_cash = False
        for currency, when in sorted(self._stale_legs):
            book = _Book(self._conversion)
            with localcontext(_EXACT):
                _settlement(book, self.day, currency, when, self._legs[currency, when])
            self._replace(("settlement", currency, when), book.piece())
        self._stale_legs.clear()

    def figures(self) -> LcrFigures:
        """The LCR of the inputs as they are now."""
        self._settle()
        return figures(self.totals)

    def inputs(self, as_of: datetime, adjusted: bool) -> LiquidityInputs:
        """The inputs as they are now, the cash holding first, the rest in the order their
        keys were first set."""
        self._settle()
        cash = self._pieces.get(("cash",), _NOTHING)
        pieces = list(self._pieces.values())
        return LiquidityInputs(
            as_of,
            self.currency,
            adjusted,
            self.rates,
            cash.holdings + tuple(h for p in pieces if p is not cash for h in p.holdings),
            tuple(f for p in pieces for f in p.flows),
            self._balances,
            tuple(u for p in pieces for u in p.unknown),
            tuple(s for p in pieces for s in p.short),
            tuple(u for p in pieces for u in p.unconvertible),
            self.totals,
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
    return running_inputs(day, currency, rates, overrides, rows).inputs(as_of, adjusted)


def running_inputs(
    day: date,
    currency: str,
    rates: Rates,
    overrides: Iterable[Override],
    rows: dict[str, list[Row]],
) -> RunningInputs:
    """The running inputs of every row (as :func:`build_inputs` takes them)."""
    running = RunningInputs(day, currency, rates, overrides, rows["currency_prices"])
    running.learn(rows["positions"], rows["settled_cash"])
    for instrument, group in groupby(rows["positions"], key=lambda row: row["instrument"]):
        running.set_instrument(instrument, list(group))
    for row in rows["settled_cash"]:
        running.set_cash(row["currency"], row["held"])
    running.figures()  # the cash, then the trades, the settlements and the balances
    for row in rows["horizon_trades"]:
        running.set_trade(row)
    running.figures()
    running.set_balances(rows["balances"])
    return running
