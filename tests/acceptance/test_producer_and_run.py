"""The example producer and ``ledgerflow run``."""

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pika
import redis

from ..conftest import free_port
from .conftest import Process, eventually, query, run_ledgerflow


def drain(amqp_url: str, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    messages = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        messages.append((properties, body))
    connection.close()
    return messages


def test_the_producer_seeds_once_and_publishes_confirmed_persistent_messages(
    empty_db_url: str, amqp_url: str, queue: str, make_env: Callable[..., dict[str, str]]
) -> None:
    env = make_env(empty_db_url)
    for _ in range(2):  # a restart must not seed the example data again
        result = run_ledgerflow(["produce", "--count", "3", "--rate", "100"], env)
        assert result.returncode == 0, result.stderr
    assert query(
        empty_db_url, "SELECT id, provider_name, initial_value FROM initial_data ORDER BY id"
    ) == [(1, "Visa", 1000), (2, "Mastercard", 2000)]
    assert query(
        empty_db_url,
        "SELECT provider_id, transaction_value FROM historical_transactions ORDER BY id",
    ) == [(1, 100), (1, 200), (2, -200)]
    messages = drain(amqp_url, queue)
    assert len(messages) == 6
    assert len({props.message_id for props, _ in messages}) == 6
    for props, body in messages:
        assert props.delivery_mode == 2
        message = json.loads(body)
        assert set(message) == {"id", "value"}
        assert message["id"] in (1, 2) and -1000 <= message["value"] <= 1000


def test_the_producer_is_reproducible_with_a_random_seed(
    empty_db_url: str, amqp_url: str, queue: str, make_env: Callable[..., dict[str, str]]
) -> None:
    env = make_env(empty_db_url)
    bodies = []
    for _ in range(2):
        result = run_ledgerflow(
            ["produce", "--count", "5", "--rate", "100", "--random-seed", "7"], env
        )
        assert result.returncode == 0, result.stderr
        bodies.append([body for _, body in drain(amqp_url, queue)])
    assert bodies[0] == bodies[1] and len(bodies[0]) == 5


def test_run_brings_up_the_example_and_stops_cleanly(
    empty_db_url: str,
    redis_url: str,
    make_env: Callable[..., dict[str, str]],
    spawn: Callable[..., Process],
    queue: str,
    tmp_path: Path,
) -> None:
    http_port = free_port()
    run = spawn(
        ["run"],
        make_env(
            empty_db_url,
            publish_interval="1",
            http_port=str(http_port),
            http_host="127.0.0.1",
            feeds_detect_interval="1",
            treasury_stream_prefix=f"{queue}.",  # the example treasury's streams: this test's
            treasury_control_stream=f"{queue}.control",
            treasury_normalised_stream=f"{queue}.normalised",
        ),
        cwd=tmp_path,
    )
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    eventually(lambda: "ledgerflow is running" in run.output(), 30, "migrations and seeding")
    # The producer's first message goes out at once; the next boundary publishes it.
    eventually(
        lambda: query(empty_db_url, "SELECT count(*) >= 4 FROM historical_transactions")[0][0],
        30,
        "the first produced message to be stored",
    )
    expected = dict(
        query(
            empty_db_url,
            "SELECT d.id || '_' || d.provider_name, (d.initial_value + coalesce(sum(h.transaction_value), 0))::text"
            " FROM initial_data d LEFT JOIN historical_transactions h ON h.provider_id = d.id GROUP BY d.id",
        )
    )
    eventually(lambda: client.mget(*expected) == list(expected.values()), 10, "the balances")
    client.close()
    assert "redis-cli MGET 1_Visa 2_Mastercard" in run.output()
    # The quick start shows rates too, on a synthetic sample, by region slug.
    url = (
        f"http://127.0.0.1:{http_port}/rates?date_from=2021-01-01&date_to=2021-01-07"
        "&orig_code=north&dest_code=south"
    )
    answer = eventually(lambda: _get_json(url), 20, "the API to answer")
    assert [entry["day"] for entry in answer["rates"]] == [f"2021-01-0{d}" for d in range(7, 0, -1)]
    assert all(entry["count"] for entry in answer["rates"])
    # The example queue is a new feed: its administrators' mail is kept where it says.
    assert ".ledgerflow/mail/" in run.output()
    mails = tmp_path / ".ledgerflow" / "mail"
    kept = eventually(lambda: sorted(mails.glob("*-feed-detected.txt")), 30, "the feed's mail")
    text = kept[0].read_text()
    assert f"new feed queue:{queue}" in text and "dba@example.test" in text
    assert f"http://127.0.0.1:{http_port}/onboarding/" in text
    # The example treasury: trades of every desk stored, within their reference data.
    eventually(
        lambda: query(empty_db_url, "SELECT count(DISTINCT source) = 5 FROM ledgerflow.trades")[0][
            0
        ],
        60,
        "trades from every desk",
    )
    # ... and the banner points at its console page, not at the JSON API.
    assert f"treasury  http://127.0.0.1:{http_port}/liquidity" in run.output()
    run.signal(signal.SIGINT)
    assert run.wait(20) == 0, run.output()


def _get_json(url: str) -> Any:
    """The JSON body of a successful GET, or None for no answer or an error status."""
    try:
        response = httpx2.get(url, timeout=5, follow_redirects=True)
    except httpx2.TransportError:
        return None
    return json.loads(response.content) if response.is_success else None
