"""Shared fixtures: real services, each test isolated.

Every test that touches a service gets its own PostgreSQL database (cloned from a
migrated template), its own RabbitMQ queue and its own Redis database index.
"""

from __future__ import annotations

import itertools
import os
import socket
import uuid
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pika
import psycopg
import pytest
import redis
import structlog
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ledgerflow.messaging.rabbitmq import marker_queue
from ledgerflow.messaging.shards import exchange_for
from ledgerflow.settings import load_settings

SETTINGS = load_settings()
TEMPLATE = f"ledgerflow_test_template_{os.getpid()}"
# Redis databases 1 to 12; 13 and 14 belong to `make bench` and `make soak`.
_redis_indexes = itertools.cycle(range(1, 13))


def database_url(name: str) -> str:
    """The configured database URL pointing at database ``name``."""
    return urlsplit(SETTINGS.database_url)._replace(path=f"/{name}").geturl()


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(database_url("postgres"), autocommit=True, connect_timeout=5)


def _drop(name: str) -> None:
    with _admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def create_database(template: str | None = None) -> str:
    """Create an empty (or template-cloned) database with a unique name; return its name."""
    name = f"lf_test_{uuid.uuid4().hex[:12]}"
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with _admin() as conn:
        conn.execute(statement)
    return name


@pytest.fixture(autouse=True)
def _loggers_stay_capturable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run in-process (CliRunner) configure logging; loggers that cached
    themselves there would be invisible to a later test's capture_logs."""
    configure = structlog.configure

    def uncached(**settings: Any) -> None:
        configure(**{**settings, "cache_logger_on_first_use": False})

    monkeypatch.setattr(structlog, "configure", uncached)


@pytest.fixture(scope="session", autouse=True)
def _services_answer(request: pytest.FixtureRequest) -> None:
    """Fail fast, saying what to start, when a test needs a service that is down."""
    if all(item.path.parent.name == "unit" for item in request.session.items):
        return
    problems = []
    try:
        _admin().close()
    except psycopg.OperationalError as exc:
        problems.append(
            f"PostgreSQL at {conninfo_to_dict(SETTINGS.database_url).get('host')}: {exc}"
        )
    try:
        pika.BlockingConnection(pika.URLParameters(SETTINGS.amqp_url)).close()
    except Exception as exc:
        problems.append(f"RabbitMQ at {SETTINGS.amqp_url.split('@')[-1]}: {exc!r}")
    try:
        redis.Redis.from_url(SETTINGS.redis_url).ping()
    except redis.RedisError as exc:
        problems.append(f"Redis at {SETTINGS.redis_url}: {exc}")
    if problems:
        pytest.exit("services not reachable (run `make services`):\n  " + "\n  ".join(problems), 3)


@pytest.fixture(scope="session")
def template_database() -> Iterator[str]:
    """A database with every migration applied (every optional domain too), cloned by each
    test."""
    import asyncio

    from ledgerflow.db import connections, migrate

    _drop(TEMPLATE)
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))

    async def apply() -> None:
        conn = await connections.connect(database_url(TEMPLATE))
        async with conn:
            await migrate.migrate(conn, migrate.OPTIONAL_DOMAINS)

    asyncio.run(apply())
    yield TEMPLATE
    _drop(TEMPLATE)


@pytest.fixture
def db_url(template_database: str) -> Iterator[str]:
    """A fresh, migrated database of this test's own."""
    name = create_database(template_database)
    yield database_url(name)
    _drop(name)


@pytest.fixture
def empty_db_url() -> Iterator[str]:
    """A fresh database with no tables at all."""
    name = create_database()
    yield database_url(name)
    _drop(name)


# The original fixture's producer creates its schema and seed rows like this on every start.
ORIGINAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS initial_data (
    id SERIAL PRIMARY KEY,
    provider_name VARCHAR(255) NOT NULL,
    initial_value NUMERIC NOT NULL
);
CREATE TABLE IF NOT EXISTS historical_transactions (
    id SERIAL PRIMARY KEY,
    provider_id INTEGER REFERENCES initial_data(id),
    transaction_value NUMERIC NOT NULL
);
INSERT INTO initial_data (provider_name, initial_value)
VALUES ('Visa', 1000), ('Mastercard', 2000) ON CONFLICT DO NOTHING;
INSERT INTO historical_transactions (provider_id, transaction_value)
VALUES (1, 100), (1, 200), (2, -200) ON CONFLICT DO NOTHING;
"""


@pytest.fixture
def original_db_url() -> Iterator[str]:
    """A database laid out exactly as the original producer leaves it, before ledgerflow."""
    name = create_database()
    url = database_url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ORIGINAL_SCHEMA)
    yield url
    _drop(name)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database index of this test's own, empty."""
    url = urlsplit(SETTINGS.redis_url)._replace(path=f"/{next(_redis_indexes)}").geturl()
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def queue() -> Iterator[str]:
    """A queue name of this test's own; the queue is deleted afterwards."""
    name = f"lf_test_{uuid.uuid4().hex[:12]}"
    yield name
    connection = pika.BlockingConnection(pika.URLParameters(SETTINGS.amqp_url))
    try:
        channel = connection.channel()
        treasury = ("fx", "repos", "bonds", "equities", "interbank", "control", "normalised")
        streams = [f"{name}.{suffix}" for suffix in treasury]  # when a test made them
        shards = [f"{name}.{n}" for n in range(8)]  # LEDGERFLOW_SHARDS, when a test shards
        markers = [marker_queue(q) for q in (name, *shards)]
        for queue_name in (*markers, name, f"{name}_prices", *streams, *shards):
            channel.queue_delete(queue_name)
        channel.exchange_delete(exchange_for(name))  # when a test sharded
    finally:
        connection.close()


@pytest.fixture
def amqp_url() -> str:
    """The RabbitMQ URL."""
    return SETTINGS.amqp_url


@pytest.fixture
def publish(queue: str, amqp_url: str) -> Iterator[object]:
    """Publish bodies to the test's queue as the original producer does (persistent, no id)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    channel.confirm_delivery()

    def send(body: bytes, **properties: object) -> None:
        props = pika.BasicProperties(delivery_mode=2, **properties)
        channel.basic_publish("", queue, body, props)

    yield send
    connection.close()


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def publish_bodies(amqp_url: str, queue: str, bodies: Iterable[bytes]) -> None:
    """Publish many bodies quickly, as the original producer does (persistent, no id, no
    confirms: RabbitMQ takes them in order before it takes the connection's close)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    properties = pika.BasicProperties(delivery_mode=2)
    for body in bodies:
        channel.basic_publish("", queue, body, properties)
    connection.close()
