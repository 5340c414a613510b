"""A least-recently-used cache kept in KeyDB, so that it survives restarts of the program.

The working version of ``functools.lru_cache`` made persistent: entries, their recency
and the hit and miss counts all live in KeyDB under one namespace, so a restarted (or a
second) process finds them; ``cache_info()`` and ``cache_clear()`` work as in functools.

    cache = PersistentLRU(redis_client, "ledgerflow:rates", maxsize=10_000)

    @persistent_lru_cache(cache, tags=lambda lanes: [...], span=lambda lanes: (lo, hi))
    async def rates(lanes): ...

    await rates.cache_info()   # CacheInfo(hits=..., misses=..., maxsize=..., currsize=...)

Every operation is one server-side script, so API replicas sharing the cache never see
half of another's write. An entry may carry tags and a span (two strings that compare in
order, such as ISO dates); ``invalidate`` drops the entries that carry every tag of a
group and whose span overlaps the group's, finding them through one set per tag, so its
cost follows the entries that share the tags, not the size of the cache.

A value computed before an invalidation must not be stored after it (it may already be
stale): ``lookup`` returns the cache's generation, every invalidation and clear moves it
on, and ``put`` with an older generation stores nothing.

Keys: ``<ns>:values`` (hash), ``<ns>:recency`` (sorted set), ``<ns>:stats`` (hash: hits,
misses, generation), ``<ns>:meta`` (hash: each entry's tags and span), ``<ns>:tag:<tag>``
(set of entry keys), ``<ns>:tagsets`` (the tag sets in use). The scripts touch tag sets
they learn of as they run, so the cache needs a single KeyDB or Redis, not a cluster.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, ParamSpec, TypeVar

import redis.asyncio as redis
from redis.exceptions import RedisError

P = ParamSpec("P")
R = TypeVar("R")

# Shared by the scripts: drop one entry and its tag memberships.
# KEYS: values, recency, stats, meta, tagsets; ARGV[1]: the tag-set prefix.
_DROP = """
local function drop(key)
  local meta = redis.call('HGET', KEYS[4], key)
  if meta then
    for _, tag in ipairs(cjson.decode(meta)['tags']) do
      redis.call('SREM', ARGV[1] .. tag, key)
    end
  end
  redis.call('HDEL', KEYS[4], key)
  redis.call('ZREM', KEYS[2], key)
  return redis.call('HDEL', KEYS[1], key)
end
"""

# ARGV: prefix, key, now
_GET = """
local value = redis.call('HGET', KEYS[1], ARGV[2])
if value then
  redis.call('HINCRBY', KEYS[3], 'hits', 1)
  redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[2])
else
  redis.call('HINCRBY', KEYS[3], 'misses', 1)
end
return {value, redis.call('HGET', KEYS[3], 'generation') or '0'}
"""

# ARGV: prefix, key, value, now, maxsize, generation ('' for any), meta, tag...
_PUT = (
    _DROP
    + """
local generation = redis.call('HGET', KEYS[3], 'generation') or '0'
if ARGV[6] ~= '' and ARGV[6] ~= generation then
  return -1
end
drop(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
for i = 8, #ARGV do
  redis.call('SADD', ARGV[1] .. ARGV[i], ARGV[2])
  redis.call('SADD', KEYS[5], ARGV[i])
end
local size = redis.call('ZCARD', KEYS[2])
local excess = size - tonumber(ARGV[5])
if excess > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #popped, 2 do
    drop(popped[i])
  end
  size = size - excess
end
return size
"""
)

# ARGV: prefix, key...
_FORGET = (
    _DROP
    + """
local removed = 0
for i = 2, #ARGV do
  removed = removed + drop(ARGV[i])
end
return {removed, redis.call('ZCARD', KEYS[2])}
"""
)

# ARGV: prefix, groups as JSON: [{"tags": [...], "span": [lo, hi] or null}, ...]
_INVALIDATE = (
    _DROP
    + """
local function span(value)
  if value == nil or value == cjson.null then
    return nil
  end
  return value
end
local removed = 0
for _, group in ipairs(cjson.decode(ARGV[2])) do
  local sets = {}
  for i, tag in ipairs(group['tags']) do
    sets[i] = ARGV[1] .. tag
  end
  local wanted = span(group['span'])
  for _, key in ipairs(redis.call('SINTER', unpack(sets))) do
    local meta = redis.call('HGET', KEYS[4], key)
    if meta then
      local held = span(cjson.decode(meta)['span'])
      if wanted == nil or held == nil or not (held[2] < wanted[1] or held[1] > wanted[2]) then
        removed = removed + drop(key)
      end
    end
  end
end
redis.call('HINCRBY', KEYS[3], 'generation', 1)
return {removed, redis.call('ZCARD', KEYS[2])}
"""
)

# ARGV: prefix
_CLEAR = """
for _, tag in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  redis.call('DEL', ARGV[1] .. tag)
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4], KEYS[5])
redis.call('HSET', KEYS[3], 'hits', 0, 'misses', 0)
redis.call('HINCRBY', KEYS[3], 'generation', 1)
return 0
"""


class CacheInfo(NamedTuple):
    """As ``functools.lru_cache``'s."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


@dataclass(frozen=True)
class Group:
    """Entries to invalidate: those carrying every one of ``tags`` whose span overlaps
    ``span`` (inclusive; an entry or a group without a span overlaps everything)."""

    tags: Sequence[str]
    span: tuple[str, str] | None = None


@dataclass(frozen=True)
class Lookup:
    """What ``lookup`` found: the value (None on a miss) and the cache's generation then
    (None when KeyDB did not answer)."""

    value: Any
    generation: str | None


class PersistentLRU:
    """Values (JSON) by key, the least recently used evicted past ``maxsize``.

    A KeyDB that cannot be reached makes every lookup a miss and every store a no-op:
    the cache speeds answers up, it never decides them. Invalidation and clearing raise
    RedisError instead: a stale answer must not be served silently.
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
        self._keys = [
            f"{namespace}:{part}" for part in ("values", "recency", "stats", "meta", "tagsets")
        ]
        self._prefix = f"{namespace}:tag:"
        self._get = client.register_script(_GET)
        self._put = client.register_script(_PUT)
        self._forget = client.register_script(_FORGET)
        self._invalidate = client.register_script(_INVALIDATE)
        self._clear = client.register_script(_CLEAR)

    async def lookup(self, key: str) -> Lookup:
        """The cached value and the generation; counts a hit or a miss, refreshes recency."""
        try:
            raw, generation = await self._get(self._keys, [self._prefix, key, time.time_ns()])
        except (RedisError, OSError):
            raw, generation = None, None
        if self._on_lookup is not None:
            self._on_lookup(raw is not None)
        return Lookup(
            None if raw is None else json.loads(raw),
            None if generation is None else _text(generation),
        )

    async def get(self, key: str) -> Any | None:
        """The cached value, or None; counts a hit or a miss and refreshes recency."""
        return (await self.lookup(key)).value

    async def put(
        self,
        key: str,
        value: Any,
        tags: Iterable[str] = (),
        span: tuple[str, str] | None = None,
        generation: str | None = None,
    ) -> bool:
        """Store ``value`` with its tags and span; return whether it was stored.

        With ``generation`` (from ``lookup``), nothing is stored if the cache was
        invalidated or cleared since.
        """
        tags = list(dict.fromkeys(tags))
        meta = json.dumps({"tags": tags, "span": span})
        try:
            size = await self._put(
                self._keys,
                [
                    self._prefix,
                    key,
                    json.dumps(value),
                    time.time_ns(),
                    self.maxsize,
                    generation or "",
                    meta,
                    *tags,
                ],
            )
        except (RedisError, OSError):
            return False
        if size < 0:
            return False
        self._sized(int(size))
        return True

    async def forget(self, keys: Iterable[str]) -> int:
        """Drop these entries; return how many there were."""
        keys = list(keys)
        if not keys:
            return 0
        removed, size = await self._forget(self._keys, [self._prefix, *keys])
        self._sized(int(size))
        return int(removed)

    async def invalidate(self, groups: Iterable[Group]) -> int:
        """Drop every entry some group matches (see ``Group``); return how many."""
        document = [
            {"tags": list(g.tags), "span": list(g.span) if g.span else None} for g in groups
        ]
        if any(not group["tags"] for group in document):
            raise ValueError("a group needs at least one tag")
        if not document:
            return 0
        removed, size = await self._invalidate(self._keys, [self._prefix, json.dumps(document)])
        self._sized(int(size))
        return int(removed)

    async def cache_info(self) -> CacheInfo:
        """Hits and misses since the last clear (across restarts), and the current size."""
        stats = await self.client.hgetall(self._keys[2])
        size = await self.client.zcard(self._keys[1])
        return CacheInfo(
            int(stats.get(b"hits", stats.get("hits", 0))),
            int(stats.get(b"misses", stats.get("misses", 0))),
            self.maxsize,
            int(size),
        )

    async def cache_clear(self) -> None:
        """Empty the cache and its statistics."""
        await self._clear(self._keys, [self._prefix])
        self._sized(0)

    def _sized(self, size: int) -> None:
        if self._on_size is not None:
            self._on_size(min(size, self.maxsize))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def persistent_lru_cache(
    cache: PersistentLRU,
    key: Callable[..., str] | None = None,
    tags: Callable[..., Iterable[str]] | None = None,
    span: Callable[..., tuple[str, str]] | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Any]:
    """Decorate an async function whose results are JSON: cached in ``cache``.

    ``key`` turns the arguments into the cache key (by default their JSON); ``tags`` and
    ``span`` describe an entry for ``PersistentLRU.invalidate``.
    """

    def decorate(function: Callable[P, Awaitable[R]]) -> Any:
        @functools.wraps(function)
        async def cached(*args: P.args, **kwargs: P.kwargs) -> R:
            name = key(*args, **kwargs) if key else json.dumps([args, kwargs], default=str)
            found = await cache.lookup(name)
            if found.value is not None:
                return found.value  # type: ignore[no-any-return]
            value = await function(*args, **kwargs)
            if found.generation is not None:  # KeyDB answered the lookup
                await cache.put(
                    name,
                    value,
                    tags(*args, **kwargs) if tags else (),
                    span(*args, **kwargs) if span else None,
                    found.generation,
                )
            return value

        cached.cache_info = cache.cache_info  # type: ignore[attr-defined]
        cached.cache_clear = cache.cache_clear  # type: ignore[attr-defined]
        cached.cache = cache  # type: ignore[attr-defined]
        return cached

    return decorate
