"""The metrics each process exposes: its domains' metrics in one registry, and the
process's own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from ledgerflow.db.replicas import ReplicaMetrics
from ledgerflow.rates.metrics import RatesCacheMetrics
from ledgerflow.transactions.metrics import IngestMetrics
from ledgerflow.web.metrics import HttpMetrics


class WorkerMetrics:
    """Every metric the worker exposes."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.ingest = IngestMetrics(registry)
        self.leader = Gauge(
            "ledgerflow_leader",
            "1 while this instance is active, 0 as a standby.",
            registry=registry,
        )
        self.reconnects = Counter(
            "ledgerflow_reconnects",
            "Times the worker lost a dependency and started over.",
            ["dependency"],
            registry=registry,
        )
        for dependency in ("postgres", "rabbitmq", "leadership"):
            self.reconnects.labels(dependency)
        # LEDGERFLOW_SHARDS: which shards this worker is the active consumer of, and what
        # each took.
        self.shard_active = Gauge(
            "ledgerflow_shard_active",
            "1 while this worker is the shard's active consumer, 0 otherwise.",
            ["queue"],
            registry=registry,
        )
        self.shard_messages = Counter(
            "ledgerflow_shard_messages",
            "Messages this worker committed from the shard, by outcome.",
            ["queue", "outcome"],
            registry=registry,
        )


class ApiMetrics:
    """Every metric the API exposes."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.http = HttpMetrics(registry)
        self.rates_cache = RatesCacheMetrics(registry)
        self.replicas = ReplicaMetrics(registry)
