"""Deliveries read straight from AMQP frames, for the consumer's hot path.

A delivery arrives as three frames: a Basic.Deliver method frame, a content header and
one body frame. pika turns each into objects, routes it through its callback registry and
reassembles the content, which costs more CPU than everything ledgerflow then does with
the message (docs/design.md has the profile). ``DirectDeliveryConnection`` recognises
complete deliveries for a registered consumer in the bytes pika has buffered and hands
them over in one step; every other frame, and any delivery it does not fully recognise
(split across reads, several body frames, an unknown consumer), goes through pika
unchanged. Both paths read the same deliveries (tests/unit/test_fast_path.py holds them
to it); those read directly share one arrival time per socket read.

This is the only module that uses pika's private names (``_on_data_available``,
``_frame_buffer``, ``_read_frame``, ``_trim_frame_buffer``, ``_process_frame``), so a pika
release that changes them breaks this file alone; ``connection_class`` then falls back to
pika's own path, and LEDGERFLOW_AMQP_FAST_PATH=false turns the fast path off outright.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pika
import pika.channel
import pika.spec
import structlog
from pika.adapters.asyncio_connection import AsyncioConnection

log = structlog.get_logger(__name__)

# What DirectDeliveryConnection relies on in pika's Connection: methods, and attributes
# that each connection sets on itself.
PIKA_METHODS = ("_on_data_available", "_read_frame", "_trim_frame_buffer", "_process_frame")
PIKA_ATTRIBUTES = ("_frame_buffer", "frames_received")

_FRAME_HEADER = struct.Struct(">BHL")  # type, channel, payload size
_DELIVER_PREFIX = struct.pack(">HH", 60, 60)  # Basic.Deliver
_TAG_AND_FLAG = struct.Struct(">QB")  # delivery tag, redelivered bit
_CONTENT_HEADER = struct.Struct(">HHQH")  # class, weight, body size, property flags
_FRAME_END = 0xCE
_DELIVERY_MODE_ONLY = 0x1000  # the property flags when only delivery_mode is set
# The property lists almost every message carries, decoded once and shared (read-only).
_COMMON_PROPERTIES = {
    b"\x01": pika.spec.BasicProperties(delivery_mode=1),
    b"\x02": pika.spec.BasicProperties(delivery_mode=2),
}


class RawDelivery(NamedTuple):
    """One delivery as it came off the wire (a named tuple: one is made per message)."""

    tag: int
    redelivered: bool
    body: bytes
    properties: pika.spec.BasicProperties
    end: int  # the offset just past its last frame


def _payload(buffer: bytes, start: int, kind: int, channel: int) -> tuple[int, int] | None:
    """Where the payload of the frame at ``start`` begins and ends, if that frame is whole
    and of ``kind`` on ``channel``."""
    if start + 7 > len(buffer):
        return None
    found, on_channel, size = _FRAME_HEADER.unpack_from(buffer, start)
    payload_end = start + 7 + size
    if (
        found != kind
        or on_channel != channel
        or payload_end >= len(buffer)
        or buffer[payload_end] != _FRAME_END
    ):
        return None
    return start + 7, payload_end


def read_delivery(
    buffer: bytes, start: int, channel: int, consumer_tag: bytes
) -> RawDelivery | None:
    """The delivery for ``consumer_tag`` on ``channel`` whose frames begin at ``start``.

    None unless the three frames are all there and exactly as expected; pika then takes
    over from ``start``.
    """
    method = _payload(buffer, start, 1, channel)
    if method is None or buffer[method[0] : method[0] + 4] != _DELIVER_PREFIX:
        return None
    at, method_end = method[0] + 4, method[1]
    length = buffer[at]
    if buffer[at + 1 : at + 1 + length] != consumer_tag:
        return None
    if at + 1 + length + _TAG_AND_FLAG.size > method_end:
        return None
    tag, flags = _TAG_AND_FLAG.unpack_from(buffer, at + 1 + length)

    header = _payload(buffer, method_end + 1, 2, channel)
    if header is None or header[1] - header[0] < _CONTENT_HEADER.size:
        return None
    at, header_end = header
    class_id, _, body_size, property_flags = _CONTENT_HEADER.unpack_from(buffer, at)
    if class_id != 60 or body_size == 0:
        return None
    properties = (
        _COMMON_PROPERTIES.get(buffer[at + _CONTENT_HEADER.size : header_end])
        if property_flags == _DELIVERY_MODE_ONLY
        else None
    )
    if properties is None:  # from the property flags on, as pika decodes them
        properties = pika.spec.BasicProperties()
        properties.decode(buffer[at + _CONTENT_HEADER.size - 2 : header_end])

    body = _payload(buffer, header_end + 1, 3, channel)
    if body is None or body[1] - body[0] != body_size:
        return None
    return RawDelivery(tag, bool(flags & 1), buffer[body[0] : body[1]], properties, body[1] + 1)


DirectHandler = Callable[[RawDelivery, datetime], None]


class DirectDeliveryConnection(AsyncioConnection):  # type: ignore[misc]  # pika is untyped here
    """pika's asyncio connection, with deliveries to registered consumers read directly.

    Register a consumer with ``deliver_directly`` once ``basic_consume`` has returned its
    tag, and unregister it before cancelling it: from then on pika handles its deliveries
    again (and rejects those that arrive after the cancellation, as it always does).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._direct: tuple[pika.channel.Channel, bytes, DirectHandler] | None = None
        super().__init__(*args, **kwargs)

    def deliver_directly(
        self, channel: pika.channel.Channel, consumer_tag: str, handler: DirectHandler
    ) -> None:
        """Hand ``consumer_tag``'s deliveries on ``channel`` to ``handler`` (unless this pika
        lacks what the fast path reads: pika then keeps handling them)."""
        missing = [name for name in PIKA_ATTRIBUTES if not hasattr(self, name)]
        if missing:
            _unavailable(missing)
            return
        self._direct = (channel, consumer_tag.encode(), handler)

    def stop_direct_delivery(self) -> None:
        """Let pika handle every delivery again."""
        self._direct = None

    def _on_data_available(self, data_in: bytes) -> None:
        # Overrides pika's Connection._on_data_available (same contract: consume whole
        # frames from the buffer, keep the rest for the next read).
        self._frame_buffer += data_in
        received_at = datetime.now(UTC)  # one read, one arrival time
        while self._frame_buffer:
            self._read_direct(received_at)
            if not self._frame_buffer:
                return
            consumed, frame_value = self._read_frame()
            if not frame_value:
                return
            self._trim_frame_buffer(consumed)
            self._process_frame(frame_value)

    def _read_direct(self, received_at: datetime) -> None:
        offset = 0
        buffer = self._frame_buffer
        try:
            while self._direct is not None:
                channel, consumer_tag, handler = self._direct
                if not channel.is_open:
                    return
                delivery = read_delivery(buffer, offset, channel.channel_number, consumer_tag)
                if delivery is None:
                    return
                offset = delivery.end
                self.frames_received += 3
                handler(delivery, received_at)
        finally:
            if offset:
                self._trim_frame_buffer(offset)


def missing_internals() -> list[str]:
    """The pika methods the fast path needs that this pika lacks (empty when it works)."""
    return [name for name in PIKA_METHODS if not callable(getattr(AsyncioConnection, name, None))]


def _unavailable(missing: list[str]) -> None:
    log.warning(
        "amqp.fast_path_unavailable",
        pika=pika.__version__,
        missing=missing,
        detail="deliveries are read by pika itself",
    )


def connection_class() -> Any:  # a pika connection class (pika is untyped)
    """DirectDeliveryConnection, or pika's own connection if this pika lacks what it needs."""
    missing = missing_internals()
    if missing:
        _unavailable(missing)
        return AsyncioConnection
    return DirectDeliveryConnection
