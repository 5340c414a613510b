"""kill -9 at random moments while a backlog drains: every message counts exactly once."""

import json
import random
import signal
import time
from collections.abc import Callable
from decimal import Decimal

import pytest

from ..conftest import publish_bodies
from .conftest import Process, eventually, query, run_ledgerflow


def test_random_kills_lose_nothing_and_count_nothing_twice(
    db_url: str,
    amqp_url: str,
    queue: str,
    make_env: Callable[..., dict[str, str]],
    spawn: Callable[..., Process],
    request: pytest.FixtureRequest,
) -> None:
    seed = random.randrange(2**32)
    request.node.user_properties.append(("random_seed", seed))
    print(f"random seed {seed}")
    rng = random.Random(seed)
    query(
        db_url,
        "INSERT INTO initial_data (provider_name, initial_value) VALUES ('Visa', 0), ('Mastercard', 0)",
    )
    count = 30_000
    bodies = [
        f'{{"id": {rng.choice((1, 2))}, "value": {rng.randint(-1000, 1000)}}}'.encode()
        for _ in range(count)
    ]
    publish_bodies(amqp_url, queue, bodies)  # as the original producer: no message_id
    expected = sum(Decimal(json.loads(b)["value"]) for b in bodies)

    env = make_env(db_url, batch_size="200")
    kills = 0
    for _ in range(6):
        victim = spawn(["worker"], env)
        eventually(lambda: "worker.active" in victim.output(), 20, "the worker to lead")  # noqa: B023
        time.sleep(rng.uniform(0.01, 0.3))
        victim.signal(signal.SIGKILL)
        victim.wait(10)
        kills += 1
        consumed = query(
            db_url,
            "SELECT coalesce(sum(message_count - redelivered_count), 0) FROM ledgerflow.batches",
        )[0][0]
        print(f"kill {kills}: {consumed} of {count} consumed")
    worker = spawn(["worker"], env)
    eventually(lambda: "worker.active" in worker.output(), 20, "the last worker to lead")
    eventually(
        lambda: (
            query(
                db_url,
                "SELECT coalesce(sum(message_count - redelivered_count), 0) FROM ledgerflow.batches",
            )[0][0]
            >= count
        ),
        120,
        "the backlog to drain",
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    [(stored, total)] = query(
        db_url, "SELECT count(*), sum(transaction_value) FROM historical_transactions"
    )
    redelivered = query(
        db_url, "SELECT coalesce(sum(redelivered_count), 0) FROM ledgerflow.batches"
    )[0][0]
    print(f"{kills} kills, {redelivered} redeliveries recognised, {stored} rows")
    assert (stored, total) == (count, expected), f"seed {seed}"


def test_sigterm_in_the_middle_of_a_burst_commits_what_it_holds(
    db_url: str,
    amqp_url: str,
    queue: str,
    make_env: Callable[..., dict[str, str]],
    spawn: Callable[..., Process],
) -> None:
    query(db_url, "INSERT INTO initial_data (provider_name, initial_value) VALUES ('Visa', 0)")
    count = 20_000
    publish_bodies(amqp_url, queue, (f'{{"id": 1, "value": {v}}}'.encode() for v in range(count)))
    env = make_env(db_url, batch_size="100")
    worker = spawn(["worker"], env)
    eventually(lambda: "worker.active" in worker.output(), 20, "the worker to lead")
    time.sleep(0.2)
    stopped_at = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0, worker.output()
    assert time.monotonic() - stopped_at < 10
    midway = query(db_url, "SELECT count(*) FROM historical_transactions")[0][0]
    assert "worker.drained" in worker.output(), worker.output()

    worker = spawn(["worker"], env)
    eventually(
        lambda: query(db_url, "SELECT count(*) FROM historical_transactions")[0][0] >= count,
        60,
        "the rest",
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    print(f"stopped after {midway} of {count}")
    assert query(
        db_url, "SELECT count(*), sum(transaction_value) FROM historical_transactions"
    ) == [(count, sum(range(count)))]
    # A clean stop acknowledged everything it committed: nothing came back as a redelivery.
    assert query(db_url, "SELECT coalesce(sum(redelivered_count), 0) FROM ledgerflow.batches") == [
        (0,)
    ]


def test_kills_with_rules_changing_mid_stream_count_each_message_once(
    db_url: str,
    amqp_url: str,
    queue: str,
    make_env: Callable[..., dict[str, str]],
    spawn: Callable[..., Process],
    request: pytest.FixtureRequest,
) -> None:
    seed = random.randrange(2**32)
    request.node.user_properties.append(("random_seed", seed))
    print(f"random seed {seed}")
    rng = random.Random(seed)
    query(db_url, "INSERT INTO initial_data (provider_name, initial_value) VALUES ('Visa', 0)")
    count = 20_000
    values = [rng.randint(0, 1000) for _ in range(count)]
    bodies = [f'{{"id": 1, "value": {v}}}'.encode() for v in values]
    env = make_env(db_url, batch_size="200")
    justified = ["--technical", "t", "--functional", "f"]
    added = run_ledgerflow(["rules", "add", "big", "--when", "value > 900", *justified], env)
    assert added.returncode == 0, added.stderr
    publish_bodies(amqp_url, queue, bodies[: count // 2])
    for kill in range(4):
        victim = spawn(["worker"], env)
        eventually(lambda: "worker.active" in victim.output(), 20, "the worker to lead")  # noqa: B023
        if kill == 2:  # a new version while a worker writes batches, then more messages
            changed = run_ledgerflow(["rules", "change", "big", "--when", "value > 500"], env)
            assert changed.returncode == 0, changed.stderr
            publish_bodies(amqp_url, queue, bodies[count // 2 :])
        time.sleep(rng.uniform(0.05, 0.3))
        victim.signal(signal.SIGKILL)
        victim.wait(10)
    worker = spawn(["worker"], env)
    eventually(lambda: "worker.active" in worker.output(), 20, "the last worker to lead")
    counted = "SELECT coalesce(sum(message_count - redelivered_count), 0) FROM ledgerflow.batches"
    eventually(lambda: query(db_url, counted)[0][0] >= count, 120, "the backlog to drain")
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    [(stored, stored_total)] = query(
        db_url, "SELECT count(*), coalesce(sum(transaction_value), 0) FROM historical_transactions"
    )
    [(filtered, filtered_total)] = query(
        db_url, "SELECT count(*), coalesce(sum(value), 0) FROM ledgerflow.filtered_messages"
    )
    assert stored + filtered == count, f"seed {seed}"
    assert stored_total + filtered_total == sum(values), f"seed {seed}"
    # Each filtered message matches the version that filtered it, and the counts agree.
    thresholds = dict(
        query(
            db_url,
            "SELECT v.version, min(m.value) FROM ledgerflow.filtered_messages AS m"
            " JOIN ledgerflow.rule_versions AS v ON v.id = m.rule_version_id GROUP BY v.version",
        )
    )
    print(f"lowest value filtered by each version: {thresholds}")
    assert thresholds.keys() == {1, 2}, "both versions filtered (the change came mid-stream)"
    assert thresholds[1] > 900 and thresholds[2] > 500, thresholds
    assert query(db_url, "SELECT sum(filtered_count) FROM ledgerflow.batches")[0][0] == filtered
