"""``make bench`` (feeds): reconciliation at 10,000 tables, detection at a million batches.

    python -m bench.feeds [--seed 20261130] [--runs 5]

A throwaway database, migrated, gets (drawn with ``--seed``, printed):

- 1,000 models reading 10,000 distinct tables: model i reads tables 10 i to 10 i + 9 and
  0 to 20 more drawn at random, so 10 to 30 each;
- 10,000 feeds from 200 loaders, 8,000 of them onboarded: 7,000 persisting into tables
  the models read (so 3,000 read tables are gaps), 1,000 into tables no model reads;
  each onboarded feed with a frequency drawn from the five, two successful loads and, for
  5 % of them, a last one more than twice its frequency ago (stale), with a failed load
  since; only 300 of the onboarded feeds' tables exist as real tables (the other 7,700 are
  missing tables); the 2,000 other feeds are detected, described, in review, on hold or
  rejected.

Measured: (a) ``reconcile`` (its first run, which inserts every finding, then a second,
which finds the same ones), every finding's count checked against what the seeding
drew; then, with 1,000,000 rows in ledgerflow.batches (four queues, generate_series) in
the load log and three of the queues' feeds onboarded (one of them a queue whose batches
stopped 11 days ago: stale, its last batch found far down the index), ``reconcile``
again. (b)
``detect`` with the million batches and about 20,000 reported loads: the time from a load
of a new (source, table) being recorded to its feed existing (``--runs`` times), the
steady-state detection that finds nothing (``--runs`` times), and the plan of its query;
then its statement alone against the baseline, the statement detection ran before
ledgerflow.load_pairs (migration 023), which grouped every row of ledgerflow.load_log:
each ``--runs`` times, finding a new pair and finding nothing, rolled back each time.
The goals: a reconciliation under 5 s, a detection under 200 ms.
"""

# Checked on its own (mypy bench/feeds.py), mypy finds ledgerflow installed without a
# py.typed marker and reads none of it: its names are Any here, not errors.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, LiteralString
from urllib.parse import urlsplit

import psycopg
import structlog
from psycopg import sql

from ledgerflow.db import migrate
from ledgerflow.db.connections import connect
from ledgerflow.feeds.letters import Letters
from ledgerflow.feeds.loads import Load, detect, detect_query, record_load
from ledgerflow.feeds.reconcile import Reconciliation, reconcile
from ledgerflow.settings import load_settings

RESULTS = Path(__file__).parent / "results"
SETTINGS = load_settings()
SEED = 20261130
TABLES = 10_000  # tables the models read
MODELS = 1_000
FEEDS = 10_000
ONBOARDED = 8_000
PERSISTING_READ = 7_000  # onboarded feeds persisting into a table some model reads
REAL_TABLES = 300  # onboarded feeds' tables that exist
STALE_SHARE = 0.05
LOADERS = 200
BATCHES = 1_000_000
QUEUES = ("incoming", "eu", "us", "apac")
FREQUENCIES = {
    "15 minutes": 900,
    "hourly": 3_600,
    "daily": 86_400,
    "weekly": 7 * 86_400,
    "monthly": 30 * 86_400,  # two months are 59 to 62 days: stale ones are 63 days old or more
}
OTHER_STATES = ("detected", "described", "in_review", "on_hold", "rejected")
GOAL_RECONCILE_S = 5.0
GOAL_DETECT_MS = 200.0


def read_table(n: int) -> str:
    """The name of the n-th table the models read."""
    return f"mart_{n % 20:02d}.t{n:05d}"


@dataclass(frozen=True)
class Seeded:
    """What the seeding drew, and the findings it should give."""

    now: datetime
    expected: dict[str, int]


def draw(rng: random.Random, now: datetime) -> tuple[dict[str, list[Any]], Seeded]:
    """The rows to insert, as column arrays, and the findings they should give."""
    models: dict[str, list[Any]] = {"model": [], "table": []}
    for i in range(MODELS):
        own = range(i * 10, i * 10 + 10)
        extra = rng.sample(range(TABLES), rng.randint(0, 20))
        for n in sorted(set(own) | set(extra)):
            models["model"].append(f"model-{i:04d}")
            models["table"].append(read_table(n))
    targets = rng.sample(range(TABLES), PERSISTING_READ)
    feeds: dict[str, list[Any]] = {
        k: [] for k in ("source", "table", "state", "schema", "name", "frequency")
    }
    loads: dict[str, list[Any]] = {k: [] for k in ("source", "table", "status", "finished")}
    real = set(rng.sample(range(ONBOARDED), REAL_TABLES))
    stale = 0
    for j in range(FEEDS):
        source, table = f"loader-{j % LOADERS:03d}", f"staging.f{j:05d}"
        frequency = rng.choice(list(FREQUENCIES))
        every = FREQUENCIES[frequency]
        if j < PERSISTING_READ:
            schema, name = read_table(targets[j]).split(".")
        else:
            schema, name = "unread", f"u{j:05d}"
        state = "onboarded" if j < ONBOARDED else rng.choice(OTHER_STATES)
        is_stale = state == "onboarded" and rng.random() < STALE_SHARE
        stale += is_stale
        age = every * (rng.uniform(2.1, 5.0) if is_stale else rng.uniform(0.0, 1.0))
        feeds["source"].append(source)
        feeds["table"].append(table)
        feeds["state"].append(state)
        feeds["schema"].append(schema if state in ("onboarded", "in_review") else None)
        feeds["name"].append(name if state in ("onboarded", "in_review") else None)
        feeds["frequency"].append(frequency)
        for status, seconds in (
            ("succeeded", age + every),
            ("succeeded", age),
            *((("failed", age / 2),) if is_stale else ()),
        ):
            loads["source"].append(source)
            loads["table"].append(table)
            loads["status"].append(status)
            loads["finished"].append(now - timedelta(seconds=seconds))
    expected = {
        "gap": TABLES - PERSISTING_READ,
        "unused": ONBOARDED - PERSISTING_READ,
        "stale": stale,
        "missing_table": ONBOARDED - REAL_TABLES,
    }
    columns = {
        **{f"model_{k}": v for k, v in models.items()},
        **{f"feed_{k}": v for k, v in feeds.items()},
        **{f"load_{k}": v for k, v in loads.items()},
        "real": sorted(real),
    }
    return columns, Seeded(now, expected)


# One statement each (a statement with parameters is one command).
SEEDING: tuple[LiteralString, ...] = (
    """INSERT INTO ledgerflow.models (name, registered_by)
    SELECT DISTINCT m, 'bench' FROM unnest(%(model_model)s::text[]) AS m""",
    """INSERT INTO ledgerflow.model_tables (model_id, table_name)
    SELECT m.id, r.t FROM unnest(%(model_model)s::text[], %(model_table)s::text[]) AS r(name, t)
    JOIN ledgerflow.models AS m ON m.name = r.name""",
    """INSERT INTO ledgerflow.loads
        (source, table_name, row_count, status, started_at, finished_at, reported_by)
    SELECT s, t, 1000, st, f - interval '5 minutes', f, 'bench'
    FROM unnest(%(load_source)s::text[], %(load_table)s::text[], %(load_status)s::text[],
                %(load_finished)s::timestamptz[]) AS l(s, t, st, f)""",
    """INSERT INTO ledgerflow.feeds (source, table_name, first_load_at, state,
        persistency_schema, persistency_table, frequency)
    SELECT f.s, f.t, (SELECT min(l.finished_at) FROM ledgerflow.loads AS l
                      WHERE l.source = f.s AND l.table_name = f.t),
           f.st, f.sc, f.n, f.fr
    FROM unnest(%(feed_source)s::text[], %(feed_table)s::text[], %(feed_state)s::text[],
                %(feed_schema)s::text[], %(feed_name)s::text[], %(feed_frequency)s::text[])
         AS f(s, t, st, sc, n, fr)""",
)
SEED_BATCHES: LiteralString = """
INSERT INTO ledgerflow.batches (queue, leader_term, instance, message_count, stored_count,
                                rejected_count, duplicate_count, committed_at)
SELECT CASE WHEN q = %(retired)s AND g > %(count)s / 2 THEN %(queues)s[1] ELSE q END,
       1, 'bench', 500, 500, 0, 0,
       %(now)s::timestamptz - make_interval(secs => (%(count)s - g) * 2)
FROM generate_series(1, %(count)s) AS g
CROSS JOIN LATERAL (SELECT (%(queues)s::text[])[1 + g %% cardinality(%(queues)s::text[])]) AS s(q);
"""


# The baseline: detection's statement before ledgerflow.load_pairs (023), every load read.
DETECT_BEFORE_023: LiteralString = """
INSERT INTO ledgerflow.feeds (source, table_name, first_load_at)
SELECT source, table_name, min(finished_at)
FROM ledgerflow.load_log AS l
WHERE status = 'succeeded'
  AND NOT EXISTS (
      SELECT 1 FROM ledgerflow.feeds AS f
      WHERE f.source = l.source AND f.table_name = l.table_name
  )
GROUP BY source, table_name
ON CONFLICT (source, table_name) DO NOTHING
RETURNING id
"""


def url_for(database: str) -> str:
    """The configured database URL pointing at ``database``."""
    return str(urlsplit(SETTINGS.database_url)._replace(path=f"/{database}").geturl())


def admin(statement: LiteralString, database: str) -> None:
    """CREATE or DROP the database, from the maintenance database."""
    with psycopg.connect(url_for("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL(statement).format(sql.Identifier(database)))


async def migrated(url: str) -> None:
    conn = await connect(url)
    async with conn:
        await migrate.migrate(conn)


def create_tables(conn: psycopg.Connection[Any], feed_tables: list[str]) -> None:
    """The schemas of every persistency table, and the persistency tables of the feeds
    of ``feed_tables`` (each feed's table is its own)."""
    schemas = conn.execute(
        "SELECT DISTINCT persistency_schema FROM ledgerflow.feeds"
        " WHERE persistency_schema IS NOT NULL ORDER BY 1"
    ).fetchall()
    tables = conn.execute(
        "SELECT persistency_schema, persistency_table FROM ledgerflow.feeds"
        " WHERE table_name = ANY (%s) ORDER BY 1, 2",
        (feed_tables,),
    ).fetchall()
    statements = [sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(s)) for (s,) in schemas]
    statements += [
        sql.SQL("CREATE TABLE {}.{} (id bigint)").format(sql.Identifier(s), sql.Identifier(t))
        for s, t in tables
    ]
    conn.execute(sql.SQL("; ").join(statements))


def seed(url: str, seed_value: int) -> tuple[Seeded, float]:
    """Models, feeds, loads and the few real tables; what they should give, and the
    seconds the seeding took."""
    started = time.perf_counter()
    rng = random.Random(seed_value)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT date_trunc('second', now())").fetchone()
        assert row is not None
        columns, seeded = draw(rng, row[0])
        for statement in SEEDING:
            conn.execute(statement, columns)
        create_tables(conn, [f"staging.f{j:05d}" for j in columns["real"]])
        conn.execute("VACUUM ANALYZE")
    return seeded, time.perf_counter() - started


def seed_batches(url: str, now: datetime) -> float:
    """A million batches over the last 23 days, one of the four queues each; the last
    queue's batches stop halfway (its newest is 11 days old)."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            SEED_BATCHES,
            {"queues": list(QUEUES), "retired": QUEUES[-1], "count": BATCHES, "now": now},
        )
        conn.execute("VACUUM ANALYZE ledgerflow.batches")
    return time.perf_counter() - started


def counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute(
        "SELECT kind, count(*) FROM ledgerflow.feed_findings WHERE closed_at IS NULL GROUP BY kind"
    ).fetchall()
    return {str(kind): int(n) for kind, n in rows}


def run_figures(run: Reconciliation, wall: float) -> dict[str, Any]:
    return {
        "seconds": round(wall, 3),
        "statement_seconds": round(run.seconds, 3),
        "tables_read": run.tables_read,
        "onboarded": run.onboarded,
        "found": run.found,
        "new": len(run.new),
        "closed": run.closed,
    }


async def timed_reconcile(url: str, now: datetime) -> dict[str, Any]:
    conn = await connect(url, autocommit=True)
    async with conn:
        began = time.perf_counter()
        run = await reconcile(conn, "bench", now)
        return run_figures(run, time.perf_counter() - began)


def explain(url: str, query: sql.Composable, params: dict[str, Any] | None = None) -> str:
    """The executed plan of ``query``, its changes rolled back."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            sql.SQL("EXPLAIN (ANALYZE, BUFFERS) {}").format(query), params
        ).fetchall()
        conn.rollback()
    return "\n".join(str(r[0]) for r in rows)


async def detection(url: str, runs: int, now: datetime) -> dict[str, Any]:
    """Detection with the million batches: the queues' feeds found at first, a new
    reported (source, table) from its record to its feed, and a detection finding
    nothing."""
    letters = Letters("http://127.0.0.1:8080")
    conn = await connect(url, autocommit=True)
    async with conn:
        began = time.perf_counter()
        queues = await detect(conn, letters)
        first = time.perf_counter() - began
        assert sorted(f.source for f in queues) == sorted(f"queue:{q}" for q in QUEUES), queues
        await conn.execute(
            "UPDATE ledgerflow.feeds SET state = 'onboarded', persistency_schema = 'public',"
            " persistency_table = 'historical_transactions', frequency = '15 minutes'"
            " WHERE source IN ('queue:incoming', 'queue:eu', %s)",
            (f"queue:{QUEUES[-1]}",),
        )
        new: list[float] = []
        for run in range(runs):
            load = Load(f"new-loader-{run}", "staging.new", 10, "succeeded", now, now)
            began = time.perf_counter()
            await record_load(conn, load, "bench")
            found = await detect(conn, letters)
            new.append(time.perf_counter() - began)
            assert [(f.source, f.table_name) for f in found] == [(load.source, "staging.new")]
        steady: list[float] = []
        for _ in range(runs):
            began = time.perf_counter()
            assert await detect(conn, letters) == []
            steady.append(time.perf_counter() - began)
        statements = {
            f"{name}_{case}": await statement_seconds(conn, query, runs, now, case == "new_pair")
            for name, query in (("now", detect_query()), ("before_023", sql.SQL(DETECT_BEFORE_023)))
            for case in ("new_pair", "steady")
        }
    figures: dict[str, Any] = {
        "first_with_4_queue_feeds_ms": round(first * 1000, 1),
        "new_feed_ms": [round(s * 1000, 1) for s in new],
        "new_feed_median_ms": round(statistics.median(new) * 1000, 1),
        "steady_ms": [round(s * 1000, 1) for s in steady],
        "steady_median_ms": round(statistics.median(steady) * 1000, 1),
    }
    for key, seconds in statements.items():
        figures[f"statement_{key}_median_ms"] = round(statistics.median(seconds) * 1000, 1)
    for case in ("new_pair", "steady"):
        figures[f"statement_{case}_ratio_to_before_023"] = round(
            statistics.median(statements[f"now_{case}"])
            / statistics.median(statements[f"before_023_{case}"]),
            3,
        )
    return figures


async def statement_seconds(
    conn: psycopg.AsyncConnection[Any],
    query: sql.SQL | sql.Composed,
    runs: int,
    now: datetime,
    new_pair: bool,
) -> list[float]:
    """How long ``query`` takes, ``runs`` times, each after a load of a new pair has been
    recorded when ``new_pair`` (checking that it finds just that one), then rolled back."""
    seconds = []
    for run in range(runs):
        async with conn.transaction(force_rollback=True):
            if new_pair:
                load = Load(f"baseline-{run}", "staging.baseline", 1, "succeeded", now, now)
                await record_load(conn, load, "bench")
            began = time.perf_counter()
            cursor = await conn.execute(query)
            found = await cursor.fetchall()
            seconds.append(time.perf_counter() - began)
            assert len(found) == new_pair, found
    return seconds


def measure(url: str, seed_value: int, runs: int) -> dict[str, Any]:
    print(f"bench: seeding (seed {seed_value})...", file=sys.stderr, flush=True)
    seeded, seeding = seed(url, seed_value)
    record: dict[str, Any] = {"seed": seed_value, "seeding_s": round(seeding, 1)}
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM ledgerflow.models),"
            " (SELECT count(*) FROM ledgerflow.model_tables),"
            " (SELECT count(DISTINCT table_name) FROM ledgerflow.model_tables),"
            " (SELECT count(*) FROM ledgerflow.feeds WHERE state = 'onboarded'),"
            " (SELECT count(*) FROM ledgerflow.loads)"
        ).fetchone()
    assert row is not None
    record["rows"] = dict(
        zip(("models", "model_tables", "tables_read", "onboarded", "loads"), row, strict=True)
    )
    print("bench: reconcile, first and second run...", file=sys.stderr, flush=True)
    first = asyncio.run(timed_reconcile(url, seeded.now))
    second = asyncio.run(timed_reconcile(url, seeded.now))
    with psycopg.connect(url) as conn:
        found = counts(conn)
    record["expected"] = seeded.expected
    record["found"] = found
    record["correct"] = (
        found == seeded.expected
        and first["new"] == first["found"] == sum(seeded.expected.values())
        and second["new"] == 0
        and second["closed"] == 0
    )
    record["reconcile_first"] = first
    record["reconcile_second"] = second
    print(f"bench: {BATCHES:,} batches...", file=sys.stderr, flush=True)
    record["batches_seeding_s"] = round(seed_batches(url, seeded.now), 1)
    print("bench: detection...", file=sys.stderr, flush=True)
    record["detect"] = asyncio.run(detection(url, runs, seeded.now))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    print("bench: reconcile with the batches in the load log...", file=sys.stderr, flush=True)
    record["reconcile_with_batches"] = batches = asyncio.run(timed_reconcile(url, seeded.now))
    # The three queues' feeds just onboarded persist into a table no model reads, and the
    # retired queue's is stale.
    record["correct"] &= (batches["found"], batches["new"]) == (first["found"] + 4, 4)
    record["detect"]["plan"] = explain(url, detect_query())
    return record


def main() -> int:
    # Detection writes each new feed's mail, here to nobody: not worth a warning each.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    database = f"ledgerflow_bench_{uuid.uuid4().hex[:8]}"
    url = url_for(database)
    admin("CREATE DATABASE {}", database)
    try:
        asyncio.run(migrated(url))
        measured = measure(url, args.seed, args.runs)
    finally:
        admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", database)
    record: dict[str, Any] = {
        "kind": "feeds",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **measured,
    }
    rows, first, second = record["rows"], record["reconcile_first"], record["reconcile_second"]
    batches, detected = record["reconcile_with_batches"], record["detect"]
    slowest = max(first["seconds"], second["seconds"], batches["seconds"])
    print(
        f"seed {record['seed']}: {rows['models']:,} models reading {rows['tables_read']:,}"
        f" tables ({rows['model_tables']:,} reads), {rows['onboarded']:,} onboarded feeds,"
        f" {rows['loads']:,} loads"
    )
    print(
        f"reconcile: first run {first['seconds']} s ({first['new']:,} new),"
        f" second run {second['seconds']} s ({second['new']} new),"
        f" with {BATCHES:,} batches {batches['seconds']} s;"
        f" goal under {GOAL_RECONCILE_S} s:"
        f" {'met' if slowest < GOAL_RECONCILE_S else 'NOT met'}"
    )
    print(f"findings {record['found']} ({'as drawn' if record['correct'] else 'NOT as drawn'})")
    print(
        f"detect at {BATCHES:,} batches: new (source, table) recorded to feed"
        f" {detected['new_feed_median_ms']} ms (median of {detected['new_feed_ms']}),"
        f" steady state {detected['steady_median_ms']} ms (median of {detected['steady_ms']}),"
        f" first (4 queue feeds) {detected['first_with_4_queue_feeds_ms']} ms;"
        f" goal under {GOAL_DETECT_MS} ms:"
        f" {'met' if detected['new_feed_median_ms'] < GOAL_DETECT_MS else 'NOT met'}"
    )
    print(
        "detect's statement against the one before ledgerflow.load_pairs (023):"
        f" new pair {detected['statement_now_new_pair_median_ms']} ms against"
        f" {detected['statement_before_023_new_pair_median_ms']} ms"
        f" (x {detected['statement_new_pair_ratio_to_before_023']}),"
        f" steady {detected['statement_now_steady_median_ms']} ms against"
        f" {detected['statement_before_023_steady_median_ms']} ms"
        f" (x {detected['statement_steady_ratio_to_before_023']})"
    )
    print(f"EXPLAIN (ANALYZE, BUFFERS) detect:\n{detected['plan']}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"feeds-{str(record['when']).replace(':', '')}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {path}")
    return 0 if record["correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
