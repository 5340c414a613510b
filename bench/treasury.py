"""``make bench`` (treasury): trades per second from RabbitMQ streams into positions, against
the broker's ceiling and the normaliser alone, measured in the same run.

The trades come from this module's generator, drawn from one seeded generator (the seed is
printed and saved), every amount a Decimal:

    fx      ``--count`` FX trades (default 200,000) as the FX desk sends them (JSON), on
            one fresh stream
    mixed   ``--mixed`` trades of each of the five sources (default 10,000 each), on a
            fresh stream per source (a reader normalises one source's messages), each
            message JSON or Avro in the Confluent wire format at random, half and half,
            with the sources' schemas registered as their producers register them

Each scenario is measured ``--runs`` times (default 3) with each method, the methods'
order rotating every run so that drift on a shared machine hits them alike (about four
minutes in all on two CPUs):

    read            ``RabbitStreams.read`` of the streams end to end, doing nothing: the
                    broker's ceiling for this client
    normalise-only  the same reading, each message through ``Normaliser.normalise``; no
                    database but the schema store's first look-ups
    ingest-500      ``TreasuryIngest`` (one reader per stream, as the worker runs it) at
    ingest-2000     batch size 500 and 2,000, on a fresh database each run: from ``start``
                    to the commit that moves the stream's next offset in
                    ``ledgerflow.stream_offsets`` to its count (``on_batch``, read back);
                    the normalised trades are not sent on to ``trades.normalised`` (the
                    worker's ``on_batch`` does that, after the commit)

A method's rate is the median of its runs' rates; the ratios are of those medians. CPU
time per 1,000 trades is sampled from /proc (bench.lineage's sampler, over the window of
each run): RabbitMQ (every ``beam*`` process), PostgreSQL (the run's database's backends
and the server's writers) and this process (the benchmark, the client and ingest all run
in it); ``other`` is the rest of the machine's busy time, other people's work.

Every ingest run is checked exactly: each stream's next offset is its count; one trade
row per message, none rejected; and positions (book, instrument) and cash (book,
currency) equal the sums of the trades as drawn, folded here in Python from the
generator's Decimals (not from the normaliser's output).

Then one ingest of the first ``--profile-count`` FX trades (default 50,000, batch size
500) runs under cProfile, on a fresh database: the top 15 functions by cumulative and by
own time, and own time by area (``AREAS``), are printed and saved, to show what to
optimise; and the steps of ``normalise`` (parse, map, validate, encode) are timed apart
on the same trades, as cProfile cannot see inside fastavro's compiled functions.

    python -m bench.treasury [--count 200000] [--mixed 10000] [--runs 3]
                             [--batch-sizes 500 2000] [--profile-count 50000] [--seed N]

The streams and databases made are deleted; the figures go to
bench/results/treasury-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import logging
import os
import platform
import pstats
import random
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, LiteralString
from urllib.parse import urlsplit

import fastavro
import psycopg
import structlog
from fastavro.validation import validate
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from bench import lineage
from ledgerflow.db import migrate
from ledgerflow.db.connections import connect, keep_search_path_off_our_schema
from ledgerflow.settings import load_settings
from ledgerflow.treasury.ingest import SOURCES, TreasuryIngest
from ledgerflow.treasury.ledger import BatchResult
from ledgerflow.treasury.normalise import (
    MAPPINGS,
    Normaliser,
    RejectedTrade,
    canonical_schema,
    frame,
    parse_json,
    source_schema,
)
from ledgerflow.treasury.registry import PostgresSchemaStore
from ledgerflow.treasury.streams import RabbitStreams

RESULTS = Path(__file__).parent / "results"
SETTINGS = load_settings()
SEED = 20261130
SEND = 5_000  # messages per confirmed send
DAY = datetime(2026, 11, 30, tzinfo=UTC)  # the trades' trade date
TIMEOUT = 600.0  # seconds a run may take before it counts as stuck


# The trades: each source's message, and what it adds to positions and cash.


@dataclass(frozen=True)
class Drawn:
    """One trade as its desk sends it (Avro's Python values: Decimal, date, datetime), and
    what it moves: ``quantity`` of (book, instrument), ``cash`` of (book, currency), each
    signed (a buy adds the instrument and pays cash)."""

    message: dict[str, Any]
    book: str
    instrument: str
    quantity: Decimal
    currency: str
    cash: Decimal


FX_PAIRS = {"EUR/USD": 1.0834, "GBP/USD": 1.2712, "EUR/CHF": 0.9415, "USD/JPY": 151.23}
FX_BOOKS = ("FXLDN1", "FXLDN2", "FXNY1", "FXSG1")
ISINS = {  # collateral and bonds: ISIN → currency
    "DE0001102580": "EUR",
    "FR0013508470": "EUR",
    "GB00BM8Z2S21": "GBP",
    "US91282CJL54": "USD",
    "IT0005436693": "EUR",
}
CUSIPS = {"912828YK0": "USD", "91282CHC8": "USD"}
SHARES = {  # ISIN → (ticker, currency, MIC)
    "DE0007164600": ("SAP GY", "EUR", "XETR"),
    "FR0000120271": ("TTE FP", "EUR", "XPAR"),
    "GB0002374006": ("DGE LN", "GBP", "XLON"),
    "US0378331005": ("AAPL UW", "USD", "XNAS"),
}
BANKS = tuple(f"BANK-{n:04d}" for n in range(1, 41))
CENT = Decimal("0.01")


def _when(rng: random.Random) -> datetime:
    return DAY + timedelta(milliseconds=rng.randrange(86_400_000))


def _signed(side: str, quantity: Decimal, amount: Decimal) -> tuple[Decimal, Decimal]:
    """A BUY adds ``quantity`` and pays ``amount``; a SELL the reverse."""
    return (quantity, -amount) if side == "BUY" else (-quantity, amount)


def fx_trade(rng: random.Random, n: int) -> Drawn:
    """An FX spot deal: the base currency bought or sold against the quote currency."""
    pair = rng.choice(list(FX_PAIRS))
    base, quote = pair.split("/")
    side = rng.choice(("BUY", "SELL"))
    amount = Decimal(rng.randint(1_000_00, 5_000_000_00)) / 100
    places = 3 if quote == "JPY" else 5
    rate = round(FX_PAIRS[pair] * rng.uniform(0.99, 1.01), places)  # a double, as quoted
    counter = (amount * Decimal(str(rate))).quantize(CENT)
    book = rng.choice(FX_BOOKS)
    quantity, cash = _signed(side, amount, counter)
    message = {
        "deal_id": f"FX-{n:07d}",
        "desk": "fx-spot",
        "book": book,
        "currency_pair": pair,
        "direction": side,
        "amount": amount,
        "rate": rate,
        "counter_amount": counter,
        "trade_time": _when(rng),
        "value_date": DAY.date() + timedelta(days=2),
    }
    return Drawn(message, book, base, quantity, quote, cash)


def repo_trade(rng: random.Random, n: int) -> Drawn:
    """A repo (collateral delivered, cash received) or a reverse repo."""
    isin = rng.choice(list(ISINS))
    direction = rng.choice(("repo", "reverse_repo"))
    side = "SELL" if direction == "repo" else "BUY"
    nominal = Decimal(rng.randint(10, 500) * 100_000)
    cash_amount = (nominal * Decimal(rng.randint(9_400, 10_100)) / 10_000).quantize(CENT)
    book = rng.choice(("REPOEUR", "REPOGBP", "REPOUSD"))
    start = DAY.date() + timedelta(days=1)
    quantity, cash = _signed(side, nominal, cash_amount)
    message = {
        "repo_id": f"RP-{n:07d}",
        "desk": "repo",
        "book": book,
        "direction": direction,
        "collateral_isin": isin,
        "collateral_nominal": nominal,
        "cash_amount": cash_amount,
        "currency": ISINS[isin],
        "repo_rate": Decimal(rng.randint(150, 450)) / 100,
        "counterparty_type": rng.choice(("financial_institution", "central_bank", None)),
        "trade_time": _when(rng),
        "start_date": start,
        "maturity_date": start + timedelta(days=rng.choice((1, 7, 14, 30, 90))),
    }
    return Drawn(message, book, isin, quantity, ISINS[isin], cash)


def bond_trade(rng: random.Random, n: int) -> Drawn:
    """A bond bought or sold, named by its ISIN or (a US bond, sometimes) its CUSIP."""
    by_cusip = rng.random() < 0.2
    instrument = rng.choice(list(CUSIPS if by_cusip else ISINS))
    currency = (CUSIPS if by_cusip else ISINS)[instrument]
    side = rng.choice(("BUY", "SELL"))
    nominal = Decimal(rng.randint(1, 200) * 50_000)
    price = Decimal(rng.randint(90_000_000, 105_000_000)) / 1_000_000  # per 100
    accrued = Decimal(rng.randint(0, 2_000_000)) / 100
    consideration = (nominal * price / 100 + accrued).quantize(CENT)
    book = rng.choice(("GOVTS", "CREDIT"))
    quantity, cash = _signed(side, nominal, consideration)
    message = {
        "execution_id": f"BX-{n:07d}",
        "desk": "rates",
        "book": book,
        "isin": None if by_cusip else instrument,
        "cusip": instrument if by_cusip else None,
        "side": side,
        "nominal": nominal,
        "clean_price": price,
        "consideration": consideration,
        "currency": currency,
        "coupon": Decimal(rng.randint(0, 600)) / 100,
        "yield": Decimal(rng.randint(100, 600)) / 100,
        "trade_time": _when(rng),
        "settlement_date": DAY.date() + timedelta(days=1),
        "maturity_date": rng.choice((date(2031, 2, 15), date(2034, 11, 15), None)),
    }
    return Drawn(message, book, instrument, quantity, currency, cash)


def equity_trade(rng: random.Random, n: int) -> Drawn:
    """A share bought or sold, named by its ISIN or, when the ISIN is missing, its ticker."""
    isin = rng.choice(list(SHARES))
    ticker, currency, mic = SHARES[isin]
    with_isin = rng.random() < 0.8
    side = rng.choice(("BUY", "SELL"))
    shares = rng.randint(1, 20_000)
    price = Decimal(rng.randint(1_000, 50_000)) / 100
    book = rng.choice(("EQEU", "EQUS"))
    quantity, cash = _signed(side, Decimal(shares), shares * price)
    message = {
        "order_id": f"EQ-{n:07d}",
        "desk": "equity-cash",
        "book": book,
        "ticker": ticker,
        "isin": isin if with_isin else None,
        "side": side[0],
        "shares": shares,
        "price": price,
        "currency": currency,
        "exchange": mic,
        "trade_time": _when(rng),
        "settlement_date": DAY.date() + timedelta(days=2),
    }
    return Drawn(message, book, isin if with_isin else ticker, quantity, currency, cash)


def interbank_deal(rng: random.Random, n: int) -> Drawn:
    """An unsecured loan placed (a claim on the bank, cash paid) or deposit taken."""
    kind = rng.choice(("loan", "deposit"))
    bank = rng.choice(BANKS)
    currency = rng.choice(("EUR", "GBP", "USD"))
    principal = Decimal(rng.randint(1, 100) * 1_000_000)
    book = f"MM{currency}"
    quantity, cash = _signed("BUY" if kind == "loan" else "SELL", principal, principal)
    start = DAY.date()
    message = {
        "deal_ref": f"MM-{n:07d}",
        "desk": "money-markets",
        "book": book,
        "kind": kind,
        "counterparty": bank,
        "counterparty_type": "financial_institution",
        "principal": principal,
        "currency": currency,
        "rate": Decimal(rng.randint(300, 550)) / 100,
        "trade_time": _when(rng),
        "value_date": start,
        "maturity_date": start + timedelta(days=rng.choice((1, 30, 91))),
    }
    return Drawn(message, book, bank, quantity, currency, cash)


GENERATORS: dict[str, Callable[[random.Random, int], Drawn]] = {
    "fx": fx_trade,
    "repos": repo_trade,
    "bonds": bond_trade,
    "equities": equity_trade,
    "interbank": interbank_deal,
}


def as_json(message: dict[str, Any]) -> bytes:
    """The message as a desk sends it in JSON: amounts as decimal text (a double as a JSON
    number), dates and instants in ISO 8601."""

    def value(v: Any) -> Any:
        if isinstance(v, Decimal):
            return str(v)
        if isinstance(v, datetime):
            return v.isoformat(timespec="milliseconds")
        if isinstance(v, date):
            return v.isoformat()
        return v

    return json.dumps({k: value(v) for k, v in message.items()}).encode()


def as_avro(source: str, schema_id: int, message: dict[str, Any]) -> bytes:
    """The message in Avro, framed in the Confluent wire format with ``schema_id``."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, _parsed_source(source), message)
    return frame(schema_id, out.getvalue())


_PARSED: dict[str, Any] = {}


def _parsed_source(source: str) -> Any:
    if source not in _PARSED:
        _PARSED[source] = fastavro.parse_schema(source_schema(source))
    return _PARSED[source]


@dataclass
class Scenario:
    """Trades on streams, one stream per source, and what they should add up to."""

    name: str
    streams: dict[str, str]  # source → stream
    bodies: dict[str, list[bytes]]  # source → its messages, in order
    positions: dict[tuple[str, str], Decimal]
    cash: dict[tuple[str, str], Decimal]
    avro: int = 0  # messages in the wire format
    schema_ids: dict[str, int] | None = None  # source → the schema id its frames carry

    @property
    def count(self) -> int:
        return sum(len(b) for b in self.bodies.values())

    def counts(self) -> dict[str, int]:
        """Each stream's count of messages (the next offset once all are read)."""
        return {self.streams[s]: len(b) for s, b in self.bodies.items()}


def draw(
    name: str,
    rng: random.Random,
    counts: dict[str, int],
    tag: str,
    schema_ids: dict[str, int] | None,
) -> Scenario:
    """``counts[source]`` trades of each source, in Avro (when ``schema_ids`` are given,
    half of them at random) or JSON, and their positions and cash folded."""
    positions: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    cash: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    bodies: dict[str, list[bytes]] = {}
    avro = 0
    for source, count in counts.items():
        bodies[source] = []
        for n in range(count):
            trade = GENERATORS[source](rng, n)
            if schema_ids is not None and rng.random() < 0.5:
                bodies[source].append(as_avro(source, schema_ids[source], trade.message))
                avro += 1
            else:
                bodies[source].append(as_json(trade.message))
            positions[trade.book, trade.instrument] += trade.quantity
            cash[trade.book, trade.currency] += trade.cash
    streams = {s: f"lf_bench_{tag}.{name}.trades.{s}" for s in counts}
    return Scenario(name, streams, bodies, dict(positions), dict(cash), avro, schema_ids)


# Databases and the schema store.


def url_for(database: str) -> str:
    """The configured database URL pointing at ``database``."""
    return str(urlsplit(SETTINGS.database_url)._replace(path=f"/{database}").geturl())


def admin(statement: LiteralString, database: str) -> None:
    """CREATE or DROP a database, from the maintenance database."""
    with psycopg.connect(url_for("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL(statement).format(sql.Identifier(database)))


async def fresh_database(made: list[str]) -> tuple[str, str]:
    """A new database with the treasury's migrations: its name and URL."""
    name = f"ledgerflow_bench_{uuid.uuid4().hex[:8]}"
    admin("CREATE DATABASE {}", name)
    made.append(name)
    url = url_for(name)
    conn = await connect(url)
    async with conn:
        await migrate.migrate(conn, {"treasury"})
    return name, url


@contextlib.asynccontextmanager
async def normaliser_on(
    url: str, expected: dict[str, int] | None = None
) -> AsyncIterator[tuple[Normaliser, dict[str, int]]]:
    """A Normaliser on the schema store of ``url``, the sources' schemas registered after
    the canonical one (as the producers do); yields it and the sources' schema ids, which
    must be ``expected`` when given (the ids the published frames carry)."""
    pool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=2,
        open=False,
        kwargs={"application_name": "ledgerflow-bench", "autocommit": True},
        configure=keep_search_path_off_our_schema,
    )
    async with pool:
        store = PostgresSchemaStore(pool)
        normaliser = await Normaliser.start(store)
        ids = {s: await store.register(f"trades.{s}-value", source_schema(s)) for s in SOURCES}
        if expected is not None and ids != expected:
            raise RuntimeError(f"schema ids {ids}, the frames carry {expected}")
        yield normaliser, ids


# Measuring.


class CpuUse(lineage.CpuUse):
    """bench.lineage's sampler (RabbitMQ, the run's PostgreSQL, a pid), every half second:
    here it runs in the measured process itself, so it samples less often."""

    INTERVAL = 0.5


def busy_seconds() -> float:
    """The machine's busy CPU time so far (every CPU: all but idle and I/O wait)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(f) for f in fields]
    idle = ticks[3] + ticks[4]
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Moment:
    """A point in time: for durations, for the CPU sampler, and the machine's busy time."""

    clock: float = field(default_factory=time.perf_counter)
    wall: float = field(default_factory=time.time)
    busy: float = field(default_factory=busy_seconds)


@dataclass
class Window:
    """One run's window, from its opening to a moment given, and the CPU spent in it."""

    cpu: CpuUse
    began: Moment = field(default_factory=Moment)

    @classmethod
    def open(cls, database: str) -> Window:
        cpu = CpuUse(os.getpid(), database)
        cpu.start()
        return cls(cpu)

    async def close(self, messages: int, ended: Moment) -> tuple[float, dict[str, float]]:
        """The seconds to ``ended``, and CPU seconds per 1,000 messages."""
        await asyncio.sleep(self.cpu.INTERVAL * 1.5)  # a sample after the end, to interpolate
        self.cpu.stopped.set()
        self.cpu.join()
        us = self.cpu.per_message(self.began.wall, ended.wall, messages)
        per_thousand = {
            "rabbitmq": us["broker"] / 1000,
            "postgresql": us["database"] / 1000,
            "this_process": us["worker"] / 1000,
        }
        busy = (ended.busy - self.began.busy) * 1000 / messages
        per_thousand["other"] = max(0.0, busy - sum(per_thousand.values()))
        seconds = ended.clock - self.began.clock
        return seconds, {k: round(v, 4) for k, v in per_thousand.items()}


@dataclass
class Run:
    """One method's pass over one scenario."""

    scenario: str
    method: str
    run: int
    messages: int
    seconds: float
    rate: float
    cpu_s_per_1000: dict[str, float]
    correct: bool | None = None  # ingest runs only
    problems: list[str] = field(default_factory=list)


async def read_through(
    streams: RabbitStreams,
    stream: str,
    count: int,
    work: Callable[[bytes], Awaitable[Any]] | None,
) -> Moment:
    """Read ``stream`` from offset 0 to its ``count``-th message, doing ``work`` on each;
    the moment the last one was done."""
    async with contextlib.aclosing(streams.read(stream, 0)) as messages:
        async for message in messages:
            if work is not None:
                await work(message.body)
            if message.offset >= count - 1:
                return Moment()
    raise RuntimeError(f"{stream} ended before offset {count - 1}")


async def measure_read(
    scenario: Scenario, run: int, normaliser: Normaliser | None, database: str
) -> Run:
    """Every stream of ``scenario`` read at once, each message normalised when a
    ``normaliser`` is given."""
    streams = RabbitStreams(SETTINGS.stream_server())
    counts = scenario.counts()
    try:
        window = Window.open(database)

        def work(source: str) -> Callable[[bytes], Awaitable[Any]] | None:
            if normaliser is None:
                return None
            return lambda body: normaliser.normalise(source, body)

        ends = await asyncio.wait_for(
            asyncio.gather(
                *(
                    read_through(streams, stream, counts[stream], work(source))
                    for source, stream in scenario.streams.items()
                )
            ),
            TIMEOUT,
        )
        seconds, cpu = await window.close(scenario.count, max(ends, key=lambda m: m.clock))
    finally:
        await streams.close()
    method = "read" if normaliser is None else "normalise-only"
    return Run(scenario.name, method, run, scenario.count, seconds, scenario.count / seconds, cpu)


async def ingest_until_read(
    url: str,
    scenario: Scenario,
    normaliser: Normaliser,
    batch_size: int,
    counts: dict[str, int],
    at_end: Callable[[], object] | None = None,
) -> Moment:
    """Run ``TreasuryIngest`` on every stream of ``scenario`` until each stream's next
    offset has reached ``counts[stream]``; the moment the last of them committed (when
    ``at_end`` is called, before the ingest is closed)."""
    streams = RabbitStreams(SETTINGS.stream_server())
    behind = dict(counts)
    done = asyncio.Event()
    ended: list[Moment] = []

    async def on_batch(source: str, result: BatchResult) -> None:
        if result.next_offset >= behind.get(result.stream, sys.maxsize):
            del behind[result.stream]
            if not behind:
                if at_end is not None:
                    at_end()
                ended.append(Moment())
                done.set()

    ingest = TreasuryIngest(
        url,
        streams,
        normaliser.normalise,
        (RejectedTrade,),
        batch_size=batch_size,
        on_batch=on_batch,
        control=f"{next(iter(scenario.streams.values()))}.control",  # never read here
    )
    try:
        readers = [ingest.start(source, stream) for source, stream in scenario.streams.items()]
        finished = asyncio.create_task(done.wait())
        await asyncio.wait(
            {finished, *(r.task for r in readers)},
            timeout=TIMEOUT,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not done.is_set():
            finished.cancel()
            for reader in readers:
                if reader.task.done():
                    reader.task.result()  # a reader failed: raise its error
            raise TimeoutError(f"{scenario.name}: streams still behind: {behind}")
    finally:
        await ingest.close()
        await streams.close()
    return ended[0]


async def measure_ingest(scenario: Scenario, run: int, batch_size: int, made: list[str]) -> Run:
    """``TreasuryIngest`` over ``scenario`` on a fresh database, then the checks."""
    database, url = await fresh_database(made)
    try:
        async with normaliser_on(url, scenario.schema_ids) as (normaliser, _):
            window = Window.open(database)
            ended = await ingest_until_read(
                url, scenario, normaliser, batch_size, scenario.counts()
            )
            seconds, cpu = await window.close(scenario.count, ended)
        problems = await check(url, scenario)
    finally:
        admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", database)
        made.remove(database)
    return Run(
        scenario.name,
        f"ingest-{batch_size}",
        run,
        scenario.count,
        seconds,
        scenario.count / seconds,
        cpu,
        not problems,
        problems,
    )


async def check(url: str, scenario: Scenario) -> list[str]:
    """What the ledger holds that it should not: offsets, counts, positions and cash
    against the Python fold of the trades as drawn."""
    problems = []
    conn = await connect(url, autocommit=True)
    async with conn:

        async def rows(query: LiteralString) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(query)
            return await cursor.fetchall()

        offsets = dict(await rows("SELECT stream, next_offset FROM ledgerflow.stream_offsets"))
        if offsets != scenario.counts():
            problems.append(f"next offsets {offsets}, expected {scenario.counts()}")
        [(trades, rejected)] = await rows(
            "SELECT (SELECT count(*) FROM ledgerflow.trades),"
            " (SELECT count(*) FROM ledgerflow.rejected_messages)"
        )
        if (trades, rejected) != (scenario.count, 0):
            problems.append(f"{trades} trades and {rejected} rejected, expected {scenario.count}")
        positions = {
            (b, i): q
            for b, i, q in await rows("SELECT book, instrument, quantity FROM ledgerflow.positions")
        }
        if positions != scenario.positions:
            problems.append(f"positions differ: {diff(positions, scenario.positions)}")
        cash = {
            (b, c): a
            for b, c, a in await rows(
                "SELECT book, currency, amount FROM ledgerflow.cash_positions"
            )
        }
        if cash != scenario.cash:
            problems.append(f"cash differs: {diff(cash, scenario.cash)}")
    return problems


def diff(
    found: dict[tuple[str, str], Decimal], expected: dict[tuple[str, str], Decimal]
) -> list[str]:
    keys = sorted(set(found) | set(expected))
    return [
        f"{k}: {found.get(k)} != {expected.get(k)}" for k in keys if found.get(k) != expected.get(k)
    ][:5]


# The profile.

# Own time by area: a Python function's by its file, a built-in's (a C function: a
# Decimal method, a regular expression, the socket poll) by the callers it spent it for.
# fastavro's compiled functions (validate, the Avro writer and reader) are not seen by
# cProfile: their time is their caller's own, ``normalise``'s (normalise_steps splits it).
AREAS = (  # (area, what a function's file and name contain), first match wins
    ("waiting on sockets (idle)", ("selectors.py",)),
    ("normalise.py, with fastavro's compiled validate and encode", ("treasury/normalise.py",)),
    ("json.dumps of fastavro's ValidationError messages", ("json/encoder", "_validate_common")),
    ("json.loads (parse_json)", ("json/",)),
    ("fastavro (its Python parts)", ("fastavro",)),
    ("psycopg (adapting the arrays, the protocol)", ("psycopg",)),
    ("rstream (the stream client)", ("rstream",)),
    ("treasury ingest, ledger, streams", ("ledgerflow/treasury/",)),
    ("asyncio event loop", ("asyncio",)),
)


def short(filename: str) -> str:
    """A file's name without this machine's directories (relative to sys.path)."""
    for entry in sorted((p for p in sys.path if p), key=len, reverse=True):
        if filename.startswith(entry.rstrip("/") + "/"):
            return filename[len(entry.rstrip("/")) + 1 :]
    return os.path.basename(filename)


def label(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    return name if filename == "~" else f"{short(filename)}:{line}({name})"


def area(key: tuple[str, int, str]) -> str:
    text = label(key)
    for name, signs in AREAS:
        if any(sign in text for sign in signs):
            return name
    return "other"


def top(stats: dict[Any, Any], column: int, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` functions first by own (column 2) or cumulative (3) time."""
    ranked = sorted(stats.items(), key=lambda item: item[1][column], reverse=True)[:limit]
    return [
        {
            "function": label(k),
            "calls": v[1],
            "own_s": round(v[2], 3),
            "cumulative_s": round(v[3], 3),
        }
        for k, v in ranked
    ]


async def profile(scenario: Scenario, count: int, made: list[str]) -> dict[str, Any]:
    """One ingest of the first ``count`` trades of ``scenario`` under cProfile."""
    stream = next(iter(scenario.streams.values()))
    database, url = await fresh_database(made)
    try:
        async with normaliser_on(url) as (normaliser, _):
            profiler = cProfile.Profile()
            began = time.perf_counter()
            profiler.enable()
            ended = await ingest_until_read(
                url, scenario, normaliser, 500, {stream: count}, profiler.disable
            )
            seconds = ended.clock - began
        conn = await connect(url, autocommit=True)
        async with conn:
            cursor = await conn.execute("SELECT count(*) FROM ledgerflow.trades")
            stored = int((await cursor.fetchone() or [0])[0])
    finally:
        admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", database)
        made.remove(database)
    stats: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values())
    by_area: dict[str, float] = defaultdict(float)
    for key, (_, _, own, _, callers) in stats.items():
        if key[0] == "~" and callers:
            for caller, figures in callers.items():
                by_area[area(caller)] += figures[2]  # the own time spent for that caller
        else:
            by_area[area(key)] += own
    return {
        "scenario": scenario.name,
        "batch_size": 500,
        "trades": stored,
        "seconds": round(seconds, 3),
        "rate_under_profiler": round(stored / seconds),
        "own_time_s": round(total, 3),
        "own_time_by_area": {
            k: {"s": round(v, 3), "share": round(v / total, 3)}
            for k, v in sorted(by_area.items(), key=lambda kv: kv[1], reverse=True)
        },
        "top_cumulative": top(stats, 3, 15),
        "top_own": top(stats, 2, 15),
    }


def normalise_steps(bodies: list[bytes]) -> dict[str, float]:
    """µs per trade of each step of ``Normaliser.normalise`` on FX JSON trades, timed apart
    and without the profiler: cProfile does not see fastavro's compiled functions, so it
    counts their time as ``normalise``'s own."""
    schema = fastavro.parse_schema(canonical_schema())
    steps: dict[str, float] = {}

    def timed(name: str, step: Callable[[Any], Any], values: list[Any]) -> list[Any]:
        began = time.perf_counter()
        out = [step(v) for v in values]
        steps[name] = round((time.perf_counter() - began) * 1e6 / len(values), 2)
        return out

    def encode(trade: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, schema, trade)
        return out.getvalue()

    messages = timed("parse_json", parse_json, bodies)
    trades = timed("mapping.apply", MAPPINGS["fx"].apply, messages)
    timed("validate", lambda t: validate(t, schema, raise_errors=True), trades)
    timed("encode for trades.normalised", encode, trades)
    return steps


# The run.


def rotations(methods: list[str], runs: int) -> Iterator[tuple[int, list[str]]]:
    """Each run's order of the methods, rotated one place a run."""
    for run in range(runs):
        shift = run % len(methods)
        yield run, methods[shift:] + methods[:shift]


async def publish(scenario: Scenario) -> float:
    """Every stream of ``scenario`` created and filled; the seconds it took."""
    began = time.perf_counter()
    streams = RabbitStreams(SETTINGS.stream_server())
    try:
        for source, stream in scenario.streams.items():
            await streams.create(stream)
            bodies = scenario.bodies[source]
            for start in range(0, len(bodies), SEND):
                await streams.send(stream, bodies[start : start + SEND])
    finally:
        await streams.close()
    return time.perf_counter() - began


async def delete_streams(names: list[str]) -> None:
    streams = RabbitStreams(SETTINGS.stream_server())
    try:
        for name in names:
            await streams.delete(name)
        left = [name for name in names if await streams.exists(name)]
        if left:
            print(f"bench: streams not deleted: {left}", file=sys.stderr)
    finally:
        await streams.close()


async def measure(args: argparse.Namespace, record: dict[str, Any]) -> list[Run]:
    made: list[str] = []  # databases
    streams: list[str] = []
    results: list[Run] = []
    tag = uuid.uuid4().hex[:8]
    rng = random.Random(args.seed)
    try:
        registry, registry_url = await fresh_database(made)
        async with normaliser_on(registry_url) as (normaliser, ids):
            print(f"bench: drawing the trades (seed {args.seed})...", file=sys.stderr, flush=True)
            scenarios = [draw("fx", rng, {"fx": args.count}, tag, None)]
            if args.mixed:
                mixed = draw("mixed", rng, dict.fromkeys(SOURCES, args.mixed), tag, ids)
                scenarios.append(mixed)
            for scenario in scenarios:
                streams += scenario.streams.values()
                seconds = await publish(scenario)
                record["scenarios"][scenario.name] = {
                    "streams": len(scenario.streams),
                    "trades": scenario.count,
                    "per_source": {s: len(b) for s, b in scenario.bodies.items()},
                    "avro": scenario.avro,
                    "json": scenario.count - scenario.avro,
                    "bytes": sum(len(body) for b in scenario.bodies.values() for body in b),
                    "publish_s": round(seconds, 2),
                }
                print(
                    f"bench: {scenario.name}: {scenario.count:,} trades published in"
                    f" {seconds:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
            methods = ["read", "normalise-only", *(f"ingest-{b}" for b in args.batch_sizes)]
            for run, order in rotations(methods, args.runs):
                for scenario in scenarios:
                    for method in order:
                        print(
                            f"bench: run {run + 1}/{args.runs} {scenario.name} {method}...",
                            file=sys.stderr,
                            flush=True,
                        )
                        if method == "read":
                            result = await measure_read(scenario, run, None, registry)
                        elif method == "normalise-only":
                            result = await measure_read(scenario, run, normaliser, registry)
                        else:
                            batch = int(method.split("-")[1])
                            result = await measure_ingest(scenario, run, batch, made)
                        results.append(result)
        if args.profile_count:
            print(
                f"bench: profiling ingest of {args.profile_count:,} trades...",
                file=sys.stderr,
                flush=True,
            )
            record["profile"] = await profile(scenarios[0], args.profile_count, made)
            bodies = scenarios[0].bodies["fx"][: args.profile_count]
            record["normalise_steps_us"] = normalise_steps(bodies)
    finally:
        for database in made:
            admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", database)
        await delete_streams(streams)
    return results


def summary(results: list[Run]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per scenario and method: the median rate and seconds, and the median CPU."""
    grouped: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for r in results:
        grouped[r.scenario, r.method].append(r)
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (scenario, method), runs in grouped.items():
        out[scenario][method] = {
            "messages": runs[0].messages,
            "rate": round(statistics.median(r.rate for r in runs)),
            "rates": [round(r.rate) for r in runs],
            "seconds": round(statistics.median(r.seconds for r in runs), 3),
            "cpu_s_per_1000": {
                k: round(statistics.median(r.cpu_s_per_1000[k] for r in runs), 4)
                for k in runs[0].cpu_s_per_1000
            },
            "correct": None if runs[0].correct is None else all(r.correct for r in runs),
        }
    return out


def ratios(medians: dict[str, dict[str, dict[str, Any]]]) -> dict[str, float]:
    out = {}
    for scenario, methods in medians.items():
        for method, figures in methods.items():
            for baseline in ("read", "normalise-only"):
                if method != baseline and baseline in methods and method != "read":
                    out[f"{scenario} {method} / {baseline}"] = round(
                        figures["rate"] / methods[baseline]["rate"], 3
                    )
    return out


def table(medians: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [
        "| scenario | method | trades | msg/s (median) | runs' msg/s | CPU s per 1,000 trades:"
        " RabbitMQ, PostgreSQL, this process, other | exact |",
        "|---|---|---:|---:|---|---|---|",
    ]
    for scenario, methods in medians.items():
        for method, f in methods.items():
            cpu = ", ".join(f"{v:.4f}" for v in f["cpu_s_per_1000"].values())
            exact = "-" if f["correct"] is None else ("yes" if f["correct"] else "NO")
            lines.append(
                f"| {scenario} | {method} | {f['messages']:,} | {f['rate']:,} |"
                f" {', '.join(f'{r:,}' for r in f['rates'])} | {cpu} | {exact} |"
            )
    return "\n".join(lines)


def print_profile(p: dict[str, Any]) -> None:
    print(
        f"profile: ingest of {p['trades']:,} fx trades (batch size {p['batch_size']}) under"
        f" cProfile: {p['seconds']} s ({p['rate_under_profiler']:,} msg/s with the profiler);"
        f" own time {p['own_time_s']} s by area:"
    )
    for name, figures in p["own_time_by_area"].items():
        print(f"  {figures['share']:6.1%} {figures['s']:8.3f} s  {name}")
    for title, key in (("cumulative", "top_cumulative"), ("own", "top_own")):
        print(f"top 15 by {title} time:  calls  own s  cumulative s  function")
        for row in p[key]:
            print(
                f"  {row['calls']:>9,} {row['own_s']:8.3f} {row['cumulative_s']:8.3f}"
                f"  {row['function']}"
            )


def main() -> int:
    # Each batch logs at debug level, and structlog's default prints everything.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--mixed", type=int, default=10_000, help="trades of each source")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--profile-count", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    began = time.perf_counter()
    record: dict[str, Any] = {
        "kind": "treasury",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "seed": args.seed,
        "runs": args.runs,
        "scenarios": {},
    }
    results = asyncio.run(measure(args, record))
    medians = summary(results)
    record["medians"] = medians
    record["ratios"] = ratios(medians)
    record["results"] = [asdict(r) for r in results]
    record["correct"] = all(r.correct for r in results if r.correct is not None)
    record["total_s"] = round(time.perf_counter() - began, 1)
    for name, s in record["scenarios"].items():
        print(
            f"seed {args.seed}: {name}: {s['trades']:,} trades on {s['streams']} stream(s)"
            f" ({s['json']:,} JSON, {s['avro']:,} Avro), published in {s['publish_s']} s"
        )
    print(table(medians))
    print("ratios: " + ", ".join(f"{k} = {v}" for k, v in record["ratios"].items()))
    for r in results:
        for problem in r.problems:
            print(f"NOT exact: {r.scenario} {r.method} run {r.run + 1}: {problem}")
    if "profile" in record:
        print_profile(record["profile"])
        steps = record["normalise_steps_us"]
        print(
            "normalise's steps on the same fx trades, timed apart (µs per trade): "
            + ", ".join(f"{k} {v}" for k, v in steps.items())
        )
    print(f"total {record['total_s']} s")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"treasury-{str(record['when']).replace(':', '')}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {path}")
    return 0 if record["correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
