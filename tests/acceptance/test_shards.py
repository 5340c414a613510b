"""Sharded ingestion (LEDGERFLOW_SHARDS=4) with four real workers on the local RabbitMQ:
each shard has exactly one active consumer (as ``rabbitmqctl list_consumers`` reports
it), the shards spread to one a worker with no configuration, a worker killed with -9
mid-stream has its shard taken over within 5 s, and the ledger is exact: every message
published to the shards' exchange or to the original queue (bridged by the leader) stored
once, each provider's sum as published."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal

import pika
import pytest
import redis

from ledgerflow.messaging.rabbitmq import marker_queue, queue_backlog
from ledgerflow.messaging.shards import declare_shards, exchange_for, shard_queue

from ..conftest import publish_bodies
from .conftest import Process, eventually, query, run_ledgerflow

SHARDS = 4
PROVIDERS = 16


def active_consumers(queue: str) -> Counter[str]:
    """Per shard queue, how many of its consumers RabbitMQ reports active."""
    listed = subprocess.run(
        ["rabbitmqctl", "list_consumers", "-q", "--no-table-headers", "queue_name", "active"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    active: Counter[str] = Counter()
    for line in listed.splitlines():
        name, _, flag = line.rpartition("\t")
        if name.startswith(f"{queue}.") and flag.strip() == "true":
            active[name] += 1
    return active


def holders(db_url: str) -> dict[str, tuple[str, int]]:
    """Each shard's holder and term, as the database has them."""
    rows = query(db_url, "SELECT queue, instance, term FROM ledgerflow.shard_terms")
    return {queue: (instance, term) for queue, instance, term in rows}


def stored(db_url: str) -> int:
    return int(query(db_url, "SELECT count(*) FROM historical_transactions")[0][0])


def exactly_once(db_url: str, bodies: list[bytes], seed: int) -> Counter[int]:
    """Assert one row per message and each provider's sum as published; return the sums."""
    expected: Counter[int] = Counter()
    for b in bodies:
        message = json.loads(b)
        expected[message["id"]] += message["value"]
    rows = query(
        db_url,
        "SELECT provider_id, count(*), sum(transaction_value) FROM historical_transactions"
        " GROUP BY provider_id",
    )
    assert sum(count for _, count, _ in rows) == len(bodies), f"seed {seed}"
    assert {p: s for p, _, s in rows} == {p: Decimal(v) for p, v in expected.items()}, seed
    return expected


def seeded(request: pytest.FixtureRequest) -> tuple[int, random.Random]:
    """A random seed, recorded with the test's result and printed, and its generator."""
    seed = random.randrange(2**32)
    request.node.user_properties.append(("random_seed", seed))
    print(f"random seed {seed}")
    return seed, random.Random(seed)


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl")
def test_four_workers_share_four_shards_and_a_killed_workers_shards_move_within_5_s(
    db_url: str,
    amqp_url: str,
    queue: str,
    make_env: Callable[..., dict[str, str]],
    spawn: Callable[..., Process],
    request: pytest.FixtureRequest,
) -> None:
    seed, rng = seeded(request)
    query(db_url, "DELETE FROM historical_transactions")
    query(
        db_url,
        "INSERT INTO initial_data (provider_name, initial_value)"
        " SELECT 'P' || g, 0 FROM generate_series(1, %s) AS g",
        PROVIDERS,
    )
    providers = [row[0] for row in query(db_url, "SELECT id FROM initial_data")]
    assert len(providers) == PROVIDERS

    def body() -> bytes:
        return json.dumps({"id": rng.choice(providers), "value": rng.randint(-1000, 1000)}).encode()

    direct = [body() for _ in range(12_000)]
    bridged = [body() for _ in range(3_000)]  # as the original producer: to the queue, no id
    later = [body() for _ in range(9_000)]
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    declare_shards(channel, queue, SHARDS)
    properties = pika.BasicProperties(delivery_mode=2)

    def to_shards(bodies: list[bytes], pause: float = 0.0) -> None:
        for n, b in enumerate(bodies):
            channel.basic_publish(exchange_for(queue), str(json.loads(b)["id"]), b, properties)
            if pause and n % 100 == 99:
                connection.sleep(pause)

    to_shards(direct)
    publish_bodies(amqp_url, queue, bridged)

    env = make_env(db_url, shards=str(SHARDS), batch_size="100")
    workers = {
        f"w{n}": spawn(["worker"], {**env, "LEDGERFLOW_INSTANCE": f"w{n}"}) for n in range(4)
    }
    eventually(lambda: len(holders(db_url)) == SHARDS, 30, "every shard to have a holder")
    assert active_consumers(queue) == Counter({shard_queue(queue, n): 1 for n in range(SHARDS)})

    # Messages keep coming (about 300 a second) while the shards spread over the workers.
    feeding = threading.Thread(target=to_shards, args=(later, 0.3))
    feeding.start()
    spread = eventually(
        lambda: (h := holders(db_url)) and len({i for i, _ in h.values()}) == SHARDS and h,
        45,
        "one shard for each worker",
    )
    print(f"spread: {sorted((q[-1], i) for q, (i, _) in spread.items())}")

    # Mid-stream: kill -9 the worker holding shard 0; another takes it within 5 s.
    first = shard_queue(queue, 0)
    victim, term = str(spread[first][0]), int(spread[first][1])
    workers[victim].signal(signal.SIGKILL)
    killed_at = time.monotonic()
    workers[victim].wait(10)

    def moved() -> bool:
        instance, now = holders(db_url)[first]
        return instance != victim and now > term

    eventually(moved, 5, f"shard 0, held by {victim}, to move")
    print(f"{victim} killed holding {first}: taken over in {time.monotonic() - killed_at:.2f} s")
    feeding.join()
    connection.close()

    everything = direct + bridged + later
    eventually(lambda: stored(db_url) >= len(everything), 120, "every message to be stored")
    time.sleep(1)  # nothing more comes
    assert active_consumers(queue) == Counter({shard_queue(queue, n): 1 for n in range(SHARDS)})
    status = run_ledgerflow(["status", "--json"], env)
    shards = json.loads(status.stdout)["shards"]
    assert [s["queue"] for s in shards] == [shard_queue(queue, n) for n in range(SHARDS)]
    assert all(s["instance"] in workers and s["instance"] != victim for s in shards), shards
    assert all(s["backlog"] == 0 for s in shards), shards
    print(run_ledgerflow(["status"], env).stdout)
    for name, worker in workers.items():
        if name != victim:
            worker.signal(signal.SIGTERM)
            assert worker.wait(30) == 0, worker.output()[-2000:]
    exactly_once(db_url, everything, seed)
    redelivered = query(
        db_url, "SELECT coalesce(sum(redelivered_count), 0) FROM ledgerflow.batches"
    )
    print(f"{len(everything)} stored once; {redelivered[0][0]} redeliveries recognised")


def test_resizing_is_refused_while_a_shard_holds_messages_and_then_loses_nothing(
    db_url: str,
    amqp_url: str,
    queue: str,
    make_env: Callable[..., dict[str, str]],
    spawn: Callable[..., Process],
) -> None:
    query(
        db_url, "INSERT INTO initial_data (provider_name, initial_value) VALUES ('A', 0), ('B', 0)"
    )
    providers = [row[0] for row in query(db_url, "SELECT id FROM initial_data")]
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    declare_shards(channel, queue, SHARDS)

    def send(count: int) -> None:
        for n in range(count):
            provider = providers[n % 2]
            body = json.dumps({"id": provider, "value": n}).encode()
            channel.basic_publish(
                exchange_for(queue), str(provider), body, pika.BasicProperties(delivery_mode=2)
            )

    send(200)
    env = make_env(db_url, shards=str(SHARDS))
    refused = run_ledgerflow(["shards", "resize", "2"], env)
    assert refused.returncode == 1
    assert "still hold messages" in refused.stderr

    worker = spawn(["worker"], env)
    eventually(lambda: stored(db_url) == 200, 60, "the shards to drain")
    busy = run_ledgerflow(["shards", "resize", "2"], env)
    assert busy.returncode == 1 and "stop every worker first" in busy.stderr
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0

    resized = run_ledgerflow(["shards", "resize", "2"], env)
    assert resized.returncode == 0, resized.stderr
    assert json.loads(resized.stdout)["removed"] == [shard_queue(queue, 2), shard_queue(queue, 3)]
    # A worker told another number of shards than exist refuses to start, naming the fix.
    mismatched = spawn(["worker"], env)
    assert mismatched.wait(30) != 0
    assert "ledgerflow shards resize 4" in mismatched.output()
    send(200)
    worker = spawn(["worker"], make_env(db_url, shards="2"))
    eventually(lambda: stored(db_url) == 400, 60, "the new shards to drain")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    connection.close()
    [(count, total)] = query(
        db_url, "SELECT count(*), sum(transaction_value) FROM historical_transactions"
    )
    assert (count, total) == (400, 2 * sum(range(200)))


def test_the_bridge_killed_mid_stream_forwards_each_message_once_and_balances_follow(
    db_url: str,
    amqp_url: str,
    queue: str,
    redis_url: str,
    make_env: Callable[..., dict[str, str]],
    spawn: Callable[..., Process],
    request: pytest.FixtureRequest,
) -> None:
    """Messages without ids, as the original producer sends them, to the original queue:
    the leader bridging them is killed with -9 mid-stream, the next leader bridges the
    rest; each message stored once, and the balances in KeyDB are the database's."""
    seed, rng = seeded(request)
    query(
        db_url,
        "INSERT INTO initial_data (provider_name, initial_value)"
        " SELECT 'P' || g, 100 FROM generate_series(1, 8) AS g",
    )
    providers = [row[0] for row in query(db_url, "SELECT id FROM initial_data")]
    bodies = [
        json.dumps({"id": rng.choice(providers), "value": rng.randint(-1000, 1000)}).encode()
        for _ in range(40_000)
    ]
    publish_bodies(amqp_url, queue, bodies)
    env = make_env(db_url, shards="2", publish_interval="1", batch_size="200")
    first = spawn(["worker"], {**env, "LEDGERFLOW_INSTANCE": "b0"})
    eventually(lambda: "worker.active" in first.output(), 20, "the first worker to lead")
    second = spawn(["worker"], {**env, "LEDGERFLOW_INSTANCE": "b1"})
    eventually(lambda: stored(db_url) > 2_000, 60, "the bridge to be under way")
    first.signal(signal.SIGKILL)
    first.wait(10)
    at_kill = stored(db_url)
    left = queue_backlog(amqp_url, queue)  # not yet forwarded when the bridge died
    assert left, "the bridge had forwarded everything before the kill: nothing was tested"
    eventually(lambda: "worker.active" in second.output(), 20, "the second worker to lead")
    eventually(lambda: stored(db_url) >= len(bodies), 120, "every message to be stored")
    time.sleep(1)
    print(f"seed {seed}: b0 killed, {at_kill} stored, {left} still in the queue")
    expected = exactly_once(db_url, bodies, seed)
    keys = {
        f"{p}_{name}": str(100 + expected[p])
        for p, name in query(db_url, "SELECT id, provider_name FROM initial_data")
    }
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        eventually(lambda: client.mget(*keys) == list(keys.values()), 10, "the balances")
    finally:
        client.close()
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0


def test_the_bridge_refuses_messages_committed_and_never_acknowledged(
    db_url: str,
    amqp_url: str,
    queue: str,
    make_env: Callable[..., dict[str, str]],
    spawn: Callable[..., Process],
) -> None:
    """A one-queue worker's batches committed and never acknowledged come back to the
    queue; bridged to the shards they would be stored twice. The marker is set back to
    before them here, as a worker killed between commit and acknowledgement leaves it."""
    query(db_url, "INSERT INTO initial_data (provider_name, initial_value) VALUES ('A', 0)")
    provider = query(db_url, "SELECT id FROM initial_data")[0][0]
    publish_bodies(amqp_url, queue, [json.dumps({"id": provider, "value": 1}).encode()] * 10)
    one_queue = spawn(["worker"], make_env(db_url))
    eventually(lambda: stored(db_url) == 10, 30, "the one-queue worker to store them")
    one_queue.signal(signal.SIGTERM)
    assert one_queue.wait(30) == 0
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.queue_purge(marker_queue(queue))
    channel.basic_publish("", marker_queue(queue), b"0", pika.BasicProperties(delivery_mode=2))
    connection.close()

    sharded = spawn(["worker"], make_env(db_url, shards="2"))
    assert sharded.wait(60) != 0
    assert "were committed and never acknowledged" in sharded.output()
    assert "without LEDGERFLOW_SHARDS" in sharded.output()
    assert stored(db_url) == 10
