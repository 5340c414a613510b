"""KeyDB (Redis protocol): where the balances are published."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError


class BalanceStoreError(Exception):
    """KeyDB could not be reached or refused the write."""


class BalanceStore(Protocol):
    """Where balances go: every key of one publication written atomically."""

    async def write_all(self, values: Mapping[str, str]) -> None:
        """Write every key in one transaction (MULTI/EXEC), or raise BalanceStoreError."""
        ...

    async def read_all(self, keys: list[str]) -> dict[str, str | None]:
        """The current value of each key (None when absent), or raise BalanceStoreError."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


class RedisBalanceStore:
    """BalanceStore on KeyDB or Redis."""

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )

    async def write_all(self, values: Mapping[str, str]) -> None:
        """Write every key in one MULTI/EXEC, or raise BalanceStoreError."""
        if not values:
            return
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.mset(dict(values))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BalanceStoreError(f"cannot write balances to KeyDB: {exc}") from exc

    async def read_all(self, keys: list[str]) -> dict[str, str | None]:
        """The current value of each key (None when absent)."""
        if not keys:
            return {}
        try:
            values = await self._client.mget(keys)
        except (RedisError, OSError) as exc:
            raise BalanceStoreError(f"cannot read balances from KeyDB: {exc}") from exc
        return {
            key: value.decode() if isinstance(value, bytes) else value
            for key, value in zip(keys, values, strict=True)
        }

    async def ping(self) -> None:
        """Raise BalanceStoreError unless KeyDB answers."""
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise BalanceStoreError(f"KeyDB does not answer: {exc}") from exc

    async def close(self) -> None:
        """Release the connection."""
        await self._client.aclose()


async def ping(url: str, socket_timeout: float = 2.0) -> None:
    """Raise unless the KeyDB at ``url`` answers."""
    store = RedisBalanceStore(url, socket_timeout)
    try:
        await store.ping()
    finally:
        await store.close()
