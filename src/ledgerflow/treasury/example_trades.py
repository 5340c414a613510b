"""Example trades of every source, as each desk's system would send them (JSON objects).

A small fixed universe: currency pairs, government and corporate bonds, shares, money-market
counterparties, and books per desk. Market conventions are followed closely enough for the
dashboards to look right: FX spot settles T+2 and forwards up to 60 days out, repos and
interbank deals run from overnight to 90 days, bonds settle with accrued interest, value
and maturity dates fall on business days (weekends only: no holiday calendars).

Identifiers are well formed (ISIN and CUSIP check digits are valid) but illustrative:
apart from the shares' ISINs, they are not promised to name real securities.

Amounts are Decimal throughout and sent as decimal strings, cash to the cent. Rates and
prices go out as JSON numbers where the source's shipped example has them so (the FX rate,
a repo rate, a bond's clean price, coupon and yield): each is a short decimal whose float
reads back as the same decimal (``_quoted`` checks it), so the normaliser, which reads
JSON numbers as Decimal, sees exactly what was meant.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from ledgerflow.treasury.instruments import Instrument
from ledgerflow.treasury.lcr import Level

EXAMPLE_DAY = date(2026, 3, 2)  # the trade date of the examples in schemas/examples
CENT = Decimal("0.01")
BASIS_POINT = Decimal("0.01")  # of a rate in per cent

# Overnight rates in per cent per annum, around which repo and deposit rates are quoted.
BASE_RATES = {
    "EUR": Decimal("2.15"),
    "USD": Decimal("4.33"),
    "GBP": Decimal("4.20"),
    "CHF": Decimal("0.25"),
    "JPY": Decimal("0.50"),
    "AUD": Decimal("3.85"),
}
MINOR_UNITS = {"JPY": Decimal(1)}  # cash rounds to the cent, except here


@dataclass(frozen=True)
class Pair:
    """A currency pair: its mid rate, and the smallest step it is quoted in."""

    name: str
    mid: Decimal
    step: Decimal

    @property
    def base(self) -> str:
        """The currency bought or sold."""
        return self.name[:3]

    @property
    def quote(self) -> str:
        """The currency the rate is quoted in."""
        return self.name[4:]


@dataclass(frozen=True)
class Bond:
    """A bond: its identifiers, coupon schedule, a reference clean price and tick, and how
    many business days after the trade it settles."""

    isin: str
    cusip: str | None  # US bonds only
    government: bool  # Level 1 when True; corporates are candidates for Level 2A
    currency: str
    coupon: Decimal  # per cent per annum
    frequency: int  # coupons a year
    maturity: date
    price: Decimal  # per 100 of nominal
    tick: Decimal
    settlement_lag: int

    def __post_init__(self) -> None:
        # Coupon dates are found by stepping back whole months from the maturity.
        if self.maturity.day > 28:
            raise ValueError(f"{self.isin}: a maturity after the 28th has no simple schedule")


@dataclass(frozen=True)
class Share:
    """A share: its ticker, ISIN, venue, currency and a reference price."""

    ticker: str
    isin: str
    exchange: str  # the venue's MIC
    currency: str
    price: Decimal
    settlement_lag: int


PAIRS = (
    Pair("EUR/USD", Decimal("1.08350"), Decimal("0.00001")),
    Pair("GBP/USD", Decimal("1.27100"), Decimal("0.00001")),
    Pair("USD/JPY", Decimal("149.850"), Decimal("0.001")),
    Pair("USD/CHF", Decimal("0.88120"), Decimal("0.00001")),
    Pair("EUR/GBP", Decimal("0.85240"), Decimal("0.00001")),
    Pair("AUD/USD", Decimal("0.65830"), Decimal("0.00001")),
)
# The bonds, as a table: ISIN, CUSIP (US bonds; "-" for none), government or corporate,
# currency, coupon, coupons a year, maturity, reference clean price, tick, settlement lag.
_BOND_TABLE = """
DE0001102580  -          government  EUR  0      1  2032-02-15  84.62     0.001    2
FR001400HI98  -          government  EUR  3.0    1  2033-05-25  99.35     0.001    2
IT0005518755  -          government  EUR  4.0    2  2035-04-15  101.2     0.001    2
GB00BMV7TC88  -          government  GBP  4.125  2  2029-07-22  99.87     0.001    1
US91282CJJ18  91282CJJ1  government  USD  4.5    2  2033-11-15  99.84375  0.03125  1
US912810TW80  912810TW8  government  USD  4.25   2  2054-02-15  92.15625  0.03125  1
XS2678134524  -          corporate   EUR  3.375  1  2031-02-24  100.85    0.001    2
XS2819017349  -          corporate   EUR  3.75   1  2030-09-05  101.4     0.001    2
XS2794328612  -          corporate   GBP  5.75   1  2032-12-20  102.3     0.001    2
US037833EV87  037833EV8  corporate   USD  4.3    2  2033-05-10  98.75     0.001    1
"""


def _bond_of(row: str) -> Bond:
    isin, cusip, kind, currency, coupon, frequency, maturity, price, tick, lag = row.split()
    return Bond(
        isin,
        None if cusip == "-" else cusip,
        kind == "government",
        currency,
        Decimal(coupon),
        int(frequency),
        date.fromisoformat(maturity),
        Decimal(price),
        Decimal(tick),
        int(lag),
    )


BONDS = tuple(_bond_of(row) for row in _BOND_TABLE.strip().splitlines())
SHARES = (
    Share("SAP GY", "DE0007164600", "XETR", "EUR", Decimal("187.40"), 2),
    Share("SIE GY", "DE0007236101", "XETR", "EUR", Decimal("178.20"), 2),
    Share("ASML NA", "NL0010273215", "XAMS", "EUR", Decimal("912.50"), 2),
    Share("TTE FP", "FR0000120271", "XPAR", "EUR", Decimal("58.90"), 2),
    Share("NESN SW", "CH0038863350", "XSWX", "CHF", Decimal("84.60"), 2),
    Share("AAPL US", "US0378331005", "XNAS", "USD", Decimal("227.50"), 1),
    Share("MSFT US", "US5949181045", "XNAS", "USD", Decimal("415.30"), 1),
    Share("AMZN US", "US0231351067", "XNAS", "USD", Decimal("186.40"), 1),
)
# Money-market counterparties: their code and kind (the LCR's run-off rates depend on it).
COUNTERPARTIES = (
    ("BANK-0042", "financial_institution"),
    ("BANK-0107", "financial_institution"),
    ("BANK-0311", "financial_institution"),
    ("BANK-0520", "financial_institution"),
    ("CB-0001", "central_bank"),
    ("CORP-1203", "non_financial_corporate"),
    ("SOV-0007", "sovereign"),
    ("PSE-0031", "public_sector_entity"),
)
FX_BOOKS = {"fx-spot": ("FXLDN1", "FXNY1"), "fx-forwards": ("FXFWD1",)}
BOOKS = {  # per desk, by currency
    "repo": {"EUR": "REPOEUR", "USD": "REPOUSD", "GBP": "REPOGBP"},
    "rates": {"EUR": "GOVTS", "USD": "GOVTSUS", "GBP": "GILTS"},
    "credit": {"EUR": "CREDIT", "USD": "CREDITUS", "GBP": "CREDIT"},
    "equity-cash": {"EUR": "EQEU", "USD": "EQUS", "CHF": "EQCH"},
    "money-markets": {"EUR": "MMEUR", "USD": "MMUSD", "GBP": "MMGBP"},
}
TRADE_ID_PREFIXES = {"fx": "FX", "repos": "RP", "bonds": "BX", "equities": "EQ", "interbank": "MM"}
# Tenors in calendar days: overnight, a week, two weeks, one, two and three months.
MONEY_MARKET_TENORS = (1, 1, 7, 14, 30, 61, 90)
MAX_TERM_DAYS = 90
MAX_FORWARD_DAYS = 60


# Dates.


def following(day: date) -> date:
    """``day``, or the next business day when it falls on a weekend."""
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def preceding(day: date) -> date:
    """``day``, or the business day before it when it falls on a weekend."""
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def add_business_days(day: date, count: int) -> date:
    """The business day ``count`` business days after ``day``."""
    for _ in range(count):
        day = following(day + timedelta(days=1))
    return day


def term_end(start: date, days: int, limit: int = MAX_TERM_DAYS) -> date:
    """A maturity ``days`` after ``start`` on a business day: the following one, or the
    preceding one when the following would run past ``limit`` days."""
    end = following(start + timedelta(days=days))
    return end if (end - start).days <= limit else preceding(start + timedelta(days=days))


def _months_before(day: date, months: int) -> date:
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    return day.replace(year=year, month=month + 1)


# Numbers.


def _quoted(number: Decimal) -> float:
    """A short decimal as the JSON number a source sends it as (see the module)."""
    quoted = float(number)
    if Decimal(repr(quoted)) != number:
        raise ValueError(f"{number} does not survive a trip through a double")
    return quoted


def _text(number: Decimal) -> str:
    return format(number, "f")


def _cash(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(MINOR_UNITS.get(currency, CENT))


def _near(rng: random.Random, value: Decimal, step: Decimal, steps: int) -> Decimal:
    """``value`` moved by up to ``steps`` steps either way."""
    return value + step * rng.randint(-steps, steps)


def _trade_time(rng: random.Random, day: date) -> datetime:
    """An instant of the London and New York trading day (07:00 to 17:00 UTC), in ms."""
    opening = datetime.combine(day, time(7), UTC)
    return opening + timedelta(milliseconds=rng.randrange(10 * 3600 * 1000))


def _utc_z(instant: datetime) -> str:
    return instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utc(instant: datetime) -> str:
    return instant.isoformat(timespec="milliseconds")


# The sources.


def _fx(rng: random.Random, trade_id: str, day: date) -> dict[str, Any]:
    pair = rng.choice(PAIRS)
    forward = rng.random() < 0.2
    spot = add_business_days(day, 2)
    value_date = (
        preceding(day + timedelta(days=rng.randint(7, MAX_FORWARD_DAYS))) if forward else spot
    )
    rate = _near(rng, pair.mid, pair.step, int(pair.mid * Decimal("0.004") / pair.step))
    if forward:  # covered interest parity, on ACT/360
        years = Decimal((value_date - spot).days) / 360
        carry = 1 + BASE_RATES[pair.quote] / 100 * years
        rate = (rate * carry / (1 + BASE_RATES[pair.base] / 100 * years)).quantize(pair.step)
    amount = Decimal(rng.choice((1, 2, 5, 10, 20, 25, 50, 100, 200))) * 50_000
    desk = "fx-forwards" if forward else "fx-spot"
    return {
        "deal_id": trade_id,
        "desk": desk,
        "book": rng.choice(FX_BOOKS[desk]),
        "currency_pair": pair.name,
        "direction": rng.choice(("BUY", "SELL")),
        "amount": _text(amount.quantize(CENT)),
        "rate": _quoted(rate),
        "counter_amount": _text(_cash(amount * rate, pair.quote)),
        "trade_time": _utc_z(_trade_time(rng, day)),
        "value_date": value_date.isoformat(),
    }


def _repo(rng: random.Random, trade_id: str, day: date) -> dict[str, Any]:
    bond = rng.choice(BONDS)
    direction = rng.choice(("repo", "reverse_repo"))
    nominal = Decimal(rng.randint(1, 20) * 5_000_000)
    haircut = Decimal(rng.choice((1, 2, 3) if bond.government else (5, 8, 10))) / 100
    cash = _cash(nominal * bond.price / 100 * (1 - haircut), bond.currency)
    spread = rng.randint(-10, 10) if bond.government else rng.randint(10, 35)
    start = add_business_days(day, rng.choice((0, 1)))
    counterparty_types = ("financial_institution", "financial_institution", "central_bank", None)
    return {
        "repo_id": trade_id,
        "desk": "repo",
        "book": BOOKS["repo"][bond.currency],
        "direction": direction,
        "collateral_isin": bond.isin,
        "collateral_nominal": _text(nominal),
        "cash_amount": _text(cash),
        "currency": bond.currency,
        "repo_rate": _quoted(BASE_RATES[bond.currency] + spread * BASIS_POINT),
        "counterparty_type": rng.choice(counterparty_types),
        "trade_time": _utc_z(_trade_time(rng, day)),
        "start_date": start.isoformat(),
        "maturity_date": term_end(start, rng.choice(MONEY_MARKET_TENORS)).isoformat(),
    }


def accrued(bond: Bond, settlement: date) -> Decimal:
    """Interest accrued per 100 of nominal at ``settlement`` (ACT/ACT ICMA)."""
    months = 12 // bond.frequency
    following_coupon = bond.maturity
    last_coupon = _months_before(following_coupon, months)
    while last_coupon > settlement:
        following_coupon, last_coupon = last_coupon, _months_before(last_coupon, months)
    period = Decimal((following_coupon - last_coupon).days)
    return bond.coupon / bond.frequency * (settlement - last_coupon).days / period


def approximate_yield(bond: Bond, price: Decimal, settlement: date) -> Decimal:
    """Yield to maturity in per cent, by the usual approximation (to a basis point's
    hundredth: as the desk's screen shows it)."""
    years = Decimal((bond.maturity - settlement).days) / Decimal("365.25")
    pull = (100 - price) / years
    return ((bond.coupon + pull) / ((100 + price) / 2) * 100).quantize(Decimal("0.0001"))


def _bond(rng: random.Random, trade_id: str, day: date) -> dict[str, Any]:
    bond = rng.choice(BONDS)
    lot = 1_000_000 if bond.government else 100_000
    nominal = Decimal(rng.randint(1, 40) * lot)
    price = _near(rng, bond.price, bond.tick, 48)
    settlement = add_business_days(day, bond.settlement_lag)
    by_cusip = bond.cusip is not None and rng.random() < 0.5
    desk = "rates" if bond.government else "credit"
    return {
        "execution_id": trade_id,
        "desk": desk,
        "book": BOOKS[desk][bond.currency],
        "isin": None if by_cusip else bond.isin,
        "cusip": bond.cusip if by_cusip else None,
        "side": rng.choice(("BUY", "SELL")),
        "nominal": _text(nominal),
        "clean_price": _quoted(price),
        "consideration": _text(
            _cash(nominal * (price + accrued(bond, settlement)) / 100, bond.currency)
        ),
        "currency": bond.currency,
        "coupon": _quoted(bond.coupon),
        "yield": _quoted(approximate_yield(bond, price, settlement)),
        "trade_time": _utc(_trade_time(rng, day)),
        "settlement_date": settlement.isoformat(),
        "maturity_date": bond.maturity.isoformat(),
    }


def _equity(rng: random.Random, trade_id: str, day: date) -> dict[str, Any]:
    share = rng.choice(SHARES)
    named_by = rng.choices(("both", "ticker", "isin"), weights=(7, 2, 1))[0]
    price = _near(rng, share.price, CENT, int(share.price * Decimal("0.015") / CENT))
    return {
        "order_id": trade_id,
        "desk": "equity-cash",
        "book": BOOKS["equity-cash"][share.currency],
        "ticker": None if named_by == "isin" else share.ticker,
        "isin": None if named_by == "ticker" else share.isin,
        "side": rng.choice(("B", "S")),
        "shares": rng.choice((50, 100, 200, 250, 500, 1000, 2500, 5000, 10_000)),
        "price": _text(price),
        "currency": share.currency,
        "exchange": share.exchange,
        "trade_time": _utc(_trade_time(rng, day)),
        "settlement_date": add_business_days(day, share.settlement_lag).isoformat(),
    }


def _interbank(rng: random.Random, trade_id: str, day: date) -> dict[str, Any]:
    currency = rng.choice(("EUR", "USD", "GBP"))
    kind = rng.choice(("loan", "deposit"))
    counterparty, counterparty_type = rng.choice(COUNTERPARTIES)
    spread = rng.randint(5, 25) if kind == "loan" else rng.randint(-20, 5)
    quarters = Decimal(rng.randint(0, 3)) / 4  # quoted to a quarter of a basis point
    rate = BASE_RATES[currency] + (spread + quarters) * BASIS_POINT
    value_date = add_business_days(day, 0 if currency == "GBP" else 2)
    return {
        "deal_ref": trade_id,
        "desk": "money-markets",
        "book": BOOKS["money-markets"][currency],
        "kind": kind,
        "counterparty": counterparty,
        "counterparty_type": counterparty_type,
        "principal": _text(Decimal(rng.randint(1, 50) * 1_000_000).quantize(CENT)),
        "currency": currency,
        "rate": _text(rate),
        "trade_time": _utc_z(_trade_time(rng, day)),
        "value_date": value_date.isoformat(),
        "maturity_date": term_end(value_date, rng.choice(MONEY_MARKET_TENORS)).isoformat(),
    }


_MAKERS: dict[str, Callable[[random.Random, str, date], dict[str, Any]]] = {
    "fx": _fx,
    "repos": _repo,
    "bonds": _bond,
    "equities": _equity,
    "interbank": _interbank,
}


def trade_id(source: str, n: int, run_id: str) -> str:
    """The id of the ``n``-th trade of ``source`` in run ``run_id``."""
    return f"{run_id}-{TRADE_ID_PREFIXES[source]}-{n:07d}"


def make_trade(
    source: str,
    rng: random.Random,
    n: int,
    *,
    run_id: str = "example",
    trading_day: date = EXAMPLE_DAY,
) -> dict[str, Any]:
    """The ``n``-th example trade of ``source`` (``fx``, ``repos``, ``bonds``, ``equities``,
    ``interbank``) in run ``run_id``, done on ``trading_day`` (the next business day when
    that is a weekend), as the source's JSON object."""
    maker = _MAKERS.get(source)
    if maker is None:
        raise ValueError(f"unknown trade source {source!r}; known: {sorted(_MAKERS)}")
    return maker(rng, trade_id(source, n, run_id), following(trading_day))


def example_instruments(currency: str = "USD") -> list[Instrument]:
    """Reference data for every instrument the example trades name, priced in ``currency``
    terms where they are currencies (a currency's price is ``currency`` per unit):
    government bonds Level 1, corporate bonds Level 2A, shares Level 2B equity; a bond's
    price is per unit of nominal (its clean price over 100), under its ISIN and its CUSIP."""
    rates = {currency: Decimal(1)}
    for pair in PAIRS:
        if pair.quote == currency:
            rates[pair.base] = pair.mid
        elif pair.base == currency:
            rates[pair.quote] = (Decimal(1) / pair.mid).quantize(Decimal("1E-10"))
    made = [
        Instrument(code, "currency", None, Level.LEVEL_1, None, currency, price)
        for code, price in sorted(rates.items())
    ]
    for bond in BONDS:
        level = Level.LEVEL_1 if bond.government else Level.LEVEL_2A
        issuer = "sovereign" if bond.government else "corporate"
        for code in (bond.isin, bond.cusip):
            if code is not None:
                made.append(
                    Instrument(code, "bond", issuer, level, None, bond.currency, bond.price / 100)
                )
    for share in SHARES:
        for code in (share.ticker, share.isin):
            made.append(
                Instrument(
                    code,
                    "equity",
                    "corporate",
                    Level.LEVEL_2B,
                    "equity",
                    share.currency,
                    share.price,
                )
            )
    return made
