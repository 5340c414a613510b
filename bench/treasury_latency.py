"""``make bench`` (treasury latency): a trade on the FX desk's stream to the LCR on the
console's WebSocket, with the real processes; the goal is p99 <= 100 ms at 5,000 trades/s.

    python -m bench.treasury_latency [--count 150000] [--rate 5000] [--book 10000]
                                     [--no-normalised] [--seed 20261130]

Set-up: a fresh database (bench.lag's, migrated with the treasury's domain as well) holding
a book drawn as bench.lcr draws it, so that the LCR is kept against a book of some size and
not an empty one: ``--book`` securities held (default 10,000) in three books, with cash in
five currencies, 2,500 trades, ten adjustments in force and six run-off balances (sized for
a ratio near 1.4 before the FX trades move it); then the instruments the example trades name
(what ``ledgerflow treasury instruments load --example`` loads). ``--book 0`` seeds no book
and sets one run-off balance instead (``set_balance``), so the ratio exists.

A real ``ledgerflow worker`` (LEDGERFLOW_TREASURY=true, its streams under a prefix of this
run, ``bench-<id>.``: the FX desk's stream is ``bench-<id>.fx``; the control stream and the
stream the normalised trades are written on to, as the default configuration does, are
``bench-<id>.control`` and ``bench-<id>.normalised``; with ``--no-normalised`` they are
written nowhere) and a real ``ledgerflow api`` run as subprocesses. One WebSocket client,
with a ``read`` token made by ``ledgerflow tokens create``, subscribes to ``lcr`` and
``trades`` and gets its snapshot before anything is sent.

Then ``--count`` FX trades (default 150,000: 30 s at the default rate), made by
``example_trades.make_trade`` and encoded as the example producer sends them (JSON, traded
today, drawn from ``--seed``), are published on the fresh FX stream at ``--rate`` a second
(default 5,000): a chunk every 10 ms (50 messages at 5,000/s); a send that falls behind is
followed at once by one of every message due. Each send is awaited until the broker
confirms it, as ``RabbitStreams.send`` does. On a fresh stream message i has offset i
(checked at the end: the trade stored at offset i is the i-th one made); its send time is
the start of its chunk's send, on ``time.perf_counter`` in this process, the one that also
reads the WebSocket.

Measured, for each trade i:

- to the LCR: the receipt of the first ``lcr`` event whose ``offsets[<FX stream>]`` is
  above i (its figures count every trade below that offset), minus i's send time;
- to the batch's announcement, the baseline: the same for the ``trades`` event, which the
  worker emits after the batch's commit (and the write on to the normalised stream) and
  before the LCR's refresh can be seen. It carries no offsets, but the stream is fresh and
  read by one reader from offset 0 (nothing skipped), so each event's ``stored + rejected
  + duplicates`` are its batch's messages and their running sum is the batch's next offset
  (checked: every offset an ``lcr`` event gives is one of those sums);
- where the time goes, from each row's ``stored_at`` (``clock_timestamp()`` at its insert,
  on this machine's clock, brought onto ``perf_counter``'s): send -> stored (the broker's
  delivery, the reader's batch window (LEDGERFLOW_TREASURY_BATCH_WAIT after a batch's
  first message),
  normalising, the insert), stored -> ``trades`` event (the rest of the statement, the
  commit, the normalised stream, KeyDB, the API, the WebSocket) and ``trades`` -> ``lcr``
  (the refresh, which reads only what the batch touched, and the same relay); and the
  first trade of each batch apart, which waits out the whole window;
- over time, by 5 s of send time: the latencies to the LCR and to the announcement, and
  between the two, to show whether they grow with the trades stored;
- once every trade is stored (the processes stopped), what one refresh of the running LCR
  costs: a ``RunningLcr`` built on the database and told that its last batch (of the median
  size) is new, as the worker's is after each batch, and each of the reads it makes then
  (the trades since the offsets, the touched instruments' positions, their currencies'
  cash). (Its running sums count that batch twice then: only the time is of interest.)

Trades sent in the first 2 s are left out of the latencies as warm-up (the first batches,
the first refresh of the running LCR, connections). Reported: p50, p95, p99 and max
(nearest rank) of each, the ratio LCR / baseline at p99, the achieved publish rate and the
broker's confirmation times, trades stored a second (first to last row's ``stored_at``),
the events received and the batches' sizes, the CPU used meanwhile by the worker, the API,
this process, RabbitMQ, PostgreSQL and KeyDB (cores: CPU seconds per second of the window)
and the machine's load (/proc/loadavg; other people's work shows as ``other``).

Checked at the end: every trade stored exactly once (``ledgerflow.trades`` holds ``--count``
rows of the FX stream, offsets 0 to count - 1, each the trade made for it; nothing
rejected); the last ``lcr`` event counts every offset, and its figures equal ``lcr_now``
computed on the database as of the event's ``as_of`` (exactness); no snapshot came after
the first (one would mean the client fell behind and events were dropped).

The worker runs with ledgerflow's defaults but for the above (batch size 500);
``BENCH_LEDGERFLOW_<NAME>=value`` sets its ``LEDGERFLOW_<NAME>`` as in bench.ingest (for
example ``BENCH_LEDGERFLOW_TREASURY_BATCH_SIZE=1000``). Processes stopped, the database
dropped and the streams deleted, the figures go to
bench/results/treasury-latency-<timestamp>.json.
"""

# Checked on its own (mypy bench/treasury_latency.py), mypy finds ledgerflow installed
# without a py.typed marker and reads none of it: its names are Any here, not errors.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import websockets

from bench import lcr
from bench.console import ledgerflow
from bench.ingest import RESULTS, SETTINGS, cleanup, worker_env
from bench.lag import fresh_database
from bench.lineage import percentiles
from bench.treasury import busy_seconds, delete_streams
from ledgerflow.db.connections import connect
from ledgerflow.treasury.example_trades import example_instruments, make_trade
from ledgerflow.treasury.ingest import SOURCES, default_stream
from ledgerflow.treasury.instruments import load_instruments
from ledgerflow.treasury.lcr import HORIZON_DAYS
from ledgerflow.treasury.liquidity import QUERIES, RunningLcr, lcr_now, set_balance
from ledgerflow.treasury.producer import encode
from ledgerflow.treasury.streams import RabbitStreams

SEED = 20261130
TICK = 0.010  # seconds between two chunks
WARM_UP = 2.0  # seconds of trades, from the first send, left out of the latencies
GOAL_P99_MS = 100.0
GOAL_RATE = 5_000
BALANCE = ("retail_stable", Decimal("2000000000"), "USD")  # with --book 0 only
FIGURES = ("hqla", "outflows", "inflows", "net_outflows", "lcr")  # an lcr event's figures
WINDOW = 5.0  # seconds of sends per line of the latencies over time
REFRESH_READS = ("trades_since", "held_positions", "held_cash")


# Set-up.


async def _load_reference(url: str, book: int) -> None:
    conn = await connect(url, autocommit=True)
    async with conn:
        await load_instruments(conn, example_instruments(SETTINGS.treasury_currency))
        if book == 0:
            category, amount, currency = BALANCE
            await set_balance(conn, category, amount, "bench", currency=currency)


def prepare(url: str, book: int, seed: int) -> dict[str, Any]:
    """The treasury's tables, the book (bench.lcr's, ``book`` securities), the example
    instruments and, without a book, one run-off balance; the rows of the book's tables."""
    asyncio.run(lcr.migrated(url))
    rows: dict[str, Any] = {}
    if book:
        rows = lcr.seed(url, lcr.draw(random.Random(seed), book))
    asyncio.run(_load_reference(url, book))
    return rows


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def bodies_of(count: int, seed: int, run_id: str, day: date) -> list[bytes]:
    """``count`` FX trades as the FX desk sends them, the i-th numbered i."""
    rng = random.Random(seed)
    return [
        encode("fx", make_trade("fx", rng, n, run_id=run_id, trading_day=day), avro_schema_id=None)
        for n in range(count)
    ]


def wait_until_reading(url: str, stream: str, timeout: float = 60) -> None:
    """Until the worker leads and has recorded the FX source's stream (its readers start
    right after), then a second more."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url) as conn:
                row = conn.execute(
                    "SELECT stream FROM ledgerflow.treasury_sources WHERE source = 'fx'"
                ).fetchone()
            if row and row[0] == stream:
                break
        except psycopg.Error:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not start reading the treasury's streams")
        time.sleep(0.2)
    time.sleep(1.0)


def wait_for_api(base: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx2.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.2)


# CPU and load.


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_ticks(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of the named pids, of RabbitMQ (``beam*``), PostgreSQL (every
    ``postgres`` process: other people's backends too) and KeyDB (``keydb*``/``redis*``),
    and the machine's busy time; with the wall clock."""
    tick = os.sysconf("SC_CLK_TCK")
    by_pid = {pid: name for name, pid in pids.items()}
    totals = dict.fromkeys([*pids, "rabbitmq", "postgresql", "keydb"], 0.0)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        pid, name = int(entry.name), stat[stat.index("(") + 1 : stat.rindex(")")]
        if pid in by_pid:
            group = by_pid[pid]
        elif name.startswith("beam"):
            group = "rabbitmq"
        elif name.startswith("postgres"):
            group = "postgresql"
        elif name.startswith(("keydb", "redis")):
            group = "keydb"
        else:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        totals[group] += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return {**totals, "machine_busy": busy_seconds(), "wall": time.time()}


def cores(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per second of the window, per group; ``other`` is the rest of the
    machine's busy time."""
    wall = after["wall"] - before["wall"]
    used = {k: (after[k] - before[k]) / wall for k in before if k not in ("wall", "machine_busy")}
    busy = (after["machine_busy"] - before["machine_busy"]) / wall
    used["other"] = max(0.0, busy - sum(used.values()))
    used["machine_busy"] = busy
    return {k: round(v, 2) for k, v in used.items()}


# Publishing and receiving.


@dataclass(frozen=True)
class Send:
    """One confirmed send: its messages (offsets first .. first + size - 1), when it was
    due on the pace, when it started and when the broker had confirmed it."""

    first: int
    size: int
    due: float
    started: float
    confirmed: float


@dataclass
class Received:
    """What the WebSocket brought, each message with its receipt time."""

    stream: str
    count: int
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    lcr_done: asyncio.Event = field(default_factory=asyncio.Event)
    trades_done: asyncio.Event = field(default_factory=asyncio.Event)
    announced: int = 0

    def take(self, at: float, event: dict[str, Any]) -> None:
        self.events.append((at, event))
        kind = event.get("type")
        if kind == "lcr" and (event.get("offsets") or {}).get(self.stream, 0) >= self.count:
            self.lcr_done.set()
        elif kind == "trades" and event.get("source") == "fx":
            self.announced += event["stored"] + event["rejected"] + event["duplicates"]
            if self.announced >= self.count:
                self.trades_done.set()


async def receive(ws: Any, received: Received) -> None:
    async for raw in ws:
        received.take(time.perf_counter(), json.loads(raw))


async def publish(
    streams: RabbitStreams, stream: str, bodies: list[bytes], rate: float
) -> list[Send]:
    """``bodies`` onto ``stream`` at ``rate`` a second, a chunk every TICK; every message
    due at once when a send fell behind."""
    chunk = max(1, round(rate * TICK))
    sends: list[Send] = []
    began = time.perf_counter()
    sent, total = 0, len(bodies)
    while sent < total:
        wait = began + sent / rate - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        now = time.perf_counter()
        upto = min(total, max(sent + chunk, (int((now - began) * rate / chunk) + 1) * chunk))
        started = time.perf_counter()
        await streams.send(stream, bodies[sent:upto])
        sends.append(Send(sent, upto - sent, began + sent / rate, started, time.perf_counter()))
        sent = upto
    return sends


@dataclass
class Observed:
    sends: list[Send]
    received: Received
    clock_offset: float  # time.time() - time.perf_counter()
    cpu_before: dict[str, float]
    cpu_after: dict[str, float]
    load_after: str
    complete: bool


async def observe(
    port: int,
    token: str,
    stream: str,
    bodies: list[bytes],
    rate: float,
    pids: dict[str, int],
) -> Observed:
    """Subscribe, publish, and wait for the LCR and the announcements to count every trade."""
    received = Received(stream, len(bodies))
    streams = RabbitStreams(SETTINGS.stream_server())
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/live",
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=None,
    ) as ws:
        await ws.send(json.dumps({"subscribe": ["lcr", "trades"]}))
        first = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if first.get("type") != "snapshot":
            raise RuntimeError(f"the first message was not a snapshot: {first.get('type')}")
        reading = asyncio.create_task(receive(ws, received))
        try:
            await streams.create(stream)  # the producer's connection, before the clock runs
            before = time.time() - time.perf_counter()
            cpu_before = cpu_ticks(pids)
            sends = await publish(streams, stream, bodies, rate)
            after = time.time() - time.perf_counter()
            timeout = max(60.0, len(bodies) / rate)
            complete = True
            try:
                await asyncio.wait_for(
                    asyncio.gather(received.lcr_done.wait(), received.trades_done.wait()),
                    timeout,
                )
            except TimeoutError:
                complete = False
            cpu_after = cpu_ticks(pids)
            load_after = loadavg()
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await reading
            await streams.close()
    return Observed(
        sends, received, (before + after) / 2, cpu_before, cpu_after, load_after, complete
    )


# Analysis.


def stored_rows(url: str, stream: str, run_id: str) -> tuple[list[float | None], dict[str, Any]]:
    """Each offset's ``stored_at`` (epoch seconds; None when not stored), and the checks of
    what was stored."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT stream_offset, extract(epoch FROM stored_at)::float8,"
            " trade_id = %s || '-FX-' || lpad(stream_offset::text, 7, '0')"
            " FROM ledgerflow.trades WHERE stream = %s",
            (run_id, stream),
        ).fetchall()
        rejected = conn.execute(
            "SELECT count(*) FROM ledgerflow.rejected_messages WHERE queue = %s",
            (f"stream:{stream}",),
        ).fetchone()
        next_offset = conn.execute(
            "SELECT next_offset FROM ledgerflow.stream_offsets WHERE stream = %s", (stream,)
        ).fetchone()
    offsets = [int(r[0]) for r in rows]
    checks = {
        "rows": len(rows),
        "distinct_offsets": len(set(offsets)),
        "min_offset": min(offsets, default=None),
        "max_offset": max(offsets, default=None),
        "trade_matches_offset": sum(1 for r in rows if r[2]),
        "rejected": rejected[0] if rejected else None,
        "next_offset": next_offset[0] if next_offset else None,
    }
    most = max(offsets, default=-1) + 1
    stored: list[float | None] = [None] * most
    for offset, at, _ in rows:
        stored[int(offset)] = float(at)
    return stored, checks


async def exactness(url: str, event: dict[str, Any]) -> dict[str, Any]:
    """The last lcr event's figures against ``lcr_now`` on the database as of its as_of."""
    conn = await connect(url, autocommit=True)
    async with conn:
        figures = await lcr_now(conn, datetime.fromisoformat(event["as_of"]))
    recomputed = json.loads(json.dumps(figures.as_json()))
    sent = {k: event.get(k) for k in FIGURES}
    return {"exact": sent == recomputed, "event": sent, "lcr_now": recomputed}


async def refresh_cost(url: str, stream: str, batch: int) -> dict[str, Any]:
    """What one refresh of the running LCR costs once every trade is stored: a
    ``RunningLcr`` built, then told its last ``batch`` trades are new, three times (the
    median), as the worker's is after each batch; and each of the reads it makes then, on
    those trades' keys."""
    conn = await connect(url, autocommit=True)
    async with conn:
        running = RunningLcr(SETTINGS.treasury_currency, SETTINGS.lcr_rates())
        now = datetime.now(UTC)
        began = time.perf_counter()
        await running.refresh(conn, now)
        built = time.perf_counter() - began
        incremental = []
        for _ in range(3):
            running.offsets[stream] -= batch
            began = time.perf_counter()
            await running.refresh(conn, now)
            incremental.append(time.perf_counter() - began)
        cursor = await conn.execute(
            "SELECT trade_id, instrument, currency FROM ledgerflow.trades"
            " WHERE stream = %s AND stream_offset >= %s",
            (stream, running.offsets[stream] - batch),
        )
        last = await cursor.fetchall()
        day = now.date()
        params = {
            "day": day,
            "last_day": day + timedelta(days=HORIZON_DAYS),
            "instruments": sorted({r[1] for r in last}),
            "currencies": sorted({r[2] for r in last}),
            "trade_ids": [r[0] for r in last],
            "stream": stream,
            "next_offset": running.offsets[stream] - batch,
        }
        reads = {}
        for name in REFRESH_READS:
            seconds = []
            for _ in range(3):
                began = time.perf_counter()
                await (await conn.execute(QUERIES[name], params, prepare=False)).fetchall()
                seconds.append(time.perf_counter() - began)
            reads[name] = round(statistics.median(seconds) * 1000, 2)
    return {
        "batch": batch,
        "instruments": params["instruments"],
        "currencies": params["currencies"],
        "build_ms": round(built * 1000, 2),
        "incremental_ms": round(statistics.median(incremental) * 1000, 2),
        "reads_ms": reads,
    }


def covered(times: list[tuple[float, int]], count: int) -> list[float | None]:
    """For each offset below ``count``, the receipt time of the first event (in receipt
    order) whose next offset is above it."""
    first: list[float | None] = [None] * count
    done = 0
    for at, upto in times:
        while done < min(upto, count):
            first[done] = at
            done += 1
    return first


def spread(values: list[float]) -> dict[str, float]:
    return percentiles(values) if values else {"samples": 0}


def analyse(
    observed: Observed, stored_at: list[float | None], count: int, stream: str, rate: float
) -> dict[str, Any]:
    sends, events = observed.sends, observed.received.events
    sent_at = [0.0] * count
    for s in sends:
        for i in range(s.first, s.first + s.size):
            sent_at[i] = s.started
    lcr_times = [
        (at, e["offsets"][stream])
        for at, e in events
        if e.get("type") == "lcr" and stream in (e.get("offsets") or {})
    ]
    lcr_events = [e for _, e in events if e.get("type") == "lcr"]
    foreign = sum(1 for e in lcr_events if stream not in (e.get("offsets") or {}))
    boundaries: list[tuple[float, int]] = []
    running = 0
    for at, e in events:
        if e.get("type") == "trades" and e.get("source") == "fx":
            running += e["stored"] + e["rejected"] + e["duplicates"]
            boundaries.append((at, running))
    sums = {0} | {b for _, b in boundaries}
    unmatched = sorted({o for _, o in lcr_times} - sums)
    to_lcr, to_trades = covered(lcr_times, count), covered(boundaries, count)
    stored: list[float | None] = [None] * count
    for i, wall in enumerate(stored_at[:count]):
        if wall is not None:
            stored[i] = wall - observed.clock_offset
    starts = {0} | {b for _, b in boundaries[:-1]}  # each batch's first offset
    measured = [i for i in range(count) if sent_at[i] >= sent_at[0] + WARM_UP]
    series: dict[str, list[float]] = {
        "lcr": [],
        "trades": [],
        "send_to_stored": [],
        "stored_to_trades": [],
        "trades_to_lcr": [],
        "first_of_batch_to_lcr": [],
    }
    for i in measured:
        lcr_at, trades_at, stored_i = to_lcr[i], to_trades[i], stored[i]
        if lcr_at is not None:
            series["lcr"].append(lcr_at - sent_at[i])
            if i in starts:
                series["first_of_batch_to_lcr"].append(lcr_at - sent_at[i])
        if trades_at is not None:
            series["trades"].append(trades_at - sent_at[i])
            if lcr_at is not None:
                series["trades_to_lcr"].append(lcr_at - trades_at)
        if stored_i is not None:
            series["send_to_stored"].append(stored_i - sent_at[i])
            if trades_at is not None:
                series["stored_to_trades"].append(trades_at - stored_i)
    latencies = {name: spread(values) for name, values in series.items()}
    # Over time, by WINDOW of send time: whether the latency grows with the trades stored.
    buckets: dict[int, tuple[list[int], list[float], list[float], list[float]]] = {}
    for i in range(count):
        lcr_at, trades_at = to_lcr[i], to_trades[i]
        if lcr_at is None or trades_at is None:
            continue
        offsets, to_l, to_t, between = buckets.setdefault(
            int((sent_at[i] - sent_at[0]) // WINDOW), ([], [], [], [])
        )
        offsets.append(i)
        to_l.append(lcr_at - sent_at[i])
        to_t.append(trades_at - sent_at[i])
        between.append(lcr_at - trades_at)
    over_time = []
    for n, (offsets, to_l, to_t, between) in sorted(buckets.items()):
        lcr_ms, trades_ms, refresh_ms = spread(to_l), spread(to_t), spread(between)
        over_time.append(
            {
                "from_s": n * WINDOW,
                "offsets": [offsets[0], offsets[-1]],
                "lcr_p50_ms": lcr_ms["p50_ms"],
                "lcr_p99_ms": lcr_ms["p99_ms"],
                "trades_p50_ms": trades_ms["p50_ms"],
                "trades_p99_ms": trades_ms["p99_ms"],
                "trades_to_lcr_p50_ms": refresh_ms["p50_ms"],
                "trades_to_lcr_p99_ms": refresh_ms["p99_ms"],
            }
        )
    # The batches: their sizes, how long their messages took to send (the reader's window
    # is at most 50 ms after the first one reaches it), their inserts, commit to announcement.
    sizes, windows, inserts, announce = [], [], [], []
    previous = 0
    for at, upto in boundaries:
        last = min(upto, count) - 1
        if last < previous:
            continue
        sizes.append(upto - previous)
        windows.append(sent_at[last] - sent_at[previous])
        first_row, last_row = stored[previous], stored[last]
        if first_row is not None and last_row is not None:
            inserts.append(last_row - first_row)
            announce.append(at - last_row)
        previous = upto
    confirms = [s.confirmed - s.started for s in sends]
    behind = [s.started - s.due for s in sends]
    chunk = max(1, round(rate * TICK))
    rows = [t for t in stored_at if t is not None]
    lcr_distinct = len({o for _, o in lcr_times})
    p99 = latencies["lcr"].get("p99_ms"), latencies["trades"].get("p99_ms")
    return {
        "latency": latencies,
        "over_time": over_time,
        "ratio_lcr_to_trades_p99": round(p99[0] / p99[1], 2) if p99[0] and p99[1] else None,
        "goal_met": bool(p99[0] is not None and p99[0] <= GOAL_P99_MS),
        "publish": {
            "sends": len(sends),
            "chunk": chunk,
            "mean_send": round(count / len(sends), 1),
            "catch_up_sends": sum(1 for s in sends if s.size > chunk),
            "seconds": round(sends[-1].confirmed - sends[0].started, 3),
            "rate": round(count / (sends[-1].confirmed - sends[0].started)),
            "confirm": spread(confirms),
            "behind_pace": spread([max(0.0, b) for b in behind]),
        },
        "stored": {
            "rows": len(rows),
            "seconds": round(max(rows) - min(rows), 3) if rows else None,
            "rate": round(len(rows) / (max(rows) - min(rows))) if len(rows) > 1 else None,
        },
        "events": {
            "trades": len(boundaries),
            "lcr": len(lcr_events),
            "lcr_with_new_offsets": lcr_distinct,
            "lcr_of_other_workers": foreign,
            "snapshots_after_first": sum(1 for _, e in events if e.get("type") == "snapshot"),
            "lcr_offsets_not_batch_ends": unmatched[:10],
            "batches_per_lcr_event": round(len(boundaries) / max(1, lcr_distinct), 2),
        },
        "batches": {
            "count": len(sizes),
            "size": {
                "median": statistics.median(sizes) if sizes else None,
                "max": max(sizes, default=None),
            },
            "send_window": spread(windows),
            "insert": spread(inserts),
            "last_row_to_trades_event": spread(announce),
        },
        "warm_up_s": WARM_UP,
    }


# Reporting.


def table(result: dict[str, Any]) -> str:
    names = {
        "lcr": "trade -> lcr event (the measure)",
        "trades": "trade -> trades event (baseline)",
        "send_to_stored": "  send -> row stored",
        "stored_to_trades": "  row stored -> trades event",
        "trades_to_lcr": "  trades event -> lcr event",
        "first_of_batch_to_lcr": "  a batch's first trade -> lcr event",
    }
    lines = [
        "| latency | samples | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, name in names.items():
        p = result["latency"][key]
        lines.append(
            f"| {name} | {p['samples']:,} | {p.get('p50_ms', '-')} | {p.get('p95_ms', '-')} |"
            f" {p.get('p99_ms', '-')} | {p.get('max_ms', '-')} |"
        )
    b = result["batches"]
    for key, name in (
        ("send_window", "batch: first to last message's send"),
        ("insert", "batch: first to last row's stored_at"),
        ("last_row_to_trades_event", "batch: last row -> trades event"),
    ):
        p = b[key]
        lines.append(
            f"| {name} | {p['samples']:,} | {p.get('p50_ms', '-')} | {p.get('p95_ms', '-')} |"
            f" {p.get('p99_ms', '-')} | {p.get('max_ms', '-')} |"
        )
    p = result["publish"]["confirm"]
    lines.append(
        f"| broker's confirmation of a send | {p['samples']:,} | {p['p50_ms']} | {p['p95_ms']} |"
        f" {p['p99_ms']} | {p['max_ms']} |"
    )
    return "\n".join(lines)


def over_time_table(result: dict[str, Any]) -> str:
    lines = [
        "| sent from s | offsets | lcr p50 / p99 ms | trades p50 / p99 ms |"
        " trades -> lcr p50 / p99 ms |",
        "|---:|---|---:|---:|---:|",
    ]
    for w in result["over_time"]:
        lines.append(
            f"| {w['from_s']:g} | {w['offsets'][0]:,}..{w['offsets'][1]:,} |"
            f" {w['lcr_p50_ms']} / {w['lcr_p99_ms']} | {w['trades_p50_ms']} /"
            f" {w['trades_p99_ms']} | {w['trades_to_lcr_p50_ms']} / {w['trades_to_lcr_p99_ms']} |"
        )
    return "\n".join(lines)


def summary(result: dict[str, Any], record: dict[str, Any]) -> str:
    p, s, e, b = result["publish"], result["stored"], result["events"], result["batches"]
    checks = record["checks"]
    if p["rate"] < GOAL_RATE * 0.98:
        verdict = f"not tested ({GOAL_RATE:,}/s not reached)"
    else:
        verdict = "met" if result["goal_met"] else "NOT met"
    return "\n".join(
        [
            f"LCR p99 {result['latency']['lcr'].get('p99_ms')} ms at {p['rate']:,}/s published;"
            f" goal p99 <= {GOAL_P99_MS:g} ms at {GOAL_RATE:,}/s: {verdict};"
            f" LCR / trades at p99 x {result['ratio_lcr_to_trades_p99']}",
            f"published {record['count']:,} trades in {p['seconds']} s ({p['rate']:,}/s, asked"
            f" {record['rate']:,}/s): {p['sends']:,} sends of {p['mean_send']} on average (a"
            f" chunk is {p['chunk']}), {p['catch_up_sends']} larger to catch up; behind the"
            f" pace p99 {p['behind_pace'].get('p99_ms')} ms",
            f"stored {s['rows']:,} rows in {s['seconds']} s ({s['rate']:,}/s);"
            f" {b['count']:,} batches of {b['size']['median']} trades at the median,"
            f" {b['size']['max']} at most",
            f"events: {e['trades']:,} trades, {e['lcr']:,} lcr ({e['lcr_with_new_offsets']:,}"
            f" with new offsets, {e['batches_per_lcr_event']} batches each),"
            f" {e['snapshots_after_first']} snapshots after the first,"
            f" {e['lcr_of_other_workers']} lcr events of other workers",
            f"checks: stored once {'yes' if checks['stored_once'] else 'NO'}, offsets mapped"
            f" {'yes' if checks['mapping'] else 'NO'}, last lcr counts every trade"
            f" {'yes' if checks['lcr_complete'] else 'NO'}, exact (lcr_now)"
            f" {'yes' if checks['exact'] else 'NO'}; final LCR {checks['final_lcr']}",
            f"the running LCR once every trade is stored: built in"
            f" {record['refresh_at_end']['build_ms']} ms, a batch of"
            f" {record['refresh_at_end']['batch']} refreshed in"
            f" {record['refresh_at_end']['incremental_ms']} ms; its reads (ms)"
            f" {record['refresh_at_end']['reads_ms']}",
            "cores used in the window: "
            + ", ".join(f"{k} {v}" for k, v in record["cores"].items())
            + f" (of {os.cpu_count()}); load {record['load']}",
        ]
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    bench_id = uuid.uuid4().hex[:8]
    prefix = f"bench-{bench_id}."
    stream = default_stream("fx", prefix)
    control = f"{prefix}control"
    normalised = f"{prefix}normalised" if args.normalised else ""
    streams = [default_stream(s, prefix) for s in SOURCES] + [control, f"{prefix}normalised"]
    queue = f"ledgerflow_bench_{bench_id}"
    load_before = loadavg()
    print(f"bench: {args.count:,} FX trades made (seed {args.seed})...", file=sys.stderr)
    bodies = bodies_of(args.count, args.seed, bench_id, datetime.now(UTC).date())
    print(f"bench: a book of {args.book:,} securities...", file=sys.stderr, flush=True)
    database, url = fresh_database()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        rows = prepare(url, args.book, args.seed)
        port = free_port()
        env = worker_env(url, queue)
        env.update(
            LEDGERFLOW_TREASURY="true",
            LEDGERFLOW_STREAM_URL=SETTINGS.stream_url,
            LEDGERFLOW_TREASURY_STREAM_PREFIX=prefix,
            LEDGERFLOW_TREASURY_CONTROL_STREAM=control,
            LEDGERFLOW_TREASURY_NORMALISED_STREAM=normalised,
            LEDGERFLOW_HTTP_PORT=str(port),
            LEDGERFLOW_HTTP_HOST="127.0.0.1",
        )
        env.update({k[6:]: v for k, v in os.environ.items() if k.startswith("BENCH_LEDGERFLOW_")})
        batch_size = env.get("LEDGERFLOW_TREASURY_BATCH_SIZE", "500 (default)")
        token = ledgerflow(["tokens", "create", "--scope", "read", "--name", "bench"], env)
        processes.append(subprocess.Popen([sys.executable, "-m", "ledgerflow", "worker"], env=env))
        processes.append(subprocess.Popen([sys.executable, "-m", "ledgerflow", "api"], env=env))
        wait_for_api(f"http://127.0.0.1:{port}")
        wait_until_reading(url, stream)
        print(
            f"bench: publishing at {args.rate:,}/s for {args.count / args.rate:.0f} s...",
            file=sys.stderr,
            flush=True,
        )
        pids = {"worker": processes[0].pid, "api": processes[1].pid, "bench": os.getpid()}
        observed = asyncio.run(observe(port, token, stream, bodies, args.rate, pids))
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        stored_at, stored_checks = stored_rows(url, stream, bench_id)
        result = analyse(observed, stored_at, args.count, stream, args.rate)
        lcr_events = [e for _, e in observed.received.events if e.get("type") == "lcr"]
        last = lcr_events[-1] if lcr_events else None
        exact = asyncio.run(exactness(url, last)) if last else {"exact": False}
        batch = round(result["batches"]["size"]["median"] or 1)
        refresh = asyncio.run(refresh_cost(url, stream, batch))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        cleanup(database, queue)  # the database too
        asyncio.run(delete_streams(streams))
    checks = {
        "complete": observed.complete,
        "stored_once": stored_checks["rows"] == args.count
        and stored_checks["distinct_offsets"] == args.count
        and stored_checks["trade_matches_offset"] == args.count
        and stored_checks["min_offset"] == 0
        and stored_checks["max_offset"] == args.count - 1
        and stored_checks["rejected"] == 0,
        "stored": stored_checks,
        "mapping": not result["events"]["lcr_offsets_not_batch_ends"]
        and observed.received.announced == args.count,
        "lcr_complete": bool(last and last["offsets"].get(stream) == args.count),
        "exact": exact["exact"],
        "exactness": exact,
        "final_lcr": last.get("lcr") if last else None,
    }
    return {
        "count": args.count,
        "rate": args.rate,
        "book": args.book,
        "book_rows": rows,
        "normalised_stream": bool(normalised),
        "seed": args.seed,
        "batch_size": batch_size,
        "result": result,
        "checks": checks,
        "refresh_at_end": refresh,
        "cores": cores(observed.cpu_before, observed.cpu_after),
        "load": {"before": load_before, "after_publishing": observed.load_after},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=150_000)
    parser.add_argument("--rate", type=int, default=GOAL_RATE)
    parser.add_argument("--book", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--no-normalised",
        dest="normalised",
        action="store_false",
        help="write the normalised trades nowhere (LEDGERFLOW_TREASURY_NORMALISED_STREAM='')",
    )
    args = parser.parse_args()
    measured = run(args)
    record: dict[str, Any] = {
        "kind": "treasury-latency",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **measured,
    }
    print(table(measured["result"]))
    print(over_time_table(measured["result"]))
    print(summary(measured["result"], measured))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"treasury-latency-{str(record['when']).replace(':', '')}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {path}")
    checks = measured["checks"]
    return 0 if all(checks[k] for k in ("complete", "stored_once", "mapping", "exact")) else 1


if __name__ == "__main__":
    sys.exit(main())
