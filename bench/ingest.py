"""``make bench``: ledgerflow's ingest against the broker's ceiling and the usual solutions.

Every solution drains the same pre-filled backlog of persistent messages in the original
format (no message_id), one after the other, on this machine:

    ceiling     pika, receive and multi-ack only: what RabbitMQ can hand out
    ceiling-direct  the same, reading deliveries as ledgerflow does (ledgerflow.messaging.fast_path)
    naive       pika + psycopg, one INSERT, COMMIT and ack per message
    faststream  a FastStream subscriber doing the same per-message insert
    ledgerflow  the real ``ledgerflow worker``, every guarantee on

Each message's value is its index, so the check (row count and sum) is exact and each row
can be matched to its publish time. A column ``committed_at DEFAULT clock_timestamp()`` in
the benchmark's own databases gives each row's commit time. Peak RSS is sampled from
/proc. The slow solutions drain a smaller backlog (``--slow-count``); rates are per second.

    python -m bench.ingest [--count 200000] [--slow-count 20000] [--only NAME ...]

The benchmarked worker runs with ledgerflow's defaults; ``BENCH_LEDGERFLOW_<NAME>=value``
sets its ``LEDGERFLOW_<NAME>`` (for example ``BENCH_LEDGERFLOW_BATCH_SIZE=1000``).
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
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pika
import psycopg

from ledgerflow.messaging.rabbitmq import marker_queue
from ledgerflow.settings import load_settings

HERE = Path(__file__).parent
RESULTS = HERE / "results"
ORIGINAL_SCHEMA = """
CREATE TABLE initial_data (id SERIAL PRIMARY KEY, provider_name VARCHAR(255) NOT NULL,
                           initial_value NUMERIC NOT NULL);
CREATE TABLE historical_transactions (id SERIAL PRIMARY KEY,
    provider_id INTEGER REFERENCES initial_data(id), transaction_value NUMERIC NOT NULL);
"""
SETTINGS = load_settings()


@dataclass
class Result:
    """One solution's figures."""

    solution: str
    messages: int
    seconds: float
    rate: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    peak_rss_mb: float
    correct: bool
    # CPU time per message while the backlog drained, in µs, of RabbitMQ, PostgreSQL and
    # the consumer: where a machine's cores go, and so what rate they can sustain.
    cpu_us_per_message: dict[str, float] | None = None


def worker_env(url: str, queue: str, interval: int = 60) -> dict[str, str]:
    """The environment of a benchmarked ``ledgerflow worker``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    env.update(
        LEDGERFLOW_DATABASE_URL=url,
        LEDGERFLOW_QUEUE=queue,
        LEDGERFLOW_AMQP_URL=SETTINGS.amqp_url,
        LEDGERFLOW_REDIS_URL=urlsplit(SETTINGS.redis_url)._replace(path="/13").geturl(),
        LEDGERFLOW_PUBLISH_INTERVAL=str(interval),
        LEDGERFLOW_METRICS_PORT="0",
        LEDGERFLOW_PRICE_BATCH_QUEUE="",
        LEDGERFLOW_LOG_LEVEL="warning",
    )
    env.update({k[6:]: v for k, v in os.environ.items() if k.startswith("BENCH_LEDGERFLOW_")})
    return env


def url_for(database: str) -> str:
    return urlsplit(SETTINGS.database_url)._replace(path=f"/{database}").geturl()


def admin(sql: str) -> None:
    with psycopg.connect(url_for("postgres"), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def prepare_database(name: str, ledgerflow: bool) -> str:
    admin(f'CREATE DATABASE "{name}"')
    url = url_for(name)
    if ledgerflow:
        env = {**os.environ, "LEDGERFLOW_DATABASE_URL": url}
        subprocess.run(
            # With the rates tables, as every database had them before they became optional:
            # the benchmarked worker consumes the price-batch queue as it did then.
            [sys.executable, "-m", "ledgerflow", "migrate", "--rates"],
            env=env,
            check=True,
            capture_output=True,
        )
    with psycopg.connect(url, autocommit=True) as conn:
        if not ledgerflow:
            conn.execute(ORIGINAL_SCHEMA)  # type: ignore[arg-type]
        conn.execute(
            "ALTER TABLE historical_transactions"
            " ADD COLUMN committed_at TIMESTAMPTZ DEFAULT clock_timestamp()"
        )
        conn.execute(
            "INSERT INTO initial_data (provider_name, initial_value)"
            " VALUES ('Visa', 0), ('Mastercard', 0)"
        )
    return url


def fill(queue: str, count: int) -> list[float]:
    """Publish ``count`` persistent messages; return each one's publish time."""
    connection = pika.BlockingConnection(pika.URLParameters(SETTINGS.amqp_url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    channel.queue_purge(queue)
    properties = pika.BasicProperties(delivery_mode=2)
    published = []
    for index in range(count):
        body = f'{{"id": {1 + index % 2}, "value": {index}}}'.encode()
        channel.basic_publish("", queue, body, properties)
        published.append(time.time())
    while channel.queue_declare(queue, passive=True).method.message_count < count:
        connection.sleep(0.1)
    connection.close()
    return published


class PeakRss(threading.Thread):
    """Samples a process's peak resident set size (VmHWM) until it exits."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.stopped = pid, 0, threading.Event()

    def run(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while not self.stopped.is_set():
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.1)

    @property
    def peak_mb(self) -> float:
        return round(self.peak_kb / 1024, 1)


class CpuUse(threading.Thread):
    """CPU time of RabbitMQ, PostgreSQL and the consumer over time, sampled from /proc.

    Processes are grouped by name (``beam*`` is the broker, ``postgres*`` the database,
    backends included) and the consumer by its pid. A process that exits keeps the time
    it had at its last sample.
    """

    INTERVAL = 0.1
    GROUPS = ("broker", "database", "consumer")

    def __init__(self, consumer_pid: int) -> None:
        super().__init__(daemon=True)
        self.consumer_pid, self.stopped = consumer_pid, threading.Event()
        self.base: dict[int, int] = {}  # the ticks a process had when first seen
        self.last: dict[int, tuple[str, int]] = {}
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.tick = os.sysconf("SC_CLK_TCK")
        self._sample(first=True)

    def _group(self, pid: int, name: str) -> str | None:
        if pid == self.consumer_pid:
            return "consumer"
        if name.startswith("beam"):
            return "broker"
        if name.startswith("postgres"):
            return "database"
        return None

    def _sample(self, first: bool = False) -> None:
        now = time.time()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            pid, name = int(entry.name), stat[stat.index("(") + 1 : stat.rindex(")")]
            group = self._group(pid, name)
            if group is None:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks = int(fields[11]) + int(fields[12])  # utime + stime
            self.base.setdefault(pid, ticks if first else 0)
            self.last[pid] = (group, ticks)
        totals = dict.fromkeys(self.GROUPS, 0.0)
        for pid, (group, ticks) in self.last.items():
            totals[group] += (ticks - self.base[pid]) / self.tick
        self.samples.append((now, totals))

    def run(self) -> None:
        while not self.stopped.wait(self.INTERVAL):
            self._sample()

    def per_message(self, first: float, last: float, messages: int) -> dict[str, float]:
        """µs of CPU per message in each group between two wall-clock times."""

        def at(when: float, group: str) -> float:
            before = [(t, v[group]) for t, v in self.samples if t <= when] or [(0.0, 0.0)]
            after = [(t, v[group]) for t, v in self.samples if t >= when] or before[-1:]
            (t0, v0), (t1, v1) = before[-1], after[0]
            return v0 if t1 == t0 else v0 + (v1 - v0) * (when - t0) / (t1 - t0)

        return {
            group: round((at(last, group) - at(first, group)) * 1e6 / messages, 1)
            for group in self.GROUPS
        }


def committed(
    url: str, count: int, published: list[float]
) -> tuple[float, float, list[float], bool]:
    """First and last commit, per-row latencies, and whether count and sum are exact."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT transaction_value::bigint, extract(epoch FROM committed_at)::float8"
            " FROM historical_transactions"
        ).fetchall()
    values = [int(v) for v, _ in rows]
    correct = len(values) == count and sum(values) == count * (count - 1) // 2
    commits = [t for _, t in rows]
    latencies = sorted((t - published[v]) * 1000 for v, t in rows if 0 <= v < count)
    return min(commits), max(commits), latencies, correct


def run_solution(name: str, count: int) -> Result:
    database = f"ledgerflow_bench_{uuid.uuid4().hex[:8]}"
    queue = f"ledgerflow_bench_{uuid.uuid4().hex[:8]}"
    url = prepare_database(database, ledgerflow=name == "ledgerflow")
    try:
        published = fill(queue, count)
        if name == "ledgerflow":
            process = subprocess.Popen(
                [sys.executable, "-m", "ledgerflow", "worker"], env=worker_env(url, queue)
            )
        else:
            args = [
                sys.executable,
                str(HERE / "solutions.py"),
                name,
                SETTINGS.amqp_url,
                queue,
                str(count),
            ]
            process = subprocess.Popen(
                args + ([] if name.startswith("ceiling") else [url]),
                stdout=subprocess.PIPE,
                text=True,
            )
        rss, cpu = PeakRss(process.pid), CpuUse(process.pid)
        rss.start()
        cpu.start()
        if name == "ledgerflow":
            while True:
                with psycopg.connect(url) as conn:
                    row = conn.execute("SELECT count(*) FROM historical_transactions").fetchone()
                if row and row[0] >= count:
                    break
                time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            process.wait(30)
            own: dict[str, float] = {}
        else:
            output, _ = process.communicate(timeout=3600)
            own = json.loads(output.strip().splitlines()[-1])
        for sampler in (rss, cpu):
            sampler.stopped.set()
            sampler.join()
        if name.startswith("ceiling"):
            first, last = own["first"], own["last"]
            return Result(
                name,
                count,
                round(last - first, 3),
                round(count / (last - first)),
                None,
                None,
                rss.peak_mb,
                own["messages"] == count,
                cpu.per_message(first, last, count),
            )
        first, last, latencies, correct = committed(url, count, published)
        return Result(
            name,
            count,
            round(last - first, 3),
            round(count / (last - first)),
            round(statistics.median(latencies), 1),
            round(latencies[int(len(latencies) * 0.99) - 1], 1),
            rss.peak_mb,
            correct,
            cpu.per_message(first, last, count),
        )
    finally:
        cleanup(database, queue)


def cleanup(database: str, queue: str) -> None:
    """Drop a benchmark's database and its queues."""
    admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    connection = pika.BlockingConnection(pika.URLParameters(SETTINGS.amqp_url))
    channel = connection.channel()
    channel.queue_delete(queue)
    channel.queue_delete(marker_queue(queue))
    connection.close()


def table(results: list[Result]) -> str:
    lines = [
        "| solution | messages | msg/s | p50 latency ms | p99 latency ms | peak RSS MB | correct"
        " | CPU µs/msg: broker, database, consumer |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        cpu = r.cpu_us_per_message or {}
        lines.append(
            f"| {r.solution} | {r.messages:,} | {r.rate:,} | {r.latency_p50_ms or '-'} |"
            f" {r.latency_p99_ms or '-'} | {r.peak_rss_mb} | {'yes' if r.correct else 'NO'} |"
            f" {', '.join(str(v) for v in cpu.values())} |"
        )
    return "\n".join(lines)


def cpu_budget(ours: Result, ceiling: Result, share: float = 0.8) -> str | None:
    """How many CPUs ledgerflow's per-message costs need at ``share`` times the ceiling."""
    if not ours.cpu_us_per_message:
        return None
    per_message = sum(ours.cpu_us_per_message.values())
    rate = share * ceiling.rate
    return (
        f"cpu budget: ledgerflow used {per_message:.1f} µs of CPU per message (broker,"
        f" database and worker together); at {share} x {ceiling.solution}"
        f" ({rate:,.0f} msg/s) that is {per_message * rate / 1e6:.2f} CPUs,"
        f" on a machine with {os.cpu_count()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--slow-count", type=int, default=20_000)
    parser.add_argument(
        "--only",
        nargs="*",
        default=["ceiling", "ceiling-direct", "naive", "faststream", "ledgerflow"],
    )
    args = parser.parse_args()
    results = []
    for name in args.only:
        count = args.slow_count if name in ("naive", "faststream") else args.count
        print(f"bench: {name} draining {count:,} messages...", file=sys.stderr, flush=True)
        results.append(run_solution(name, count))
    by_name = {r.solution: r for r in results}
    ratios = {}
    if "ledgerflow" in by_name:
        for other in ("ceiling", "ceiling-direct", "naive", "faststream"):
            if other in by_name:
                ratios[f"ledgerflow/{other}"] = round(
                    by_name["ledgerflow"].rate / by_name[other].rate, 2
                )
    ceilings = [r for r in results if r.solution.startswith("ceiling")]
    best = max(ceilings, key=lambda r: r.rate) if ceilings else None
    if "ledgerflow" in by_name and best is not None:
        # the target is set against the best no-op consumer measured
        ratios["ledgerflow/best ceiling"] = round(by_name["ledgerflow"].rate / best.rate, 2)
    print(table(results))
    print("ratios: " + ", ".join(f"{k} = {v}" for k, v in ratios.items()))
    budget = cpu_budget(by_name["ledgerflow"], best) if "ledgerflow" in by_name and best else None
    if budget:
        print(budget)
    RESULTS.mkdir(exist_ok=True)
    record: dict[str, Any] = {
        "kind": "ingest",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": [asdict(r) for r in results],
        "ratios": ratios,
        "cpu_budget": budget,
    }
    path = RESULTS / f"ingest-{record['when'].replace(':', '')}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {path}")
    return 0 if all(r.correct for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
