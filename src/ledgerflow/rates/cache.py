"""The persistent cache of /rates answers: filled by the API, invalidated by every price
batch and every load, wherever they are committed (the API, the worker, the CLI)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import redis.asyncio as redis
import structlog
from redis.exceptions import RedisError

from ledgerflow.kv.lru import Group, PersistentLRU, persistent_lru_cache
from ledgerflow.rates.lanes import Lanes, lane_rates, lane_tags
from ledgerflow.rates.metrics import RatesCacheMetrics
from ledgerflow.rates.price_batches import PriceBatch, changed_lanes

log = structlog.get_logger(__name__)

# Where cached /rates answers live in KeyDB. "v2": the layout of one script per operation
# and tag sets; the keys of the previous layout (ledgerflow:rates:values, :recency, :stats,
# :tags) are not read, so none of their entries can be served without being invalidated.
NAMESPACE = "ledgerflow:rates:v2"

# lane_rates, or lane_rates through the cache.
Answer = Callable[[psycopg.AsyncConnection[Any], Lanes], Awaitable[list[dict[str, Any]]]]


class RatesCache:
    """The answers of /rates by lanes and days, in KeyDB, shared by every API replica."""

    def __init__(
        self,
        client: redis.Redis,
        maxsize: int = 10_000,
        metrics: RatesCacheMetrics | None = None,
    ) -> None:
        self.lru = PersistentLRU(
            client,
            NAMESPACE,
            maxsize=max(1, maxsize),
            on_lookup=metrics.looked_up if metrics else None,
            on_size=metrics.entries.set if metrics else None,
        )

    @classmethod
    def from_url(
        cls, url: str, maxsize: int = 10_000, metrics: RatesCacheMetrics | None = None
    ) -> RatesCache:
        """A cache on the KeyDB at ``url``, with short timeouts: a slow cache is a miss."""
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        return cls(client, maxsize, metrics)

    def cached(self) -> Answer:
        """``lane_rates`` through the cache, keyed by the lanes alone (the connection is the
        request's)."""
        answer: Answer = persistent_lru_cache(
            self.lru,
            key=lambda _conn, lanes: lanes.cache_key(),
            tags=lambda _conn, lanes: lanes.tags(),
            span=lambda _conn, lanes: lanes.span(),
        )(lane_rates)
        return answer

    async def invalidate(self, batch: PriceBatch) -> int:
        """Drop the answers a committed batch makes stale; return how many.

        A KeyDB that does not answer is logged, not raised: the batch is committed, and
        its sender must not be told otherwise.
        """
        groups = [
            Group(lane_tags(orig, dest), days)
            for (orig, dest), days in changed_lanes(batch).items()
        ]
        try:
            dropped = await self.lru.invalidate(groups)
        except (RedisError, OSError) as exc:
            log.warning("rates.cache_not_invalidated", batch_id=batch.batch_id, error=str(exc))
            return 0
        log.info("rates.cache_invalidated", batch_id=batch.batch_id, entries=dropped)
        return dropped

    async def clear(self) -> None:
        """Drop every answer (after a load, any of them may be stale)."""
        try:
            await self.lru.cache_clear()
        except (RedisError, OSError) as exc:
            log.warning("rates.cache_not_cleared", error=str(exc))

    async def close(self) -> None:
        """Release the connection."""
        await self.lru.client.aclose()
