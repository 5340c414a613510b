"""Trades of each source, as JSON and as Avro in the Confluent wire format, normalised into
the canonical trade and read back; and every reason a message is rejected for."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib.resources import files
from typing import Any

import fastavro
import pytest

from ledgerflow.testing.registry import MemoryRegistry
from ledgerflow.treasury.normalise import (
    CANONICAL_FIELDS,
    CANONICAL_SUBJECT,
    MAPPINGS,
    Normaliser,
    RejectedTrade,
    SourceMapping,
    canonical_schema,
    constant,
    frame,
    source_schema,
    to_decimal,
    unframe,
)

SOURCES = ("fx", "repos", "bonds", "equities", "interbank")


def example(source: str) -> bytes:
    """The JSON example of a source, as shipped."""
    return (
        files("ledgerflow.treasury").joinpath("schemas", "examples", f"{source}.json").read_bytes()
    )


def as_avro_values(source: str, message: dict[str, Any]) -> dict[str, Any]:
    """A JSON example's values as the source's Avro producer has them (Decimal, date,
    datetime, float), by the source schema's declared types."""
    values = {}
    for declared in source_schema(source)["fields"]:
        value = message.get(declared["name"])
        kind = declared["type"]
        kind = kind[1] if isinstance(kind, list) else kind
        logical = kind.get("logicalType") if isinstance(kind, dict) else None
        if value is None:
            pass
        elif logical == "decimal":
            value = Decimal(str(value))
        elif logical == "date":
            value = date.fromisoformat(value)
        elif logical == "timestamp-millis":
            value = datetime.fromisoformat(value)
        elif kind == "double":
            value = float(value)
        values[declared["name"]] = value
    return values


def avro_body(source: str, values: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(source_schema(source)), values)
    return out.getvalue()


@pytest.fixture
async def registry() -> MemoryRegistry:
    """A registry with every source's schema registered, as their producers do."""
    found = MemoryRegistry()
    for source in SOURCES:
        await found.register(f"trades.{source}-value", source_schema(source))
    return found


@pytest.fixture
async def normaliser(registry: MemoryRegistry) -> Normaliser:
    return await Normaliser.start(registry)


async def avro_message(registry: MemoryRegistry, source: str, values: dict[str, Any]) -> bytes:
    version = await registry.latest(f"trades.{source}-value")
    return frame(version.id, avro_body(source, values))


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def trade(**fields: Any) -> dict[str, Any]:
    """A canonical trade: these fields, the others null."""
    return dict.fromkeys(CANONICAL_FIELDS) | fields


EXPECTED = {
    "fx": trade(
        trade_id="FX-20260302-0001",
        source="fx",
        desk="fx-spot",
        book="FXLDN1",
        instrument="EUR",
        instrument_scheme="CCY_PAIR",
        asset_class="fx",
        side="BUY",
        quantity=Decimal("1000000"),
        price=Decimal("1.08345"),
        currency="USD",
        settlement_amount=Decimal("-1083450"),
        trade_time=moment("2026-03-02T09:15:30.250+00:00"),
        settlement_date=date(2026, 3, 4),
    ),
    "repos": trade(
        trade_id="RP-7781",
        source="repos",
        desk="repo",
        book="REPOEUR",
        instrument="DE0001102580",
        instrument_scheme="ISIN",
        asset_class="repo",
        side="SELL",
        quantity=Decimal("50000000"),
        currency="EUR",
        settlement_amount=Decimal("49250000"),
        trade_time=moment("2026-03-02T08:01:00+00:00"),
        settlement_date=date(2026, 3, 3),
        maturity_date=date(2026, 3, 17),
        counterparty_type="financial_institution",
        collateral_instrument="DE0001102580",
        rate=Decimal("2.85"),
    ),
    "bonds": trade(
        trade_id="BX-99120",
        source="bonds",
        desk="rates",
        book="GOVTS",
        instrument="US91282CJL54",
        instrument_scheme="ISIN",
        asset_class="bond",
        side="SELL",
        quantity=Decimal("10000000"),
        price=Decimal("99.84375"),
        currency="USD",
        settlement_amount=Decimal("10021180.56"),
        trade_time=moment("2026-03-02T14:30:05.125+00:00"),
        settlement_date=date(2026, 3, 3),
        maturity_date=date(2033, 11, 15),
        rate=Decimal("4.5"),
    ),
    "equities": trade(
        trade_id="EQ-55-0012",
        source="equities",
        desk="equity-cash",
        book="EQEU",
        instrument="DE0007164600",
        instrument_scheme="ISIN",
        asset_class="equity",
        side="BUY",
        quantity=Decimal("2500"),
        price=Decimal("187.42"),
        currency="EUR",
        settlement_amount=Decimal("-468550"),
        trade_time=moment("2026-03-02T09:45:12+00:00"),
        settlement_date=date(2026, 3, 4),
    ),
    "interbank": trade(
        trade_id="MM-2026-0450",
        source="interbank",
        desk="money-markets",
        book="MMGBP",
        instrument="BANK-0042",
        instrument_scheme="INTERNAL",
        asset_class="interbank",
        side="SELL",
        quantity=Decimal("25000000"),
        currency="GBP",
        settlement_amount=Decimal("25000000"),
        trade_time=moment("2026-03-02T11:00:00+00:00"),
        settlement_date=date(2026, 3, 2),
        maturity_date=date(2026, 4, 2),
        counterparty_type="financial_institution",
        rate=Decimal("4.7125"),
    ),
}


def decimals_of(trade: dict[str, Any]) -> dict[str, str]:
    """The decimal fields as text: equal Decimals may differ in their digits; these not."""
    return {k: str(v) for k, v in trade.items() if isinstance(v, Decimal)}


async def assert_round_trip(normaliser: Normaliser, source: str, body: bytes) -> None:
    normalised = await normaliser.normalise(source, body)
    assert normalised.trade == EXPECTED[source]
    schema_id, avro = unframe(normalised.body)
    assert schema_id == normaliser.canonical_id
    # Read back by fastavro alone, with the canonical schema: the same trade, digit for digit.
    read = fastavro.schemaless_reader(
        io.BytesIO(avro), fastavro.parse_schema(canonical_schema()), None
    )
    assert isinstance(read, dict)
    assert read == EXPECTED[source]
    assert decimals_of(read) == decimals_of(normalised.trade)
    assert await normaliser.read(normalised.body) == EXPECTED[source]


@pytest.mark.parametrize("source", SOURCES)
async def test_a_json_trade_of_each_source_becomes_the_canonical_trade(
    normaliser: Normaliser, source: str
) -> None:
    await assert_round_trip(normaliser, source, example(source))


@pytest.mark.parametrize("source", SOURCES)
async def test_an_avro_trade_of_each_source_becomes_the_canonical_trade(
    normaliser: Normaliser, registry: MemoryRegistry, source: str
) -> None:
    values = as_avro_values(source, json.loads(example(source)))
    await assert_round_trip(normaliser, source, await avro_message(registry, source, values))


async def test_the_canonical_schema_is_registered_under_its_subject(
    normaliser: Normaliser, registry: MemoryRegistry
) -> None:
    latest = await registry.latest(CANONICAL_SUBJECT)
    assert (latest.version, latest.id) == (1, normaliser.canonical_id)
    assert latest.schema == canonical_schema()
    assert (await Normaliser.start(registry)).canonical_id == normaliser.canonical_id


def test_every_mapping_makes_every_required_canonical_field() -> None:
    required = {f["name"] for f in canonical_schema()["fields"] if "default" not in f}
    for source, mapping in MAPPINGS.items():
        assert required - {"source", "asset_class"} <= set(mapping.fields), source
        assert set(mapping.fields) <= set(CANONICAL_FIELDS), source
    assert set(MAPPINGS) == set(SOURCES)


def test_every_money_field_of_the_canonical_schema_is_a_decimal_38_10() -> None:
    for declared in canonical_schema()["fields"]:
        if declared["name"] in ("quantity", "price", "settlement_amount", "rate"):
            kind = declared["type"]
            kind = kind[1] if isinstance(kind, list) else kind
            assert kind == {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 10}


async def test_a_bond_named_by_its_cusip_and_a_share_by_its_ticker(normaliser: Normaliser) -> None:
    bond = json.loads(example("bonds")) | {"isin": None, "cusip": "91282CJL5"}
    found = (await normaliser.normalise("bonds", json.dumps(bond).encode())).trade
    assert (found["instrument"], found["instrument_scheme"]) == ("91282CJL5", "CUSIP")
    share = json.loads(example("equities"))
    del share["isin"]
    found = (await normaliser.normalise("equities", json.dumps(share).encode())).trade
    assert (found["instrument"], found["instrument_scheme"]) == ("SAP GY", "TICKER")


async def test_the_cash_sign_follows_the_side(normaliser: Normaliser) -> None:
    for source, field, other in [
        ("fx", "direction", "SELL"),
        ("repos", "direction", "reverse_repo"),
        ("bonds", "side", "BUY"),
        ("equities", "side", "S"),
        ("interbank", "kind", "loan"),
    ]:
        message = json.loads(example(source)) | {field: other}
        found = (await normaliser.normalise(source, json.dumps(message).encode())).trade
        assert found["settlement_amount"] == -EXPECTED[source]["settlement_amount"], source
        assert found["side"] != EXPECTED[source]["side"], source


async def test_json_numbers_are_exact_decimals(normaliser: Normaliser) -> None:
    body = example("equities").replace(b'"shares": 2500', b'"shares": 3')
    body = body.replace(b'"price": "187.42"', b'"price": 0.1')
    found = (await normaliser.normalise("equities", body)).trade
    assert (str(found["quantity"]), str(found["price"])) == ("3.0000000000", "0.1000000000")
    assert found["settlement_amount"] == Decimal("-0.3")  # 3 * 0.1 as floats is 0.30000000000000004
    body = example("fx").replace(b'"1000000.00"', b"123456789012345678.0123456789")
    found = (await normaliser.normalise("fx", body)).trade
    assert str(found["quantity"]) == "123456789012345678.0123456789"


def test_a_float_is_read_through_its_shortest_text() -> None:
    assert to_decimal(1.08345, "rate") == Decimal("1.08345")  # not 1.0834499999999999...
    assert to_decimal(0.1, "rate") == Decimal("0.1")
    for bad in (float("nan"), float("inf")):
        with pytest.raises(RejectedTrade) as caught:
            to_decimal(bad, "rate")
        assert caught.value.reason == "bad_decimal"


async def test_an_avro_rate_as_a_double_is_read_as_quoted(
    normaliser: Normaliser, registry: MemoryRegistry
) -> None:
    values = as_avro_values("fx", json.loads(example("fx"))) | {"rate": 0.9213}
    found = (await normaliser.normalise("fx", await avro_message(registry, "fx", values))).trade
    assert found["price"] == Decimal("0.9213")


async def test_a_trade_time_is_kept_to_the_millisecond_in_utc(normaliser: Normaliser) -> None:
    body = example("fx").replace(b"09:15:30.250Z", b"11:15:30.250999+02:00")
    found = (await normaliser.normalise("fx", body)).trade
    assert found["trade_time"] == datetime(2026, 3, 2, 9, 15, 30, 250_000, tzinfo=UTC)


async def test_a_newer_writer_schema_is_read_as_the_declared_one(
    normaliser: Normaliser, registry: MemoryRegistry
) -> None:
    newer = source_schema("fx")
    newer["fields"].append({"name": "venue", "type": ["null", "string"], "default": None})
    schema_id = await registry.register("trades.fx-value", newer)
    values = as_avro_values("fx", json.loads(example("fx"))) | {"venue": "EBS"}
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(newer), values)
    found = await normaliser.normalise("fx", frame(schema_id, out.getvalue()))
    assert found.trade == EXPECTED["fx"]


async def test_an_unknown_source_is_a_programming_error(normaliser: Normaliser) -> None:
    with pytest.raises(ValueError, match="unknown trade source"):
        await normaliser.normalise("crypto", example("fx"))


# Rejections.


def json_with(source: str, **changes: Any) -> bytes:
    message = json.loads(example(source)) | changes
    return json.dumps({k: v for k, v in message.items() if v != "<absent>"}).encode()


JSON_REJECTIONS = [
    ("fx", b"{not json", "not_json"),
    ("fx", b"\xff\xfe{}", "not_json"),
    ("fx", b'{"amount": NaN}', "not_json"),
    ("fx", b"", "not_json"),
    ("fx", b"[1, 2]", "not_object"),
    ("fx", b"\x00\x00\x01", "bad_wire_format"),
    ("fx", b"\x01\x00\x00\x00\x01\x02", "bad_wire_format"),
    ("fx", json_with("fx", deal_id="<absent>"), "missing_field"),
    ("fx", json_with("fx", book=None), "missing_field"),
    ("bonds", json_with("bonds", isin=None, cusip=None), "missing_field"),
    ("fx", json_with("fx", desk=5), "bad_field"),
    ("fx", json_with("fx", desk=" "), "bad_field"),
    ("fx", json_with("fx", amount="1,000.00"), "bad_decimal"),
    ("fx", json_with("fx", amount="1e5"), "bad_decimal"),
    ("fx", json_with("fx", amount="-5"), "bad_decimal"),
    ("fx", json_with("fx", amount=True), "bad_decimal"),
    ("fx", json_with("fx", amount="0.00000000001"), "bad_decimal"),
    ("fx", json_with("fx", amount="1" * 29), "bad_decimal"),
    ("fx", json_with("fx", value_date="2026-02-30"), "bad_date"),
    ("fx", json_with("fx", value_date="04/03/2026"), "bad_date"),
    ("fx", json_with("fx", value_date="20260304"), "bad_date"),
    ("fx", json_with("fx", trade_time="2026-03-02T09:15:30"), "bad_timestamp"),
    ("fx", json_with("fx", trade_time="yesterday"), "bad_timestamp"),
    ("fx", json_with("fx", currency_pair="EURUSD"), "bad_currency"),
    ("fx", json_with("fx", currency_pair="eur/usd"), "bad_currency"),
    ("repos", json_with("repos", currency="EURO"), "bad_currency"),
    ("fx", json_with("fx", direction="HOLD"), "unknown_side"),
    ("fx", json_with("fx", direction="buy"), "unknown_side"),
    ("equities", json_with("equities", side="BUY"), "unknown_side"),
    ("interbank", json_with("interbank", kind=["loan"]), "unknown_side"),
]


@pytest.mark.parametrize(("source", "body", "reason"), JSON_REJECTIONS)
async def test_a_message_that_cannot_be_a_trade_is_rejected_with_its_reason(
    normaliser: Normaliser, source: str, body: bytes, reason: str
) -> None:
    with pytest.raises(RejectedTrade) as caught:
        await normaliser.normalise(source, body)
    assert caught.value.reason == reason
    assert caught.value.detail


async def reason_of(normaliser: Normaliser, source: str, body: bytes) -> str:
    with pytest.raises(RejectedTrade) as caught:
        await normaliser.normalise(source, body)
    return caught.value.reason


async def test_avro_rejections(normaliser: Normaliser, registry: MemoryRegistry) -> None:
    values = as_avro_values("fx", json.loads(example("fx")))
    good = await avro_message(registry, "fx", values)
    assert await reason_of(normaliser, "fx", frame(999, good[5:])) == "unknown_schema_id"
    assert await reason_of(normaliser, "fx", good[:-3]) == "not_avro"
    assert await reason_of(normaliser, "fx", good + b"\x00") == "not_avro"
    bond = await avro_message(
        registry, "bonds", as_avro_values("bonds", json.loads(example("bonds")))
    )
    assert await reason_of(normaliser, "fx", bond) == "schema_mismatch"
    nan = await avro_message(registry, "fx", values | {"rate": float("nan")})
    assert await reason_of(normaliser, "fx", nan) == "bad_decimal"
    late = await avro_message(registry, "fx", values | {"direction": "SELL", "amount": Decimal(0)})
    assert (await normaliser.normalise("fx", late)).trade["quantity"] == 0


async def test_a_mapping_that_breaks_the_canonical_schema_is_rejected(
    normaliser: Normaliser, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = SourceMapping("fx", "fx", {**MAPPINGS["fx"].fields, "instrument": constant(1.5)})
    monkeypatch.setitem(MAPPINGS, "fx", broken)
    assert await reason_of(normaliser, "fx", example("fx")) == "invalid_trade"


async def test_without_a_stream_to_write_on_no_canonical_message_is_made() -> None:
    registry = MemoryRegistry()
    encoding = await Normaliser.start(registry)
    silent = await Normaliser.start(registry, encode=False)
    made = await encoding.normalise("fx", example("fx"))
    bare = await silent.normalise("fx", example("fx"))
    assert bare.trade == made.trade and bare.body == b"" and made.body
