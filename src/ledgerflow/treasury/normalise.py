"""Trades from each source, normalised into the one canonical trade (``schemas/trade.avsc``).

A source message arrives as JSON or as Avro in the Confluent wire format (the magic byte
0, the writer schema's id as 4 big-endian bytes, then the Avro binary body). Each source
has a declared mapping: for every canonical field, the conversion that makes it from the
source's fields (``MAPPINGS``). The canonical trade is validated against its schema and
encoded, in the same wire format with the canonical schema's id, for ``trades.normalised``.

A message that cannot be decoded or mapped raises ``RejectedTrade`` with a stable reason:

- ``not_json``: neither the wire format nor JSON text; ``not_object``: JSON, not an object
- ``bad_wire_format``: a binary frame that is not Confluent's (short, or another magic byte)
- ``unknown_schema_id``: the registry knows no schema by the frame's id
- ``schema_mismatch``: the writer's schema cannot be read as the source's declared schema
- ``not_avro``: the body does not decode with the writer's schema (or bytes are left over)
- ``missing_field``, ``bad_field`` (a text field that is not text, or empty)
- ``bad_decimal``, ``bad_date``, ``bad_timestamp``, ``bad_currency``, ``unknown_side``
- ``invalid_trade``: the mapped trade does not fit the canonical schema

Amounts are Decimal from end to end. JSON numbers are parsed as Decimal, and a float never
enters a conversion but through one door: a source schema that declares a ``double`` (the FX
system's rate) is read through ``str()``, the shortest text that reads back as the same
double, which is the rate as quoted whenever it was quoted with 15 significant digits or
fewer; refusing it would refuse every FX trade, and ``Decimal(float)`` would carry the
binary error (1.08345 would become 1.0834499999999999...). NaN and infinities are refused.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Context, Decimal, Inexact, InvalidOperation
from functools import cache
from importlib.resources import files
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError
from fastavro.validation import ValidationError, validate

from ledgerflow.treasury.registry import SchemaNotFound, SchemaRegistry

# Confluent's TopicNameStrategy: the value schema of topic T is subject "T-value".
CANONICAL_SUBJECT = "trades.normalised-value"
MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")
# The canonical decimals: decimal(38, 10) (see schemas/trade.avsc for why).
SCALE, PRECISION = 10, 38
_QUANTUM = Decimal(1).scaleb(-SCALE)
# Exact arithmetic: an amount that would need rounding is an error, never rounded.
_EXACT = Context(prec=2 * PRECISION, traps=[Inexact, InvalidOperation])
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CURRENCY = re.compile(r"[A-Z]{3}")

AvroSchema = dict[str, Any]
Message = Mapping[str, Any]
Convert = Callable[[Message], Any]


class RejectedTrade(Exception):
    """A source message that cannot become a canonical trade: a stable reason code and a
    detail for people."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# The Confluent wire format.


def frame(schema_id: int, body: bytes) -> bytes:
    """``body`` (Avro binary) framed as Confluent's serialisers do for schema ``schema_id``."""
    return _HEADER.pack(MAGIC_BYTE, schema_id) + body


def unframe(message: bytes) -> tuple[int, bytes]:
    """The schema id and the Avro body of a wire-format message (``bad_wire_format``)."""
    if len(message) < _HEADER.size:
        raise RejectedTrade("bad_wire_format", f"{len(message)} bytes: shorter than the header")
    magic, schema_id = _HEADER.unpack_from(message)
    if magic != MAGIC_BYTE:
        raise RejectedTrade("bad_wire_format", f"magic byte {magic}, expected {MAGIC_BYTE}")
    return schema_id, message[_HEADER.size :]


def _is_framed(message: bytes) -> bool:
    """Whether a message is binary (JSON text begins with a value or with whitespace)."""
    return bool(message) and message[0] < 0x20 and message[0] not in b"\t\n\r"


# The schemas shipped with ledgerflow.


@cache
def _schema_text(name: str) -> str:
    return files("ledgerflow.treasury").joinpath("schemas", f"{name}.avsc").read_text("utf-8")


def canonical_schema() -> AvroSchema:
    """The canonical trade's schema (a fresh copy)."""
    schema: AvroSchema = json.loads(_schema_text("trade"))
    return schema


def source_schema(source: str) -> AvroSchema:
    """The declared schema of a source (``fx``, ``repos``...), as its producers register it
    under ``trades.<source>-value``."""
    if source not in MAPPINGS:
        raise ValueError(f"unknown trade source {source!r}; known: {sorted(MAPPINGS)}")
    schema: AvroSchema = json.loads(_schema_text(source))
    return schema


@cache
def _parsed(name: str) -> Any:
    return fastavro.parse_schema(json.loads(_schema_text(name)))


# Conversions: each makes one canonical value from a source message.


def _value(message: Message, field: str) -> Any:
    value = message.get(field)
    if value is None:
        raise RejectedTrade("missing_field", field)
    return value


def text(field: str) -> Convert:
    """A non-empty text field."""

    def convert(message: Message) -> str:
        value = _value(message, field)
        if not isinstance(value, str) or not value.strip():
            raise RejectedTrade("bad_field", f"{field}: expected non-empty text")
        if "\x00" in value or len(value) > 1000:
            raise RejectedTrade("bad_field", f"{field}: no NUL character, at most 1,000 characters")
        return value

    return convert


def optional_text(field: str) -> Convert:
    """A text field that may be absent (None)."""
    required = text(field)
    return lambda message: None if message.get(field) is None else required(message)


def constant(value: Any) -> Convert:
    """The same value for every message of the source."""
    return lambda _message: value


def to_decimal(value: Any, field: str) -> Decimal:
    """A source value as an exact Decimal: a Decimal, an int, a plain decimal string
    ("-12.50"), or a float from an Avro ``double`` through ``str()`` (see the module)."""
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int | str) and _PLAIN_NUMBER.fullmatch(str(value)):
        number = Decimal(value)  # bool is an int, but str(True) is no number
    elif isinstance(value, float):
        number = Decimal(str(value))
    else:
        raise RejectedTrade("bad_decimal", f"{field}: {value!r} is not a decimal number")
    if not number.is_finite():
        raise RejectedTrade("bad_decimal", f"{field}: {value!r} is not a finite number")
    return number


def decimal(field: str) -> Convert:
    """A decimal field that must not be negative (the side says which way)."""

    def convert(message: Message) -> Decimal:
        number = to_decimal(_value(message, field), field)
        if number < 0:
            raise RejectedTrade("bad_decimal", f"{field}: {number} is negative")
        return number

    return convert


def optional_decimal(field: str) -> Convert:
    """A decimal field that may be absent (None)."""
    required = decimal(field)
    return lambda message: None if message.get(field) is None else required(message)


def product(left: Convert, right: Convert) -> Convert:
    """The exact product of two decimals (an equity's consideration: shares times price)."""
    return lambda message: _EXACT.multiply(left(message), right(message))


def day(field: str) -> Convert:
    """A date: an Avro ``date`` or JSON text YYYY-MM-DD."""

    def convert(message: Message) -> date:
        value = _value(message, field)
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str) and _ISO_DATE.fullmatch(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise RejectedTrade("bad_date", f"{field}: {value!r} is not a date YYYY-MM-DD")

    return convert


def optional_day(field: str) -> Convert:
    """A date that may be absent (None)."""
    required = day(field)
    return lambda message: None if message.get(field) is None else required(message)


def timestamp(field: str) -> Convert:
    """An instant: an Avro ``timestamp-millis`` or ISO 8601 text with its offset; in UTC,
    to the millisecond (what the canonical field holds)."""

    def convert(message: Message) -> datetime:
        value = _value(message, field)
        instant = None
        if isinstance(value, datetime):
            instant = value
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                instant = datetime.fromisoformat(value)
        if instant is None or instant.utcoffset() is None:
            raise RejectedTrade(
                "bad_timestamp", f"{field}: {value!r} is not an instant with its offset"
            )
        instant = instant.astimezone(UTC)
        return instant.replace(microsecond=instant.microsecond // 1000 * 1000)

    return convert


def currency(field: str, part: int | None = None) -> Convert:
    """An ISO 4217 code; of a pair BASE/QUOTE, part 0 or 1."""

    def convert(message: Message) -> str:
        value: str = text(field)(message)
        code = value
        if part is not None:
            codes = value.split("/")
            code = codes[part] if len(codes) == 2 else ""
        if not _CURRENCY.fullmatch(code):
            raise RejectedTrade("bad_currency", f"{field}: {value!r} is not an ISO 4217 code")
        return code

    return convert


def side(field: str, table: Mapping[str, str]) -> Convert:
    """BUY or SELL, from the source's own words for them."""

    def convert(message: Message) -> str:
        value = _value(message, field)
        try:
            return table[value]
        except (KeyError, TypeError):
            raise RejectedTrade(
                "unknown_side", f"{field}: {value!r}; known: {sorted(table)}"
            ) from None

    return convert


def cash(amount: Convert, side_of: Convert) -> Convert:
    """A settlement amount: negative when the side pays cash (BUY), positive when it
    receives it (SELL)."""

    def convert(message: Message) -> Decimal:
        value: Decimal = amount(message)
        return -value if side_of(message) == "BUY" else value

    return convert


def first_of(schemes: Mapping[str, str]) -> tuple[Convert, Convert]:
    """The instrument and its scheme from the first of several identifier fields present
    (``{"isin": "ISIN", "cusip": "CUSIP"}``)."""

    def present(message: Message) -> str:
        for field in schemes:
            if message.get(field) is not None:
                return field
        raise RejectedTrade("missing_field", " or ".join(schemes))

    return (lambda m: text(present(m))(m)), (lambda m: schemes[present(m)])


# The declared mappings.


@dataclass(frozen=True)
class SourceMapping:
    """How one source's messages become canonical trades: for each canonical field, its
    conversion (fields not named are null)."""

    source: str
    asset_class: str
    fields: Mapping[str, Convert]

    def apply(self, message: Message) -> dict[str, Any]:
        """The canonical trade of ``message`` (RejectedTrade when a field cannot be made)."""
        trade: dict[str, Any] = dict.fromkeys(CANONICAL_FIELDS)
        trade |= {"source": self.source, "asset_class": self.asset_class}
        trade |= {name: convert(message) for name, convert in self.fields.items()}
        for name in DECIMAL_FIELDS:
            if trade[name] is not None:
                trade[name] = fit(trade[name], name)
        return trade


def fit(number: Decimal, field: str) -> Decimal:
    """``number`` at the canonical scale; ``bad_decimal`` if that would round it or it has
    more digits than the canonical precision."""
    try:
        fitted = _EXACT.quantize(number, _QUANTUM)
    except (Inexact, InvalidOperation):
        raise RejectedTrade(
            "bad_decimal", f"{field}: {number} has more than {SCALE} decimal places"
        ) from None
    if len(fitted.as_tuple().digits) > PRECISION:
        raise RejectedTrade(
            "bad_decimal",
            f"{field}: {number} has more than {PRECISION - SCALE} digits before the point",
        )
    return fitted


CANONICAL_FIELDS = tuple(f["name"] for f in json.loads(_schema_text("trade"))["fields"])
DECIMAL_FIELDS = ("quantity", "price", "settlement_amount", "rate")

_FX_SIDE = side("direction", {"BUY": "BUY", "SELL": "SELL"})
_REPO_SIDE = side("direction", {"repo": "SELL", "reverse_repo": "BUY"})
_BOND_SIDE = side("side", {"BUY": "BUY", "SELL": "SELL"})
_EQUITY_SIDE = side("side", {"B": "BUY", "S": "SELL"})
_INTERBANK_SIDE = side("kind", {"loan": "BUY", "deposit": "SELL"})
_BOND, _BOND_SCHEME = first_of({"isin": "ISIN", "cusip": "CUSIP"})
_SHARE, _SHARE_SCHEME = first_of({"isin": "ISIN", "ticker": "TICKER"})

MAPPINGS: dict[str, SourceMapping] = {
    m.source: m
    for m in (
        SourceMapping(
            "fx",
            "fx",
            {
                "trade_id": text("deal_id"),
                "desk": text("desk"),
                "book": text("book"),
                "instrument": currency("currency_pair", 0),  # the base currency...
                "instrument_scheme": constant("CCY_PAIR"),
                "currency": currency("currency_pair", 1),  # ...quoted in this one
                "side": _FX_SIDE,
                "quantity": decimal("amount"),
                "price": decimal("rate"),
                "settlement_amount": cash(decimal("counter_amount"), _FX_SIDE),
                "trade_time": timestamp("trade_time"),
                "settlement_date": day("value_date"),
            },
        ),
        SourceMapping(
            "repos",
            "repo",
            {
                "trade_id": text("repo_id"),
                "desk": text("desk"),
                "book": text("book"),
                "instrument": text("collateral_isin"),
                "instrument_scheme": constant("ISIN"),
                "collateral_instrument": text("collateral_isin"),
                "side": _REPO_SIDE,  # a repo delivers the collateral: SELL
                "quantity": decimal("collateral_nominal"),
                "currency": currency("currency"),
                "settlement_amount": cash(decimal("cash_amount"), _REPO_SIDE),  # the start leg
                "rate": decimal("repo_rate"),
                "counterparty_type": optional_text("counterparty_type"),
                "trade_time": timestamp("trade_time"),
                "settlement_date": day("start_date"),
                "maturity_date": day("maturity_date"),
            },
        ),
        SourceMapping(
            "bonds",
            "bond",
            {
                "trade_id": text("execution_id"),
                "desk": text("desk"),
                "book": text("book"),
                "instrument": _BOND,
                "instrument_scheme": _BOND_SCHEME,
                "side": _BOND_SIDE,
                "quantity": decimal("nominal"),
                "price": decimal("clean_price"),
                "currency": currency("currency"),
                "settlement_amount": cash(decimal("consideration"), _BOND_SIDE),
                "rate": optional_decimal("coupon"),
                "trade_time": timestamp("trade_time"),
                "settlement_date": day("settlement_date"),
                "maturity_date": optional_day("maturity_date"),
            },
        ),
        SourceMapping(
            "equities",
            "equity",
            {
                "trade_id": text("order_id"),
                "desk": text("desk"),
                "book": text("book"),
                "instrument": _SHARE,
                "instrument_scheme": _SHARE_SCHEME,
                "side": _EQUITY_SIDE,
                "quantity": decimal("shares"),
                "price": decimal("price"),
                "currency": currency("currency"),
                "settlement_amount": cash(
                    product(decimal("shares"), decimal("price")), _EQUITY_SIDE
                ),
                "trade_time": timestamp("trade_time"),
                "settlement_date": day("settlement_date"),
            },
        ),
        SourceMapping(
            "interbank",
            "interbank",
            {
                "trade_id": text("deal_ref"),
                "desk": text("desk"),
                "book": text("book"),
                "instrument": text("counterparty"),  # the claim on (or debt to) it
                "instrument_scheme": constant("INTERNAL"),
                "side": _INTERBANK_SIDE,  # a loan placed is a claim received: BUY
                "quantity": decimal("principal"),
                "currency": currency("currency"),
                "settlement_amount": cash(decimal("principal"), _INTERBANK_SIDE),
                "rate": decimal("rate"),
                "counterparty_type": text("counterparty_type"),
                "trade_time": timestamp("trade_time"),
                "settlement_date": day("value_date"),
                "maturity_date": day("maturity_date"),
            },
        ),
    )
}


# Decoding, mapping, encoding.


@dataclass(frozen=True)
class NormalisedTrade:
    """One canonical trade: its fields, and its message for ``trades.normalised``."""

    trade: dict[str, Any]
    body: bytes  # Confluent wire format, the canonical schema's id


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object, every number in it a Decimal or an int (``not_json``, ``not_object``)."""
    try:
        value = json.loads(body, parse_float=Decimal, parse_constant=_refuse_constant)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError among them
        raise RejectedTrade("not_json", str(exc)) from None
    except RecursionError:
        raise RejectedTrade("not_json", "nested too deeply") from None
    if not isinstance(value, dict):
        raise RejectedTrade("not_object", f"JSON {type(value).__name__}, expected an object")
    return value


def read_avro(body: bytes, writer: Any, reader: Any) -> dict[str, Any]:
    """An Avro binary body written with ``writer``, read as ``reader`` (parsed schemas)."""
    stream = io.BytesIO(body)
    try:
        record = fastavro.schemaless_reader(stream, writer, reader)
    except SchemaResolutionError as exc:
        raise RejectedTrade("schema_mismatch", str(exc)) from None
    except Exception as exc:  # corrupt input fails in fastavro with many kinds of error
        raise RejectedTrade("not_avro", f"{type(exc).__name__}: {exc}") from None
    if stream.tell() != len(body):
        raise RejectedTrade("not_avro", f"{len(body) - stream.tell()} bytes left over")
    if not isinstance(record, dict):
        raise RejectedTrade("not_avro", "the writer's schema is not a record")
    return record


class Normaliser:
    """Normalises source messages, with the schemas of a registry; ``start`` makes one."""

    def __init__(self, registry: SchemaRegistry, canonical_id: int, *, encode: bool = True) -> None:
        self.registry = registry
        self.canonical_id = canonical_id
        self.encode = encode  # False: no canonical message is written (nowhere to send it)
        self._writers: dict[int, Any] = {}  # parsed schemas by id: ids are immutable

    @classmethod
    async def start(cls, registry: SchemaRegistry, *, encode: bool = True) -> Normaliser:
        """A Normaliser whose canonical schema is registered (under ``CANONICAL_SUBJECT``);
        with ``encode`` false its trades come without their canonical message (``b""``)."""
        schema_id = await registry.register(CANONICAL_SUBJECT, canonical_schema())
        return cls(registry, schema_id, encode=encode)

    async def normalise(self, source: str, body: bytes) -> NormalisedTrade:
        """The canonical trade of a message of ``source`` (JSON or wire format)."""
        mapping = MAPPINGS.get(source)
        if mapping is None:
            raise ValueError(f"unknown trade source {source!r}; known: {sorted(MAPPINGS)}")
        if _is_framed(body):
            schema_id, avro = unframe(body)
            message = read_avro(avro, await self._writer(schema_id), _parsed(source))
        else:
            message = parse_json(body)
        trade = mapping.apply(message)
        # Checked without errors first: fastavro builds (and drops) an error message for
        # each union branch it tries when asked to raise, which costs more than the rest.
        if not validate(trade, _parsed("trade"), raise_errors=False):
            try:
                validate(trade, _parsed("trade"), raise_errors=True)
            except ValidationError as exc:
                raise RejectedTrade("invalid_trade", str(exc)) from None
        if not self.encode:
            return NormalisedTrade(trade, b"")
        out = io.BytesIO()
        fastavro.schemaless_writer(out, _parsed("trade"), trade)
        return NormalisedTrade(trade, frame(self.canonical_id, out.getvalue()))

    async def read(self, body: bytes) -> dict[str, Any]:
        """A ``trades.normalised`` message read back as a canonical trade (written with any
        registered version of the canonical schema, read with this one)."""
        schema_id, avro = unframe(body)
        return read_avro(avro, await self._writer(schema_id), _parsed("trade"))

    async def _writer(self, schema_id: int) -> Any:
        parsed = self._writers.get(schema_id)
        if parsed is None:
            try:
                schema = await self.registry.schema_by_id(schema_id)
            except SchemaNotFound:
                raise RejectedTrade("unknown_schema_id", f"no schema has id {schema_id}") from None
            parsed = self._writers[schema_id] = fastavro.parse_schema(schema)
        return parsed
