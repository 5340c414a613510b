"""The brief's own example, end to end, against a database laid out like the original fixture."""

import signal
from collections.abc import Callable
from datetime import UTC
from decimal import Decimal

import redis

from .conftest import Process, eventually, query, run_ledgerflow


def test_the_brief_example_on_the_original_fixture(
    original_db_url: str,
    redis_url: str,
    make_env: Callable[..., dict[str, str]],
    spawn: Callable[..., Process],
    publish: Callable[..., None],
) -> None:
    env = make_env(original_db_url)  # the real one-minute boundary
    # The original producer publishes like this: persistent, no message_id, no headers.
    publish(b'{"id": 1, "value": 600}')
    migrated = run_ledgerflow(["migrate"], env)
    assert migrated.returncode == 0, migrated.stderr
    worker = spawn(["worker"], env)

    eventually(
        lambda: query(original_db_url, "SELECT 1 FROM historical_transactions WHERE id = 4"),
        timeout=20,
        what="the message to be stored",
    )
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    eventually(lambda: client.get("1_Visa") == "1900", timeout=75, what="the minute publish")
    assert client.mget("1_Visa", "2_Mastercard") == ["1900", "1800"]
    assert sorted(client.keys("*")) == ["1_Visa", "2_Mastercard"]
    client.close()
    assert query(
        original_db_url,
        "SELECT id, provider_id, transaction_value FROM historical_transactions ORDER BY id",
    ) == [(1, 1, 100), (2, 1, 200), (3, 2, -200), (4, 1, Decimal(600))]

    [(boundary, lag)] = query(
        original_db_url, "SELECT boundary, lag_seconds FROM ledgerflow.publishes ORDER BY 1 LIMIT 1"
    )
    assert boundary.astimezone(UTC).second == 0 and boundary.microsecond == 0  # hh:mm:00
    assert 0 <= lag < 1.0  # the brief's tolerance is one second

    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0, worker.output()
