"""``make bench`` (shards): ingest with 1, 2 and 4 shards against the one queue, measured
in the same run, with the CPU each component spends per message (the capacity model's
inputs, docs/scaling.md).

    python -m bench.shards [--count 200000] [--shards 1 2 4] [--seed 20261130]

For each variant, on a fresh database with 64 providers and a queue name of its own,
``--count`` messages (drawn from ``--seed``, each with a message id, as ``ledgerflow
produce`` sends them) are published before any worker starts:

    queue       to the one queue, consumed by one worker (the leader): the baseline
    shards-N    to the shards' exchange with N shards, consumed by N workers (each
                LEDGERFLOW_SHARDS=N), which spread over the shards by themselves

Measured from the first batch's commit to the last (``ledgerflow.batches``), so that the
workers' start-up is left out: messages a second, and the ratio to the baseline. CPU
time over the same run, from /proc: the workers (every worker process), PostgreSQL
(every ``postgres`` process) and RabbitMQ (every ``beam`` process), in µs per message;
``other`` is the rest of the machine's busy time. Each run is checked exactly: one row
per message, each provider's sum as drawn. The databases and queues are deleted; the
figures go to bench/results/shards-<timestamp>.json.
"""

# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pika
import psycopg

from bench.ingest import RESULTS, SETTINGS, admin
from bench.lag import fresh_database
from bench.treasury import busy_seconds
from ledgerflow.messaging.rabbitmq import marker_queue
from ledgerflow.messaging.shards import declare_shards, exchange_for, shard_queue

SEED = 20261130
PROVIDERS = 64
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_by_component(workers: set[int]) -> dict[str, float]:
    """CPU seconds so far of the workers, PostgreSQL and RabbitMQ processes."""
    used = Counter[str]()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / TICKS
        pid = int(entry.name)
        if pid in workers:
            used["workers"] += seconds
        elif name.startswith("postgres"):
            used["postgresql"] += seconds
        elif name.startswith("beam"):
            used["rabbitmq"] += seconds
    return dict(used)


def publish(queue: str, shards: int, bodies: list[tuple[str, int, bytes]]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(SETTINGS.amqp_url))
    channel = connection.channel()
    if shards:
        declare_shards(channel, queue, shards)
    else:
        channel.queue_declare(queue, durable=True)
    channel.confirm_delivery()
    for message_id, provider, body in bodies:
        properties = pika.BasicProperties(delivery_mode=2, message_id=message_id)
        if shards:
            channel.basic_publish(exchange_for(queue), str(provider), body, properties)
        else:
            channel.basic_publish("", queue, body, properties)
    connection.close()


def delete_queues(queue: str, shards: int) -> None:
    names = [queue, *(shard_queue(queue, n) for n in range(shards))]
    connection = pika.BlockingConnection(pika.URLParameters(SETTINGS.amqp_url))
    channel = connection.channel()
    for name in names:
        channel.queue_delete(name)
        channel.queue_delete(marker_queue(name))
    if shards:
        channel.exchange_delete(exchange_for(queue))
    connection.close()


def run(variant: str, shards: int, count: int, rng: random.Random) -> dict[str, Any]:
    database, url = fresh_database()
    queue = f"lf_bench_shards_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM historical_transactions")
        conn.execute(
            "INSERT INTO initial_data (provider_name, initial_value)"
            " SELECT 'P' || g, 0 FROM generate_series(1, %s) AS g",
            (PROVIDERS - 2,),
        )
        providers = [r[0] for r in conn.execute("SELECT id FROM initial_data")]
    drawn = []
    expected: Counter[int] = Counter()
    for _ in range(count):
        provider, value = rng.choice(providers), rng.randint(-1000, 1000)
        expected[provider] += value
        body = json.dumps({"id": provider, "value": value}).encode()
        drawn.append((str(uuid.UUID(int=rng.getrandbits(128))), provider, body))
    workers: list[subprocess.Popen[bytes]] = []
    try:
        publish(queue, shards, drawn)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
        env.update(
            LEDGERFLOW_DATABASE_URL=url,
            LEDGERFLOW_AMQP_URL=SETTINGS.amqp_url,
            LEDGERFLOW_REDIS_URL=SETTINGS.redis_url,
            LEDGERFLOW_QUEUE=queue,
            LEDGERFLOW_SHARDS=str(shards),
            LEDGERFLOW_METRICS_PORT="0",
            LEDGERFLOW_PRICE_BATCH_QUEUE="",
        )
        cpu_before = cpu_by_component(set())
        busy_before = busy_seconds()
        for w in range(max(1, shards)):
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "ledgerflow", "worker"],
                    env={**env, "LEDGERFLOW_INSTANCE": f"bench-{variant}-{w}"},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    stdin=subprocess.DEVNULL,
                )
            )
        pids = {w.pid for w in workers}
        cpu_before = cpu_by_component(pids) | {
            k: v for k, v in cpu_before.items() if k != "workers"
        }
        deadline = time.monotonic() + 600
        with psycopg.connect(url, autocommit=True) as conn:
            while True:
                row = conn.execute("SELECT count(*) FROM historical_transactions").fetchone()
                if row and row[0] >= count:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"bench.shards: {variant} did not drain in 600 s")
                time.sleep(0.2)
            cpu_after = cpu_by_component(pids)
            busy = busy_seconds() - busy_before
            span = conn.execute(
                "SELECT extract(epoch FROM max(committed_at) - min(committed_at))::float8,"
                " count(*) FROM ledgerflow.batches"
            ).fetchone()
            rows = conn.execute(
                "SELECT provider_id, count(*), sum(transaction_value)"
                " FROM historical_transactions GROUP BY provider_id"
            ).fetchall()
            held = conn.execute(
                "SELECT queue, count(DISTINCT instance) FROM ledgerflow.batches GROUP BY queue"
            ).fetchall()
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(30)
        delete_queues(queue, shards)
        admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    assert span is not None
    seconds, batches = float(span[0] or 0.0), int(span[1])
    used = {k: cpu_after.get(k, 0.0) - cpu_before.get(k, 0.0) for k in cpu_after}
    used["other"] = max(0.0, busy - sum(used.values()))
    exact = sum(c for _, c, _ in rows) == count and {p: s for p, _, s in rows} == {
        p: Decimal(v) for p, v in expected.items()
    }
    return {
        "variant": variant,
        "shards": shards,
        "workers": len(workers),
        "messages": count,
        "batches": batches,
        "seconds": round(seconds, 2),
        "rate": round(count / seconds) if seconds else None,
        "cpu_us_per_message": {k: round(v / count * 1e6, 1) for k, v in sorted(used.items())},
        "workers_per_shard_queue": {q: n for q, n in held},
        "exact": exact,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"bench.shards: seed {args.seed}, {args.count:,} messages a run", file=sys.stderr)
    runs = [run("queue", 0, args.count, rng)]
    for shards in args.shards:
        runs.append(run(f"shards-{shards}", shards, args.count, rng))
    base = runs[0]["rate"] or 1
    print(
        f"{'variant':<10} {'workers':>7} {'msg/s':>8} {'x queue':>7}"
        f" {'worker us':>9} {'pg us':>6} {'rabbit us':>9} {'other us':>8} {'exact':>5}"
    )
    for r in runs:
        cpu = r["cpu_us_per_message"]
        print(
            f"{r['variant']:<10} {r['workers']:>7} {r['rate']:>8,} {r['rate'] / base:>7.2f}"
            f" {cpu.get('workers', 0):>9} {cpu.get('postgresql', 0):>6}"
            f" {cpu.get('rabbitmq', 0):>9} {cpu.get('other', 0):>8}"
            f" {'yes' if r['exact'] else 'NO':>5}"
        )
    record = {
        "kind": "shards",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count()},
        "seed": args.seed,
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"shards-{str(record['when']).replace(':', '')}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {path}")
    return 0 if all(r["exact"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
