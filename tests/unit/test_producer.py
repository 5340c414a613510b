"""The example producer: its trades of every source normalise, as JSON and as Avro, into the
same canonical trade and follow the desks' conventions; its malformed messages are all
rejected, for many reasons; a seed gives the same bytes; ``produce`` batches, paces and
reports. Every randomised test names its seed when it fails."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any

import pytest

from ledgerflow.testing import FakeClock, MemoryRegistry
from ledgerflow.treasury.example_trades import BONDS, EXAMPLE_DAY, SHARES, add_business_days
from ledgerflow.treasury.normalise import Normaliser, RejectedTrade, source_schema
from ledgerflow.treasury.producer import (
    MALFORMED_REASONS,
    SOURCES,
    TICK,
    ProduceReport,
    default_stream,
    encode,
    example_messages,
    make_trade,
    malformed,
    produce,
    register_sources,
    subject_of,
)

SEED = 20260302
RUN = "run-a"
# The fields each source sends cash or quantities in, with the most decimal places its
# desk uses (JPY cash has none, which is fewer).
MONEY_FIELDS = {
    "fx": {"amount": 2, "counter_amount": 2},
    "repos": {"collateral_nominal": 0, "cash_amount": 2},
    "bonds": {"nominal": 0, "consideration": 2},
    "equities": {"price": 2},
    "interbank": {"principal": 2},
}


@pytest.fixture
async def registry() -> MemoryRegistry:
    return MemoryRegistry()


@pytest.fixture
async def schema_ids(registry: MemoryRegistry) -> dict[str, int]:
    return await register_sources(registry, SOURCES)


@pytest.fixture
async def normaliser(registry: MemoryRegistry, schema_ids: dict[str, int]) -> Normaliser:
    return await Normaliser.start(registry)


def trades(source: str, count: int, seed: int = SEED) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [make_trade(source, rng, n, run_id=RUN) for n in range(count)]


@pytest.mark.parametrize("source", SOURCES)
async def test_every_trade_normalises_alike_as_json_and_as_avro(
    normaliser: Normaliser, schema_ids: dict[str, int], source: str
) -> None:
    for message in trades(source, 80):
        as_json = await normaliser.normalise(source, encode(source, message, avro_schema_id=None))
        body = encode(source, message, avro_schema_id=schema_ids[source])
        assert body[0] == 0 and int.from_bytes(body[1:5], "big") == schema_ids[source]
        as_avro = await normaliser.normalise(source, body)
        assert as_json.trade == as_avro.trade, f"seed {SEED}: {message}"
        assert as_json.trade["trade_id"].startswith(f"{RUN}-"), f"seed {SEED}"


async def canonical(normaliser: Normaliser, source: str, count: int) -> list[dict[str, Any]]:
    return [
        (await normaliser.normalise(source, encode(source, m, avro_schema_id=None))).trade
        for m in trades(source, count)
    ]


@pytest.mark.parametrize("source", SOURCES)
async def test_trades_fall_on_business_days_within_their_terms(
    normaliser: Normaliser, source: str
) -> None:
    for trade in await canonical(normaliser, source, 200):
        done = trade["trade_time"].date()
        settles, matures = trade["settlement_date"], trade["maturity_date"]
        why = f"seed {SEED}: {trade}"
        assert done == EXAMPLE_DAY, why
        assert settles >= done and settles.weekday() < 5, why
        if source == "fx":
            assert add_business_days(done, 2) <= settles <= done + timedelta(days=60), why
        if source in ("repos", "interbank"):
            assert matures is not None and matures.weekday() < 5, why
            assert 1 <= (matures - settles).days <= 90, why
        if source == "bonds":
            assert matures is not None and matures > settles + timedelta(days=365), why


@pytest.mark.parametrize("source", SOURCES)
async def test_amounts_prices_and_rates_are_plausible(normaliser: Normaliser, source: str) -> None:
    for trade in await canonical(normaliser, source, 200):
        why = f"seed {SEED}: {trade}"
        assert trade["quantity"] > 0, why
        paid = trade["settlement_amount"] < 0
        assert paid == (trade["side"] == "BUY"), why
        if trade["rate"] is not None:
            assert 0 <= trade["rate"] < 10, why  # per cent: repo and deposit rates, coupons
        if source == "bonds":
            assert 80 < trade["price"] < 110, why
            # the clean price plus accrued interest, on the nominal
            per_nominal = abs(trade["settlement_amount"]) / trade["quantity"]
            assert Decimal("0.8") < per_nominal < Decimal("1.15"), why
        if source == "fx":
            cross = trade["quantity"] * trade["price"]
            assert abs(abs(trade["settlement_amount"]) - cross) <= 1, why


@pytest.mark.parametrize("source", SOURCES)
def test_cash_and_quantities_are_exact_decimal_strings_to_the_cent(source: str) -> None:
    for message in trades(source, 200):
        for field, places in MONEY_FIELDS[source].items():
            text = message[field]
            assert isinstance(text, str), f"seed {SEED}: {field}={text!r}"
            exponent = Decimal(text).as_tuple().exponent
            assert isinstance(exponent, int) and -exponent <= places, f"seed {SEED}: {text}"
        if source == "equities":
            assert isinstance(message["shares"], int) and message["shares"] > 0


def test_rates_and_prices_sent_as_json_numbers_read_back_as_quoted() -> None:
    for message in trades("fx", 100) + trades("bonds", 100):
        for field in ("rate", "clean_price", "coupon", "yield"):
            if field in message:
                text = json.dumps(message[field])
                assert Decimal(text) == Decimal(repr(message[field])), f"seed {SEED}: {text}"
                assert len(Decimal(text).as_tuple().digits) <= 10, f"seed {SEED}: {text}"


def test_every_source_uses_several_instruments_books_and_both_sides() -> None:
    side_fields = {
        "fx": "direction",
        "repos": "direction",
        "bonds": "side",
        "equities": "side",
        "interbank": "kind",
    }
    for source in SOURCES:
        messages = trades(source, 300)
        assert len({m["book"] for m in messages}) >= 3, source
        assert len({m[side_fields[source]] for m in messages}) == 2, source
    bonds = trades("bonds", 300)
    assert any(m["cusip"] and not m["isin"] for m in bonds)
    assert any(m["isin"] and not m["cusip"] for m in bonds)
    shares = trades("equities", 300)
    assert any(m["ticker"] and not m["isin"] for m in shares)
    assert any(m["isin"] and not m["ticker"] for m in shares)
    assert {m["desk"] for m in trades("fx", 300)} == {"fx-spot", "fx-forwards"}


def _alphanumeric(text: str) -> list[int]:
    return [int(c) if c.isdigit() else ord(c) - ord("A") + 10 for c in text]


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, digit in enumerate(int(d) for d in reversed(digits)):
        doubled = digit * 2 if position % 2 else digit
        total += doubled // 10 + doubled % 10
    return total % 10 == 0


def isin_valid(isin: str) -> bool:
    return len(isin) == 12 and luhn_valid("".join(str(v) for v in _alphanumeric(isin)))


def cusip_valid(cusip: str) -> bool:
    total = 0
    for position, value in enumerate(_alphanumeric(cusip[:8])):
        doubled = value * 2 if position % 2 else value
        total += doubled // 10 + doubled % 10
    return len(cusip) == 9 and (10 - total % 10) % 10 == int(cusip[8])


def test_the_identifiers_have_valid_check_digits() -> None:
    assert isin_valid("US0378331005") and not isin_valid("US0378331006")  # the oracle
    assert cusip_valid("037833100") and not cusip_valid("037833101")
    for isin in [b.isin for b in BONDS] + [s.isin for s in SHARES]:
        assert isin_valid(isin), isin
    for bond in BONDS:
        if bond.cusip is not None:
            assert cusip_valid(bond.cusip) and bond.isin == f"US{bond.cusip}{bond.isin[-1]}"


def test_trade_ids_are_unique_per_source_number_and_run() -> None:
    rng = random.Random(SEED)
    ids = [
        make_trade(source, rng, n, run_id=run)
        for run in ("run-a", "run-b")
        for source in SOURCES
        for n in range(50)
    ]
    id_fields = [next(iter(message.values())) for message in ids]
    assert len(set(id_fields)) == len(id_fields) == 500


def test_a_weekend_trading_day_trades_on_the_monday() -> None:
    saturday = date(2026, 3, 7)
    message = make_trade("fx", random.Random(SEED), 0, trading_day=saturday)
    assert message["trade_time"].startswith("2026-03-09T")


def test_an_unknown_source_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown trade source"):
        make_trade("swaps", random.Random(SEED), 0)


def test_json_is_the_message_as_utf8_and_avro_refuses_what_does_not_fit() -> None:
    message = trades("fx", 1)[0]
    assert json.loads(encode("fx", message, avro_schema_id=None).decode("utf-8")) == message
    with pytest.raises(ValueError, match="does not fit"):
        encode("fx", message | {"amount": "1.123456"}, avro_schema_id=1)  # scale 4
    with pytest.raises(ValueError, match="not in the source schema"):
        encode("fx", message | {"venue": "EBS"}, avro_schema_id=1)
    assert {f["name"] for f in source_schema("fx")["fields"]} == set(message)


@pytest.mark.parametrize("with_schema_id", [True, False])
async def test_malformed_messages_are_all_rejected_for_many_reasons(
    normaliser: Normaliser, schema_ids: dict[str, int], with_schema_id: bool
) -> None:
    reasons: Counter[str] = Counter()
    rng = random.Random(SEED)
    for source in SOURCES:
        schema_id = schema_ids[source] if with_schema_id else None
        for n in range(150):
            body = malformed(source, rng, n, avro_schema_id=schema_id)
            with pytest.raises(RejectedTrade) as rejected:
                await normaliser.normalise(source, body)
            reasons[rejected.value.reason] += 1
    expected = {
        "not_json",
        "not_object",
        "missing_field",
        "bad_decimal",
        "unknown_side",
        "bad_date",
        "bad_timestamp",
        "bad_currency",
        "bad_wire_format",
        "unknown_schema_id",
        *(["not_avro"] if with_schema_id else []),
    }
    assert expected == set(MALFORMED_REASONS) - (set() if with_schema_id else {"not_avro"})
    assert set(reasons) == expected, f"seed {SEED}: {reasons}"
    assert min(reasons.values()) >= 20, f"seed {SEED}: {reasons}"


def bodies(seed: int, run_id: str, schema_ids: dict[str, int], count: int = 400) -> list[bytes]:
    messages = example_messages(
        random.Random(seed), schema_ids, bad_ratio=0.1, avro_ratio=0.5, run_id=run_id
    )
    return [m.body for m in islice(messages, count)]


async def test_a_seed_gives_the_same_bytes_but_for_the_run_id(schema_ids: dict[str, int]) -> None:
    first = bodies(SEED, "run-a", schema_ids)
    assert bodies(SEED, "run-a", schema_ids) == first
    assert bodies(SEED, "run-b", schema_ids) == [b.replace(b"run-a", b"run-b") for b in first]
    assert bodies(SEED + 1, "run-a", schema_ids) != first
    assert sum(b"run-a" in b for b in first) > 350  # the run id is in (nearly) every one


class RecordingSink:
    """A StreamSink that keeps what it is sent; it sets ``stop`` after ``stop_after`` sends."""

    def __init__(self, stop: asyncio.Event | None = None, stop_after: int = 0) -> None:
        self.created: list[str] = []
        self.sent: list[tuple[str, list[bytes]]] = []
        self.stop, self.stop_after = stop, stop_after

    async def create(self, stream: str) -> None:
        self.created.append(stream)

    async def send(self, stream: str, bodies: list[bytes]) -> None:
        assert stream in self.created
        self.sent.append((stream, list(bodies)))
        if self.stop is not None and len(self.sent) >= self.stop_after:
            self.stop.set()

    async def close(self) -> None:
        pass

    def bodies(self, stream: str) -> list[bytes]:
        return [body for s, bodies in self.sent if s == stream for body in bodies]


async def test_produce_sends_the_seeds_messages_in_batches_and_reports_them(
    registry: MemoryRegistry,
) -> None:
    sink = RecordingSink()
    report = await produce(
        sink,
        registry,
        count=1000,
        rate=None,
        bad_ratio=0.1,
        avro_ratio=0.5,
        seed=SEED,
        run_id=RUN,
    )
    assert sorted(sink.created) == sorted(f"trades.{s}" for s in SOURCES)
    for source in SOURCES:
        version = await registry.latest(subject_of(source))
        assert report.schema_ids[source] == version.id
    expected = list(
        islice(
            example_messages(
                random.Random(SEED), report.schema_ids, bad_ratio=0.1, avro_ratio=0.5, run_id=RUN
            ),
            1000,
        )
    )
    for source in SOURCES:
        assert sink.bodies(default_stream(source)) == [
            m.body for m in expected if m.source == source
        ]
        kinds = Counter(m.kind for m in expected if m.source == source)
        assert report.counts[source] == {k: kinds[k] for k in ("json", "avro", "bad")}
    assert all(len(bodies) <= 100 for _, bodies in sink.sent)
    assert report.total == 1000 and sum(report.per_source.values()) == 1000
    assert 50 <= report.per_kind["bad"] <= 150, f"seed {SEED}: {report}"
    assert 350 <= report.per_kind["avro"] <= 550, f"seed {SEED}: {report}"
    assert min(report.per_source.values()) >= 50, f"seed {SEED}: {report}"


async def test_produce_paces_to_the_rate(registry: MemoryRegistry) -> None:
    clock = FakeClock(1_772_000_000.0)
    sink = RecordingSink()
    rate, count = 20.0, 40
    report = await produce(
        sink,
        registry,
        count=count,
        rate=rate,
        bad_ratio=0,
        avro_ratio=0,
        seed=SEED,
        run_id=RUN,
        clock=clock,
    )
    chunk = round(rate * TICK)
    # The first chunk goes at once, each next one when it is due.
    assert clock.slept == pytest.approx((count - chunk) / rate)
    assert report.total == count and report.per_kind == {"json": count, "avro": 0, "bad": 0}


async def test_produce_without_a_count_runs_until_stopped(registry: MemoryRegistry) -> None:
    stop = asyncio.Event()
    sink = RecordingSink(stop, stop_after=3)
    token = "lf_test_streams"
    report = await produce(
        sink,
        registry,
        count=None,
        rate=None,
        bad_ratio=0.05,
        avro_ratio=0.5,
        seed=SEED,
        run_id=RUN,
        sources=("fx", "bonds"),
        stream_of=lambda source: f"{token}.{source}",
        stop=stop,
    )
    assert sorted(sink.created) == [f"{token}.bonds", f"{token}.fx"]
    assert set(report.counts) == {"fx", "bonds"}
    assert report.total == sum(len(bodies) for _, bodies in sink.sent) > 0
    assert len(sink.sent) >= 3


@pytest.mark.parametrize(
    "changes",
    [
        {"count": -1},
        {"rate": 0.0},
        {"bad_ratio": 1.5},
        {"avro_ratio": -0.1},
        {"sources": ("fx", "swaps")},
        {"sources": ("fx", "fx")},
        {"sources": ()},
    ],
)
async def test_produce_refuses_bad_arguments(
    registry: MemoryRegistry, changes: dict[str, Any]
) -> None:
    arguments: dict[str, Any] = {
        "count": 10,
        "rate": None,
        "bad_ratio": 0.1,
        "avro_ratio": 0.5,
        "seed": SEED,
        "run_id": RUN,
    }
    with pytest.raises(ValueError):
        await produce(RecordingSink(), registry, **(arguments | changes))


def test_the_report_sums_its_counts() -> None:
    report = ProduceReport(
        1,
        RUN,
        {"fx": 1},
        {"fx": {"json": 2, "avro": 3, "bad": 1}, "bonds": {"json": 1, "avro": 0, "bad": 0}},
    )
    assert report.per_source == {"fx": 6, "bonds": 1}
    assert report.per_kind == {"json": 3, "avro": 3, "bad": 1}
    assert report.total == 7
