"""``make soak``: hours of trouble in minutes, then a check that every cent is where it belongs.

Publishes at a high rate with a 5% mix of bad messages of every kind, half of the valid
ones without a message_id (as the original producer sends them). Runs an active and a
standby worker and kills or stops them at random moments. Once each, when it can:
restarts RabbitMQ, restarts PostgreSQL in immediate mode, stalls KeyDB across a minute
boundary and empties it. At the end it checks, per provider, that the stored count and
sum equal what was published valid, that rejected equals what was published bad, and that
KeyDB equals the database, and prints one line with the figures.

    SOAK_MINUTES (default 10), SOAK_RATE (messages/s, default 800), SOAK_SEED
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pika
import psycopg
import redis

from ledgerflow.core.amounts import format_amount
from ledgerflow.settings import load_settings

BAD_BODIES = [
    b"not json",
    b"\xff\xfe\x00garbage",
    b"[1, 2]",
    b'"a string"',
    b"true",
    b"null",
    b'{"id": 1}',
    b'{"id": 1, "value": 5, "extra": 1}',
    b'{"id": 1, "id": 1, "value": 5}',
    b'{"id": true, "value": 5}',
    b'{"id": 1, "value": "5"}',
    b'{"id": 1, "value": NaN}',
    b'{"id": 1, "value": Infinity}',
    b'{"id": 1, "value": 1e400}',
    b'{"id": 1, "value": 0.0000000000001}',
    b'{"id": 999999, "value": 5}',
    b"x" * 70_000,
]
PROVIDERS = {1: Decimal(1000), 2: Decimal(2000), 3: Decimal("0.5"), 4: Decimal(-75)}


CHECKS = {
    "stored": "SELECT provider_id, count(*) FROM historical_transactions GROUP BY 1",
    "sums": "SELECT provider_id, sum(transaction_value) FROM historical_transactions GROUP BY 1",
    "rejected": "SELECT count(*) FROM ledgerflow.rejected_messages",
    "outcomes": "SELECT outcome, count(*) FROM ledgerflow.messages GROUP BY 1",
    "balances": "SELECT d.id || '_' || d.provider_name,"
    " d.initial_value + coalesce(sum(h.transaction_value), 0)"
    " FROM initial_data d LEFT JOIN historical_transactions h ON h.provider_id = d.id"
    " GROUP BY d.id",
    "publishes": "SELECT count(*), max(lag_seconds) FROM ledgerflow.publishes",
    "doubled": "SELECT count(*) FROM (SELECT boundary FROM ledgerflow.publishes"
    " GROUP BY 1 HAVING count(*) > 1) AS d",
}


def log(message: str) -> None:
    print(f"soak {time.strftime('%H:%M:%S')} {message}", flush=True)


@dataclass
class Ledger:
    """What the publisher had confirmed by RabbitMQ."""

    count: Counter[int] = field(default_factory=Counter)
    total: dict[int, Decimal] = field(default_factory=lambda: dict.fromkeys(PROVIDERS, Decimal(0)))
    bad: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Publisher(threading.Thread):
    """Publishes at a steady rate; pauses on request so RabbitMQ can be restarted safely."""

    def __init__(self, amqp_url: str, queue: str, rate: float, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.amqp_url, self.queue, self.rate, self.rng = amqp_url, queue, rate, rng
        self.ledger = Ledger()
        self.running = threading.Event()
        self.running.set()
        self.paused = threading.Event()
        self.finished = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.finished.is_set():
                if not self.running.is_set():
                    self.paused.set()
                    self.running.wait(1)
                    continue
                self.paused.clear()
                self._publish_until_paused()
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.paused.set()

    def _publish_until_paused(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        channel = connection.channel()
        channel.queue_declare(self.queue, durable=True)
        channel.confirm_delivery()
        interval, next_at = 1.0 / self.rate, time.monotonic()
        try:
            while self.running.is_set() and not self.finished.is_set():
                body, provider, value, message_id = self._next_message()
                props = pika.BasicProperties(delivery_mode=2, message_id=message_id)
                channel.basic_publish("", self.queue, body, props)  # returns once confirmed
                with self.ledger.lock:
                    if provider is None:
                        self.ledger.bad += 1
                    else:
                        self.ledger.count[provider] += 1
                        self.ledger.total[provider] += value
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    connection.sleep(delay)
                else:
                    next_at = time.monotonic()
        finally:
            connection.close()

    def _next_message(self) -> tuple[bytes, int | None, Decimal, str | None]:
        rng = self.rng
        message_id = str(uuid.uuid4()) if rng.random() < 0.5 else None
        if rng.random() < 0.05:
            return rng.choice(BAD_BODIES), None, Decimal(0), message_id
        provider = rng.choice(list(PROVIDERS))
        value = Decimal(rng.randint(-100_000, 100_000)) / 100
        body = f'{{"id": {provider}, "value": {value:f}}}'.encode()
        return body, provider, value, message_id

    def pause(self) -> None:
        self.running.clear()
        self.paused.wait(30)

    def resume(self) -> None:
        self.running.set()


class Workers:
    """Two ledgerflow workers, restarted after every kill."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env, self.logdir = env, logdir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.kills = self.stops = self.unclean_exits = 0

    def start(self, name: str) -> None:
        out = (self.logdir / f"{name}.log").open("ab")
        # Each worker keeps its HTTP port across restarts, so probes can follow it.
        port = self.ports.setdefault(name, free_port())
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "ledgerflow", "worker"],
            env={**self.env, "LEDGERFLOW_INSTANCE": name, "LEDGERFLOW_METRICS_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def keep_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                if process.returncode not in (0, -signal.SIGKILL):
                    self.unclean_exits += 1
                    log(f"worker {name} exited with {process.returncode}; restarting")
                self.start(name)

    def trouble(self, rng: random.Random) -> None:
        name = rng.choice(list(self.processes))
        process = self.processes[name]
        if process.poll() is not None:
            return
        if rng.random() < 0.7:
            process.kill()
            self.kills += 1
            process.wait()
        else:
            process.terminate()
            self.stops += 1
            code = process.wait(30)
            if code != 0:
                self.unclean_exits += 1
                log(f"worker {name} exited {code} after SIGTERM")

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for name, process in self.processes.items():
            code = process.wait(30)
            if code not in (0, -signal.SIGKILL):
                self.unclean_exits += 1
                log(f"worker {name} exited {code} at the end")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def restart_rabbitmq() -> bool:
    if not shutil.which("rabbitmqctl"):
        log("cannot restart RabbitMQ here (no rabbitmqctl): skipped")
        return False
    log("restarting RabbitMQ")
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True)
    return True


def restart_postgresql() -> bool:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not shutil.which("pg_ctlcluster") or not versions or os.geteuid() != 0:
        log("cannot restart PostgreSQL here (needs root and pg_ctlcluster): skipped")
        return False
    log("restarting PostgreSQL in immediate mode")
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            versions[-1],
            "main",
            "restart",
            "-m",
            "immediate",
        ],
        check=True,
        capture_output=True,
    )
    return True


def stall_keydb(client: redis.Redis, seconds: int) -> None:
    log(f"stalling KeyDB for {seconds} s across a minute boundary")
    client.execute_command("CLIENT", "PAUSE", seconds * 1000, "ALL")


def main() -> int:
    minutes = float(os.environ.get("SOAK_MINUTES", "10"))
    rate = float(os.environ.get("SOAK_RATE", "800"))
    seed = int(os.environ.get("SOAK_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    log(f"seed {seed} (replay with SOAK_SEED={seed}), {minutes} minutes at {rate} messages/s")
    base = load_settings()
    name = f"ledgerflow_soak_{int(time.time())}"
    db_url = urlsplit(base.database_url)._replace(path=f"/{name}").geturl()
    redis_url = urlsplit(base.redis_url)._replace(path="/14").geturl()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    env.update(
        LEDGERFLOW_DATABASE_URL=db_url,
        LEDGERFLOW_REDIS_URL=redis_url,
        LEDGERFLOW_AMQP_URL=base.amqp_url,
        LEDGERFLOW_QUEUE=name,
        LEDGERFLOW_LOG_FORMAT="json",
        LEDGERFLOW_PRICE_BATCH_QUEUE="",
    )
    subprocess.run(
        [sys.executable, "-m", "ledgerflow", "migrate", "--rates"],
        env=env,
        check=True,
        capture_output=True,
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        for provider, initial in PROVIDERS.items():
            conn.execute(
                "INSERT INTO initial_data (id, provider_name, initial_value) VALUES (%s, %s, %s)",
                (provider, f"P{provider}", initial),
            )
    cache = redis.Redis.from_url(redis_url, decode_responses=True)
    cache.flushdb()
    logdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    log(f"worker logs in {logdir}")

    publisher = Publisher(base.amqp_url, name, rate, rng)
    workers = Workers(env, logdir)
    workers.start("soak-a")
    workers.start("soak-b")
    publisher.start()
    start, end = time.monotonic(), time.monotonic() + minutes * 60
    events = {"rabbitmq": 0.3, "postgresql": 0.6, "keydb_stall": 0.45, "keydb_flush": 0.75}
    done: dict[str, bool] = {}
    next_trouble = time.monotonic() + rng.uniform(5, 30)
    while time.monotonic() < end:
        time.sleep(0.5)
        if publisher.error:
            raise publisher.error
        workers.keep_alive()
        progress = (time.monotonic() - start) / (end - start)
        if time.monotonic() >= next_trouble:
            workers.trouble(rng)
            next_trouble = time.monotonic() + rng.uniform(5, 30)
        if progress >= events["rabbitmq"] and "rabbitmq" not in done:
            publisher.pause()
            done["rabbitmq"] = restart_rabbitmq()
            publisher.resume()
        if progress >= events["postgresql"] and "postgresql" not in done:
            done["postgresql"] = restart_postgresql()
        if (
            progress >= events["keydb_stall"]
            and "keydb_stall" not in done
            and time.time() % 60 > 57
        ):
            stall_keydb(redis.Redis.from_url(redis_url), 5)
            done["keydb_stall"] = True
        if progress >= events["keydb_flush"] and "keydb_flush" not in done:
            log("emptying KeyDB")
            cache.flushdb()
            done["keydb_flush"] = True

    publisher.finished.set()
    publisher.join(30)
    with publisher.ledger.lock:
        published_valid = sum(publisher.ledger.count.values())
        published = published_valid + publisher.ledger.bad
    log(f"published {published}; waiting for the queue to drain")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        workers.keep_alive()
        with psycopg.connect(db_url) as conn:
            consumed = conn.execute(
                "SELECT coalesce(sum(message_count - redelivered_count), 0) FROM ledgerflow.batches"
            ).fetchone()[0]  # type: ignore[index]
        if consumed >= published:
            break
        time.sleep(1)
    # One more boundary so that KeyDB shows the final balances.
    time.sleep(60 - time.time() % 60 + 2)
    workers.stop_all()

    failures = []
    with psycopg.connect(db_url) as conn:
        figures = {check: conn.execute(sql).fetchall() for check, sql in CHECKS.items()}
    stored, sums = dict(figures["stored"]), dict(figures["sums"])
    outcomes, balances = dict(figures["outcomes"]), dict(figures["balances"])
    [(rejected,)], [(publishes, max_lag)] = figures["rejected"], figures["publishes"]
    [(doubled,)] = figures["doubled"]
    ledger = publisher.ledger
    for provider in PROVIDERS:
        if stored.get(provider, 0) != ledger.count[provider]:
            failures.append(
                f"provider {provider}: stored {stored.get(provider, 0)}"
                f" != published {ledger.count[provider]}"
            )
        if sums.get(provider, Decimal(0)) != ledger.total[provider]:
            failures.append(
                f"provider {provider}: sum {sums.get(provider)}"
                f" != published {ledger.total[provider]}"
            )
    if rejected != ledger.bad:
        failures.append(f"rejected {rejected} != published bad {ledger.bad}")
    cached = {key: cache.get(key) for key in balances}
    if cached != {key: format_amount(value) for key, value in balances.items()}:
        failures.append(f"KeyDB {cached} != database {balances}")
    if doubled:
        failures.append(f"{doubled} boundaries published twice")
    if workers.unclean_exits:
        failures.append(f"{workers.unclean_exits} unclean worker exits")
    verdict = "PASS" if not failures else "FAIL"
    print(
        f"soak {verdict}: minutes={minutes:g} seed={seed} published={published}"
        f" valid={published_valid} bad={ledger.bad} stored={sum(stored.values())}"
        f" rejected={rejected} redelivered={outcomes.get('redelivered', 0)}"
        f" duplicates={outcomes.get('duplicate', 0)} kills={workers.kills}"
        f" sigterms={workers.stops} rabbitmq_restarts={int(done.get('rabbitmq', False))}"
        f" postgresql_restarts={int(done.get('postgresql', False))}"
        f" keydb_stalls={int(done.get('keydb_stall', False))} publishes={publishes}"
        f" max_publish_lag_ms={(max_lag or 0) * 1000:.1f}",
        flush=True,
    )
    for failure in failures:
        print(f"  {failure}")
    if not failures:
        with psycopg.connect(
            urlsplit(base.database_url)._replace(path="/postgres").geturl(), autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        with pika.BlockingConnection(pika.URLParameters(base.amqp_url)) as connection:
            channel = connection.channel()
            channel.queue_delete(name)
            channel.queue_delete(f"ledgerflow.acked.{name}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
