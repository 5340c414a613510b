"""``make bench`` (second part): publish lag under load, against history, and memory.

drain    a backlog of --backlog messages (default 1,000,000) drains through the real
         worker while it publishes every --interval seconds: publish lag (boundary to
         EXEC acknowledged) at each boundary between the first and the last batch, the
         ingest rate over that span (as bench.ingest measures it), the worker's peak RSS
history  the publish lag of an idle worker over --samples boundaries of 1 s, with
         10 thousand and with --history-rows (default 10 million) stored transactions

python bench/lag.py [drain] [history] [--backlog N] [--interval S] [--history-rows N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import pika
import psycopg

from bench.ingest import RESULTS, SETTINGS, PeakRss, cleanup, prepare_database, worker_env


def fresh_database(rows: int = 0) -> tuple[str, str]:
    """A migrated database with the two providers and ``rows`` stored transactions."""
    name = f"ledgerflow_bench_{uuid.uuid4().hex[:8]}"
    url = prepare_database(name, ledgerflow=True)
    with psycopg.connect(url, autocommit=True) as conn:
        done = 0
        while done < rows:  # in slices, so that no single statement holds millions of rows
            step = min(1_000_000, rows - done)
            conn.execute(
                "INSERT INTO historical_transactions (provider_id, transaction_value)"
                " SELECT 1 + g %% 2, g %% 1000 FROM generate_series(1, %s) AS g",
                (step,),
            )
            done += step
        conn.execute("VACUUM ANALYZE historical_transactions")
    return name, url


def lags(url: str, during: tuple[Any, Any] | None = None) -> list[float]:
    """Each publication's lag in ms; only the boundaries ``during`` a period when given."""
    sql = "SELECT lag_seconds FROM ledgerflow.publishes"
    with psycopg.connect(url) as conn:
        if during is None:
            rows = conn.execute(sql + " ORDER BY boundary")
        else:
            rows = conn.execute(sql + " WHERE boundary BETWEEN %s AND %s ORDER BY boundary", during)
        return [row[0] * 1000 for row in rows.fetchall()]


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "boundaries": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 2),
        "max_ms": round(ordered[-1], 2),
    }


def drain(backlog: int, interval: int) -> dict[str, object]:
    database, url = fresh_database()
    queue = f"ledgerflow_bench_{uuid.uuid4().hex[:8]}"
    try:
        print(f"bench: filling {backlog:,} messages...", file=sys.stderr, flush=True)
        connection = pika.BlockingConnection(pika.URLParameters(SETTINGS.amqp_url))
        channel = connection.channel()
        channel.queue_declare(queue, durable=True)
        properties = pika.BasicProperties(delivery_mode=2)
        for index in range(backlog):
            channel.basic_publish(
                "",
                queue,
                f'{{"id": {1 + index % 2}, "value": {index % 1000}}}'.encode(),
                properties,
            )
        connection.close()
        print("bench: draining through ledgerflow worker...", file=sys.stderr, flush=True)
        process = subprocess.Popen(
            [sys.executable, "-m", "ledgerflow", "worker"], env=worker_env(url, queue, interval)
        )
        rss = PeakRss(process.pid)
        rss.start()
        while True:
            time.sleep(0.5)
            with psycopg.connect(url) as conn:
                row = conn.execute(
                    "SELECT coalesce(sum(message_count), 0) FROM ledgerflow.batches"
                ).fetchone()
            if row and row[0] >= backlog:
                break
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        rss.stopped.set()
        # The drain is first batch to last, as in bench.ingest; only the boundaries that
        # fell inside it count as publications under load.
        with psycopg.connect(url) as conn:
            span = conn.execute(
                "SELECT min(committed_at), max(committed_at) FROM ledgerflow.batches"
            ).fetchone()
        assert span is not None
        first, last = span
        drained = (last - first).total_seconds()
        return {
            "backlog": backlog,
            "interval_s": interval,
            "drain_seconds": round(drained, 1),
            "rate": round(backlog / drained),
            "peak_rss_mb": rss.peak_mb,
            "lag": summary(lags(url, (first, last))),
        }
    finally:
        cleanup(database, queue)


def idle_lag(rows: int, samples: int) -> dict[str, float]:
    print(
        f"bench: idle publish lag with {rows:,} stored transactions...", file=sys.stderr, flush=True
    )
    database, url = fresh_database(rows)
    queue = f"ledgerflow_bench_{uuid.uuid4().hex[:8]}"
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "ledgerflow", "worker"], env=worker_env(url, queue, 1)
        )
        while len(lags(url)) < samples:
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        return summary(lags(url)[:samples])
    finally:
        cleanup(database, queue)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modes", nargs="*", default=["drain", "history"])
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--interval", type=int, default=2)
    parser.add_argument("--history-rows", type=int, default=10_000_000)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    record: dict[str, object] = {
        "kind": "lag",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    if "drain" in args.modes:
        record["drain"] = result = drain(args.backlog, args.interval)
        print(f"drain: {json.dumps(result)}")
    if "history" in args.modes:
        small = idle_lag(10_000, args.samples)
        large = idle_lag(args.history_rows, args.samples)
        ratio = round(large["p50_ms"] / small["p50_ms"], 2)
        record["history"] = {"10000": small, str(args.history_rows): large, "p50_ratio": ratio}
        print(
            f"history: 10,000 rows {small}; {args.history_rows:,} rows {large}; p50 ratio {ratio}"
        )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"lag-{str(record['when']).replace(':', '')}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
