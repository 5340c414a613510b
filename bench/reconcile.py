"""``make bench`` (sixth part): comparisons by message id at one and ten million messages.

    python -m bench.reconcile [--sizes 1000000 10000000] [--runs 3]

For each size, a throwaway database gets that many delivered messages in batches of 500,
recorded as the batch writer records them, in a realistic mix: 1 % filtered (by three
rule versions), 0.5 % rejected (three reasons), 0.02 % duplicates, 0.005 % redeliveries;
one stored row in 4,000 deleted since, one row in 3,000 written by something else, and
the fixture's three initial rows. A configured source compares a table of the messages'
ids (primary key), the table they were persisted to (the same gaps and foreign rows, no
index on the id) and a target table (one row in 7,000 more missing). ``reconcile`` is
timed ``--runs`` times for the built-in source and for the configured one (the median is
reported), then the three SQL shapes of an anti-join are timed on the configured tables:
NOT EXISTS, LEFT JOIN ... IS NULL and EXCEPT. The goal: a million ids a stage compared in
under 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any, LiteralString
from urllib.parse import urlsplit

import psycopg
import redis.asyncio as redis
from psycopg import sql
from psycopg.types.json import Jsonb

from ledgerflow.db import migrate
from ledgerflow.db.connections import connect
from ledgerflow.lineage.comparisons import reconcile
from ledgerflow.lineage.sources import save_source
from ledgerflow.settings import load_settings

RESULTS = Path(__file__).parent / "results"
SETTINGS = load_settings()

SLICE = 1_000_000  # messages seeded a statement: no single statement holds ten million
KEYDB = urlsplit(SETTINGS.redis_url)._replace(path="/13").geturl()  # bench's database
# Message number g and its outcome, by its number: A redelivered (message g - 1 again),
# D duplicate (of message g - 600), F filtered, R rejected, S stored.
MESSAGES = """
CREATE TEMP TABLE m AS
SELECT g, g / 500 + 1 AS batch_id, o,
       CASE o WHEN 'D' THEN 'm-' || (g - 600) WHEN 'A' THEN 'm-' || (g - 1)
              ELSE 'm-' || g END AS message_id,
       sha256(convert_to('body-' || CASE WHEN o = 'A' THEN g - 1 ELSE g END, 'UTF8')) AS hash,
       CASE WHEN o = 'S' THEN g + 100 END AS transaction_id,
       CASE WHEN o = 'R' THEN g END AS rejected_id,
       CASE WHEN o = 'F' THEN 1 + (g / 100) %% 3 END AS rule_version_id
FROM (SELECT g, CASE WHEN g %% 20000 = 500 THEN 'A' WHEN g %% 5000 = 1234 THEN 'D'
                    WHEN g %% 100 = 7 THEN 'F' WHEN g %% 200 = 53 THEN 'R' ELSE 'S' END AS o
      FROM generate_series(%(start)s, %(stop)s) AS g) AS s
"""
LINEAGE = """
INSERT INTO ledgerflow.batches (id, queue, leader_term, instance, message_count, stored_count,
    rejected_count, duplicate_count, redelivered_count, filtered_count, body_hashes, outcomes,
    message_ids, transaction_ids, rejected_ids, filter_rules)
SELECT batch_id, 'bench', 1, 'bench', count(*), count(*) FILTER (WHERE o = 'S'),
       count(*) FILTER (WHERE o = 'R'), count(*) FILTER (WHERE o = 'D'),
       count(*) FILTER (WHERE o = 'A'), count(*) FILTER (WHERE o = 'F'),
       string_agg(hash, ''::bytea ORDER BY g), string_agg(o, '' ORDER BY g),
       array_agg(message_id ORDER BY g),
       CASE WHEN bool_or(o = 'S') THEN array_agg(transaction_id ORDER BY g) END,
       CASE WHEN bool_or(o = 'R') THEN array_agg(rejected_id ORDER BY g) END,
       CASE WHEN bool_or(o = 'F') THEN array_agg(rule_version_id ORDER BY g) END
FROM m GROUP BY batch_id;
INSERT INTO ledgerflow.message_ids (message_id, batch_id)
SELECT message_id, batch_id FROM m WHERE o IN ('S', 'R', 'F');
INSERT INTO ledgerflow.rejected_messages
    (id, queue, message_id, reason, detail, body, properties, received_at)
SELECT g, 'bench', message_id,
       (ARRAY['invalid_json', 'unknown_provider', 'value_out_of_range'])[1 + g % 3],
       'bench', convert_to('{"id": 9}', 'UTF8'), '{}', now()
FROM m WHERE o = 'R';
INSERT INTO historical_transactions (id, provider_id, transaction_value)
SELECT transaction_id, 1 + g % 2, g % 1000 - 500 FROM m WHERE o = 'S' AND g % 4000 <> 2001
UNION ALL
SELECT g + 100, 1 + g % 2, 1 FROM m WHERE g % 3000 = 7;
INSERT INTO public.bench_source (message_id)
SELECT message_id FROM m WHERE o IN ('S', 'R', 'F');
INSERT INTO public.bench_persisted (message_id, value)
SELECT message_id, g % 1000 FROM m WHERE o = 'S' AND g % 4000 <> 2001
UNION ALL
SELECT 'x-' || g, 1 FROM m WHERE g % 3000 = 7;
INSERT INTO public.bench_target (message_id)
SELECT message_id FROM m WHERE o = 'S' AND g % 4000 <> 2001 AND g % 7000 <> 3;
DROP TABLE m;
"""
SETUP = """
CREATE TABLE public.bench_source (message_id text PRIMARY KEY);
CREATE TABLE public.bench_persisted (id bigserial PRIMARY KEY, message_id text, value numeric);
CREATE TABLE public.bench_target (message_id text);
INSERT INTO historical_transactions (id, provider_id, transaction_value)
VALUES (1, 1, 100), (2, 1, 200), (3, 2, -200);
INSERT INTO ledgerflow.rules (id, name) VALUES (1, 'big-values'), (2, 'test-provider');
INSERT INTO ledgerflow.rule_versions
    (id, rule_id, version, condition, technical, functional, owner, enabled, change, changed_by)
VALUES (1, 1, 1, 'value > 1000', 'bench', 'bench', 'bench', true, 'created', 'bench'),
       (2, 1, 2, 'value > 900', 'bench', 'bench', 'bench', true, 'changed', 'bench'),
       (3, 2, 1, 'id == 2', 'bench', 'bench', 'bench', true, 'created', 'bench');
"""
# Ids drawn after the seeded ones, as if the writer had drawn them.
SEQUENCES = """
SELECT setval(pg_get_serial_sequence('historical_transactions', 'id'),
              (SELECT max(id) FROM historical_transactions));
SELECT setval(pg_get_serial_sequence('ledgerflow.batches', 'id'),
              (SELECT max(id) FROM ledgerflow.batches));
"""
# The three shapes of "ids of the source absent from the persistency table".
SHAPES: dict[str, LiteralString] = {
    "NOT EXISTS": """SELECT count(*) FROM public.bench_source AS l WHERE NOT EXISTS
        (SELECT 1 FROM public.bench_persisted AS r
         WHERE r.message_id::text = l.message_id::text)""",
    "LEFT JOIN ... IS NULL": """SELECT count(*) FROM public.bench_source AS l
        LEFT JOIN public.bench_persisted AS r ON r.message_id::text = l.message_id::text
        WHERE r.message_id IS NULL""",
    "EXCEPT": """SELECT count(*) FROM (SELECT message_id::text FROM public.bench_source
        EXCEPT SELECT message_id::text FROM public.bench_persisted) AS ids""",
}


def seed(url: str, messages: int) -> float:
    """Fill the database; return the seconds it took."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SETUP)
        for start in range(0, messages, SLICE):
            stop = min(messages, start + SLICE) - 1
            conn.execute(MESSAGES, {"start": start, "stop": stop})
            conn.execute(LINEAGE)
            print(f"bench: {stop + 1:,} messages seeded", file=sys.stderr, flush=True)
        conn.execute(SEQUENCES)
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


async def publish() -> None:
    """A publication that KeyDB agrees with."""
    balances = {"1_Visa": "1000", "2_Mastercard": "2000"}
    client = redis.Redis.from_url(KEYDB, decode_responses=True)
    try:
        await client.mset(balances)
    finally:
        await client.aclose()


async def timed_runs(url: str, source: str, runs: int) -> dict[str, Any]:
    """``reconcile`` ``runs`` times: each run's seconds, the median, the last counts."""
    seconds = []
    conn = await connect(url, autocommit=True)
    async with conn:
        for _ in range(runs):
            started = time.perf_counter()
            result = await reconcile(conn, KEYDB, source, "bench")
            seconds.append(round(time.perf_counter() - started, 2))
    return {
        "seconds": seconds,
        "median_s": round(statistics.median(seconds), 2),
        "unexplained": result.unexplained,
        "explained": result.explained,
        "stages": [stage.as_json() for stage in result.stages],
    }


async def measure(url: str, runs: int) -> dict[str, Any]:
    """Both sources, timed."""
    conn = await connect(url, autocommit=True)
    async with conn:
        await conn.execute(
            "INSERT INTO ledgerflow.publishes (boundary, term, instance, provider_count,"
            " published_at, lag_seconds, balances) VALUES (now(), 1, 'bench', 2, now(), 0.1, %s)",
            (Jsonb({"1_Visa": "1000", "2_Mastercard": "2000"}),),
        )
        await save_source(
            conn,
            "bench",
            "public.bench_source",
            "message_id",
            "public.bench_persisted",
            "message_id",
            "public.bench_target",
            "message_id",
            created_by="bench",
        )
    await publish()
    print("bench: reconcile ledgerflow...", file=sys.stderr, flush=True)
    built_in = await timed_runs(url, "ledgerflow", runs)
    print("bench: reconcile a configured source...", file=sys.stderr, flush=True)
    configured = await timed_runs(url, "bench", runs)
    return {"ledgerflow": built_in, "configured": configured}


def shapes(url: str) -> dict[str, float]:
    """Each anti-join shape's time, as a comparison runs it (work_mem 256 MB, no
    parallel workers: a statement that writes gets none)."""
    timings = {}
    with psycopg.connect(url) as conn:
        conn.execute("SET work_mem = '256MB'")
        conn.execute("SET max_parallel_workers_per_gather = 0")
        for name, query in SHAPES.items():
            started = time.perf_counter()
            conn.execute(query)
            timings[name] = round(time.perf_counter() - started, 2)
    return timings


def url_for(database: str) -> str:
    return urlsplit(SETTINGS.database_url)._replace(path=f"/{database}").geturl()


def admin(statement: LiteralString, database: str) -> None:
    """CREATE or DROP the database, from the maintenance database."""
    with psycopg.connect(url_for("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL(statement).format(sql.Identifier(database)))


async def migrated(url: str) -> None:
    """Every migration, and the brief's two providers."""
    conn = await connect(url)
    async with conn:
        await migrate.migrate(conn)
        await conn.execute(
            "INSERT INTO initial_data (provider_name, initial_value)"
            " VALUES ('Visa', 1000), ('Mastercard', 2000)"
        )
        await conn.commit()


def one_size(messages: int, runs: int) -> dict[str, Any]:
    database = f"ledgerflow_bench_{uuid.uuid4().hex[:8]}"
    url = url_for(database)
    admin("CREATE DATABASE {}", database)
    try:
        asyncio.run(migrated(url))
        print(f"bench: seeding {messages:,} messages...", file=sys.stderr, flush=True)
        seeded = seed(url, messages)
        record: dict[str, Any] = {"messages": messages, "seed_s": round(seeded, 1)}
        record.update(asyncio.run(measure(url, runs)))
        record["anti_join_shapes_s"] = shapes(url)
        return record
    finally:
        admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", database)
        asyncio.run(forget_keys())


async def forget_keys() -> None:
    client = redis.Redis.from_url(KEYDB)
    try:
        await client.delete("1_Visa", "2_Mastercard")
    finally:
        await client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    record: dict[str, Any] = {
        "kind": "reconcile",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "sizes": [one_size(size, args.runs) for size in args.sizes],
    }
    for size in record["sizes"]:
        print(
            f"{size['messages']:>12,} messages: ledgerflow {size['ledgerflow']['median_s']} s,"
            f" configured {size['configured']['median_s']} s;"
            f" anti-joins {size['anti_join_shapes_s']}"
        )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"reconcile-{str(record['when']).replace(':', '')}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
