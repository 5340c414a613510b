"""Several event sinks as one: the live feed and, where configured, OpenLineage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ledgerflow.kv.events import EventSink


class Fanout:
    """An EventSink handing every event to several sinks."""

    def __init__(self, *sinks: EventSink) -> None:
        self._sinks = sinks

    def emit(self, event: Mapping[str, Any]) -> None:
        """Give ``event`` to each sink."""
        for sink in self._sinks:
            sink.emit(event)
