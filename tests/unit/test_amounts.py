from decimal import Decimal

import pytest

from ledgerflow.core.amounts import AmountError, check_amount, format_amount


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("1900", "1900"),
        ("1900.0", "1900"),
        ("1900.00", "1900"),
        ("12.5", "12.5"),
        ("12.50", "12.5"),
        ("-200", "-200"),
        ("0", "0"),
        ("-0.00", "0"),
        ("1E+3", "1000"),
        ("0.000001", "0.000001"),
        ("123456789012345678.123456789012", "123456789012345678.123456789012"),
    ],
)
def test_format_amount_is_exact_without_exponent_or_trailing_zeros(value: str, text: str) -> None:
    assert format_amount(Decimal(value)) == text


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1E+400", "1E-13", "1" * 21])
def test_check_amount_refuses_non_finite_and_out_of_precision(value: str) -> None:
    with pytest.raises(AmountError):
        check_amount(Decimal(value))


@pytest.mark.parametrize("value", ["0", "-1000", "1" * 20, "0.000000000001", "12.5"])
def test_check_amount_accepts_values_within_precision(value: str) -> None:
    assert check_amount(Decimal(value)) == Decimal(value)
