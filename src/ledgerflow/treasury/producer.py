"""The example producer: realistic trades of every source onto ``trades.<source>``, as JSON
or as Avro in the Confluent wire format, with a share of malformed messages so the
rejection path is exercised too.

The trades themselves come from ``example_trades``. Everything random is drawn from the
one generator seeded by the caller, in one order, so a seed and a count give the same
messages (``example_messages``) whatever the rate and the batching; only the run id, part
of every trade id, tells two runs apart.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from itertools import islice
from typing import Any, Literal

import fastavro
import structlog
from fastavro.validation import ValidationError, validate

from ledgerflow.core.clock import Clock, SystemClock
from ledgerflow.treasury.example_trades import EXAMPLE_DAY, make_trade
from ledgerflow.treasury.normalise import MAGIC_BYTE, frame, source_schema, unframe
from ledgerflow.treasury.registry import SchemaRegistry
from ledgerflow.treasury.streams import StreamSink

__all__ = [
    "KINDS",
    "MALFORMED_REASONS",
    "SOURCES",
    "Outgoing",
    "ProduceReport",
    "default_stream",
    "encode",
    "example_messages",
    "make_trade",
    "malformed",
    "produce",
    "register_sources",
    "subject_of",
]

log = structlog.get_logger(__name__)

SOURCES = ("fx", "repos", "bonds", "equities", "interbank")
Kind = Literal["json", "avro", "bad"]
KINDS: tuple[Kind, ...] = ("json", "avro", "bad")
# How the messages spread over the sources: the FX and equity desks trade most often.
SOURCE_WEIGHTS = {"fx": 30, "repos": 15, "bonds": 15, "equities": 30, "interbank": 10}
BATCH = 100  # messages per confirmed send, per stream
TICK = 0.25  # seconds between sends when paced
MAX_LAG = 1.0  # seconds behind the pace after which it starts afresh rather than burst


def subject_of(source: str) -> str:
    """The registry subject of a source's schema (Confluent's TopicNameStrategy)."""
    return f"trades.{source}-value"


def default_stream(source: str) -> str:
    """The stream a source's trades go to."""
    return f"trades.{source}"


# Encoding.


@cache
def _parsed(source: str) -> Any:
    return fastavro.parse_schema(source_schema(source))


def _avro_value(value: Any, declared: Any) -> Any:
    """A JSON value as the Avro type ``declared`` (the non-null branch of a union) holds it."""
    if value is None:
        return None
    if isinstance(declared, list):
        declared = next(branch for branch in declared if branch != "null")
    logical = declared.get("logicalType") if isinstance(declared, dict) else None
    if logical == "decimal":
        # A JSON number is a float made from a short decimal: its repr is that decimal.
        return Decimal(repr(value) if isinstance(value, float) else value)
    if logical == "date":
        return date.fromisoformat(value)
    if logical == "timestamp-millis":
        return datetime.fromisoformat(value)
    if declared in ("long", "int"):
        return int(value)
    if declared == "double":
        return float(value)
    return value


def avro_values(source: str, message: Mapping[str, Any]) -> dict[str, Any]:
    """A source's JSON object as the values of its Avro record (ValueError for a field the
    schema does not have)."""
    fields = source_schema(source)["fields"]
    unknown = set(message) - {f["name"] for f in fields}
    if unknown:
        raise ValueError(f"{source}: fields not in the source schema: {sorted(unknown)}")
    return {f["name"]: _avro_value(message.get(f["name"]), f["type"]) for f in fields}


def encode(source: str, message: Mapping[str, Any], *, avro_schema_id: int | None) -> bytes:
    """``message`` of ``source`` as JSON (UTF-8) when ``avro_schema_id`` is None, else as
    Avro with the source's schema in the Confluent wire format (ValueError when it does not
    fit the schema)."""
    if avro_schema_id is None:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    values = avro_values(source, message)
    out = io.BytesIO()
    try:
        validate(values, _parsed(source), raise_errors=True)
        fastavro.schemaless_writer(out, _parsed(source), values)
    except (ValidationError, ValueError) as exc:
        raise ValueError(f"{source}: the message does not fit its Avro schema: {exc}") from exc
    return frame(avro_schema_id, out.getvalue())


# Malformed messages: each made to be rejected for one reason (normalise.RejectedTrade).

# Per source: its side field, a decimal field, a date field and its currency field.
_FIELDS = {
    "fx": ("direction", "amount", "value_date", "currency_pair"),
    "repos": ("direction", "cash_amount", "maturity_date", "currency"),
    "bonds": ("side", "consideration", "settlement_date", "currency"),
    "equities": ("side", "price", "settlement_date", "currency"),
    "interbank": ("kind", "principal", "maturity_date", "currency"),
}
_BAD_SIDES = ("buy", "Sell", "BOT", "SLD", "CANCEL")
_BAD_DECIMALS = ("1,000,000.00", "12.5.0", "1e6", "NaN", "-250000.00", "", "n/a")
_BAD_DATES = ("02/03/2026", "2026-02-30", "20260302", "2026-3-4", "T+2")
_BAD_CURRENCIES = ("EURO", "eur", "US$", "EURUSD", "EUR-USD")
_UNKNOWN_IDS = (999_999_999, 2**31 - 1)


def _with(message: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    return {**message, field: value}


def _not_json(source: str, message: dict[str, Any], rng: random.Random) -> bytes:
    text = encode(source, message, avro_schema_id=None)
    return rng.choice(
        (
            text[: rng.randrange(1, len(text) - 1)],  # cut short
            ",".join(str(v) for v in message.values()).encode(),  # a CSV line
            json.dumps(_with(message, "desk", "trésorerie"), ensure_ascii=False).encode("latin-1"),
        )
    )


def _missing_field(message: dict[str, Any], rng: random.Random, source: str) -> dict[str, Any]:
    side, amount, day, _currency = _FIELDS[source]
    field = rng.choice((next(iter(message)), "desk", "book", side, amount, day, "trade_time"))
    if rng.random() < 0.5:
        return _with(message, field, None)
    return {k: v for k, v in message.items() if k != field}


def _corrupt_json(reason: str, source: str, message: dict[str, Any], rng: random.Random) -> bytes:
    side, amount, day, currency = _FIELDS[source]
    corrupted: dict[str, Any] | list[dict[str, Any]]
    match reason:
        case "not_object":  # a batch of one, as a JSON array
            corrupted = [message]
        case "missing_field":
            corrupted = _missing_field(message, rng, source)
        case "bad_decimal":
            corrupted = _with(message, amount, rng.choice(_BAD_DECIMALS))
        case "unknown_side":
            corrupted = _with(message, side, rng.choice(_BAD_SIDES))
        case "bad_date":
            corrupted = _with(message, day, rng.choice(_BAD_DATES))
        case "bad_timestamp":  # local time without its offset, or epoch milliseconds
            naive = message["trade_time"][:19]
            corrupted = _with(message, "trade_time", rng.choice((naive, 1772443530250)))
        case "bad_currency":
            corrupted = _with(message, currency, rng.choice(_BAD_CURRENCIES))
        case _:
            raise ValueError(f"no JSON corruption for {reason!r}")
    return json.dumps(corrupted, separators=(",", ":")).encode()


def _corrupt_avro(
    reason: str, source: str, message: dict[str, Any], rng: random.Random, schema_id: int | None
) -> bytes:
    some_id = 1 if schema_id is None else schema_id
    _id, body = unframe(encode(source, message, avro_schema_id=some_id))
    if reason == "bad_wire_format":  # another magic byte
        return bytes([MAGIC_BYTE + 1]) + frame(some_id, body)[1:]
    if reason == "unknown_schema_id":
        return frame(rng.choice(_UNKNOWN_IDS), body)
    assert schema_id is not None  # "not_avro" is offered only with a schema id
    return frame(schema_id, body[: rng.randrange(1, len(body))])  # cut short


MALFORMED_REASONS = (
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
    "not_avro",
)
_AVRO_REASONS = ("bad_wire_format", "unknown_schema_id", "not_avro")


def malformed(
    source: str,
    rng: random.Random,
    n: int,
    *,
    avro_schema_id: int | None = None,
    run_id: str = "example",
    trading_day: date = EXAMPLE_DAY,
) -> bytes:
    """The ``n``-th trade of ``source`` gone wrong in one of several ways (``MALFORMED_REASONS``
    names the normaliser's reasons for them); a body cut short in Avro (``not_avro``) only
    when the source's registered ``avro_schema_id`` is given."""
    message = make_trade(source, rng, n, run_id=run_id, trading_day=trading_day)
    reasons = MALFORMED_REASONS if avro_schema_id is not None else MALFORMED_REASONS[:-1]
    reason = rng.choice(reasons)
    if reason == "not_json":
        return _not_json(source, message, rng)
    if reason in _AVRO_REASONS:
        return _corrupt_avro(reason, source, message, rng, avro_schema_id)
    return _corrupt_json(reason, source, message, rng)


# Producing.


@dataclass(frozen=True)
class Outgoing:
    """One message to send: its source, its kind and its bytes."""

    source: str
    kind: Kind
    body: bytes


def example_messages(
    rng: random.Random,
    schema_ids: Mapping[str, int],
    *,
    bad_ratio: float,
    avro_ratio: float,
    run_id: str,
    sources: Iterable[str] = SOURCES,
    trading_day: date = EXAMPLE_DAY,
) -> Iterator[Outgoing]:
    """Messages without end, spread over ``sources`` (by ``SOURCE_WEIGHTS``): a share
    ``bad_ratio`` malformed, of the others a share ``avro_ratio`` in Avro with the source's
    schema id in ``schema_ids``, the rest JSON."""
    chosen = tuple(sources)
    weights = [SOURCE_WEIGHTS[s] for s in chosen]
    numbers = dict.fromkeys(chosen, 0)
    while True:
        source = rng.choices(chosen, weights)[0]
        n, numbers[source] = numbers[source], numbers[source] + 1
        if rng.random() < bad_ratio:
            body = malformed(
                source,
                rng,
                n,
                avro_schema_id=schema_ids[source],
                run_id=run_id,
                trading_day=trading_day,
            )
            yield Outgoing(source, "bad", body)
            continue
        kind: Kind = "avro" if rng.random() < avro_ratio else "json"
        message = make_trade(source, rng, n, run_id=run_id, trading_day=trading_day)
        schema_id = schema_ids[source] if kind == "avro" else None
        yield Outgoing(source, kind, encode(source, message, avro_schema_id=schema_id))


@dataclass(frozen=True)
class ProduceReport:
    """What a run sent (every message confirmed by the broker): counts per source and kind."""

    seed: int
    run_id: str
    schema_ids: Mapping[str, int]
    counts: Mapping[str, Mapping[Kind, int]]

    @property
    def per_source(self) -> dict[str, int]:
        """Messages sent per source."""
        return {source: sum(kinds.values()) for source, kinds in self.counts.items()}

    @property
    def per_kind(self) -> dict[Kind, int]:
        """Messages sent per kind: json, avro, bad."""
        return {kind: sum(kinds[kind] for kinds in self.counts.values()) for kind in KINDS}

    @property
    def total(self) -> int:
        """Messages sent."""
        return sum(self.per_source.values())


async def register_sources(registry: SchemaRegistry, sources: Iterable[str]) -> dict[str, int]:
    """Register each source's schema under its subject (as its producers do); their ids."""
    return {s: await registry.register(subject_of(s), source_schema(s)) for s in sources}


async def _send(
    streams: StreamSink,
    messages: list[Outgoing],
    stream_of: Callable[[str], str],
    batch: int,
) -> None:
    """Each stream's messages in order, in batches of ``batch``; the streams concurrently."""
    by_stream: dict[str, list[bytes]] = {}
    for message in messages:
        by_stream.setdefault(stream_of(message.source), []).append(message.body)

    async def send(stream: str, bodies: list[bytes]) -> None:
        for start in range(0, len(bodies), batch):
            await streams.send(stream, bodies[start : start + batch])

    async with asyncio.TaskGroup() as group:
        for stream, bodies in by_stream.items():
            group.create_task(send(stream, bodies), name=f"send {stream}")


def _check(
    count: int | None,
    rate: float | None,
    bad_ratio: float,
    avro_ratio: float,
    sources: tuple[str, ...],
    batch: int,
) -> None:
    if count is not None and count < 0:
        raise ValueError(f"count must not be negative: {count}")
    if rate is not None and not rate > 0:
        raise ValueError(f"rate must be positive: {rate}")
    for name, ratio in (("bad_ratio", bad_ratio), ("avro_ratio", avro_ratio)):
        if not 0 <= ratio <= 1:
            raise ValueError(f"{name} must be between 0 and 1: {ratio}")
    unknown = [s for s in sources if s not in SOURCES]
    if not sources or unknown or len(set(sources)) < len(sources):
        raise ValueError(f"sources must be distinct, among {SOURCES}: {sources}")
    if batch < 1:
        raise ValueError(f"batch must be positive: {batch}")


async def produce(
    streams: StreamSink,
    registry: SchemaRegistry,
    *,
    count: int | None,
    rate: float | None,
    bad_ratio: float,
    avro_ratio: float,
    seed: int,
    run_id: str,
    sources: Iterable[str] = SOURCES,
    stream_of: Callable[[str], str] = default_stream,
    trading_day: date = EXAMPLE_DAY,
    batch: int = BATCH,
    clock: Clock | None = None,
    stop: asyncio.Event | None = None,
) -> ProduceReport:
    """Send ``count`` example messages (None: until ``stop`` is set or the task cancelled)
    to the streams of ``sources``, at ``rate`` messages a second (None: as fast as the
    broker confirms batches of ``batch`` per stream); a report of what was confirmed.

    Registers the sources' schemas under their subjects first (for the wire format's ids)
    and creates the streams. The messages are ``example_messages`` of ``seed``.
    """
    chosen = tuple(sources)
    _check(count, rate, bad_ratio, avro_ratio, chosen, batch)
    clock = clock or SystemClock()
    schema_ids = await register_sources(registry, chosen)
    for source in chosen:
        await streams.create(stream_of(source))
    outgoing = example_messages(
        random.Random(seed),
        schema_ids,
        bad_ratio=bad_ratio,
        avro_ratio=avro_ratio,
        run_id=run_id,
        sources=chosen,
        trading_day=trading_day,
    )
    most = batch * len(chosen)
    chunk = most if rate is None else max(1, min(most, round(rate * TICK)))
    log.info("treasury.produce.started", seed=seed, run_id=run_id, schema_ids=schema_ids)
    sent: Counter[tuple[str, Kind]] = Counter()
    start, paced = clock.wall(), 0  # the pace: ``paced`` messages due since ``start``

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    try:
        while (count is None or sent.total() < count) and not stopped():
            if rate is not None:
                due = start + paced / rate
                if clock.wall() - due > MAX_LAG:  # a stall: no burst to catch up
                    start, paced, due = clock.wall(), 0, clock.wall()
                while (now := clock.wall()) < due and not stopped():
                    await clock.sleep(min(due - now, 0.5))
                if stopped():
                    break
            size = chunk if count is None else min(chunk, count - sent.total())
            messages = list(islice(outgoing, size))
            await _send(streams, messages, stream_of, batch)
            sent.update((m.source, m.kind) for m in messages)
            paced += size
    finally:
        log.info("treasury.produce.stopped", run_id=run_id, sent=sent.total())
    counts = {s: {kind: sent[s, kind] for kind in KINDS} for s in chosen}
    return ProduceReport(seed, run_id, schema_ids, counts)
