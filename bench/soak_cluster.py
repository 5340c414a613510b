"""``make soak-cluster``: sharded ingestion on a real three-node RabbitMQ cluster, nodes
stopped and killed under load, then a check of the ledger.

Starts three RabbitMQ nodes on this machine (``lfsoak1@localhost`` to ``lfsoak3``, AMQP
ports 5681 to 5683, their data in a temporary directory, run as the ``rabbitmq`` user with
its Erlang cookie) and joins them into one cluster; the shards are quorum queues, so each
is replicated on the three nodes. Four workers run with LEDGERFLOW_SHARDS=4, connected one
or two to each node. A publisher sends ``SOAK_COUNT`` messages (default 60,000) at
``SOAK_RATE`` a second (default 1,000) to the shards' exchange, each with a message id,
through whichever node answers, with publisher confirms (a message whose confirm was lost
to a node's loss is sent again, to another node: the ledger keeps it once by its id).

Meanwhile, in turn, with ``SOAK_SEED``'s pauses: node 2 stopped (``rabbitmqctl
stop_app``) and started again, node 3 killed (SIGKILL to its Erlang VM) and started
again. After each loss it measures, with ``rabbitmqctl list_consumers`` on a node still
up, the time until every shard has exactly one active consumer again (the goal: 5 s).

At the end, once every shard is empty: one row per message id published, none twice,
each provider's sum as published. Prints the figures and the seed, and exits 1 if a check
fails; the figures go to bench/results/soak-cluster-<timestamp>.json. Needs root (to run
the nodes as ``rabbitmq``) and RabbitMQ's server programs.

    SOAK_COUNT, SOAK_RATE, SOAK_SEED
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pika
import psycopg

from bench.ingest import RESULTS, admin
from bench.lag import fresh_database
from ledgerflow.messaging.shards import declare_shards, exchange_for, shard_queue

SHARDS = 4
NODES = 3
PROVIDERS = 32
FIRST_PORT = 5681
GOAL_SECONDS = 5.0


def log(message: str) -> None:
    print(f"soak-cluster: {message}", file=sys.stderr, flush=True)


class Cluster:
    """Three RabbitMQ nodes of this machine's installation, in a directory of their own."""

    def __init__(self, base: Path) -> None:
        found = sorted(glob.glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin"))
        if not found or os.geteuid() != 0:
            raise SystemExit("soak-cluster needs root and RabbitMQ's server programs")
        self.sbin = Path(found[-1])
        self.base = base
        shutil.chown(base, "rabbitmq")
        (base / "plugins").write_text("[rabbitmq_consistent_hash_exchange].\n")
        (base / "env.conf").write_text("")
        (base / "rabbitmq.conf").write_text("loopback_users = none\n")
        for name in ("plugins", "env.conf", "rabbitmq.conf"):
            shutil.chown(base / name, "rabbitmq")

    @staticmethod
    def node(n: int) -> str:
        return f"lfsoak{n}@localhost"

    @staticmethod
    def url(n: int) -> str:
        return f"amqp://guest:guest@127.0.0.1:{FIRST_PORT + n - 1}/%2F"

    def _env(self, n: int) -> list[str]:
        return [
            "env",
            "HOME=/var/lib/rabbitmq",
            f"RABBITMQ_CONF_ENV_FILE={self.base / 'env.conf'}",
            f"RABBITMQ_NODENAME={self.node(n)}",
            "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
            f"RABBITMQ_NODE_PORT={FIRST_PORT + n - 1}",
            f"RABBITMQ_DIST_PORT={25680 + n}",
            f"RABBITMQ_MNESIA_BASE={self.base / 'mnesia'}",
            f"RABBITMQ_LOG_BASE={self.base / 'log'}",
            f"RABBITMQ_ENABLED_PLUGINS_FILE={self.base / 'plugins'}",
            f"RABBITMQ_CONFIG_FILE={self.base / 'rabbitmq'}",
            "ERL_EPMD_ADDRESS=127.0.0.1",
        ]

    def ctl(self, n: int, *args: str, timeout: float = 120, program: str = "rabbitmqctl") -> str:
        done = subprocess.run(
            ["runuser", "-u", "rabbitmq", "--", *self._env(n), str(self.sbin / program),
             "-n", self.node(n), *args],
            capture_output=True, text=True, timeout=timeout, check=True,
        )  # fmt: skip
        return done.stdout

    def start(self, n: int) -> None:
        subprocess.run(
            ["runuser", "-u", "rabbitmq", "--", *self._env(n),
             str(self.sbin / "rabbitmq-server"), "-detached"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while True:  # await_startup needs the node's VM to answer first
            try:
                self.ctl(n, "await_startup", "--timeout", "60", timeout=70)
                self.ctl(
                    n, "enable", "rabbitmq_consistent_hash_exchange", program="rabbitmq-plugins"
                )
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def join(self, n: int, to: int) -> None:
        self.ctl(n, "stop_app")
        self.ctl(n, "join_cluster", self.node(to))
        self.ctl(n, "start_app")

    def pid(self, n: int) -> int:
        status = json.loads(self.ctl(n, "status", "--formatter", "json"))
        return int(status["pid"])

    def stop_all(self) -> None:
        for n in range(1, NODES + 1):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.ctl(n, "stop", timeout=60)

    def active(self, up: int, queue: str) -> Counter[str]:
        """Per shard, the consumers RabbitMQ reports active (asked of node ``up``)."""
        listed = self.ctl(up, "list_consumers", "-q", "--no-table-headers", "queue_name", "active")
        counts: Counter[str] = Counter()
        for line in listed.splitlines():
            name, _, flag = line.rpartition("\t")
            if name.startswith(f"{queue}.") and flag.strip() == "true":
                counts[name] += 1
        return counts


class Publisher(threading.Thread):
    """``count`` messages with ids at ``rate`` a second, confirmed, through any node up."""

    def __init__(
        self, queue: str, count: int, rate: float, providers: list[int], seed: int
    ) -> None:
        super().__init__(daemon=True)
        self.queue = queue
        rng = random.Random(seed)
        self.messages = [
            (
                str(uuid.UUID(int=rng.getrandbits(128))),
                rng.choice(providers),
                rng.randint(-999, 999),
            )
            for _ in range(count)
        ]
        self.rate = rate
        self.sent_again = 0
        self.failovers = 0
        self.done = threading.Event()

    def run(self) -> None:
        position, node = 0, NODES  # through the node that will be killed
        started = time.monotonic()
        while position < len(self.messages):
            try:
                connection = pika.BlockingConnection(pika.URLParameters(Cluster.url(node)))
            except pika.exceptions.AMQPError:
                node = node % NODES + 1
                time.sleep(0.2)
                continue
            try:
                channel = connection.channel()
                channel.confirm_delivery()
                while position < len(self.messages):
                    due = started + position / self.rate
                    if due > time.monotonic():
                        connection.sleep(due - time.monotonic())
                    message_id, provider, value = self.messages[position]
                    body = json.dumps({"id": provider, "value": value}).encode()
                    channel.basic_publish(
                        exchange_for(self.queue),
                        str(provider),
                        body,
                        pika.BasicProperties(delivery_mode=2, message_id=message_id),
                        mandatory=True,
                    )
                    position += 1
            except pika.exceptions.AMQPError:
                # Not confirmed: sent again, through the next node; the ledger drops the
                # second copy by its message id if the first one did arrive.
                self.sent_again += 1
                self.failovers += 1
                node = node % NODES + 1
            finally:
                with contextlib.suppress(Exception):
                    connection.close()
        self.done.set()


def wait_for(check: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"soak-cluster: FAILED waiting {timeout} s for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def one_active_each(cluster: Cluster, up: int, queue: str) -> bool:
    try:
        return cluster.active(up, queue) == Counter(
            {shard_queue(queue, n): 1 for n in range(SHARDS)}
        )
    except subprocess.SubprocessError:
        return False


def main() -> int:
    seed = int(os.environ.get("SOAK_SEED", random.randrange(2**32)))
    count = int(os.environ.get("SOAK_COUNT", "60000"))
    rate = float(os.environ.get("SOAK_RATE", "1000"))
    rng = random.Random(seed)
    log(f"seed {seed}, {count} messages at {rate:.0f}/s")
    base = Path(tempfile.mkdtemp(prefix="ledgerflow-soak-cluster-"))
    cluster = Cluster(base)
    workers: list[subprocess.Popen[bytes]] = []
    database = ""
    queue = f"lf_soak_{uuid.uuid4().hex[:8]}"
    try:
        for n in range(1, NODES + 1):
            cluster.start(n)
            if n > 1:
                cluster.join(n, 1)
        log(f"a cluster of {NODES} nodes: {', '.join(Cluster.node(n) for n in range(1, 4))}")
        database, url = fresh_database()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM historical_transactions")  # the fixture's three rows
            conn.execute(
                "INSERT INTO initial_data (provider_name, initial_value)"
                " SELECT 'P' || g, 0 FROM generate_series(1, %s) AS g",
                (PROVIDERS,),
            )
            providers = [r[0] for r in conn.execute("SELECT id FROM initial_data")]
        connection = pika.BlockingConnection(pika.URLParameters(Cluster.url(1)))
        declare_shards(connection.channel(), queue, SHARDS)
        connection.close()
        logs = base / "workers"
        logs.mkdir()
        for w in range(4):
            env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
            env.update(
                LEDGERFLOW_DATABASE_URL=url,
                LEDGERFLOW_AMQP_URL=Cluster.url(w % NODES + 1),
                LEDGERFLOW_QUEUE=queue,
                LEDGERFLOW_SHARDS=str(SHARDS),
                LEDGERFLOW_INSTANCE=f"soak-w{w}",
                LEDGERFLOW_METRICS_PORT="0",
                LEDGERFLOW_LOG_FORMAT="json",
                LEDGERFLOW_PRICE_BATCH_QUEUE="",
            )
            out = (logs / f"w{w}.log").open("wb")
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "ledgerflow", "worker"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
        wait_for(lambda: one_active_each(cluster, 1, queue), 60, "a consumer on every shard")
        members = {
            line.split("\t")[0]: line.count("@localhost")
            for line in cluster.ctl(
                1, "list_queues", "-q", "--no-table-headers", "name", "members"
            ).splitlines()
            if line.startswith(f"{queue}.")
        }
        log(f"replicas of each shard: {members}")
        publisher = Publisher(queue, count, rate, providers, seed)
        publisher.start()
        losses: list[dict[str, Any]] = []
        time.sleep(rng.uniform(5, 10))
        log("stopping node 2")
        cluster.ctl(2, "stop_app")
        took = wait_for(lambda: one_active_each(cluster, 1, queue), 60, "one active each")
        losses.append({"node": 2, "how": "stop_app", "one_active_each_s": round(took, 2)})
        log(f"node 2 stopped: every shard with one active consumer after {took:.2f} s")
        time.sleep(rng.uniform(3, 8))
        cluster.ctl(2, "start_app")
        time.sleep(rng.uniform(5, 10))
        log("killing node 3")
        os.kill(cluster.pid(3), signal.SIGKILL)
        took = wait_for(lambda: one_active_each(cluster, 1, queue), 60, "one active each")
        losses.append({"node": 3, "how": "SIGKILL", "one_active_each_s": round(took, 2)})
        log(f"node 3 killed: every shard with one active consumer after {took:.2f} s")
        time.sleep(rng.uniform(3, 8))
        cluster.start(3)
        publisher.join()
        log(f"published {count}; {publisher.sent_again} sent again after a node's loss")

        def stored() -> int:
            with psycopg.connect(url, autocommit=True) as conn:
                row = conn.execute("SELECT count(*) FROM historical_transactions").fetchone()
            return int(row[0]) if row else 0

        drained = wait_for(lambda: stored() >= count, 300, "every message to be stored")
        time.sleep(2)
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT provider_id, count(*), sum(transaction_value)"
                " FROM historical_transactions GROUP BY provider_id"
            ).fetchall()
            ids = conn.execute(
                "SELECT count(*), count(DISTINCT message_id) FROM ledgerflow.message_ids"
            ).fetchone()
            duplicates = conn.execute(
                "SELECT coalesce(sum(duplicate_count), 0), coalesce(sum(redelivered_count), 0)"
                " FROM ledgerflow.batches"
            ).fetchone()
        expected: Counter[int] = Counter()
        for _, provider, value in publisher.messages:
            expected[provider] += value
        total = sum(c for _, c, _ in rows)
        sums_ok = {p: s for p, _, s in rows} == {p: Decimal(v) for p, v in expected.items()}
        failover_ok = all(loss["one_active_each_s"] <= GOAL_SECONDS for loss in losses)
        figures = {
            "seed": seed,
            "messages": count,
            "rate": rate,
            "stored": total,
            "message_ids": ids[0] if ids else None,
            "duplicates_dropped": int(duplicates[0]) if duplicates else None,
            "redeliveries_recognised": int(duplicates[1]) if duplicates else None,
            "sent_again": publisher.sent_again,
            "replicas_per_shard": members,
            "node_losses": losses,
            "drained_after_publishing_s": round(drained, 1),
            # A duplicate the ledger dropped can only be a message sent again: any more
            # would be redeliveries not recognised, caught by their ids.
            "exact": total == count
            and sums_ok
            and (int(duplicates[0]) if duplicates else 0) <= publisher.sent_again,
            "failover_within_goal": failover_ok,
        }
        print(json.dumps(figures, indent=2))
        RESULTS.mkdir(exist_ok=True)
        when = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime())
        (RESULTS / f"soak-cluster-{when}.json").write_text(json.dumps(figures, indent=2) + "\n")
        ok = figures["exact"] and failover_ok and set(members.values()) == {NODES}
        log("PASSED" if ok else "FAILED")
        return 0 if ok else 1
    finally:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        cluster.stop_all()
        if database:
            with contextlib.suppress(psycopg.Error):
                admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
