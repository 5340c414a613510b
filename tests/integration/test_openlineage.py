"""OpenLineage: with LEDGERFLOW_OPENLINEAGE_URL set, the worker sends a COMPLETE run event
for each batch and each publication to a real HTTP receiver; unset, nothing is sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import psycopg
import pytest

from ledgerflow.lineage.openlineage import Datasets, OpenLineageSink

from ..polling import eventually

pytestmark = pytest.mark.integration


class Receiver:
    """An OpenLineage endpoint (POST /api/v1/lineage) on a free port."""

    def __init__(self, status: int = 201) -> None:
        events: list[dict[str, Any]] = []
        self.events = events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                assert self.path == "/api/v1/lineage"
                events.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


async def test_each_batch_and_publication_becomes_a_run_event(
    start_worker: Callable[..., Any],
    publish: Callable[..., None],
    receiver: Receiver,
    queue: str,
    seeded: psycopg.AsyncConnection[Any],
) -> None:
    running = await start_worker(openlineage_url=receiver.url, openlineage_namespace="bank")
    publish(b'{"id": 1, "value": 600}')
    publish(b'{"id": 2, "value": -1.5}')
    publish(b"not a transaction")

    def jobs() -> set[str]:
        return {event["job"]["name"] for event in receiver.events}

    await eventually(lambda: {f"ingest.{queue}", "publish.balances"} <= jobs(), 15)
    await running.stop()
    batches = [e for e in receiver.events if e["job"]["name"] == f"ingest.{queue}"]
    for event in receiver.events:
        assert event["eventType"] == "COMPLETE" and event["job"]["namespace"] == "bank"
        assert event["run"]["runId"] and event["eventTime"] and event["producer"]
        assert event["schemaURL"].startswith("https://openlineage.io/spec/")
    received = sum(e["inputs"][0]["inputFacets"]["inputStatistics"]["rowCount"] for e in batches)
    assert received == 3
    stored = {output["name"].rsplit(".", 1)[-1]: 0 for output in batches[0]["outputs"]}
    for event in batches:
        for output in event["outputs"]:
            stored[output["name"].rsplit(".", 1)[-1]] += output["outputFacets"]["outputStatistics"][
                "rowCount"
            ]
    assert stored == {"historical_transactions": 2, "filtered_messages": 0, "rejected_messages": 1}
    assert batches[0]["inputs"][0]["namespace"].startswith("rabbitmq://127.0.0.1:")
    assert "guest" not in json.dumps(receiver.events)  # no credentials in dataset names
    publication = next(e for e in receiver.events if e["job"]["name"] == "publish.balances")
    assert publication["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 2


def test_a_consumer_that_is_down_costs_drops_never_a_wait() -> None:
    datasets = Datasets.from_urls(
        "amqp://u:secret@mq:5672/%2F", "postgresql://u:secret@db/ledger", "redis://kv:6379/0"
    )
    assert datasets == Datasets(
        "rabbitmq://mq:5672", "postgres://db:5432", "ledger", "redis://kv:6379"
    )
    sink = OpenLineageSink("http://127.0.0.1:9", "ledgerflow", datasets, timeout=0.2)
    event = {"type": "batch", "queue": "q", "batch_id": 1, "stored": 1}
    for _ in range(30_000):  # more than the queue holds, while nothing answers
        sink.emit(event)
    sink.emit({"type": "worker", "role": "active"})  # not a lineage event: ignored
    assert sink.dropped > 0
    sink.close(timeout=1)
