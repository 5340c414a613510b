"""Prometheus metrics of the HTTP side, and the exposition every process serves."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "HttpMetrics", "render"]


class HttpMetrics:
    """Request counts and durations, labelled by route (a fixed set), not by raw path."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "ledgerflow_http_requests",
            "HTTP requests answered.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "ledgerflow_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )


def render(registry: CollectorRegistry | None) -> bytes:
    """The Prometheus text exposition of ``registry`` (empty without one)."""
    return generate_latest(registry) if registry is not None else b""
