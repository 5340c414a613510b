from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis

from ledgerflow.cluster.leadership import LeadershipLost
from ledgerflow.core.clock import SystemClock
from ledgerflow.kv.balance_store import BalanceStoreError, RedisBalanceStore
from ledgerflow.transactions.publisher import BalancePublisher, PostgresBalanceLedger

from .conftest import take_term

pytestmark = pytest.mark.integration

BOUNDARY = 1_800_000_060.0


async def rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    return await (await conn.execute(sql)).fetchall()  # type: ignore[no-any-return]


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    await connection.aclose()


async def test_publishes_every_balance_as_an_exact_decimal_string(
    seeded: Any, redis_url: str, client: redis.Redis
) -> None:
    conn = seeded
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO historical_transactions (provider_id, transaction_value) VALUES (1, 600)"
        )
        await conn.execute(
            "INSERT INTO initial_data (provider_name, initial_value) VALUES ('Amex', 12.50)"
        )
    cache = RedisBalanceStore(redis_url)
    term = await take_term(conn)
    publication = await BalancePublisher(
        PostgresBalanceLedger(conn), cache, SystemClock(), term, "test"
    ).publish(BOUNDARY)
    await cache.close()
    expected = {"1_Visa": "1900", "2_Mastercard": "1800", "3_Amex": "12.5"}
    assert publication.keys == expected
    assert {key: await client.get(key) for key in expected} == expected
    assert sorted(await client.keys("*")) == sorted(expected)  # nothing else is written
    assert await rows(conn, "SELECT term, provider_count FROM ledgerflow.publishes") == [(term, 3)]


async def test_a_boundary_published_by_a_previous_leader_is_not_published_again(
    seeded: Any, redis_url: str, client: redis.Redis
) -> None:
    conn = seeded
    cache = RedisBalanceStore(redis_url)
    old = await take_term(conn, "old")
    await BalancePublisher(PostgresBalanceLedger(conn), cache, SystemClock(), old, "old").publish(
        BOUNDARY
    )
    await client.flushdb()
    new = await take_term(conn, "new")
    publication = await BalancePublisher(
        PostgresBalanceLedger(conn), cache, SystemClock(), new, "new"
    ).publish(BOUNDARY)
    assert publication.skipped
    assert await client.dbsize() == 0
    later = await BalancePublisher(
        PostgresBalanceLedger(conn), cache, SystemClock(), new, "new"
    ).publish(BOUNDARY + 60)
    assert not later.skipped
    await cache.close()


async def test_a_deposed_leader_cannot_publish(
    seeded: Any, redis_url: str, client: redis.Redis
) -> None:
    conn = seeded
    cache = RedisBalanceStore(redis_url)
    old = await take_term(conn, "old")
    await take_term(conn, "new")
    with pytest.raises(LeadershipLost):
        await BalancePublisher(
            PostgresBalanceLedger(conn), cache, SystemClock(), old, "old"
        ).publish(BOUNDARY)
    assert await client.dbsize() == 0
    await cache.close()


async def test_keydb_down_raises_cache_error_and_records_no_publication(seeded: Any) -> None:
    conn = seeded
    cache = RedisBalanceStore("redis://127.0.0.1:1/0", timeout=0.5)  # nothing listens on port 1
    term = await take_term(conn)
    with pytest.raises(BalanceStoreError):
        await BalancePublisher(
            PostgresBalanceLedger(conn), cache, SystemClock(), term, "test"
        ).publish(BOUNDARY)
    assert await rows(conn, "SELECT count(*) FROM ledgerflow.publishes") == [(0,)]
    await cache.close()
