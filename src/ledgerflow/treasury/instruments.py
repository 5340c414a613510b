"""The instruments' reference data, for the LCR: what each instrument is, its HQLA level and
its price, read from a CSV file and loaded into ``ledgerflow.instruments``.

The CSV's header names the columns ``instrument,asset_class,issuer_type,hqla_level,
haircut_category,currency,price`` (in any order, each once). A currency is an instrument
too: asset class ``currency``, its ISO 4217 code as its id, Level 1, and as its price the
value of one unit in its ``currency`` column (``EUR,currency,,1,,USD,1.08``). ``price`` and
``issuer_type`` may be empty; ``haircut_category`` is given for a Level 2B asset only.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg

from ledgerflow.core.amounts import AmountError, check_amount
from ledgerflow.db.queries import Queries
from ledgerflow.treasury.lcr import LEVEL_2B_CATEGORIES, Level

QUERIES = Queries.of("ledgerflow.treasury", "liquidity.sql")
COLUMNS = (
    "instrument",
    "asset_class",
    "issuer_type",
    "hqla_level",
    "haircut_category",
    "currency",
    "price",
)
_CURRENCY = re.compile(r"[A-Z]{3}")
_ASSET_CLASS = re.compile(r"[a-z][a-z0-9_]*")


class InstrumentsCsvError(ValueError):
    """A reference-data CSV that cannot be read: the line and the column at fault."""

    def __init__(self, line: int, column: str, problem: str) -> None:
        super().__init__(f"line {line}, column {column}: {problem}")
        self.line = line
        self.column = column
        self.problem = problem


@dataclass(frozen=True)
class Instrument:
    """One instrument's reference data: a row of ``ledgerflow.instruments``.

    ``haircut_category`` is a Level 2B asset's (``rmbs``, ``corporate_debt``, ``equity``)
    and ``None`` otherwise; ``price`` is in ``currency``, ``None`` when unknown.
    """

    instrument: str
    asset_class: str
    issuer_type: str | None
    hqla_level: Level
    haircut_category: str | None
    currency: str
    price: Decimal | None


def _level(text: str) -> Level:
    try:
        return Level(text)
    except ValueError:
        known = ", ".join(repr(level.value) for level in Level)
        raise ValueError(f"{text!r} is not an HQLA level; one of {known}") from None


def _category(text: str | None, level: Level) -> str | None:
    if level is Level.LEVEL_2B and text not in LEVEL_2B_CATEGORIES:
        raise ValueError(
            f"{text or 'nothing'!r}: a Level 2B asset's is one of {', '.join(LEVEL_2B_CATEGORIES)}"
        )
    if level is not Level.LEVEL_2B and text is not None:
        raise ValueError(f"{text!r}: only a Level 2B asset has a haircut category")
    return text


def _price(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        price = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a decimal number") from None
    try:
        check_amount(price)
    except AmountError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    if price < 0:
        raise ValueError(f"{text!r} is negative")
    return price


def _matching(pattern: re.Pattern[str], text: str, what: str) -> str:
    if not pattern.fullmatch(text):
        raise ValueError(f"{text!r} is not {what}")
    return text


def _instrument(values: dict[str, str | None], line: int) -> Instrument:
    column = "instrument"
    try:
        name = values["instrument"]
        if name is None:
            raise ValueError("empty")
        column = "asset_class"
        asset_class = _matching(
            _ASSET_CLASS, values["asset_class"] or "", "an asset class (bond, currency, ...)"
        )
        column = "hqla_level"
        level = _level(values["hqla_level"] or "")
        if asset_class == "currency":
            column = "instrument"
            _matching(_CURRENCY, name, "a currency's ISO 4217 code")
            if level is not Level.LEVEL_1:
                column = "hqla_level"
                raise ValueError("a currency is Level 1")
        column = "haircut_category"
        category = _category(values["haircut_category"], level)
        column = "currency"
        currency = _matching(_CURRENCY, values["currency"] or "", "an ISO 4217 code")
        column = "price"
        price = _price(values["price"])
    except ValueError as exc:
        raise InstrumentsCsvError(line, column, str(exc)) from None
    return Instrument(name, asset_class, values["issuer_type"], level, category, currency, price)


def _header(row: list[str]) -> list[str]:
    header = [name.strip().removeprefix("\ufeff") for name in row]
    for index, name in enumerate(header):
        if name not in COLUMNS:
            raise InstrumentsCsvError(
                1, name or f"#{index + 1}", f"unknown; the columns: {', '.join(COLUMNS)}"
            )
        if header.index(name) != index:
            raise InstrumentsCsvError(1, name, "given twice")
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise InstrumentsCsvError(1, missing[0], "missing from the header")
    return header


def parse_instruments_csv(text: str) -> list[Instrument]:
    """The instruments of a reference-data CSV (see the module), in file order.

    Raises :class:`InstrumentsCsvError` naming the line and the column of the first
    problem: a header without a column or with an unknown one, a row of the wrong length,
    an empty id, a level or category the LCR standard does not have, a bad currency code or
    price, an instrument given twice. Blank lines are skipped.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    first = next(reader, None)
    if first is None:
        raise InstrumentsCsvError(1, "instrument", "no header: the file is empty")
    header = _header(first)
    found: list[Instrument] = []
    lines: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            column = header[min(len(row), len(header) - 1)]
            raise InstrumentsCsvError(
                line, column, f"{len(row)} fields, the header has {len(header)}"
            )
        values = {name: (cell.strip() or None) for name, cell in zip(header, row, strict=True)}
        instrument = _instrument(values, line)
        if instrument.instrument in lines:
            raise InstrumentsCsvError(
                line,
                "instrument",
                f"{instrument.instrument!r} is given again (first on line "
                f"{lines[instrument.instrument]})",
            )
        lines[instrument.instrument] = line
        found.append(instrument)
    return found


async def load_instruments(
    conn: psycopg.AsyncConnection[Any], instruments: Sequence[Instrument]
) -> int:
    """Insert or replace ``instruments`` in the reference data, in one statement; the number
    of rows written. An instrument given twice is refused (naming it)."""
    seen: set[str] = set()
    for each in instruments:
        if each.instrument in seen:
            raise ValueError(f"instrument {each.instrument!r} is given twice")
        seen.add(each.instrument)
    if not instruments:
        return 0
    async with conn.transaction():
        cursor = await conn.execute(
            QUERIES["load_instruments"],
            {
                "instruments": [i.instrument for i in instruments],
                "asset_classes": [i.asset_class for i in instruments],
                "issuer_types": [i.issuer_type for i in instruments],
                "levels": [i.hqla_level.value for i in instruments],
                "categories": [i.haircut_category for i in instruments],
                "currencies": [i.currency for i in instruments],
                "prices": [i.price for i in instruments],
            },
        )
    return cursor.rowcount
