"""A least-recently-used cache kept in KeyDB, so that it survives restarts of the program.

The working version of ``functools.lru_cache`` made persistent: entries, their recency
and the hit and miss counts all live in KeyDB under one namespace, so a restarted (or a
second) process finds them; ``cache_info()`` and ``cache_clear()`` work as in functools.

    cache = PersistentLRU(redis_client, "ledgerflow:rates", maxsize=10_000)

    @persistent_lru_cache(cache)
    async def rates(...): ...

    await rates.cache_info()   # CacheInfo(hits=..., misses=..., maxsize=..., currsize=...)
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NamedTuple, ParamSpec, TypeVar

import redis.asyncio as redis
from redis.exceptions import RedisError

P = ParamSpec("P")
R = TypeVar("R")


class CacheInfo(NamedTuple):
    """As ``functools.lru_cache``'s."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


class PersistentLRU:
    """Values (JSON) by key, the least recently used evicted past ``maxsize``.

    A KeyDB that cannot be reached makes every lookup a miss and every store a no-op:
    the cache speeds answers up, it never decides them.
    """

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        maxsize: int = 1024,
        on_lookup: Callable[[bool], None] | None = None,
        on_size: Callable[[int], None] | None = None,
    ) -> None:
        self.client, self.maxsize = client, maxsize
        self._on_lookup, self._on_size = on_lookup, on_size
        self._values, self._recency = f"{namespace}:values", f"{namespace}:recency"
        self._stats, self._tags = f"{namespace}:stats", f"{namespace}:tags"

    async def get(self, key: str) -> Any | None:
        """The cached value, or None; counts a hit or a miss and refreshes recency."""
        try:
            raw = await self.client.hget(self._values, key)
            async with self.client.pipeline(transaction=True) as pipe:
                if raw is None:
                    pipe.hincrby(self._stats, "misses", 1)
                else:
                    pipe.hincrby(self._stats, "hits", 1)
                    pipe.zadd(self._recency, {key: time.time_ns()}, xx=True)
                await pipe.execute()
        except (RedisError, OSError):
            raw = None
        if self._on_lookup is not None:
            self._on_lookup(raw is not None)
        return None if raw is None else json.loads(raw)

    async def put(self, key: str, value: Any, tags: Any = None) -> None:
        """Store ``value`` (and ``tags``, a JSON description used to invalidate it)."""
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(self._values, key, json.dumps(value))
                pipe.hset(self._tags, key, json.dumps(tags))
                pipe.zadd(self._recency, {key: time.time_ns()})
                await pipe.execute()
            size = await self.client.zcard(self._recency)
            if self._on_size is not None:
                self._on_size(min(size, self.maxsize))
            excess = size - self.maxsize
            if excess > 0:
                popped: list[Any] = await self.client.zpopmin(self._recency, excess)
                await self.forget(_text(entry[0]) for entry in popped)
        except (RedisError, OSError):
            return

    async def forget(self, keys: Iterable[str]) -> int:
        """Drop these entries; return how many there were."""
        keys = list(keys)
        if not keys:
            return 0
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(self._values, *keys)
            pipe.hdel(self._tags, *keys)
            pipe.zrem(self._recency, *keys)
            pipe.zcard(self._recency)
            removed, *_, size = await pipe.execute()
        if self._on_size is not None:
            self._on_size(int(size))
        return int(removed)

    async def invalidate(self, stale: Callable[[Any], bool]) -> int:
        """Drop every entry whose tags ``stale`` says are affected; return how many."""
        tags = await self.client.hgetall(self._tags)
        return await self.forget(_text(key) for key, raw in tags.items() if stale(json.loads(raw)))

    async def cache_info(self) -> CacheInfo:
        """Hits and misses since the last clear (across restarts), and the current size."""
        stats = await self.client.hgetall(self._stats)
        size = await self.client.zcard(self._recency)
        return CacheInfo(
            int(stats.get(b"hits", stats.get("hits", 0))),
            int(stats.get(b"misses", stats.get("misses", 0))),
            self.maxsize,
            int(size),
        )

    async def cache_clear(self) -> None:
        """Empty the cache and its statistics."""
        await self.client.delete(self._values, self._recency, self._stats, self._tags)
        if self._on_size is not None:
            self._on_size(0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def persistent_lru_cache(
    cache: PersistentLRU,
    key: Callable[..., str] | None = None,
    tags: Callable[..., Any] | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Any]:
    """Decorate an async function whose results are JSON: cached in ``cache``.

    ``key`` turns the arguments into the cache key (by default their JSON); ``tags``
    describes an entry for ``PersistentLRU.invalidate``.
    """

    def decorate(function: Callable[P, Awaitable[R]]) -> Any:
        @functools.wraps(function)
        async def cached(*args: P.args, **kwargs: P.kwargs) -> R:
            name = key(*args, **kwargs) if key else json.dumps([args, kwargs], default=str)
            found = await cache.get(name)
            if found is not None:
                return found  # type: ignore[no-any-return]
            value = await function(*args, **kwargs)
            await cache.put(name, value, tags(*args, **kwargs) if tags else None)
            return value

        cached.cache_info = cache.cache_info  # type: ignore[attr-defined]
        cached.cache_clear = cache.cache_clear  # type: ignore[attr-defined]
        cached.cache = cache  # type: ignore[attr-defined]
        return cached

    return decorate
