"""Exact money amounts: parsing from JSON numbers and formatting for the cache."""

from __future__ import annotations

from decimal import Decimal

# NUMERIC in PostgreSQL has no fixed precision in the original schema; these bounds keep
# every accepted amount exactly representable and every balance readable.
MAX_INTEGER_DIGITS = 20
MAX_FRACTION_DIGITS = 12


class AmountError(ValueError):
    """An amount that is not a finite decimal within the accepted precision."""


def check_amount(value: Decimal) -> Decimal:
    """Return ``value`` if it is finite and within the accepted precision, else raise."""
    if not value.is_finite():
        raise AmountError(f"{value} is not a finite number")
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    fraction_digits = max(0, -exponent)
    integer_digits = max(0, len(digits) + exponent)
    if fraction_digits > MAX_FRACTION_DIGITS:
        raise AmountError(f"more than {MAX_FRACTION_DIGITS} decimal places")
    if integer_digits > MAX_INTEGER_DIGITS:
        raise AmountError(f"more than {MAX_INTEGER_DIGITS} integer digits")
    return value


def format_amount(value: Decimal) -> str:
    """Format an exact decimal the way the cache stores it.

    No exponent, no trailing fractional zeros, no negative zero: ``1900``, ``12.5``, ``-3``.
    """
    if not value.is_finite():
        raise AmountError(f"{value} is not a finite number")
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
