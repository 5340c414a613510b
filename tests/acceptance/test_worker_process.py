"""The worker process: standby takeover, clean stop, bad input, bad configuration."""

import signal
import time
from collections.abc import Callable

import redis

from ..conftest import free_port
from .conftest import Process, eventually, query, run_ledgerflow


def seed(db_url: str) -> None:
    query(
        db_url,
        "INSERT INTO initial_data (provider_name, initial_value) VALUES ('Visa', 1000), ('Mastercard', 2000)",
    )


def active_instance(db_url: str) -> tuple[int, str] | None:
    rows = query(db_url, "SELECT term, instance FROM ledgerflow.leadership WHERE term > 0")
    return rows[0] if rows else None


def test_the_standby_takes_over_when_the_active_worker_is_killed(
    db_url: str,
    redis_url: str,
    make_env: Callable[..., dict[str, str]],
    spawn: Callable[..., Process],
    publish: Callable[..., None],
) -> None:
    seed(db_url)
    env = make_env(db_url, publish_interval="1")
    workers = {
        name: spawn(["worker"], {**env, "LEDGERFLOW_INSTANCE": name}, name)
        for name in ("alpha", "beta")
    }
    term, leader = eventually(lambda: active_instance(db_url), 20, "a leader")
    standby = "beta" if leader == "alpha" else "alpha"
    publish(b'{"id": 1, "value": 600}')
    eventually(
        lambda: query(
            db_url, "SELECT 1 FROM historical_transactions WHERE transaction_value = 600"
        ),
        10,
        "the active worker to store the first message",
    )
    # Only the leader publishes while it lives.
    time.sleep(2.5)
    assert {row[0] for row in query(db_url, "SELECT instance FROM ledgerflow.publishes")} == {
        leader
    }

    workers[leader].signal(signal.SIGKILL)
    killed_at = time.monotonic()
    new_term, new_leader = eventually(
        lambda: (row := active_instance(db_url)) and row[0] > term and row,
        10,
        "the standby to lead",
    )
    takeover = time.monotonic() - killed_at
    assert new_leader == standby and new_term == term + 1
    assert takeover < 5, f"takeover took {takeover:.1f} s"
    print(f"standby took over {takeover:.2f} s after the kill")

    publish(b'{"id": 2, "value": -50}')
    eventually(
        lambda: query(
            db_url, "SELECT 1 FROM historical_transactions WHERE transaction_value = -50"
        ),
        10,
        "the new leader to consume",
    )
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    eventually(lambda: client.mget("1_Visa", "2_Mastercard") == ["1600", "1950"], 5, "balances")
    client.close()
    assert query(
        db_url, "SELECT DISTINCT instance FROM ledgerflow.publishes WHERE term = %s", new_term
    ) == [(standby,)]
    # No boundary was published by two terms.
    assert (
        query(db_url, "SELECT boundary FROM ledgerflow.publishes GROUP BY 1 HAVING count(*) > 1")
        == []
    )

    workers[standby].signal(signal.SIGTERM)
    assert workers[standby].wait(15) == 0, workers[standby].output()


def test_sigterm_stops_a_standby_cleanly_too(
    db_url: str, make_env: Callable[..., dict[str, str]], spawn: Callable[..., Process]
) -> None:
    env = make_env(db_url)
    active = spawn(["worker"], {**env, "LEDGERFLOW_INSTANCE": "active"})
    eventually(lambda: active_instance(db_url), 20, "a leader")
    standby = spawn(["worker"], {**env, "LEDGERFLOW_INSTANCE": "standby"})
    eventually(lambda: "leadership.standby" in standby.output(), 20, "the standby to wait")
    for process in (standby, active):
        process.signal(signal.SIGTERM)
        assert process.wait(15) == 0, process.output()


def test_bad_messages_are_recorded_and_do_not_stop_the_worker(
    db_url: str,
    make_env: Callable[..., dict[str, str]],
    spawn: Callable[..., Process],
    publish: Callable[..., None],
) -> None:
    seed(db_url)
    worker = spawn(["worker"], make_env(db_url))
    for body in (b"\xff\xfe", b'{"id": 7, "value": 1}', b'{"id": 1, "value": "1"}', b"[]"):
        publish(body)
    publish(b'{"id": 1, "value": 1}')
    eventually(
        lambda: query(db_url, "SELECT 1 FROM historical_transactions WHERE transaction_value = 1"),
        15,
        "the valid message after the bad ones",
    )
    assert query(db_url, "SELECT reason FROM ledgerflow.rejected_messages ORDER BY id") == [
        ("invalid_encoding",),
        ("unknown_provider",),
        ("invalid_value",),
        ("not_an_object",),
    ]
    assert worker.popen.poll() is None
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0


def test_bad_configuration_stops_at_start_naming_the_variable(
    db_url: str, make_env: Callable[..., dict[str, str]]
) -> None:
    result = run_ledgerflow(["worker"], make_env(db_url, amqp_url="http://localhost"), timeout=30)
    assert result.returncode != 0
    assert "LEDGERFLOW_AMQP_URL" in result.stderr


def test_an_unmigrated_database_is_refused_with_the_fix(
    empty_db_url: str, make_env: Callable[..., dict[str, str]]
) -> None:
    result = run_ledgerflow(["worker"], make_env(empty_db_url), timeout=30)
    assert result.returncode != 0
    assert "ledgerflow migrate" in result.stderr


def test_a_worker_started_while_postgresql_restarts_waits_for_it(
    make_env: Callable[..., dict[str, str]], spawn: Callable[..., Process]
) -> None:
    # Nothing listens on the port yet, as during a restart: the worker waits (and still
    # stops cleanly) instead of exiting.
    url = f"postgresql://ledgerflow@127.0.0.1:{free_port()}/ledgerflow"
    worker = spawn(["worker"], make_env(url))
    eventually(lambda: "worker.waiting_for_database" in worker.output(), 20, "it to wait")
    assert worker.popen.poll() is None
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0


def test_a_database_that_refuses_the_worker_stops_it_at_once(
    db_url: str, make_env: Callable[..., dict[str, str]]
) -> None:
    wrong = db_url.rsplit("/", 1)[0] + "/no_such_database_here"
    result = run_ledgerflow(["worker"], make_env(wrong), timeout=30)
    assert result.returncode == 1
    assert "no_such_database_here" in result.stderr
    assert "waiting_for_database" not in result.stdout + result.stderr
