"""KeyDB (Redis protocol): where the balances are published."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError


class CacheError(Exception):
    """KeyDB could not be reached or refused the write."""


class BalanceCache(Protocol):
    """Where balances go: every key of one publication written atomically."""

    async def write_all(self, values: Mapping[str, str]) -> None:
        """Write every key in one transaction (MULTI/EXEC), or raise CacheError."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


class RedisBalanceCache:
    """BalanceCache on KeyDB or Redis."""

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )

    async def write_all(self, values: Mapping[str, str]) -> None:
        if not values:
            return
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.mset(dict(values))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise CacheError(f"cannot write balances to KeyDB: {exc}") from exc

    async def ping(self) -> None:
        """Raise CacheError unless KeyDB answers."""
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise CacheError(f"KeyDB does not answer: {exc}") from exc

    async def close(self) -> None:
        await self._client.aclose()
