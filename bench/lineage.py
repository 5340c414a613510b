"""``make bench`` (lineage): what filtering rules cost ingest, and a trace at 10 million.

rules   The same backlog of ``--count`` persistent messages (default 200,000) in the
        original format, ``{"id": 1..10, "value": -1000.00..1000.00}`` drawn at random with
        a fixed seed, drains through the real ``ledgerflow worker`` (its defaults) into a
        fresh database with ten providers, once per variant:

            none                 no rule at all
            none, no hash index  no rule, and the batches' hash-key GIN index (what a trace
                                 by body hash reads) dropped: what that index costs ingest
            0 enabled            twenty rules, every one disabled
            5 enabled            the first five of them enabled
            20 enabled           all twenty enabled

        Each rule reads ``id`` and ``value`` only (the original producer sends no
        message_id and no headers) and matches a small share of the messages: about 2 %
        for the twenty together. None uses ``%``: a rule with it is accepted, and then
        every batch fails (psycopg reads the operator in the batch's statement as a
        placeholder).

        The variants run one after the other in each of ``--rounds`` rounds (default 3),
        in an order that rotates every round, so that drift on a shared machine hits them
        alike. A run's rate is its messages over the time from its first batch to its
        last, as bench.lag measures it; a variant's rate is the median of its runs, its
        ratio that median over none's (each round's own ratio is shown too). CPU time per
        message of the broker, of PostgreSQL (the run's backends and the server's writers)
        and of the worker is sampled from /proc; as other people's work moves the rates
        far more than it moves what a message costs, the ratio of none's CPU per message
        to each variant's is shown too (what the rates' ratio is when every core is busy),
        with the broker's share, which rules do not change and other people's queues
        blur, taken as the median of every run's.

        Every run is checked exactly: stored + filtered = count; the sum of the stored
        values plus the sum of ledgerflow.filtered_messages.value = the sum of every value;
        and, rule by rule, the messages filtered (their count and the sum of their values
        in ledgerflow.filtered_messages, their count in ledgerflow.batch_filters) are those
        the rule's condition, written again by hand in SQL and evaluated by PostgreSQL over
        the whole backlog (first matching rule first), selects; with rules enabled that is
        never nothing.

trace   A database seeded with SQL (generate_series, sha256()) with ``--messages`` messages
        (default 10,000,000) as committed batches of 500: each message's body hash, outcome
        (stored; filtered by a rule ``value > 99000``, about 0.5 %; rejected for a value
        sent as a string, about 0.1 %), message id, row and hash key; every message id in
        ledgerflow.message_ids, every stored row in historical_transactions, every
        rejection and filtered message in its table, and publications with their snapshot
        and balances. One body, ``{"id": 1, "value": 10.00}``, is delivered 100 times
        over the history (the most a trace lists); every other body once. The rows are
        written in chunks; the indexes and foreign keys of the tables written are dropped
        first and built again, as the migrations define them, once the rows are in. Then,
        after VACUUM ANALYZE, warm, over one connection, the time of
        ``ledgerflow.lineage.trace.trace`` for 200 random message ids, 200 random body
        hashes (present ones), 50 absent keys and 20 times the body delivered 100 times,
        each result checked, and the plans (EXPLAIN ANALYZE, BUFFERS) of the lookups by
        hash and by message id.

    python -m bench.lineage [rules] [trace] [--count 200000] [--rounds 3]
                            [--messages 10000000]

The benchmarked worker runs with ledgerflow's defaults; ``BENCH_LEDGERFLOW_<NAME>=value``
sets its ``LEDGERFLOW_<NAME>`` (for example ``BENCH_LEDGERFLOW_BATCH_SIZE=1000``).
"""

# Checked on its own (mypy bench/lineage.py), mypy finds ledgerflow installed without a
# py.typed marker and reads none of it: its names are Any here, not errors.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pika
import psycopg
from psycopg import sql

from bench import ingest
from bench.ingest import url_for, worker_env
from ledgerflow.db.connections import connect
from ledgerflow.lineage.trace import MAX_MATCHES, trace
from ledgerflow.lineage.trace import QUERIES as TRACE_QUERIES
from ledgerflow.messaging.rabbitmq import marker_queue
from ledgerflow.settings import load_settings
from ledgerflow.transactions.rules import add_rule, change_rule

HERE = Path(__file__).parent
RESULTS = HERE / "results"
SETTINGS = load_settings()
SEED = 20261130
PROVIDERS = (
    "Visa",
    "Mastercard",
    "Amex",
    "Discover",
    "JCB",
    "UnionPay",
    "Diners",
    "Maestro",
    "Elo",
    "RuPay",
)
BATCH = 500  # messages a batch, ledgerflow's default
REPEATS = 100  # deliveries of the one body the seeded history repeats (MAX_MATCHES of a trace)
T = TypeVar("T")


@dataclass(frozen=True)
class BenchRule:
    """A filtering rule: its CEL condition, the same condition written by hand in SQL over
    ``m.id`` and ``m.value`` (what the check evaluates), and its two justifications."""

    name: str
    condition: str
    by_hand: str
    technical: str
    functional: str


RULES = (
    BenchRule(
        "provider-3-cap",
        "id == 3 && value > 990",
        "m.id = 3 AND m.value > 990",
        "Provider 3 refuses single payments above 990.00.",
        "Such payments are settled by hand with the provider.",
    ),
    BenchRule(
        "network-reversals",
        "id in [7, 8] && value < -995",
        "m.id IN (7, 8) AND m.value < -995",
        "Refunds above 995.00 from providers 7 and 8 are reversals the network books itself.",
        "Counting them here would count them twice.",
    ),
    BenchRule(
        "above-limit",
        "value >= 999.50",
        "m.value >= 999.50",
        "Amounts of 999.50 and more exceed the per-payment limit.",
        "They go to the manual review queue, not to the balances.",
    ),
    BenchRule(
        "provider-10-refunds",
        "id == 10 && value < -900",
        "m.id = 10 AND m.value < -900",
        "Provider 10 sends its large refunds again in a daily file.",
        "The daily file is the reference for them.",
    ),
    BenchRule(
        "zero-amount",
        "value == 0",
        "m.value = 0",
        "A zero amount is a card check, not a payment.",
        "Card checks move no money.",
    ),
    BenchRule(
        "provider-4-fee-band",
        "id == 4 && value > 500 && value < 502",
        "m.id = 4 AND m.value > 500 AND m.value < 502",
        "Provider 4 sends its monthly fee as a payment between 500 and 502.",
        "Fees are booked by accounting, not as balances.",
    ),
    BenchRule(
        "legacy-large-refunds",
        "(id == 1 || id == 2) && value < -999",
        "(m.id = 1 OR m.id = 2) AND m.value < -999",
        "The two legacy providers resend refunds above 999.00 on the next day.",
        "The resent refund is the one counted.",
    ),
    BenchRule(
        "near-ceiling",
        "id != 1 && value > 999.90",
        "m.id <> 1 AND m.value > 999.90",
        "Amounts just below the ceiling come from a rounding bug of one terminal model.",
        "The provider corrects them in its settlement report.",
    ),
    BenchRule(
        "even-providers-band",
        "id in [2, 4, 6] && value >= 998 && value <= 999",
        "m.id IN (2, 4, 6) AND m.value >= 998 AND m.value <= 999",
        "A test amount band the even providers use in production.",
        "Test payments are not customers' money.",
    ),
    BenchRule(
        "new-providers-large",
        "!(id in [1, 2, 3, 4, 5, 6, 7, 8]) && value > 975",
        "NOT (m.id IN (1, 2, 3, 4, 5, 6, 7, 8)) AND m.value > 975",
        "Providers 9 and 10 are in their trial period, capped at 975.00.",
        "Above the trial cap a payment needs a signed contract.",
    ),
    BenchRule(
        "sub-unit-refunds",
        "value < 0 && value > -0.50",
        "m.value < 0 AND m.value > -0.50",
        "Refunds of less than half a unit are currency rounding adjustments.",
        "Rounding is booked once a month as one amount.",
    ),
    BenchRule(
        "provider-5-thresholds",
        "id == 5 ? value > 950 : value < -998",
        "CASE WHEN m.id = 5 THEN m.value > 950 ELSE m.value < -998 END",
        "Provider 5 has its own ceiling; every other provider a refund floor.",
        "Beyond either the payment is reviewed by hand.",
    ),
    BenchRule(
        "weighted-ceiling",
        "value + id > 1000",
        "m.value + m.id > 1000",
        "The ceiling is lowered by one unit per provider number (a contract clause).",
        "Above it the provider pays, not the ledger.",
    ),
    BenchRule(
        "tiered-ceiling",
        "value - id * 10 > 980",
        "m.value - m.id * 10 > 980",
        "Each provider's ceiling is 980.00 plus ten per provider number (a contract tier).",
        "Above its tier a payment is the provider's risk, not the ledger's.",
    ),
    BenchRule(
        "reconciliation-band",
        "value > 987.65 && value < 988.65",
        "m.value > 987.65 AND m.value < 988.65",
        "The reconciliation job posts its probes in this band.",
        "Probes are not payments.",
    ),
    BenchRule(
        "provider-6-thirds",
        "id == 6 && value / 3 > 330",
        "m.id = 6 AND m.value / 3 > 330",
        "Provider 6 pays in three instalments; a third above 330 exceeds its plan.",
        "Such plans are approved one by one.",
    ),
    BenchRule(
        "high-id-refunds",
        "id >= 8 && value <= -980",
        "m.id >= 8 AND m.value <= -980",
        "Large refunds from providers 8 to 10 arrive again as chargebacks.",
        "The chargeback is the one counted.",
    ),
    BenchRule(
        "extremes",
        "value <= -999.90 || value >= 999.95",
        "m.value <= -999.90 OR m.value >= 999.95",
        "Amounts at the extremes of the range are a known producer overflow.",
        "The producer team replays them corrected.",
    ),
    BenchRule(
        "provider-9-test-amounts",
        "id == 9 && value > -1 && value < 1",
        "m.id = 9 AND m.value > -1 AND m.value < 1",
        "Provider 9 checks its connection with amounts under one unit.",
        "Connection checks are not payments.",
    ),
    BenchRule(
        "gift-card-loads",
        "id in [3, 5, 7] && value in [50, 100, 250]",
        "m.id IN (3, 5, 7) AND m.value IN (50, 100, 250)",
        "Loads of 50, 100 or 250 from providers 3, 5 and 7 are gift-card loads.",
        "Gift cards have their own ledger.",
    ),
)
# (variant, enabled rules or None for no rule at all, drop the hash-key index)
VARIANTS: tuple[tuple[str, int | None, bool], ...] = (
    ("none", None, False),
    ("none, no hash index", None, True),
    ("0 enabled", 0, False),
    ("5 enabled", 5, False),
    ("20 enabled", 20, False),
)


def admin(statement: sql.Composed) -> None:
    with psycopg.connect(url_for("postgres"), autocommit=True) as conn:
        conn.execute(statement)


def drop_database(name: str) -> None:
    """Drop a throwaway database, waiting up to a minute for a server that restarts."""
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    deadline = time.monotonic() + 60
    while True:
        try:
            return admin(statement)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def again_if_restarted(what: str, work: Callable[[], T], attempts: int = 3) -> T:
    """``work()``, done again (up to ``attempts`` times) if PostgreSQL went away meanwhile:
    on a shared machine someone else's tests may restart it."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except psycopg.OperationalError as exc:
            if attempt == attempts:
                raise
            print(f"bench: PostgreSQL went away ({exc}); {what} again", file=sys.stderr, flush=True)
            time.sleep(5)
    raise AssertionError("unreachable")


def create_database(name: str) -> str:
    """A database migrated by ``ledgerflow migrate``, with ten providers (ids 1 to 10)."""
    admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = url_for(name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    subprocess.run(
        [sys.executable, "-m", "ledgerflow", "migrate"],
        env={**env, "LEDGERFLOW_DATABASE_URL": url},
        check=True,
        capture_output=True,
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO initial_data (provider_name, initial_value)"
            " SELECT name, 0 FROM unnest(%s::text[]) WITH ORDINALITY AS p(name, n) ORDER BY n",
            (list(PROVIDERS),),
        )
        row = conn.execute("SELECT array_agg(id ORDER BY id) FROM initial_data").fetchone()
        assert row is not None and row[0] == list(range(1, len(PROVIDERS) + 1)), row
    return url


def delete_queues(queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(SETTINGS.amqp_url))
    channel = connection.channel()
    channel.queue_delete(queue)
    channel.queue_delete(marker_queue(queue))
    connection.close()


# --- ingest with rules -------------------------------------------------------------------


def backlog(count: int) -> tuple[list[bytes], list[tuple[int, Decimal]]]:
    """The bodies of the backlog and, for the checks, each one's provider id and value."""
    rng = random.Random(SEED)
    bodies, values = [], []
    for _ in range(count):
        provider, value = rng.randint(1, len(PROVIDERS)), Decimal(rng.randint(-100_000, 100_000))
        value = value.scaleb(-2)  # cents to an amount with two decimals: -1000.00 to 1000.00
        bodies.append(f'{{"id": {provider}, "value": {value}}}'.encode())
        values.append((provider, value))
    return bodies, values


def fill(queue: str, bodies: list[bytes]) -> None:
    """Publish the bodies as persistent messages, and wait until RabbitMQ holds them all."""
    connection = pika.BlockingConnection(pika.URLParameters(SETTINGS.amqp_url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    channel.queue_purge(queue)
    properties = pika.BasicProperties(delivery_mode=2)
    for body in bodies:
        channel.basic_publish("", queue, body, properties)
    while channel.queue_declare(queue, passive=True).method.message_count < len(bodies):
        connection.sleep(0.1)
    connection.close()


async def _set_rules(url: str, enabled: int) -> None:
    conn = await connect(url, autocommit=True)
    async with conn:
        for rule in RULES:
            await add_rule(
                conn,
                rule.name,
                rule.condition,
                rule.technical,
                rule.functional,
                "payments-operations",
                "bench",
            )
        for rule in RULES[enabled:]:
            await change_rule(conn, rule.name, "bench", enabled=False)


class CpuUse(ingest.CpuUse):
    """CPU time of RabbitMQ, of PostgreSQL and of the worker over time (bench.ingest's
    sampler), counting only the run's own database: the broker is every ``beam*``
    process; the database is the backends of the run's database and the server's
    writers (other people's backends are left out); the worker is its pid."""

    GROUPS = ("broker", "database", "worker")
    WRITERS = ("checkpointer", "background writer", "walwriter")

    def __init__(self, worker_pid: int, database: str) -> None:
        self.database = database
        super().__init__(worker_pid)

    def _group(self, pid: int, name: str) -> str | None:
        if pid == self.consumer_pid:
            return "worker"
        if name.startswith("beam"):
            return "broker"
        if name.startswith("postgres"):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                return None
            if self.database in title.split() or any(w in title for w in self.WRITERS):
                return "database"
        return None


@dataclass
class Run:
    """One drain of the backlog by one variant."""

    variant: str
    round: int
    messages: int
    seconds: float
    rate: float
    stored: int
    filtered: int
    expected_filtered: int
    filtered_by_rule: dict[str, int]
    cpu_us_per_message: dict[str, float]
    correct: bool
    problems: list[str] = field(default_factory=list)


def check(
    url: str, values: list[tuple[int, Decimal]], enabled: int | None
) -> tuple[int, int, int, dict[str, int], list[str]]:
    """Stored, filtered, expected filtered, filtered by rule, and what is wrong (if any).

    Rule by rule, both the count and the sum of the values filtered must be those of the
    backlog's messages the rule's hand-written condition selects."""
    problems = []
    rules = RULES[: enabled or 0]
    with psycopg.connect(url) as conn:
        stored, stored_sum = conn.execute(
            "SELECT count(*), coalesce(sum(transaction_value), 0) FROM historical_transactions"
        ).fetchone() or (0, 0)
        filtered, filtered_sum = conn.execute(
            "SELECT count(*), coalesce(sum(value), 0) FROM ledgerflow.filtered_messages"
        ).fetchone() or (0, 0)
        counted = conn.execute(
            "SELECT sum(message_count), sum(stored_count), sum(filtered_count),"
            " sum(rejected_count) FROM ledgerflow.batches"
        ).fetchone()
        by_rule: dict[str, tuple[int, Decimal]] = {
            name: (n, total)
            for name, n, total in conn.execute(
                "SELECT r.name, count(*), sum(f.value) FROM ledgerflow.filtered_messages AS f"
                " JOIN ledgerflow.rule_versions AS v ON v.id = f.rule_version_id"
                " JOIN ledgerflow.rules AS r ON r.id = v.rule_id GROUP BY r.name"
            ).fetchall()
        }
        by_batch_filters: dict[str, int] = dict(
            conn.execute(
                "SELECT r.name, sum(f.filtered)::bigint FROM ledgerflow.batch_filters AS f"
                " JOIN ledgerflow.rule_versions AS v ON v.id = f.rule_version_id"
                " JOIN ledgerflow.rules AS r ON r.id = v.rule_id GROUP BY r.name"
            ).fetchall()
        )
        # The backlog itself, and each rule's condition written by hand: what PostgreSQL
        # says the rules select, first matching rule first, as ledgerflow applies them.
        conn.execute("CREATE TEMP TABLE backlog (id integer NOT NULL, value numeric NOT NULL)")
        with conn.cursor().copy("COPY backlog (id, value) FROM STDIN") as copy:
            for row in values:
                copy.write_row(row)
        expected: dict[str, tuple[int, Decimal]] = {}
        if rules:
            cases = sql.SQL(" ").join(
                sql.SQL("WHEN {} THEN {}").format(sql.SQL(r.by_hand), sql.Literal(r.name))
                for r in rules
            )
            expected = {
                name: (n, total)
                for name, n, total in conn.execute(
                    sql.SQL(
                        "SELECT rule, count(*), sum(value) FROM"
                        " (SELECT CASE {} END AS rule, value FROM backlog AS m) AS e"
                        " WHERE rule IS NOT NULL GROUP BY rule"
                    ).format(cases)
                ).fetchall()
            }
        conn.rollback()
    count = len(values)
    total = sum((v for _, v in values), Decimal(0))
    if stored + filtered != count:
        problems.append(f"stored {stored} + filtered {filtered} != {count}")
    if Decimal(stored_sum) + Decimal(filtered_sum) != total:
        problems.append(f"sum stored {stored_sum} + sum filtered {filtered_sum} != {total}")
    if counted != (count, stored, filtered, 0):
        problems.append(f"batches count {counted}, not ({count}, {stored}, {filtered}, 0)")
    if by_rule != expected:
        problems.append(f"filtered (count, sum) by rule {by_rule}, the conditions: {expected}")
    counts = {name: n for name, (n, _) in by_rule.items()}
    if by_batch_filters != counts:
        problems.append(f"batch_filters count {by_batch_filters}, not {counts}")
    if rules and not expected:
        problems.append("the enabled rules select nothing from the backlog")
    return stored, filtered, sum(n for n, _ in expected.values()), counts, problems


def run_variant(
    variant: str,
    enabled: int | None,
    drop_hash_index: bool,
    round_: int,
    bodies: list[bytes],
    values: list[tuple[int, Decimal]],
) -> Run:
    database = f"ledgerflow_bench_{uuid.uuid4().hex[:8]}"
    queue = f"ledgerflow_bench_{uuid.uuid4().hex[:8]}"
    count = len(bodies)
    process: subprocess.Popen[bytes] | None = None
    try:
        url = create_database(database)
        if enabled is not None:
            asyncio.run(_set_rules(url, enabled))
        if drop_hash_index:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DROP INDEX ledgerflow.batches_hash_keys_idx")
        fill(queue, bodies)
        process = subprocess.Popen(
            [sys.executable, "-m", "ledgerflow", "worker"], env=worker_env(url, queue)
        )
        cpu = CpuUse(process.pid, database)
        cpu.start()
        deadline = time.monotonic() + 600 + count / 1000  # at 1,000 msg/s, something is wrong
        with psycopg.connect(url, autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT coalesce(sum(message_count), 0) FROM ledgerflow.batches"
                ).fetchone()
                if row and row[0] >= count:
                    break
                if process.poll() is not None:
                    raise RuntimeError(f"the worker exited with {process.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the backlog did not drain: {row} of {count} messages")
                time.sleep(0.2)
            span = conn.execute(
                "SELECT extract(epoch FROM min(committed_at))::float8,"
                " extract(epoch FROM max(committed_at))::float8 FROM ledgerflow.batches"
            ).fetchone()
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        cpu.stopped.set()
        cpu.join()
        assert span is not None
        first, last = span
        stored, filtered, expected, by_rule, problems = check(url, values, enabled)
        return Run(
            variant,
            round_,
            count,
            round(last - first, 3),
            round(count / (last - first)),
            stored,
            filtered,
            expected,
            by_rule,
            cpu.per_message(first, last, count),
            not problems,
            problems,
        )
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        drop_database(database)
        delete_queues(queue)


def ingest_with_rules(count: int, rounds: int) -> dict[str, Any]:
    bodies, values = backlog(count)
    runs: list[Run] = []
    for round_ in range(rounds):
        shift = round_ % len(VARIANTS)
        for variant, enabled, drop_hash_index in VARIANTS[shift:] + VARIANTS[:shift]:
            print(
                f"bench: round {round_ + 1}/{rounds}, {variant}: draining {count:,} messages...",
                file=sys.stderr,
                flush=True,
            )
            run = again_if_restarted(
                variant,
                functools.partial(
                    run_variant, variant, enabled, drop_hash_index, round_, bodies, values
                ),
            )
            print(
                f"bench:   {run.rate:,} msg/s, {run.filtered:,} filtered,"
                f" {'correct' if run.correct else 'NOT CORRECT: ' + '; '.join(run.problems)}",
                file=sys.stderr,
                flush=True,
            )
            runs.append(run)
    summary = []
    base = statistics.median(r.rate for r in runs if r.variant == "none")
    # On a shared machine the rates move with other people's work; the CPU a message costs
    # moves much less. With every core busy, a rate follows the inverse of that cost. Rules
    # do not change the broker's work, and its process serves other people's queues too:
    # its share is the median of every run's, the same for every variant.
    broker = statistics.median(r.cpu_us_per_message["broker"] for r in runs)

    def own_cpu(variant: str) -> float:
        return statistics.median(
            r.cpu_us_per_message["database"] + r.cpu_us_per_message["worker"]
            for r in runs
            if r.variant == variant
        )

    base_cpu = broker + own_cpu("none")
    for variant, enabled, drop_hash_index in VARIANTS:
        mine = [r for r in runs if r.variant == variant]
        per_round = []
        for r in mine:
            none = next(n for n in runs if n.variant == "none" and n.round == r.round)
            per_round.append(round(r.rate / none.rate, 3))
        rate = statistics.median(r.rate for r in mine)
        cpu_total = broker + own_cpu(variant)
        summary.append(
            {
                "variant": variant,
                "enabled_rules": enabled,
                "hash_index": not drop_hash_index,
                "runs": len(mine),
                "rates": [r.rate for r in mine],
                "rate_median": round(rate),
                "ratio_to_none": round(rate / base, 3),
                "ratio_to_none_per_round": per_round,
                "filtered": sorted({r.filtered for r in mine}),
                "cpu_us_per_message": {
                    group: round(statistics.median(r.cpu_us_per_message[group] for r in mine), 1)
                    for group in ("broker", "database", "worker")
                },
                "cpu_us_per_message_total": round(cpu_total, 1),
                "cpu_ratio_to_none": round(base_cpu / cpu_total, 3),
                "correct": all(r.correct for r in mine),
            }
        )
    return {
        "count": count,
        "rounds": rounds,
        "rules": [asdict(r) for r in RULES],
        "variants": summary,
        "runs": [asdict(r) for r in runs],
    }


def rules_table(result: dict[str, Any]) -> str:
    lines = [
        "| variant | msg/s (median) | x none | x none, per round | filtered | correct"
        " | CPU µs/msg: broker, database, worker | CPU µs/msg, broker pooled | x none by CPU |",
        "|---|---:|---:|---|---:|---|---|---:|---:|",
    ]
    for v in result["variants"]:
        cpu = v["cpu_us_per_message"]
        lines.append(
            f"| {v['variant']} | {v['rate_median']:,} | {v['ratio_to_none']:.2f}"
            f" | {', '.join(f'{x:.2f}' for x in v['ratio_to_none_per_round'])}"
            f" | {', '.join(f'{x:,}' for x in v['filtered'])}"
            f" | {'yes' if v['correct'] else 'NO'}"
            f" | {cpu['broker']}, {cpu['database']}, {cpu['worker']}"
            f" | {v['cpu_us_per_message_total']} | {v['cpu_ratio_to_none']:.2f} |"
        )
    return "\n".join(lines)


# --- trace at the 10-million scale -------------------------------------------------------

# The tables the seeding writes: their indexes and foreign keys are built after the rows.
SEEDED_TABLES = (
    "ledgerflow.batches",
    "ledgerflow.message_ids",
    "ledgerflow.rejected_messages",
    "ledgerflow.filtered_messages",
    "ledgerflow.batch_filters",
    "historical_transactions",
)
SEED_TABLE = """
CREATE TEMP TABLE seed (
    g bigint, batch bigint, position integer, provider integer, value numeric, letter text,
    message_id text, body bytea, digest bytea
)
"""
# Message g (from 0) is at position g % 500 of batch g / 500 + 1. Its value, in cents, is
# g times about 0.618 of the range, modulo the range: spread like random values, and unique
# (the factor is prime to 20,000,000), so its body is too. A value sent as a string is
# rejected (one message in 997), a value above 99,000 filtered by the rule (one in 200).
# But one message in %(every)s is the same body, {"id": 1, "value": 10.00}: a payment the
# producer sends again and again, which a trace by hash finds every delivery of.
SEED_MESSAGES = """
INSERT INTO seed
SELECT g, g / 500 + 1, mod(g, 500)::integer, provider, value, letter, message_id, body,
       sha256(body)
FROM (
    SELECT g, provider, value, letter, md5('ledgerflow message ' || g)::uuid::text AS message_id,
           convert_to(CASE WHEN letter = 'R'
                           THEN '{"id": ' || provider || ', "value": "' || value || '"}'
                           ELSE '{"id": ' || provider || ', "value": ' || value || '}' END,
                      'UTF8') AS body
    FROM (
        SELECT g,
               CASE WHEN repeated THEN 1 ELSE (1 + mod(g * 7, 10))::integer END AS provider,
               CASE WHEN repeated THEN 10.00 ELSE round(cents / 100.0, 2) END AS value,
               CASE WHEN repeated THEN 'S' WHEN mod(g, 997) = 500 THEN 'R'
                    WHEN cents > 9900000 THEN 'F' ELSE 'S' END AS letter
        FROM (SELECT g, mod(g * 12360679, 20000000) - 10000000 AS cents,
                     mod(g, %(every)s) = %(offset)s AS repeated
              FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g) AS c
    ) AS v
) AS m
"""
SEED_BATCHES = """
INSERT INTO ledgerflow.batches
    (id, queue, leader_term, instance, message_count, stored_count, rejected_count,
     duplicate_count, redelivered_count, filtered_count, committed_at, body_hashes, outcomes,
     message_ids, transaction_ids, rejected_ids, filter_rules, hash_keys)
SELECT batch, 'incoming_transactions', 1, 'ledgerflow-1', count(*),
       count(*) FILTER (WHERE letter = 'S'), count(*) FILTER (WHERE letter = 'R'), 0, 0,
       count(*) FILTER (WHERE letter = 'F'),
       %(start)s::timestamptz + make_interval(secs => batch * 30),
       string_agg(digest, ''::bytea ORDER BY position),
       string_agg(letter, '' ORDER BY position),
       array_agg(message_id ORDER BY position),
       array_agg(CASE WHEN letter = 'S' THEN g + 1 END ORDER BY position)::integer[],
       CASE WHEN bool_or(letter = 'R')
            THEN array_agg(CASE WHEN letter = 'R' THEN g + 1 END ORDER BY position) END,
       CASE WHEN bool_or(letter = 'F')
            THEN array_agg(CASE WHEN letter = 'F' THEN %(rule)s::bigint END ORDER BY position)
       END,
       array_agg(('x' || encode(substring(digest FROM 1 FOR 8), 'hex'))::bit(64)::bigint
                 ORDER BY position)
FROM seed GROUP BY batch
"""
SEED_ROWS = (
    "INSERT INTO ledgerflow.message_ids (message_id, batch_id) SELECT message_id, batch FROM seed",
    "INSERT INTO historical_transactions (id, provider_id, transaction_value)"
    " SELECT g + 1, provider, value FROM seed WHERE letter = 'S'",
    "INSERT INTO ledgerflow.rejected_messages"
    " (id, queue, message_id, reason, detail, body, properties, received_at)"
    " SELECT g + 1, 'incoming_transactions', message_id, 'invalid_value',"
    " 'value must be a JSON number, got ''' || value || '''', body,"
    " jsonb_build_object('message_id', message_id, 'delivery_mode', 2),"
    " %(start)s::timestamptz + make_interval(secs => batch * 30)"
    " FROM seed WHERE letter = 'R'",
    "INSERT INTO ledgerflow.filtered_messages"
    " (batch_id, position, rule_version_id, provider_id, value)"
    " SELECT batch, position, %(rule)s, provider, value FROM seed WHERE letter = 'F'",
    "INSERT INTO ledgerflow.batch_filters (batch_id, rule_version_id, filtered)"
    " SELECT batch, %(rule)s, count(*) FROM seed WHERE letter = 'F' GROUP BY batch",
)
# Three publications after a chunk's last batch, each with the snapshot that sees the
# chunk (committed before) and the balances of that moment, as the publisher keeps them.
SEED_PUBLICATIONS = """
INSERT INTO ledgerflow.publishes
    (boundary, term, instance, provider_count, published_at, lag_seconds, snapshot, balances)
SELECT b, 1, 'ledgerflow-1', 10, b + interval '0.04 seconds', 0.04, pg_current_snapshot(),
       (SELECT jsonb_object_agg(d.id || '_' || d.provider_name,
                                trim_scale(d.initial_value + coalesce(t.total, 0))::text)
        FROM initial_data AS d LEFT JOIN ledgerflow.provider_totals AS t ON t.provider_id = d.id)
FROM (SELECT date_trunc('second', %(after)s::timestamptz) + make_interval(secs => k) AS b
      FROM generate_series(1, 3) AS k) AS p
"""


def defer_structures(conn: psycopg.Connection[Any]) -> list[sql.SQL | sql.Composed]:
    """Drop the seeded tables' foreign keys, then their keys and indexes (those no other
    foreign key needs); return the statements that build them again, keys first."""
    tables = list(SEEDED_TABLES)

    def drop_constraints(query: str) -> list[tuple[str, str, str]]:
        found: list[tuple[str, str, str]] = conn.execute(query, (tables,)).fetchall()
        for table, name, _ in found:
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.SQL(table), sql.Identifier(name)
                )
            )
        return found

    foreign = drop_constraints(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE contype = 'f' AND conrelid = ANY(%s::regclass[]) ORDER BY oid"
    )
    keys = drop_constraints(
        "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)"
        " FROM pg_constraint AS c WHERE c.contype IN ('p', 'u')"
        " AND c.conrelid = ANY(%s::regclass[]) AND NOT EXISTS (SELECT 1 FROM pg_constraint"
        " AS f WHERE f.contype = 'f' AND f.conindid = c.conindid) ORDER BY c.oid"
    )
    indexes = conn.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index AS i"
        " WHERE i.indrelid = ANY(%s::regclass[]) AND NOT EXISTS"
        " (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = i.indexrelid) ORDER BY 1",
        (tables,),
    ).fetchall()
    for index, _ in indexes:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(index)))
    rebuild: list[sql.SQL | sql.Composed] = [
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            sql.SQL(table),
            sql.Identifier(name),
            sql.SQL(definition),
        )
        for table, name, definition in keys
    ]
    rebuild += [sql.SQL(definition) for _, definition in indexes]
    rebuild += [
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            sql.SQL(table),
            sql.Identifier(name),
            sql.SQL(definition),
        )
        for table, name, definition in foreign
    ]
    return rebuild


async def _seed_rule(url: str) -> int:
    conn = await connect(url, autocommit=True)
    async with conn:
        rule = await add_rule(
            conn,
            "large-amounts",
            "value > 99000",
            "Amounts above 99,000.00 exceed the per-payment limit.",
            "They go to the manual review queue, not to the balances.",
            "payments-operations",
            "bench",
        )
    version: int = rule.version_id
    return version


def repeated_every(messages: int) -> int:
    """One message in this many is the repeated body (messages 7, 7 + this, ...)."""
    return max(1, messages // REPEATS)


def seed(url: str, messages: int, chunk_batches: int) -> dict[str, float]:
    """Write ``messages`` messages' history; return how long each phase took (s)."""
    started = time.perf_counter()
    rule = asyncio.run(_seed_rule(url))
    batches = math.ceil(messages / BATCH)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        rebuild = defer_structures(conn)
        conn.execute(SEED_TABLE)
        row = conn.execute(
            "SELECT now() - make_interval(secs => %s * 30)", (batches + 1,)
        ).fetchone()
        assert row is not None
        start: datetime = row[0]
        for first_batch in range(0, batches, chunk_batches):
            first = first_batch * BATCH
            last = min(messages, (first_batch + chunk_batches) * BATCH) - 1
            conn.execute("TRUNCATE seed")
            conn.execute(
                SEED_MESSAGES,
                {"first": first, "last": last, "every": repeated_every(messages), "offset": 7},
            )
            params = {"start": start, "rule": rule}
            conn.execute(SEED_BATCHES, params)
            for statement in SEED_ROWS:
                conn.execute(statement, params)
            row = conn.execute(
                "SELECT %(start)s::timestamptz + make_interval(secs => %(batch)s * 30)",
                {"start": start, "batch": last // BATCH + 1},
            ).fetchone()
            assert row is not None
            conn.execute(SEED_PUBLICATIONS, {"after": row[0]})
            done = last + 1
            if done % 1_000_000 < chunk_batches * BATCH or done == messages:
                print(
                    f"bench:   {done:,} messages written ({time.perf_counter() - started:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
        for table, column in (
            ("ledgerflow.batches", "id"),
            ("historical_transactions", "id"),
            ("ledgerflow.rejected_messages", "id"),
        ):
            conn.execute(
                sql.SQL(
                    "SELECT setval(pg_get_serial_sequence({}, {}), (SELECT max({}) FROM {}))"
                ).format(
                    sql.Literal(table),
                    sql.Literal(column),
                    sql.Identifier(column),
                    sql.SQL(table),
                )
            )
        written = time.perf_counter()
        print("bench:   building indexes and foreign keys...", file=sys.stderr, flush=True)
        for structure in rebuild:
            conn.execute(structure)
        built = time.perf_counter()
        print("bench:   VACUUM ANALYZE...", file=sys.stderr, flush=True)
        conn.execute("VACUUM ANALYZE")
        vacuumed = time.perf_counter()
    return {
        "rows_seconds": round(written - started, 1),
        "indexes_seconds": round(built - written, 1),
        "vacuum_analyze_seconds": round(vacuumed - built, 1),
        "total_seconds": round(vacuumed - started, 1),
    }


def percentiles(values: list[float]) -> dict[str, float]:
    """Nearest-rank percentiles, in ms, of durations in seconds."""
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)] * 1000, 2)

    return {
        "samples": len(ordered),
        "p50_ms": rank(0.50),
        "p95_ms": rank(0.95),
        "p99_ms": rank(0.99),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def sample_keys(url: str, messages: int, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """The message id and body SHA-256 (hex) of ``count`` random messages (not the
    repeated body's: each of these bodies was delivered once)."""
    every = repeated_every(messages)
    chosen = [g for g in rng.sample(range(messages), count * 2) if g % every != 7][:count]
    keys = []
    with psycopg.connect(url) as conn:
        for g in chosen:
            row = conn.execute(
                "SELECT message_ids[%(p)s + 1],"
                " encode(substring(body_hashes FROM %(p)s * 32 + 1 FOR 32), 'hex')"
                " FROM ledgerflow.batches WHERE id = %(b)s",
                {"b": g // BATCH + 1, "p": g % BATCH},
            ).fetchone()
            assert row is not None
            keys.append((row[0], row[1]))
    return keys


async def _trace_times(
    url: str, groups: dict[str, tuple[list[str], int]], warm_up: list[str]
) -> dict[str, dict[str, Any]]:
    """Each group's trace times, over one connection, after tracing ``warm_up``; each
    result checked: a key finds as many deliveries as its group expects, the first one
    the message or body it names."""
    conn = await connect(url, autocommit=True)
    results: dict[str, dict[str, Any]] = {}
    async with conn:
        for key in warm_up:
            await trace(conn, key)
        for name, (keys, deliveries) in groups.items():
            times: list[float] = []
            outcomes: dict[str, int] = {}
            wrong = published = 0
            for key in keys:
                began = time.perf_counter()
                found: dict[str, Any] = await trace(conn, key)
                times.append(time.perf_counter() - began)
                messages: list[dict[str, Any]] = found["messages"]
                if len(messages) != deliveries:
                    wrong += 1
                    continue
                if not messages:
                    continue
                if key not in (
                    messages[0]["message_id"],
                    messages[0]["body_sha256"],
                ):
                    wrong += 1
                    continue
                outcome: str = messages[0]["outcome"]
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                transaction = messages[0].get("transaction")
                if transaction and transaction.get("first_publication"):
                    published += 1
            results[name] = {
                **percentiles(times),
                "outcomes": outcomes,
                "stored_with_first_publication": published,
                "wrong": wrong,
            }
    return results


def explain(url: str, hash_hex: str, message_id: str) -> dict[str, str]:
    """The plans, executed, of the two lookups a trace starts with."""
    digest = bytes.fromhex(hash_hex)
    plans = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, params in (
            (
                "by_hash",
                {
                    "key": int.from_bytes(digest[:8], "big", signed=True),
                    "digest": digest,
                    "limit": 100,
                },
            ),
            ("by_message_id", {"message_id": message_id}),
        ):
            query: str = TRACE_QUERIES[name]
            rows = conn.execute(
                sql.SQL("EXPLAIN (ANALYZE, BUFFERS) {}").format(sql.SQL(query)),
                params,
            ).fetchall()
            plans[name] = "\n".join(r[0] for r in rows)
    return plans


def trace_latency(messages: int, chunk_batches: int) -> dict[str, Any]:
    database = f"ledgerflow_bench_{uuid.uuid4().hex[:8]}"
    try:
        url = create_database(database)
        print(f"bench: seeding {messages:,} messages...", file=sys.stderr, flush=True)
        seeding = seed(url, messages, chunk_batches)
        print(f"bench:   seeded in {seeding['total_seconds']:.0f} s", file=sys.stderr, flush=True)
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT pg_database_size(current_database()),"
                " (SELECT count(*) FROM ledgerflow.batches),"
                " (SELECT coalesce(sum(message_count), 0) FROM ledgerflow.batches),"
                " (SELECT count(*) FROM ledgerflow.message_ids),"
                " (SELECT count(*) FROM historical_transactions),"
                " (SELECT count(*) FROM ledgerflow.filtered_messages),"
                " (SELECT count(*) FROM ledgerflow.rejected_messages),"
                " (SELECT count(*) FROM ledgerflow.publishes)"
            ).fetchone()
        assert row is not None
        size, batches, counted, ids, stored, filtered, rejected, publications = row
        if counted != messages or ids != messages or stored + filtered + rejected != messages:
            raise RuntimeError(f"the seeded history is not whole: {row}")
        rng = random.Random(SEED)
        by_id = [i for i, _ in sample_keys(url, messages, 200, rng)]
        by_hash = [h for _, h in sample_keys(url, messages, 200, rng)]
        warm_up = [k for pair in sample_keys(url, messages, 50, rng) for k in pair]
        absent = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(25)]
        absent += [rng.randbytes(32).hex() for _ in range(25)]
        with psycopg.connect(url) as conn:
            digest = conn.execute(
                "SELECT encode(substring(body_hashes FROM 7 * 32 + 1 FOR 32), 'hex')"
                " FROM ledgerflow.batches WHERE id = 1"
            ).fetchone()
        assert digest is not None
        repeated = len(range(7, messages, repeated_every(messages)))
        print("bench: timing traces...", file=sys.stderr, flush=True)
        lookups = asyncio.run(
            _trace_times(
                url,
                {
                    "message id": (by_id, 1),
                    "body hash": (by_hash, 1),
                    "absent": (absent, 0),
                    f"body hash, {repeated} deliveries": (
                        [digest[0]] * 20,
                        min(repeated, MAX_MATCHES),
                    ),
                },
                warm_up,
            )
        )
        return {
            "messages": messages,
            "batches": batches,
            "seeding": seeding,
            "database_mb": round(size / 2**20),
            "rows": {
                "message_ids": ids,
                "historical_transactions": stored,
                "filtered_messages": filtered,
                "rejected_messages": rejected,
                "publishes": publications,
            },
            "lookups": lookups,
            "explain": explain(url, by_hash[0], by_id[0]),
        }
    finally:
        drop_database(database)


def trace_table(result: dict[str, Any]) -> str:
    lines = [
        "| trace by | samples | p50 ms | p95 ms | p99 ms | max ms | outcomes | wrong |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, r in result["lookups"].items():
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items())) or "none found"
        lines.append(
            f"| {name} | {r['samples']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']}"
            f" | {r['max_ms']} | {outcomes} | {r['wrong']} |"
        )
    return "\n".join(lines)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    # Stopped by SIGTERM too (or by SIGINT when started in the background, where it is
    # ignored), the throwaway databases, queues and worker still go.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", default=["rules", "trace"])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=10_000_000)
    parser.add_argument(
        "--chunk-batches", type=int, default=500, help="batches the seeding writes a statement"
    )
    args = parser.parse_args()
    record: dict[str, Any] = {
        "kind": "lineage",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    correct = True
    if "rules" in args.parts:
        record["rules"] = rules = ingest_with_rules(args.count, args.rounds)
        correct &= all(v["correct"] for v in rules["variants"])
    if "trace" in args.parts:
        record["trace"] = traced = again_if_restarted(
            "the trace", lambda: trace_latency(args.messages, args.chunk_batches)
        )
        correct &= all(r["wrong"] == 0 for r in traced["lookups"].values())
    if "rules" in record:
        print(f"ingest of {args.count:,} messages with filtering rules, {args.rounds} rounds:")
        print(rules_table(record["rules"]))
        variants = {v["variant"]: v for v in record["rules"]["variants"]}
        print(
            "ratios: "
            + ", ".join(f"{k}: {v['ratio_to_none']:.2f} x none" for k, v in variants.items())
        )
        twenty = variants["20 enabled"]
        print(
            "goal (20 enabled rules cost at most 10 % of none's rate):"
            f" {'met' if twenty['ratio_to_none'] >= 0.9 else 'NOT met'} by the rates"
            f" (x {twenty['ratio_to_none']:.2f}),"
            f" {'met' if twenty['cpu_ratio_to_none'] >= 0.9 else 'NOT met'} by CPU per message"
            f" (x {twenty['cpu_ratio_to_none']:.2f})"
        )
    if "trace" in record:
        traced = record["trace"]
        print(
            f"trace at {traced['messages']:,} messages ({traced['batches']:,} batches,"
            f" {traced['database_mb']:,} MB; seeded in {traced['seeding']['total_seconds']:.0f} s:"
            f" rows {traced['seeding']['rows_seconds']:.0f} s, indexes and keys"
            f" {traced['seeding']['indexes_seconds']:.0f} s, VACUUM ANALYZE"
            f" {traced['seeding']['vacuum_analyze_seconds']:.0f} s):"
        )
        print(trace_table(traced))
        for name, plan in traced["explain"].items():
            print(f"EXPLAIN (ANALYZE, BUFFERS) {name}:\n{plan}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"lineage-{record['when'].replace(':', '')}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {path}")
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
