"""OpenTelemetry tracing, off unless the standard OTEL_* variables turn it on.

Each message gets one trace: ``ledgerflow.receive`` when the worker takes it (continuing
the producer's trace when the message carries a ``traceparent`` header),
``ledgerflow.commit`` when its batch commits, and ``ledgerflow.publish`` when the first
balance publication that includes it reaches KeyDB.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ledgerflow.core import ConfigError

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext, Tracer

# Committed messages waiting for the next publication; past this many the oldest are
# published untraced rather than growing without bound.
MAX_WAITING = 100_000


class MessageTracer:
    """Spans for the messages of one worker; every method is a no-op when tracing is off."""

    def __init__(self, tracer: Tracer | None) -> None:
        self._tracer = tracer
        self._waiting: list[SpanContext] = []
        self.enabled = tracer is not None

    def received(self, headers: Mapping[str, Any] | None, attributes: dict[str, Any]) -> Any:
        """Record receipt; return the message's span context (None when tracing is off)."""
        if self._tracer is None:
            return None
        from opentelemetry.propagate import extract

        carrier = {
            k: v.decode() if isinstance(v, bytes) else str(v) for k, v in (headers or {}).items()
        }
        span = self._tracer.start_span(
            "ledgerflow.receive", context=extract(carrier), attributes=attributes
        )
        span.end()
        return span.get_span_context()

    def committed(self, contexts: Iterable[Any], started_ns: int, batch_id: int) -> None:
        """Record a batch's commit in each of its messages' traces."""
        if self._tracer is None:
            return
        ended = time.time_ns()
        for context in contexts:
            if context is None:
                continue
            self._span(
                "ledgerflow.commit", context, started_ns, ended, {"ledgerflow.batch_id": batch_id}
            )
            self._waiting.append(context)
        del self._waiting[:-MAX_WAITING]

    def published(self, started_ns: int, boundary: float) -> None:
        """Record the publication in the trace of every message committed since the last."""
        if self._tracer is None:
            return
        ended = time.time_ns()
        for context in self._waiting:
            self._span(
                "ledgerflow.publish", context, started_ns, ended, {"ledgerflow.boundary": boundary}
            )
        self._waiting.clear()

    def _span(
        self, name: str, parent: Any, start: int, end: int, attributes: dict[str, Any]
    ) -> None:
        from opentelemetry import trace

        assert self._tracer is not None
        context = trace.set_span_in_context(trace.NonRecordingSpan(parent))
        self._tracer.start_span(name, context=context, start_time=start, attributes=attributes).end(
            end_time=end
        )


class TracingSettings(Protocol):
    """The settings tracing reads (OpenTelemetry's own variables)."""

    @property
    def otel_traces_exporter(self) -> str | None: ...
    @property
    def otel_sdk_disabled(self) -> bool: ...
    @property
    def otel_service_name(self) -> str: ...


def configure(settings: TracingSettings) -> MessageTracer:
    """A MessageTracer exporting as OTEL_TRACES_EXPORTER says (otlp or console), or off."""
    exporter_name = settings.otel_traces_exporter
    if not exporter_name or exporter_name == "none" or settings.otel_sdk_disabled:
        return MessageTracer(None)
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError as exc:
        raise ConfigError(
            "OTEL_TRACES_EXPORTER is set but OpenTelemetry is not installed:"
            " pip install 'ledgerflow[otel]'"
        ) from exc
    exporter: Any
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_* itself
    else:
        raise ConfigError(f"OTEL_TRACES_EXPORTER: {exporter_name!r} is not otlp, console or none")
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.otel_service_name})
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return MessageTracer(trace.get_tracer("ledgerflow"))
