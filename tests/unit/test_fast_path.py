"""frames.read_delivery against pika's own frame encoder and decoder: the same deliveries,
and None (pika takes over) for anything it does not fully recognise."""

from __future__ import annotations

import struct
from typing import Any

import pika.exceptions
import pika.frame
import pika.spec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.messaging.fast_path import read_delivery

CHANNEL, TAG = 1, "ctag1.abc"
ONE_METHOD_FRAME = len(
    pika.frame.Method(CHANNEL, pika.spec.Basic.Deliver(TAG, 7, False, "", "q")).marshal()
)


def frames(
    body: bytes,
    properties: pika.spec.BasicProperties,
    delivery_tag: int = 7,
    redelivered: bool = False,
    consumer_tag: str = TAG,
    channel: int = CHANNEL,
    body_frames: int = 1,
) -> bytes:
    """A delivery as RabbitMQ sends it, encoded by pika."""
    deliver = pika.spec.Basic.Deliver(consumer_tag, delivery_tag, redelivered, "", "q")
    parts = [
        pika.frame.Method(channel, deliver).marshal(),
        pika.frame.Header(channel, len(body), properties).marshal(),
    ]
    step = max(1, -(-len(body) // body_frames))
    parts += [
        pika.frame.Body(channel, body[i : i + step]).marshal() for i in range(0, len(body), step)
    ]
    return b"".join(parts)


def pika_decoded(data: bytes) -> tuple[pika.spec.Basic.Deliver, Any, bytes]:
    """What pika's own decoder makes of the same bytes."""
    offset, decoded = 0, []
    while offset < len(data):
        used, frame = pika.frame.decode_frame(data[offset:])
        decoded.append(frame)
        offset += used
    method, header, *bodies = decoded
    return method.method, header.properties, b"".join(b.fragment for b in bodies)


text = st.text(max_size=20)
properties = st.builds(
    pika.spec.BasicProperties,
    content_type=st.none() | text,
    headers=st.none() | st.dictionaries(st.text(min_size=1, max_size=8), st.integers(0, 99)),
    delivery_mode=st.none() | st.sampled_from([1, 2]),
    priority=st.none() | st.integers(0, 9),
    correlation_id=st.none() | text,
    message_id=st.none() | text,
    timestamp=st.none() | st.integers(0, 2**40),
    app_id=st.none() | text,
)


@given(
    body=st.binary(min_size=1, max_size=300),
    props=properties,
    delivery_tag=st.integers(1, 2**64 - 1),
    redelivered=st.booleans(),
)
def test_a_delivery_reads_as_pika_reads_it(
    body: bytes, props: pika.spec.BasicProperties, delivery_tag: int, redelivered: bool
) -> None:
    data = frames(body, props, delivery_tag, redelivered)
    got = read_delivery(data + b"next", 0, CHANNEL, TAG.encode())
    method, theirs, their_body = pika_decoded(data)
    assert got is not None
    assert (got.tag, got.redelivered, got.body) == (
        method.delivery_tag,
        method.redelivered,
        their_body,
    )
    assert vars(got.properties) == vars(theirs)
    assert got.end == len(data)


def test_reads_from_an_offset_and_leaves_what_follows() -> None:
    first = frames(b"one", pika.spec.BasicProperties(delivery_mode=2), delivery_tag=1)
    second = frames(b"two", pika.spec.BasicProperties(message_id="m-2"), delivery_tag=2)
    data = first + second
    a = read_delivery(data, 0, CHANNEL, TAG.encode())
    assert a is not None and (a.body, a.tag, a.end) == (b"one", 1, len(first))
    b = read_delivery(data, a.end, CHANNEL, TAG.encode())
    assert b is not None and (b.body, b.tag, b.properties.message_id) == (b"two", 2, "m-2")


def test_an_incomplete_delivery_is_left_for_the_next_read() -> None:
    data = frames(b'{"id": 1, "value": 600}', pika.spec.BasicProperties(delivery_mode=2))
    for cut in range(len(data)):
        assert read_delivery(data[:cut], 0, CHANNEL, TAG.encode()) is None


def test_what_it_does_not_fully_recognise_is_left_to_pika() -> None:
    persistent = pika.spec.BasicProperties(delivery_mode=2)
    others = {
        "another consumer": frames(b"x", persistent, consumer_tag="other"),
        "another channel": frames(b"x", persistent, channel=2),
        "several body frames": frames(b"x" * 10, persistent, body_frames=3),
        "an empty body (no body frame)": frames(b"", persistent) + pika.frame.Heartbeat().marshal(),
        "not a delivery": pika.frame.Method(CHANNEL, pika.spec.Basic.QosOk()).marshal() * 3,
        "a heartbeat": pika.frame.Heartbeat().marshal() * 3,
        "a content header too short": frames(b"x", persistent)[:ONE_METHOD_FRAME]
        + struct.pack(">BHL", 2, CHANNEL, 4)
        + b"\x00\x3c\x00\x00\xce"
        + pika.frame.Body(CHANNEL, b"x").marshal(),
    }
    for name, data in others.items():
        assert read_delivery(data, 0, CHANNEL, TAG.encode()) is None, name


def test_a_broken_frame_end_is_left_to_pika_which_raises() -> None:
    data = bytearray(frames(b"x", pika.spec.BasicProperties(delivery_mode=2)))
    data[-1] = 0
    assert read_delivery(bytes(data), 0, CHANNEL, TAG.encode()) is None
    with pytest.raises(pika.exceptions.InvalidFrameError):
        pika_decoded(bytes(data))
