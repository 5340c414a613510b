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


class ApiMetrics:
    """Every metric the API exposes."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.http = HttpMetrics(registry)
        self.rates_cache = RatesCacheMetrics(registry)
        self.replicas = ReplicaMetrics(registry)
