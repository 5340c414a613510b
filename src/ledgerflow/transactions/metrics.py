"""Prometheus metrics of ingestion and publication (prefix ``ledgerflow_``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ledgerflow.transactions.messages import Reason
from ledgerflow.transactions.writer import BatchResult


class IngestMetrics:
    """What the active worker does with messages and balances, in the process's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "ledgerflow_messages",
            "Messages consumed, by what became of them.",
            ["outcome"],
            registry=registry,
        )
        self.rejected = Counter(
            "ledgerflow_rejected", "Messages rejected, by reason.", ["reason"], registry=registry
        )
        self.batch_size = Histogram(
            "ledgerflow_batch_size",
            "Messages per committed batch.",
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
            registry=registry,
        )
        self.commit_duration = Histogram(
            "ledgerflow_batch_commit_duration_seconds",
            "Time to commit a batch and have RabbitMQ confirm its acknowledgement.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.publish_lag = Histogram(
            "ledgerflow_publish_lag_seconds",
            "From the boundary to KeyDB acknowledging the balances.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            registry=registry,
        )
        self.publishes = Counter(
            "ledgerflow_publishes", "Boundaries handled, by result.", ["result"], registry=registry
        )
        self.last_publish = Gauge(
            "ledgerflow_last_publish_timestamp_seconds",
            "When balances were last written to KeyDB (seconds since the epoch).",
            registry=registry,
        )
        self.backlog = Gauge(
            "ledgerflow_queue_backlog",
            "Messages ready in the queue, as RabbitMQ last said.",
            registry=registry,
        )
        for outcome in ("stored", "rejected", "duplicate", "redelivered", "filtered"):
            self.messages.labels(outcome)
        for result in ("published", "failed", "skipped"):
            self.publishes.labels(result)
        for reason in Reason:  # every series exists from the start, so rate() works at once
            self.rejected.labels(reason.value)

    def batch(self, result: BatchResult, seconds: float) -> None:
        """Count one committed batch."""
        self.messages.labels("stored").inc(result.stored)
        self.messages.labels("rejected").inc(result.rejected)
        self.messages.labels("duplicate").inc(result.duplicates)
        self.messages.labels("redelivered").inc(result.redelivered)
        self.messages.labels("filtered").inc(result.filtered)
        for reason, count in result.rejected_by_reason.items():
            self.rejected.labels(reason).inc(count)
        self.batch_size.observe(
            result.stored
            + result.rejected
            + result.duplicates
            + result.redelivered
            + result.filtered
        )
        self.commit_duration.observe(seconds)
