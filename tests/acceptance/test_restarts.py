"""Restarts of RabbitMQ and PostgreSQL under a running worker: nothing lost, nothing twice.

These restart the services of this machine, so they run only where that is possible
(root, the services' own control commands) and skip elsewhere, saying why.
"""

import signal
from collections.abc import Callable

import pytest

from ..conftest import publish_bodies
from .conftest import Process, can_restart, eventually, query, restart_postgresql, restart_rabbitmq


def publish_many(amqp_url: str, queue: str, values: range) -> None:
    publish_bodies(amqp_url, queue, (f'{{"id": 1, "value": {v}}}'.encode() for v in values))


@pytest.mark.parametrize("service", ["rabbitmq", "postgresql"])
def test_a_service_restart_under_load_loses_and_doubles_nothing(
    service: str,
    db_url: str,
    amqp_url: str,
    queue: str,
    make_env: Callable[..., dict[str, str]],
    spawn: Callable[..., Process],
) -> None:
    if reason := can_restart(service):
        pytest.skip(reason)
    query(db_url, "INSERT INTO initial_data (provider_name, initial_value) VALUES ('Visa', 0)")
    publish_many(amqp_url, queue, range(1, 5001))
    worker = spawn(["worker"], make_env(db_url, batch_size="100"))
    eventually(lambda: "worker.active" in worker.output(), 20, "the worker to lead")
    {"rabbitmq": restart_rabbitmq, "postgresql": restart_postgresql}[service]()
    publish_many(amqp_url, queue, range(5001, 6001))
    eventually(
        lambda: query(db_url, "SELECT count(*) FROM historical_transactions")[0][0] >= 6000,
        90,
        "the backlog to drain after the restart",
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0, worker.output()
    assert query(
        db_url, "SELECT count(*), sum(transaction_value) FROM historical_transactions"
    ) == [(6000, sum(range(1, 6001)))]
