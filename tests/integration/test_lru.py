"""The persistent LRU cache, against a real KeyDB-compatible server."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import redis.asyncio as redis

from ledgerflow.kv.lru import CacheInfo, Group, PersistentLRU, persistent_lru_cache

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
    await cache.put("oslo", 1, tags=["lane:CN-NO"])
    await cache.put("tallinn", 2, tags=["lane:CN-EE"])
    assert await cache.invalidate([Group(["lane:CN-EE"])]) == 1
    assert [await cache.get("oslo"), await cache.get("tallinn")] == [1, None]


async def test_a_group_needs_every_tag_and_an_overlapping_span(client: redis.Redis) -> None:
    cache = PersistentLRU(client, "test", maxsize=10)
    await cache.put("jan", "a", tags=["o:CN", "d:NO"], span=("2021-01-01", "2021-01-31"))
    await cache.put("feb", "b", tags=["o:CN", "d:NO"], span=("2021-02-01", "2021-02-28"))
    await cache.put("other", "c", tags=["o:CN", "d:EE"], span=("2021-01-01", "2021-01-31"))
    await cache.put("always", "d", tags=["o:CN", "d:NO"])  # no span: any day touches it
    dropped = await cache.invalidate([Group(["o:CN", "d:NO"], ("2021-01-31", "2021-01-31"))])
    assert dropped == 2
    assert [await cache.get(k) for k in ("jan", "feb", "other", "always")] == [
        None,
        "b",
        "c",
        None,
    ]
    with pytest.raises(ValueError, match="at least one tag"):
        await cache.invalidate([Group([])])


async def test_invalidation_reads_only_the_entries_sharing_the_tags(client: redis.Redis) -> None:
    cache = PersistentLRU(client, "test", maxsize=1000)
    for n in range(300):
        await cache.put(f"k{n}", n, tags=[f"port:{n}"])
    await client.config_resetstat()
    assert await cache.invalidate([Group(["port:7"])]) == 1
    stats = await client.info("commandstats")
    # One SINTER over one tag set, then one entry's bookkeeping: nothing scans the cache.
    assert stats["cmdstat_hget"]["calls"] <= 2
    assert "cmdstat_hgetall" not in stats and "cmdstat_hkeys" not in stats
    assert (await cache.cache_info()).currsize == 299


async def test_a_value_computed_before_an_invalidation_is_not_stored(client: redis.Redis) -> None:
    cache = PersistentLRU(client, "test", maxsize=10)
    miss = await cache.lookup("k")
    assert miss.value is None and miss.generation is not None
    # Meanwhile a batch commits and invalidates: the value computed before may be stale.
    await cache.invalidate([Group(["lane"])])
    assert not await cache.put("k", "stale", tags=["lane"], generation=miss.generation)
    assert await cache.get("k") is None
    fresh = await cache.lookup("k")
    assert await cache.put("k", "fresh", tags=["lane"], generation=fresh.generation)
    assert await cache.get("k") == "fresh"


async def test_replacing_or_evicting_an_entry_forgets_its_tags(client: redis.Redis) -> None:
    cache = PersistentLRU(client, "test", maxsize=1)
    await cache.put("a", 1, tags=["x"])
    await cache.put("a", 2, tags=["y"])
    assert await client.smembers("test:tag:x") == set()
    await cache.put("b", 3, tags=["y"])  # evicts a
    assert await client.smembers("test:tag:y") == {b"b"}
    await cache.cache_clear()
    assert await client.keys("test:*") == [b"test:stats"]


async def test_replicas_interleaving_keep_the_cache_whole(redis_url: str) -> None:
    clients = [redis.Redis.from_url(redis_url) for _ in range(4)]
    caches = [PersistentLRU(c, "test", maxsize=20) for c in clients]

    async def replica(n: int) -> None:
        cache = caches[n]
        for i in range(100):
            key = f"k{(i * 7 + n) % 40}"
            found = await cache.lookup(key)
            if found.value is None:
                await cache.put(key, i, tags=[f"t{i % 5}"], generation=found.generation)
            if i % 25 == 0:
                await cache.invalidate([Group([f"t{n}"])])

    await asyncio.gather(*(replica(n) for n in range(4)))
    values = set(await clients[0].hkeys("test:values"))
    recency = set(await clients[0].zrange("test:recency", 0, -1))
    meta = set(await clients[0].hkeys("test:meta"))
    assert values == recency == meta and len(values) <= 20
    for key in values:  # every tag set names only entries that exist, and each entry's tags
        # The clients do not decode responses: every value is bytes.
        for tag in json.loads(cast(bytes, await clients[0].hget("test:meta", key)))["tags"]:
            assert key in await clients[0].smembers(f"test:tag:{tag}")
    for tag in await clients[0].smembers("test:tagsets"):
        assert await clients[0].smembers(b"test:tag:" + cast(bytes, tag)) <= values
    info = await caches[0].cache_info()
    assert info.hits + info.misses == 400
    for c in clients:
        await c.aclose()


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
