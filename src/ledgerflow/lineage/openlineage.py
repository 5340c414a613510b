"""OpenLineage run events for each committed batch and each publication, so Marquez or
another OpenLineage consumer shows ledgerflow beside the rest of a company's lineage.

Off unless ``LEDGERFLOW_OPENLINEAGE_URL`` is set; the worker imports this module only
then (the OpenLineage client is the ``openlineage`` extra). The events are built with the
OpenLineage client's own models and sent by its
HTTP transport from one background thread, through a bounded queue: when the consumer is
slow or down, events are dropped and counted, never waited for. Ingest does not slow down
for lineage.

Each event is a COMPLETE run event (no START: a batch is instantaneous to the outside):

* a batch: job ``ingest.<queue>``; input the RabbitMQ queue (``inputStatistics`` = messages
  received); outputs ``historical_transactions`` (rows stored), ``ledgerflow.
  filtered_messages`` and ``ledgerflow.rejected_messages`` (rows written);
* a publication: job ``publish.balances``; input ``historical_transactions``; output the
  KeyDB balances (keys written).
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import structlog
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import OutputDatasetFacet
from openlineage.client.facet_v2 import input_statistics_input_dataset as input_stats
from openlineage.client.facet_v2 import output_statistics_output_dataset as output_stats
from openlineage.client.transport.http import HttpConfig, HttpTransport

log = structlog.get_logger(__name__)

PRODUCER = "https://github.com/ledgerflow/ledgerflow"
QUEUE_SIZE = 10_000
RUN_NAMESPACE = uuid.UUID("0b7f1b8e-2f4d-4c0c-9a55-6f6c2d8e4a11")  # ledgerflow's run ids


@dataclass(frozen=True)
class Datasets:
    """Where the datasets live, as OpenLineage names them (scheme://authority, name)."""

    broker: str  # rabbitmq://host:port
    database: str  # postgres://host:port
    database_name: str
    keydb: str  # redis://host:port

    @classmethod
    def from_urls(cls, amqp_url: str, database_url: str, redis_url: str) -> Datasets:
        """From ledgerflow's connection URLs (credentials are never part of a name)."""

        def authority(url: str, scheme: str, port: int) -> str:
            parts = urlsplit(url)
            return f"{scheme}://{parts.hostname or 'localhost'}:{parts.port or port}"

        database = urlsplit(database_url).path.lstrip("/") or "postgres"
        return cls(
            authority(amqp_url, "rabbitmq", 5672),
            authority(database_url, "postgres", 5432),
            database,
            authority(redis_url, "redis", 6379),
        )


class OpenLineageSink:
    """An EventSink turning the worker's batch and publication events into OpenLineage
    run events, sent in the background."""

    def __init__(self, url: str, namespace: str, datasets: Datasets, timeout: float = 5.0) -> None:

        self.namespace = namespace
        self.datasets = datasets
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self._transport = HttpTransport(HttpConfig(url=url, timeout=timeout, retry={"total": 0}))
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_SIZE)
        self._thread = threading.Thread(target=self._send_forever, name="openlineage", daemon=True)
        self._thread.start()

    def emit(self, event: Mapping[str, Any]) -> None:
        """Turn a batch or publication event into a run event and queue it; never blocks."""
        kind = event.get("type")
        try:
            if kind == "batch":
                run_event = self._batch(event)
            elif kind == "balances":
                run_event = self._publication(event)
            else:
                return
            self._queue.put_nowait(run_event)
        except queue.Full:
            self.dropped += 1
        except Exception as exc:  # a bad event must not stop the worker
            log.warning("openlineage.event_failed", error=repr(exc), type=kind)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (for up to ``timeout`` seconds), then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _send_forever(self) -> None:
        while (run_event := self._queue.get()) is not None:
            try:
                self._transport.emit(run_event)
                self.sent += 1
            except Exception as exc:
                self.failed += 1
                if self.failed == 1 or self.failed % 1000 == 0:
                    log.warning("openlineage.send_failed", error=repr(exc), failed=self.failed)

    def _run_event(
        self, job: str, run_key: str, inputs: list[Any], outputs: list[Any], at: datetime
    ) -> Any:

        return RunEvent(
            eventType=RunState.COMPLETE,
            eventTime=at.isoformat(),
            run=Run(runId=str(uuid.uuid5(RUN_NAMESPACE, f"{self.namespace}/{job}/{run_key}"))),
            job=Job(namespace=self.namespace, name=job),
            inputs=inputs,
            outputs=outputs,
            producer=PRODUCER,
        )

    def _table(self, name: str, rows: int | None) -> Any:

        facets: dict[str, OutputDatasetFacet] = {}
        if rows is not None:
            facets["outputStatistics"] = output_stats.OutputStatisticsOutputDatasetFacet(
                rowCount=rows
            )
        return OutputDataset(
            namespace=self.datasets.database,
            name=f"{self.datasets.database_name}.{name}",
            outputFacets=facets,
        )

    def _batch(self, event: Mapping[str, Any]) -> Any:

        received = sum(
            int(event.get(k, 0))
            for k in ("stored", "rejected", "duplicates", "redelivered", "filtered")
        )
        queue_name = str(event["queue"])
        return self._run_event(
            f"ingest.{queue_name}",
            f"batch/{event['batch_id']}",
            [
                InputDataset(
                    namespace=self.datasets.broker,
                    name=queue_name,
                    inputFacets={
                        "inputStatistics": input_stats.InputStatisticsInputDatasetFacet(
                            rowCount=received
                        )
                    },
                )
            ],
            [
                self._table("public.historical_transactions", int(event.get("stored", 0))),
                self._table("ledgerflow.filtered_messages", int(event.get("filtered", 0))),
                self._table("ledgerflow.rejected_messages", int(event.get("rejected", 0))),
            ],
            datetime.now(UTC),
        )

    def _publication(self, event: Mapping[str, Any]) -> Any:

        keys = len(event.get("balances", {}))
        return self._run_event(
            "publish.balances",
            f"boundary/{event['boundary']}",
            [
                InputDataset(
                    namespace=self.datasets.database,
                    name=f"{self.datasets.database_name}.public.historical_transactions",
                )
            ],
            [
                OutputDataset(
                    namespace=self.datasets.keydb,
                    name="balances",
                    outputFacets={
                        "outputStatistics": output_stats.OutputStatisticsOutputDatasetFacet(
                            rowCount=keys
                        )
                    },
                )
            ],
            datetime.fromisoformat(str(event["boundary"])),
        )
