"""Prometheus metrics of the rates cache."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class RatesCacheMetrics:
    """Lookups in the persistent /rates cache and its size, in the process's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lookups = Counter(
            "ledgerflow_rates_cache_lookups",
            "Rates answers looked up in the cache, by result.",
            ["result"],
            registry=registry,
        )
        self.entries = Gauge(
            "ledgerflow_rates_cache_entries",
            "Answers in the persistent rates cache.",
            registry=registry,
        )

    def looked_up(self, hit: bool) -> None:
        """Count one lookup."""
        self.lookups.labels("hit" if hit else "miss").inc()
