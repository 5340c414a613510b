"""One trace follows a message from receipt through commit into the publication."""

from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ledgerflow.core.tracing import MessageTracer
from ledgerflow.settings import load_settings

from .conftest import eventually

pytestmark = pytest.mark.integration

PRODUCER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"


async def test_a_message_trace_runs_from_receipt_to_publication(
    queue: str, start_worker: Callable[..., Any], publish: Callable[..., None]
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    running = await start_worker(tracer=MessageTracer(provider.get_tracer("test")))
    # A producer that traces passes its context along, as W3C traceparent.
    publish(
        b'{"id": 1, "value": 600}',
        headers={"traceparent": f"00-{PRODUCER_TRACE}-{PRODUCER_SPAN}-01"},
    )

    def trace_complete() -> list[Any]:
        spans = [
            s
            for s in exporter.get_finished_spans()
            if f"{s.context.trace_id:032x}" == PRODUCER_TRACE
        ]
        return spans if "ledgerflow.publish" in {s.name for s in spans} else []

    spans = await eventually(trace_complete)
    await running.stop()
    by_name = {s.name: s for s in spans}
    assert list(by_name) == ["ledgerflow.receive", "ledgerflow.commit", "ledgerflow.publish"]
    receive, commit, publication = by_name.values()
    assert f"{receive.parent.span_id:016x}" == PRODUCER_SPAN
    assert commit.parent.span_id == receive.context.span_id
    assert publication.parent.span_id == receive.context.span_id
    assert receive.end_time <= commit.end_time <= publication.end_time
    assert receive.attributes["messaging.destination.name"] == queue
    assert commit.attributes["ledgerflow.batch_id"] >= 1
    assert publication.attributes["ledgerflow.boundary"] % 1 == 0


def test_tracing_is_off_without_otel_variables() -> None:
    from ledgerflow.core.tracing import configure

    assert not configure(load_settings()).enabled


def test_an_unknown_exporter_is_a_configuration_error_naming_the_variable() -> None:
    from ledgerflow.core.tracing import configure
    from ledgerflow.settings import ConfigError

    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER"):
        configure(load_settings(otel_traces_exporter="jaeger-thrift"))
