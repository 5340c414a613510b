"""The reference-data CSV: what a good file gives, and for each kind of mistake, the line
and the column the error names."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledgerflow.treasury.instruments import (
    Instrument,
    InstrumentsCsvError,
    parse_instruments_csv,
)
from ledgerflow.treasury.lcr import Level

HEADER = "instrument,asset_class,issuer_type,hqla_level,haircut_category,currency,price"


def test_a_good_file_gives_every_instrument_in_order() -> None:
    text = (
        "\ufeff" + HEADER + "\r\n"
        "EUR,currency,,1,,USD,1.0834\r\n"
        "\r\n"
        'US912828,bond,sovereign,1,,USD," 99.5 "\r\n'
        "XS2A,bond,corporate,2A,,EUR,\r\n"
        "DE2B,equity,,2B,equity,EUR,20\r\n"
        "XSMIS,equity,corporate,none,,USD,10\r\n"
    )
    assert parse_instruments_csv(text) == [
        Instrument("EUR", "currency", None, Level.LEVEL_1, None, "USD", Decimal("1.0834")),
        Instrument("US912828", "bond", "sovereign", Level.LEVEL_1, None, "USD", Decimal("99.5")),
        Instrument("XS2A", "bond", "corporate", Level.LEVEL_2A, None, "EUR", None),
        Instrument("DE2B", "equity", None, Level.LEVEL_2B, "equity", "EUR", Decimal(20)),
        Instrument("XSMIS", "equity", "corporate", Level.NONE, None, "USD", Decimal(10)),
    ]


def test_the_columns_may_come_in_any_order() -> None:
    text = "price,currency,haircut_category,hqla_level,issuer_type,asset_class,instrument\n"
    text += "12.5,GBP,rmbs,2B,,bond,GB00RMBS\n"
    [instrument] = parse_instruments_csv(text)
    assert instrument == Instrument(
        "GB00RMBS", "bond", None, Level.LEVEL_2B, "rmbs", "GBP", Decimal("12.5")
    )


def test_a_header_alone_gives_no_instruments() -> None:
    assert parse_instruments_csv(HEADER + "\n") == []


@pytest.mark.parametrize(
    ("row", "column", "problem"),
    [
        (",bond,,1,,USD,1", "instrument", "empty"),
        ("X,Bond,,1,,USD,1", "asset_class", "'Bond' is not an asset class"),
        ("X,bond,,3,,USD,1", "hqla_level", "'3' is not an HQLA level"),
        ("X,bond,,2a,,USD,1", "hqla_level", "'2a' is not an HQLA level"),
        ("X,equity,,2B,,USD,1", "haircut_category", "a Level 2B asset's is one of"),
        ("X,equity,,2B,gold,USD,1", "haircut_category", "'gold'"),
        ("X,bond,,2A,corporate_debt,USD,1", "haircut_category", "only a Level 2B asset"),
        ("X,bond,,1,,usd,1", "currency", "'usd' is not an ISO 4217 code"),
        ("X,bond,,1,,USD,1O", "price", "'1O' is not a decimal number"),
        ("X,bond,,1,,USD,-1", "price", "'-1' is negative"),
        ("X,bond,,1,,USD,NaN", "price", "not a finite number"),
        ("X,bond,,1,,USD,0.0000000000001", "price", "more than 12 decimal places"),
        ("EURO,currency,,1,,USD,1", "instrument", "not a currency's ISO 4217 code"),
        ("EUR,currency,,2A,,USD,1", "hqla_level", "a currency is Level 1"),
        ("X,bond,,1,,USD", "price", "6 fields, the header has 7"),
        ("X,bond,,1,,USD,1,extra", "price", "8 fields, the header has 7"),
    ],
)
def test_a_bad_row_is_refused_naming_its_line_and_column(
    row: str, column: str, problem: str
) -> None:
    text = f"{HEADER}\nGOOD,bond,,1,,USD,1\n\n{row}\n"
    with pytest.raises(InstrumentsCsvError) as caught:
        parse_instruments_csv(text)
    assert (caught.value.line, caught.value.column) == (4, column)
    assert str(caught.value).startswith(f"line 4, column {column}: ")
    assert problem in caught.value.problem


def test_an_instrument_given_twice_is_refused_naming_both_lines() -> None:
    text = f"{HEADER}\nX,bond,,1,,USD,1\nY,bond,,1,,USD,1\nX,bond,,1,,USD,2\n"
    expected = r"^line 4, column instrument: 'X' is given again \(first on line 2\)$"
    with pytest.raises(InstrumentsCsvError, match=expected):
        parse_instruments_csv(text)


@pytest.mark.parametrize(
    ("header", "column", "problem"),
    [
        (HEADER.replace(",price", ""), "price", "missing from the header"),
        (HEADER + ",rating", "rating", "unknown"),
        (HEADER + ",price", "price", "given twice"),
        ("", "instrument", "the file is empty"),
    ],
)
def test_a_bad_header_is_refused_naming_the_column(header: str, column: str, problem: str) -> None:
    with pytest.raises(InstrumentsCsvError) as caught:
        parse_instruments_csv(header)
    assert (caught.value.line, caught.value.column) == (1, column)
    assert problem in caught.value.problem
