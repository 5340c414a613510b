from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

from ledgerflow.database import connect

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
            "UPDATE ledgerflow_leadership SET term = term + 1, instance = %s RETURNING term",
            (instance,),
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def eventually(check: Callable[[], Any], within: float = 10.0) -> Any:
    """Call ``check`` (awaiting it if need be) until it returns something true."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, f"timed out after {within} s"
        await asyncio.sleep(0.02)
