"""The example producer: the original fixture's producer, working, and a load generator."""

from __future__ import annotations

import json
import random
import threading
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pika
import pika.exceptions
import psycopg
import structlog

from ledgerflow.db.queries import Queries
from ledgerflow.messaging.rabbitmq import connection_parameters
from ledgerflow.messaging.shards import ensure_shards, exchange_for, routing_key

log = structlog.get_logger(__name__)
QUERIES = Queries.of("ledgerflow.transactions")

SEED_PROVIDERS = (("Visa", Decimal(1000)), ("Mastercard", Decimal(2000)))
# (index into SEED_PROVIDERS, value): the original fixture's three transactions.
SEED_TRANSACTIONS = ((0, Decimal(100)), (0, Decimal(200)), (1, Decimal(-200)))
# pg_advisory_xact_lock key held while seeding ("ledgseed").
SEED_LOCK_KEY = 0x6C65646773656564


def seed_example_data(conn: psycopg.Connection[Any]) -> bool:
    """Insert the example providers and transactions once; return True if it inserted them.

    Unlike the original producer, a second run inserts nothing: the data is seeded only
    into an empty ``initial_data``.
    """
    with conn.transaction():
        conn.execute(QUERIES["advisory_lock"], {"key": SEED_LOCK_KEY})
        if conn.execute(QUERIES["any_provider"]).fetchone():
            return False
        ids = []
        for name, value in SEED_PROVIDERS:
            row = conn.execute(
                QUERIES["insert_provider"], {"name": name, "value": value}
            ).fetchone()
            assert row is not None
            ids.append(row[0])
        for index, value in SEED_TRANSACTIONS:
            conn.execute(QUERIES["insert_transaction"], {"provider_id": ids[index], "value": value})
    return True


def provider_ids(conn: psycopg.Connection[Any]) -> list[int]:
    """The ids of the providers messages may name."""
    return [row[0] for row in conn.execute(QUERIES["providers_in_order"])]


@dataclass
class Pace:
    """How long to wait between messages: a fixed rate, or the original's 10 to 40 s."""

    rate: float | None = None
    low: float = 10.0
    high: float = 40.0

    def pause(self, rng: random.Random) -> float:
        """Seconds to wait before the next message."""
        return 1.0 / self.rate if self.rate else rng.uniform(self.low, self.high)


def transaction_body(rng: random.Random, providers: list[int]) -> bytes:
    """A message as the original producer sends it: a random provider, an integer value."""
    message = {"id": rng.choice(providers), "value": rng.randint(-1000, 1000)}
    return json.dumps(message).encode()


def produce(
    amqp_url: str,
    queue: str,
    providers: list[int],
    rng: random.Random,
    pace: Pace,
    stop: threading.Event,
    count: int | None = None,
    shards: int = 0,
) -> int:
    """Publish persistent messages with a unique message_id, each confirmed by RabbitMQ.

    Stops after ``count`` messages (forever if None) or when ``stop`` is set; returns how
    many were confirmed. With ``shards``, to the shards' exchange, keyed by provider
    (messaging/shards.py), rather than to ``queue``.
    """
    if not providers:
        raise ValueError("initial_data has no providers: seed it first")
    connection = pika.BlockingConnection(connection_parameters(amqp_url))
    try:
        channel = connection.channel()
        if shards:
            ensure_shards(connection, queue, shards)
        else:
            channel.queue_declare(queue, durable=True)
        channel.confirm_delivery()
        sent = 0
        while (count is None or sent < count) and not stop.is_set():
            body = transaction_body(rng, providers)
            properties = pika.BasicProperties(
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=str(uuid.uuid4()),
                content_type="application/json",
            )
            if shards:
                channel.basic_publish(
                    exchange_for(queue), routing_key(body), body, properties, mandatory=True
                )
            else:
                channel.basic_publish("", queue, body, properties, mandatory=True)
            sent += 1
            report = log.debug if pace.rate else log.info
            report("producer.published", message_id=properties.message_id, body=body.decode())
            if count is None or sent < count:
                _pause(connection, pace.pause(rng), stop)
        return sent
    finally:
        if connection.is_open:
            connection.close()


def _pause(connection: pika.BlockingConnection, seconds: float, stop: threading.Event) -> None:
    # Sleeping through the connection keeps its heartbeats going during long pauses.
    remaining = seconds
    while remaining > 0 and not stop.is_set():
        step = min(remaining, 0.5)
        connection.sleep(step)
        remaining -= step
