"""HQLA and the liquidity coverage ratio of Basel III (BCBS 238, January 2013).

LCR = stock of HQLA / total net cash outflows over the next 30 calendar days. Holdings and
flows in, figures out: pure arithmetic, no I/O. :class:`Totals` keeps the running sums, so a
changed position costs what changed rather than the whole book; :func:`figures` turns them
into the ratio.

Exactness. Every amount is a ``Decimal``, every rate one parsed from a string. Sums and
products (haircuts, run-off and inflow rates) are exact: they run in a context that raises
``decimal.Inexact`` rather than round. The only divisions are the caps' 15/85, 15/60 and 2/3,
and the ratio:

- each cap adjustment is computed to 60 significant digits, then rounded *up* to 12 decimal
  places (``core.amounts.MAX_FRACTION_DIGITS``, the finest amount the ledger accepts), so that
  rounding never overstates HQLA; an adjustment that divides exactly is not rounded at all;
- the ratio is rounded to 6 decimal places, half to even.

An amount thus keeps the digits of its inputs (100.00 after a 15 % haircut is 85.0000, equal
to 85.00); :meth:`LcrFigures.as_json` writes every amount exactly, in fixed point, dropping
trailing zeros past the second decimal place ("85.00", "1234.50", "0.0085").

Unwinding (the caps' "adjusted" amounts, BCBS 238 Annex 1). The caps are computed on the
stocks that would result from unwinding the secured funding and secured lending that mature
within the horizon and exchange HQLA for cash. A secured flow (category ``secured_funding``,
``secured_funding_central_bank`` or ``secured_lending``) carries its cash ``amount`` and its
collateral: ``collateral_level``, ``collateral_category`` (Level 2B only) and
``collateral_value`` (market value, before haircut). Within the horizon, with HQLA collateral:

- a repo (secured funding: cash borrowed, collateral posted) unwinds as -amount of Level 1
  (the cash paid back) and +collateral_value after its haircut at the collateral's level (the
  collateral returned);
- a reverse repo (secured lending: cash lent, collateral received) the other way round:
  +amount of Level 1 and -collateral_value after its haircut.

This assumes that collateral posted is encumbered, hence not among the holdings, and that
collateral received is held unencumbered among them (not re-used). Collateral that is not
HQLA exchanges nothing within the stock and unwinds nothing; collateral swaps (securities for
securities) are not modelled. A flow maturing after the horizon counts nowhere: neither in the
flows nor in the unwinding.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Context, Decimal, localcontext
from enum import StrEnum
from typing import Any, Literal

from ledgerflow.core.amounts import MAX_FRACTION_DIGITS, AmountError, check_amount

HORIZON_DAYS = 30
ZERO = Decimal(0)
ONE = Decimal(1)
# Sums and products: exact, or an error; never a silent rounding.
_TRAPS = [decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow]
_EXACT = Context(prec=100, traps=[decimal.Inexact, *_TRAPS])
# The caps' divisions and the ratio: rounded, explicitly, as the module's docstring says.
_DIVISION = Context(prec=60, rounding=ROUND_HALF_EVEN, traps=_TRAPS)
ADJUSTMENT_QUANTUM = ONE.scaleb(-MAX_FRACTION_DIGITS)
RATIO_QUANTUM = Decimal("0.000001")

LEVEL_2B_CATEGORIES = ("rmbs", "corporate_debt", "equity")
SECURED_OUTFLOWS = ("secured_funding", "secured_funding_central_bank")
SECURED_INFLOWS = ("secured_lending",)
OUTFLOW_CATEGORIES = (
    "retail_stable",
    "retail_less_stable",
    "operational_deposits",
    "non_financial_corporate",
    "non_financial_corporate_insured",
    "financial_institution",
    "fx_derivative_settlement",
    *SECURED_OUTFLOWS,
)
INFLOW_CATEGORIES = (
    "financial_institution",
    "retail_non_financial",
    "fx_derivative_settlement",
    *SECURED_INFLOWS,
)


class Level(StrEnum):
    """An asset's HQLA level; ``NONE`` for an asset that is not HQLA."""

    LEVEL_1 = "1"
    LEVEL_2A = "2A"
    LEVEL_2B = "2B"
    NONE = "none"


def _check_rate(name: str, value: object) -> None:
    if not isinstance(value, Decimal):
        raise ValueError(f"LCR rate {name!r}: {value!r} is not a Decimal")
    if not value.is_finite() or not ZERO <= value <= ONE:
        raise ValueError(f"LCR rate {name!r}: {value} is outside [0, 1]")


@dataclass(frozen=True)
class Rates:
    """The LCR's haircuts, run-off rates, inflow rates and inflow cap: fractions in [0, 1].

    The defaults are BCBS 238's; jurisdictions vary them (see :meth:`from_mapping`). A flow's
    rate is the field ``<kind>_<category>`` (``outflow_retail_stable``); a secured flow's is
    ``<kind>_secured_<collateral>``, the collateral being ``level1``, ``level2a``,
    ``level2b_rmbs``, ``level2b_other`` or ``other`` (not HQLA); secured funding from a
    central bank takes ``outflow_secured_central_bank`` whatever its collateral.
    """

    haircut_level1: Decimal = Decimal("0")
    haircut_level2a: Decimal = Decimal("0.15")
    haircut_level2b_rmbs: Decimal = Decimal("0.25")
    haircut_level2b_corporate_debt: Decimal = Decimal("0.50")
    haircut_level2b_equity: Decimal = Decimal("0.50")
    outflow_retail_stable: Decimal = Decimal("0.05")
    outflow_retail_less_stable: Decimal = Decimal("0.10")
    outflow_operational_deposits: Decimal = Decimal("0.25")
    outflow_non_financial_corporate: Decimal = Decimal("0.40")
    outflow_non_financial_corporate_insured: Decimal = Decimal("0.20")
    outflow_financial_institution: Decimal = Decimal("1.00")
    outflow_fx_derivative_settlement: Decimal = Decimal("1.00")  # net settlements, as paid
    outflow_secured_central_bank: Decimal = Decimal("0")
    outflow_secured_level1: Decimal = Decimal("0")
    outflow_secured_level2a: Decimal = Decimal("0.15")
    outflow_secured_level2b_rmbs: Decimal = Decimal("0.25")
    outflow_secured_level2b_other: Decimal = Decimal("0.50")
    outflow_secured_other: Decimal = Decimal("1.00")
    inflow_secured_level1: Decimal = Decimal("0")
    inflow_secured_level2a: Decimal = Decimal("0.15")
    inflow_secured_level2b_rmbs: Decimal = Decimal("0.25")
    inflow_secured_level2b_other: Decimal = Decimal("0.50")
    inflow_secured_other: Decimal = Decimal("1.00")
    inflow_financial_institution: Decimal = Decimal("1.00")
    inflow_retail_non_financial: Decimal = Decimal("0.50")
    inflow_fx_derivative_settlement: Decimal = Decimal("1.00")
    inflow_cap: Decimal = Decimal("0.75")

    def __post_init__(self) -> None:
        for field in fields(self):
            _check_rate(field.name, getattr(self, field.name))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str]) -> Rates:
        """The defaults with the rates named in ``mapping`` replaced, each given as a string.

        Raises ``ValueError`` naming the key for an unknown name, a value that is not a
        decimal string, or one outside [0, 1].
        """
        known = [field.name for field in fields(cls)]
        parsed: dict[str, Decimal] = {}
        for key, text in mapping.items():
            if key not in known:
                raise ValueError(f"unknown LCR rate {key!r}; known: {', '.join(known)}")
            if not isinstance(text, str):
                raise ValueError(f"LCR rate {key!r}: give a decimal string such as '0.15'")
            try:
                parsed[key] = Decimal(text.strip())
            except decimal.InvalidOperation:
                raise ValueError(f"LCR rate {key!r}: {text!r} is not a decimal number") from None
        return replace(cls(), **parsed)

    def named(self, name: str) -> Decimal:
        """The rate called ``name``."""
        value: Decimal = getattr(self, name)
        return value

    def haircut(self, level: Level, category: str | None = None) -> Decimal:
        """The haircut on an asset's market value; 1 (all of it) when it is not HQLA."""
        if level is Level.NONE:
            return ONE
        if level is Level.LEVEL_2B:
            return self.named(f"haircut_level2b_{category}")
        return self.haircut_level1 if level is Level.LEVEL_1 else self.haircut_level2a

    def rate(self, flow: Flow) -> Decimal:
        """The run-off rate of an outflow, or the inflow rate of an inflow."""
        if flow.category == "secured_funding_central_bank":
            return self.outflow_secured_central_bank
        if flow.secured:
            return self.named(f"{flow.kind}_secured_{_collateral_class(flow)}")
        return self.named(f"{flow.kind}_{flow.category}")


DEFAULT_RATES = Rates()


def _collateral_class(flow: Flow) -> str:
    match flow.collateral_level:
        case Level.LEVEL_1:
            return "level1"
        case Level.LEVEL_2A:
            return "level2a"
        case Level.LEVEL_2B:
            return "level2b_rmbs" if flow.collateral_category == "rmbs" else "level2b_other"
        case _:
            return "other"


def _check_amount(what: str, value: object) -> None:
    if not isinstance(value, Decimal):
        raise ValueError(f"{what}: {value!r} is not a Decimal")
    try:
        check_amount(value)
    except AmountError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if value < 0:
        raise ValueError(f"{what}: {value} is negative")


def _check_category(what: str, level: Level, category: str | None) -> None:
    if level is Level.LEVEL_2B and category not in LEVEL_2B_CATEGORIES:
        raise ValueError(f"{what}: a Level 2B category is one of {', '.join(LEVEL_2B_CATEGORIES)}")
    if level is not Level.LEVEL_2B and category is not None:
        raise ValueError(f"{what}: only a Level 2B asset has a category, not {category!r}")


@dataclass(frozen=True)
class Holding:
    """An asset held on the first day of the stress period, at market value, with its level.

    ``category`` is a Level 2B asset's haircut category (``rmbs``, ``corporate_debt`` or
    ``equity``) and ``None`` for any other level.
    """

    instrument: str
    level: Level
    category: str | None
    market_value: Decimal

    def __post_init__(self) -> None:
        what = f"holding {self.instrument!r}"
        _check_amount(f"{what}: market value", self.market_value)
        _check_category(what, self.level, self.category)


@dataclass(frozen=True)
class Flow:
    """A contractual cash flow, before its rate: a balance that may run off, or an amount due.

    ``category`` names its rate (see :class:`Rates`); ``maturity_days`` is the number of days
    until the earliest date it can occur, 0 for a deposit withdrawable on demand. A secured
    flow names its collateral; the module's docstring says how it unwinds.
    """

    kind: Literal["outflow", "inflow"]
    category: str
    amount: Decimal
    maturity_days: int
    collateral_level: Level | None = None
    collateral_category: str | None = None
    collateral_value: Decimal | None = None

    def __post_init__(self) -> None:
        categories = {"outflow": OUTFLOW_CATEGORIES, "inflow": INFLOW_CATEGORIES}.get(self.kind)
        if categories is None:
            raise ValueError(f"flow kind {self.kind!r}: an outflow or an inflow")
        if self.category not in categories:
            known = ", ".join(categories)
            raise ValueError(f"{self.kind} category {self.category!r}: one of {known}")
        what = f"{self.kind} {self.category!r}"
        _check_amount(f"{what}: amount", self.amount)
        if self.maturity_days < 0:
            raise ValueError(f"{what}: maturity_days {self.maturity_days} is negative")
        collateral = (self.collateral_level, self.collateral_category, self.collateral_value)
        if not self.secured:
            if collateral != (None, None, None):
                raise ValueError(f"{what}: unsecured, it has no collateral")
            return
        if self.collateral_level is None:
            raise ValueError(f"{what}: secured, it needs a collateral_level")
        _check_category(f"{what}: collateral", self.collateral_level, self.collateral_category)
        if self.collateral_value is not None:
            _check_amount(f"{what}: collateral_value", self.collateral_value)
        elif self.collateral_level is not Level.NONE:
            raise ValueError(f"{what}: HQLA collateral needs a collateral_value")

    @property
    def secured(self) -> bool:
        """Whether it is secured funding (a repo) or secured lending (a reverse repo)."""
        return self.category in SECURED_OUTFLOWS or self.category in SECURED_INFLOWS


@dataclass(frozen=True)
class Totals:
    """The LCR's running sums for one set of rates and horizon.

    ``level1`` to ``level2b_equity``: the stocks after haircuts, per level and Level 2B
    category; ``outflows`` and ``inflows``: the flows within the horizon after their rates,
    the inflows before their cap; ``unwind_level*``: what unwinding the secured flows within
    the horizon adds to each level (after haircuts) to give the caps' adjusted amounts.
    Built with :meth:`of`; each add or remove returns new totals in constant time.
    """

    rates: Rates = DEFAULT_RATES
    horizon_days: int = HORIZON_DAYS
    level1: Decimal = ZERO
    level2a: Decimal = ZERO
    level2b_rmbs: Decimal = ZERO
    level2b_corporate_debt: Decimal = ZERO
    level2b_equity: Decimal = ZERO
    outflows: Decimal = ZERO
    inflows: Decimal = ZERO
    unwind_level1: Decimal = ZERO
    unwind_level2a: Decimal = ZERO
    unwind_level2b: Decimal = ZERO

    def __post_init__(self) -> None:
        if self.horizon_days < 0:
            raise ValueError(f"LCR horizon_days {self.horizon_days} is negative")

    @classmethod
    def of(
        cls,
        holdings: Iterable[Holding],
        flows: Iterable[Flow],
        rates: Rates = DEFAULT_RATES,
        horizon_days: int = HORIZON_DAYS,
    ) -> Totals:
        """The totals of a whole book."""
        totals = cls(rates=rates, horizon_days=horizon_days)
        for holding in holdings:
            totals = totals.add_holding(holding)
        for flow in flows:
            totals = totals.add_flow(flow)
        return totals

    def add_holding(self, holding: Holding) -> Totals:
        """These totals with ``holding`` added."""
        return self._holding(holding, ONE)

    def remove_holding(self, holding: Holding) -> Totals:
        """These totals with ``holding`` (added before) taken away."""
        return self._holding(holding, -ONE)

    def add_flow(self, flow: Flow) -> Totals:
        """These totals with ``flow`` added; unchanged if it matures after the horizon."""
        return self._flow(flow, ONE)

    def remove_flow(self, flow: Flow) -> Totals:
        """These totals with ``flow`` (added before) taken away."""
        return self._flow(flow, -ONE)

    def _holding(self, holding: Holding, sign: Decimal) -> Totals:
        value = _after_haircut(holding.market_value, holding.level, holding.category, self.rates)
        with localcontext(_EXACT):
            return self._stock(holding.level, holding.category, value if sign > 0 else -value)

    def _stock(self, level: Level, category: str | None, delta: Decimal) -> Totals:
        if level is Level.LEVEL_1:
            return replace(self, level1=self.level1 + delta)
        if level is Level.LEVEL_2A:
            return replace(self, level2a=self.level2a + delta)
        if level is Level.NONE:
            return self
        if category == "rmbs":
            return replace(self, level2b_rmbs=self.level2b_rmbs + delta)
        if category == "corporate_debt":
            return replace(self, level2b_corporate_debt=self.level2b_corporate_debt + delta)
        return replace(self, level2b_equity=self.level2b_equity + delta)

    def _flow(self, flow: Flow, sign: Decimal) -> Totals:
        if flow.maturity_days > self.horizon_days:
            return self
        with localcontext(_EXACT):
            weighted = sign * flow.amount * self.rates.rate(flow)
            if flow.kind == "outflow":
                totals = replace(self, outflows=self.outflows + weighted)
            else:
                totals = replace(self, inflows=self.inflows + weighted)
            level = flow.collateral_level
            if level is None or level is Level.NONE or flow.collateral_value is None:
                return totals
            # Unwound, a repo pays its cash back and gets its collateral back; a reverse repo
            # gets its cash back and gives its collateral back.
            direction = -sign if flow.kind == "outflow" else sign
            collateral = _after_haircut(
                flow.collateral_value, level, flow.collateral_category, self.rates
            )
            cash_delta = direction * flow.amount
            collateral_delta = -direction * collateral
            return totals._unwind(Level.LEVEL_1, cash_delta)._unwind(level, collateral_delta)

    def _unwind(self, level: Level, delta: Decimal) -> Totals:
        if level is Level.LEVEL_1:
            return replace(self, unwind_level1=self.unwind_level1 + delta)
        if level is Level.LEVEL_2A:
            return replace(self, unwind_level2a=self.unwind_level2a + delta)
        return replace(self, unwind_level2b=self.unwind_level2b + delta)


def _after_haircut(value: Decimal, level: Level, category: str | None, rates: Rates) -> Decimal:
    if level is Level.LEVEL_1 and rates.haircut_level1.is_zero():
        return value
    return _EXACT.multiply(value, _EXACT.subtract(ONE, rates.haircut(level, category)))


def _json_amount(value: Decimal) -> str:
    if value.is_zero():
        return "0.00"
    whole, _, fraction = format(value, "f").partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


@dataclass(frozen=True)
class LcrFigures:
    """The LCR and its parts: the stocks after haircuts and before the caps, the caps'
    adjustments, the HQLA after them, the flows after their rates (``inflows`` before the
    75 % cap, ``inflows_capped`` after it) and the ratio, ``None`` when nothing flows out.
    """

    level1: Decimal
    level2a: Decimal
    level2b: Decimal
    cap_adjustment_15: Decimal
    cap_adjustment_40: Decimal
    hqla_total: Decimal
    outflows: Decimal
    inflows: Decimal
    inflows_capped: Decimal
    net_outflows: Decimal
    lcr: Decimal | None

    def as_json(self) -> dict[str, Any]:
        """The figures as JSON: amounts and ratio as exact decimal strings, no ratio as null."""
        return {
            "hqla": {
                "level1": _json_amount(self.level1),
                "level2a": _json_amount(self.level2a),
                "level2b": _json_amount(self.level2b),
                "cap_adjustment_15": _json_amount(self.cap_adjustment_15),
                "cap_adjustment_40": _json_amount(self.cap_adjustment_40),
                "total": _json_amount(self.hqla_total),
            },
            "outflows": _json_amount(self.outflows),
            "inflows": _json_amount(self.inflows),
            "net_outflows": _json_amount(self.net_outflows),
            "lcr": None if self.lcr is None else format(self.lcr, "f"),
        }


def _round_up(value: Decimal) -> Decimal:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite: the contexts trap what is not
    if exponent >= -MAX_FRACTION_DIGITS:
        return value
    return value.quantize(ADJUSTMENT_QUANTUM, rounding=ROUND_CEILING, context=_DIVISION)


def figures(totals: Totals) -> LcrFigures:
    """The LCR from its running sums, in constant time, with the caps of BCBS 238 Annex 1."""
    with localcontext(_EXACT):
        level2b = totals.level2b_rmbs + totals.level2b_corporate_debt + totals.level2b_equity
        adjusted1 = totals.level1 + totals.unwind_level1
        adjusted2a = totals.level2a + totals.unwind_level2a
        adjusted2b = level2b + totals.unwind_level2b
    with localcontext(_DIVISION):
        cap_15 = _round_up(
            max(
                adjusted2b - 15 * (adjusted1 + adjusted2a) / 85,
                adjusted2b - 15 * adjusted1 / 60,
                ZERO,
            )
        )
        cap_40 = _round_up(max(adjusted2a + adjusted2b - cap_15 - 2 * adjusted1 / 3, ZERO))
    with localcontext(_EXACT):
        hqla = totals.level1 + totals.level2a + level2b - cap_15 - cap_40
        inflows_capped = min(totals.inflows, totals.rates.inflow_cap * totals.outflows)
        net_outflows = totals.outflows - inflows_capped
    ratio = None
    if not net_outflows.is_zero():
        with localcontext(_DIVISION):
            ratio = (hqla / net_outflows).quantize(RATIO_QUANTUM, rounding=ROUND_HALF_EVEN)
    return LcrFigures(
        level1=totals.level1,
        level2a=totals.level2a,
        level2b=level2b,
        cap_adjustment_15=cap_15,
        cap_adjustment_40=cap_40,
        hqla_total=hqla,
        outflows=totals.outflows,
        inflows=totals.inflows,
        inflows_capped=inflows_capped,
        net_outflows=net_outflows,
        lcr=ratio,
    )


def compute_lcr(
    holdings: Iterable[Holding],
    flows: Iterable[Flow],
    rates: Rates = DEFAULT_RATES,
    horizon_days: int = HORIZON_DAYS,
) -> LcrFigures:
    """The LCR of a book: its holdings and its flows, those after the horizon ignored."""
    return figures(Totals.of(holdings, flows, rates, horizon_days))
