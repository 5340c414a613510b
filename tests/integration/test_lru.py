"""The persistent LRU cache, against a real KeyDB-compatible server."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis

from ledgerflow.lru import CacheInfo, PersistentLRU, persistent_lru_cache

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    await connection.aclose()


async def test_entries_and_statistics_survive_a_new_process(client: redis.Redis) -> None:
    first = PersistentLRU(client, "test", maxsize=10)
    assert await first.get("k") is None
    await first.put("k", {"rates": [1, 2]})
    assert await first.get("k") == {"rates": [1, 2]}
    # A restarted program builds a new cache object on the same namespace.
    second = PersistentLRU(client, "test", maxsize=10)
    assert await second.get("k") == {"rates": [1, 2]}
    assert await second.cache_info() == CacheInfo(hits=2, misses=1, maxsize=10, currsize=1)
    await second.cache_clear()
    assert await first.cache_info() == CacheInfo(hits=0, misses=0, maxsize=10, currsize=0)


async def test_the_least_recently_used_entry_is_evicted(client: redis.Redis) -> None:
    cache = PersistentLRU(client, "test", maxsize=2)
    await cache.put("a", 1)
    await cache.put("b", 2)
    assert await cache.get("a") == 1  # a is now more recent than b
    await cache.put("c", 3)
    assert [await cache.get(k) for k in ("a", "b", "c")] == [1, None, 3]
    assert (await cache.cache_info()).currsize == 2


async def test_the_decorator_calls_through_once_per_key(client: redis.Redis) -> None:
    calls: list[int] = []

    @persistent_lru_cache(PersistentLRU(client, "test", maxsize=10))
    async def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert [await square(3), await square(3), await square(4)] == [9, 9, 16]
    assert calls == [3, 4]
    info = await square.cache_info()
    assert (info.hits, info.misses, info.currsize) == (1, 2, 2)
    await square.cache_clear()
    assert await square(3) == 9 and calls == [3, 4, 3]


async def test_invalidation_drops_exactly_the_entries_it_names(client: redis.Redis) -> None:
    cache = PersistentLRU(client, "test", maxsize=10)
    await cache.put("oslo", 1, tags={"lane": "CN-NO"})
    await cache.put("tallinn", 2, tags={"lane": "CN-EE"})
    assert await cache.invalidate(lambda tags: tags["lane"] == "CN-EE") == 1
    assert [await cache.get("oslo"), await cache.get("tallinn")] == [1, None]


async def test_an_unreachable_keydb_makes_misses_not_errors() -> None:
    down = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    seen: list[bool] = []
    cache = PersistentLRU(down, "test", on_lookup=seen.append)

    @persistent_lru_cache(cache)
    async def answer() -> dict[str, Any]:
        return {"ok": True}

    assert await answer() == {"ok": True}
    assert seen == [False]
    await down.aclose()
