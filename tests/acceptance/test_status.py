"""`ledgerflow status` and process supervision, with real worker processes."""

import functools
import re
import signal
import socket
from collections.abc import Callable

from ..conftest import free_port
from .conftest import Process, eventually, query, run_ledgerflow


def seed(db_url: str) -> None:
    query(db_url, "INSERT INTO initial_data (provider_name, initial_value) VALUES ('Visa', 1)")


def start_pair(
    db_url: str,
    make_env: Callable[..., dict[str, str]],
    spawn: Callable[..., Process],
    **settings: str,
) -> tuple[dict[str, str], dict[str, Process]]:
    env = make_env(db_url, http_host="127.0.0.1", **settings)
    workers = {}
    for name in ("alpha", "beta"):
        workers[name] = spawn(
            ["worker"],
            {**env, "LEDGERFLOW_INSTANCE": name, "LEDGERFLOW_METRICS_PORT": str(free_port())},
            name,
        )
        eventually(
            functools.partial(
                query,
                db_url,
                "SELECT 1 FROM ledgerflow.workers WHERE instance = %s AND role <> 'starting'",
                name,
            ),
            20,
            f"{name} to register",
        )
    return env, workers


def test_status_lists_active_and_standby_and_exits_zero_when_healthy(
    db_url: str, make_env: Callable[..., dict[str, str]], spawn: Callable[..., Process]
) -> None:
    seed(db_url)
    env, workers = start_pair(db_url, make_env, spawn, publish_interval="1")
    eventually(lambda: query(db_url, "SELECT 1 FROM ledgerflow.publishes"), 10, "a publication")
    eventually(lambda: run_ledgerflow(["status"], env).returncode == 0, 15, "a healthy report")
    result = run_ledgerflow(["status"], env)
    assert result.returncode == 0, result.stdout
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.split()}
    assert "active" in lines["alpha"] or "active" in lines["beta"]
    assert "standby" in lines["alpha"] or "standby" in lines["beta"]
    assert result.stdout.rstrip().endswith("healthy")
    for process in workers.values():
        process.signal(signal.SIGTERM)
        assert process.wait(15) == 0
    # Workers that stop cleanly leave the registry.
    assert query(db_url, "SELECT count(*) FROM ledgerflow.workers") == [(0,)]


def test_status_flags_a_standby_whose_heartbeat_stopped(
    db_url: str, make_env: Callable[..., dict[str, str]], spawn: Callable[..., Process]
) -> None:
    seed(db_url)
    env, workers = start_pair(db_url, make_env, spawn, publish_interval="1")
    eventually(lambda: query(db_url, "SELECT 1 FROM ledgerflow.publishes"), 10, "a publication")
    [(standby,)] = query(db_url, "SELECT instance FROM ledgerflow.workers WHERE role = 'standby'")
    workers[standby].signal(signal.SIGKILL)
    workers[standby].wait(10)
    # Three minutes pass without a heartbeat from it.
    query(
        db_url,
        "UPDATE ledgerflow.workers SET heartbeat_at = now() - interval '3 minutes' WHERE instance = %s",
        standby,
    )
    result = run_ledgerflow(["status"], env)
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if line.startswith(standby))
    # 180 s, plus however long the status command took to start.
    assert re.search(r"heartbeat 1[89]\d s old", line), line
    assert "does not answer /healthz" in line
    assert "UNHEALTHY" in result.stdout
    report = run_ledgerflow(["status", "--json"], env)
    assert report.returncode == 1 and '"healthy": false' in report.stdout


def test_status_flags_an_active_worker_that_does_not_publish(
    db_url: str, make_env: Callable[..., dict[str, str]], spawn: Callable[..., Process]
) -> None:
    seed(db_url)
    env = make_env(db_url, publish_interval="3600", metrics_port="0")
    worker = spawn(["worker"], env)
    eventually(
        lambda: query(db_url, "SELECT 1 FROM ledgerflow.workers WHERE role = 'active'"),
        20,
        "an active worker",
    )
    # It has led for three minutes without publishing.
    query(db_url, "UPDATE ledgerflow.leadership SET acquired_at = now() - interval '3 minutes'")
    result = run_ledgerflow(["status"], env)
    assert result.returncode == 1
    assert re.search(r"active with no publication for 1[89]\d s", result.stdout), result.stdout
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0


def test_a_supervised_task_that_dies_ends_the_worker_with_an_error(
    db_url: str, make_env: Callable[..., dict[str, str]], spawn: Callable[..., Process]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = spawn(["worker"], make_env(db_url, metrics_port=str(port), http_host="127.0.0.1"))
        code = worker.wait(30)
    assert code != 0
    assert "address already in use" in worker.output().lower()
