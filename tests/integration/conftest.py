from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

from ledgerflow.core.tracing import MessageTracer
from ledgerflow.db.connections import connect
from ledgerflow.runtime.worker import Worker
from ledgerflow.settings import load_settings
from ledgerflow.treasury.streams import DEFAULT_URL, RabbitStreams, StreamServer

from ..polling import eventually

__all__ = ["eventually"]

pytestmark = pytest.mark.integration


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A connection to this test's migrated database."""
    connection = await connect(db_url)
    yield connection
    await connection.close()


@pytest.fixture
async def seeded(conn: psycopg.AsyncConnection[Any]) -> psycopg.AsyncConnection[Any]:
    """The brief's providers and transactions, in this test's database."""
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO initial_data (provider_name, initial_value)"
            " VALUES ('Visa', 1000), ('Mastercard', 2000)"
        )
        await conn.execute(
            "INSERT INTO historical_transactions (provider_id, transaction_value)"
            " VALUES (1, 100), (1, 200), (2, -200)"
        )
    return conn


async def take_term(conn: psycopg.AsyncConnection[Any], instance: str = "test") -> int:
    """Make this test the leader of a new term (as Leadership does), return the term."""
    async with conn.transaction():
        cursor = await conn.execute(
            "UPDATE ledgerflow.leadership SET term = term + 1, instance = %s RETURNING term",
            (instance,),
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


class RunningWorker:
    """A Worker running in this test's event loop."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(worker.run(self.stop_event))

    async def stop(self) -> None:
        """Stop it as SIGTERM would and wait for it; a failure inside it is raised here."""
        self.stop_event.set()
        await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def start_worker(
    seeded: psycopg.AsyncConnection[Any], db_url: str, redis_url: str, queue: str, amqp_url: str
) -> AsyncIterator[Callable[..., Any]]:
    """Start in-process workers on this test's services (seeded, publishing every second)."""
    await seeded.commit()
    running: list[RunningWorker] = []

    async def start(
        tracer: MessageTracer | None = None, retry_delay: float = 2.0, **overrides: Any
    ) -> RunningWorker:
        settings = load_settings(
            **{
                "database_url": db_url,
                "redis_url": redis_url,
                "queue": queue,
                "amqp_url": amqp_url,
                "publish_interval": 1,
                "metrics_port": 0,
                "instance": "in-process",
                "price_batch_queue": f"{queue}_prices",
                "rates_cache_url": redis_url,
                **overrides,
            }
        )
        worker = Worker(settings)
        worker.retry_delay = retry_delay
        if tracer is not None:
            worker.tracer = tracer
        running.append(RunningWorker(worker))
        return running[-1]

    yield start
    for each in running:
        if not each.task.done():
            await each.stop()


async def scalar(conn: psycopg.AsyncConnection[Any], sql: str) -> Any:
    """The first column of the first row, in a transaction of its own."""
    cursor = await conn.execute(sql)
    row = await cursor.fetchone()
    await conn.commit()
    return row[0] if row else None


@pytest.fixture
async def streams() -> AsyncIterator[RabbitStreams]:
    """The broker's streams; those created through it are deleted afterwards."""
    broker = RabbitStreams(StreamServer.from_url(DEFAULT_URL))
    made: list[str] = []
    original = broker.create

    async def create(stream: str) -> None:
        made.append(stream)
        await original(stream)

    broker.create = create  # type: ignore[method-assign]  # remember what to delete
    yield broker
    await broker.close()  # first: a reader told its stream is gone would reconnect
    cleaner = RabbitStreams(StreamServer.from_url(DEFAULT_URL))
    for stream in set(made):
        await cleaner.delete(stream)
    await cleaner.close()
