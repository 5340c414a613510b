"""One message as the broker handed it over, whatever the domain that consumes it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple


class Delivery(NamedTuple):
    """One message as the broker handed it over; immutable once made.

    A named tuple rather than a frozen dataclass: one is made for every message, and a
    frozen dataclass costs five times as much to make (1.5 µs against 0.3 µs, measured),
    a tenth of what the worker spends on a message.
    """

    body: bytes
    tag: int
    redelivered: bool
    received_at: datetime
    message_id: str | None = None
    # A mapping, or an object whose attributes are the properties (pika's BasicProperties),
    # or None: turned into JSON only for the rare message that is rejected.
    properties: Any = None
    trace: Any = None  # the message's span context when tracing is on


def properties_json(properties: Any) -> Any:
    """The AMQP properties of a delivery as JSON that PostgreSQL's jsonb accepts."""
    if properties is None:
        return {}
    if not isinstance(properties, Mapping):
        properties = {k: v for k, v in vars(properties).items() if v is not None}
    return _json_safe(properties)


def _json_safe(value: Any) -> Any:
    """AMQP properties as JSON that PostgreSQL's jsonb accepts (no NUL, bytes as text)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    if isinstance(value, str):
        return value.replace("\x00", "\\x00")
    if isinstance(value, dict):
        return {_json_safe(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _json_safe(str(value))
