"""Strict parsing of transaction messages: every body becomes a Transaction or a Rejection."""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import NamedTuple

from ledgerflow.core.amounts import AmountError, check_amount

MAX_PROVIDER_ID = 2**31 - 1  # historical_transactions.provider_id is an INTEGER


class Reason(StrEnum):
    """Stable reason codes for rejected messages (ledgerflow.rejected_messages.reason)."""

    BODY_TOO_LARGE = "body_too_large"
    INVALID_ENCODING = "invalid_encoding"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    DUPLICATE_FIELD = "duplicate_field"
    MISSING_FIELD = "missing_field"
    UNEXPECTED_FIELD = "unexpected_field"
    INVALID_PROVIDER_ID = "invalid_provider_id"
    INVALID_VALUE = "invalid_value"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    UNKNOWN_PROVIDER = "unknown_provider"


class Transaction(NamedTuple):
    """A valid transaction: an amount for a provider id (a named tuple: one is made per
    message, at a fifth of a frozen dataclass's cost)."""

    provider_id: int
    value: Decimal


class Rejection(NamedTuple):
    """Why a message cannot be stored: a stable reason code and a human-readable detail."""

    reason: Reason
    detail: str


class _JsonFloat(Decimal):
    """A JSON number written with a fraction or exponent (so not an integer literal)."""

    __slots__ = ()


class _Rejected(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        self.rejection = Rejection(reason, detail)


def _reject_constant(name: str) -> None:
    raise _Rejected(Reason.INVALID_VALUE, f"{name} is not a number ledgerflow accepts")


def _unique_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _Rejected(Reason.DUPLICATE_FIELD, f"field {key!r} appears more than once")
        result[key] = value
    return result


_DECODER = json.JSONDecoder(
    parse_float=_JsonFloat,
    parse_int=Decimal,
    parse_constant=_reject_constant,
    object_pairs_hook=_unique_object,
)
_FIELDS = ("id", "value")


def _short(value: object, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, Decimal) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: object) -> bool:
    # bool is not a Decimal, so JSON true/false never pass for numbers.
    return isinstance(value, Decimal)


def _provider_id(raw: object) -> int:
    if not _is_number(raw) or isinstance(raw, _JsonFloat):
        raise _Rejected(Reason.INVALID_PROVIDER_ID, f"id must be a JSON integer, got {_short(raw)}")
    assert isinstance(raw, Decimal)
    if not 1 <= raw <= MAX_PROVIDER_ID:
        raise _Rejected(
            Reason.INVALID_PROVIDER_ID, f"id {_short(raw)} is outside 1..{MAX_PROVIDER_ID}"
        )
    return int(raw)


def _value(raw: object) -> Decimal:
    if not _is_number(raw):
        raise _Rejected(Reason.INVALID_VALUE, f"value must be a JSON number, got {_short(raw)}")
    assert isinstance(raw, Decimal)
    try:
        return Decimal(check_amount(raw))
    except AmountError as exc:
        raise _Rejected(Reason.VALUE_OUT_OF_RANGE, f"value {_short(raw)}: {exc}") from None


# The shape nearly every message has, e.g. {"id": 1, "value": -12.5}: read without the JSON
# decoder. Everything it matches, the full parser reads the same way (a test holds it to
# that); everything else goes to the full parser.
_COMMON = re.compile(
    rb'[ \t\n\r]*\{[ \t\n\r]*"id"[ \t\n\r]*:[ \t\n\r]*([1-9][0-9]{0,9})[ \t\n\r]*,'
    rb'[ \t\n\r]*"value"[ \t\n\r]*:[ \t\n\r]*(-?(?:0|[1-9][0-9]{0,19})(?:\.[0-9]{1,12})?)'
    rb"[ \t\n\r]*\}[ \t\n\r]*"
)


def parse_transaction(body: bytes, max_bytes: int) -> Transaction | Rejection:
    """Parse a message body ``{"id": <int>, "value": <number>}`` strictly.

    Amounts are read as decimals, never floats; booleans, strings, null, NaN and
    Infinity are not numbers; unknown or repeated fields are refused.
    """
    common = _COMMON.fullmatch(body) if len(body) <= max_bytes else None
    if common and int(common[1]) <= MAX_PROVIDER_ID:
        return Transaction(int(common[1]), Decimal(common[2].decode()))
    return parse_strictly(body, max_bytes)


def parse_strictly(body: bytes, max_bytes: int) -> Transaction | Rejection:
    """``parse_transaction`` through the JSON decoder alone, for every shape of body."""
    try:
        if len(body) > max_bytes:
            raise _Rejected(Reason.BODY_TOO_LARGE, f"{len(body)} bytes, limit {max_bytes}")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Rejected(Reason.INVALID_ENCODING, f"not UTF-8: {exc.reason}") from None
        try:
            document = _DECODER.decode(text)
        except (ValueError, InvalidOperation, RecursionError) as exc:
            raise _Rejected(Reason.INVALID_JSON, f"not JSON: {exc}") from None
        if not isinstance(document, dict):
            kind = type(document).__name__ if document is not None else "null"
            raise _Rejected(Reason.NOT_AN_OBJECT, f"expected a JSON object, got {kind}")
        missing = [field for field in _FIELDS if field not in document]
        if missing:
            raise _Rejected(Reason.MISSING_FIELD, "missing " + ", ".join(missing))
        extra = sorted(set(document) - set(_FIELDS))
        if extra:
            raise _Rejected(Reason.UNEXPECTED_FIELD, "unexpected " + ", ".join(extra))
        return Transaction(_provider_id(document["id"]), _value(document["value"]))
    except _Rejected as rejected:
        return rejected.rejection
