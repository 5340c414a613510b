"""Control messages read: what is refused, with which reason, and what is kept."""

from __future__ import annotations

import json

import pytest

from ledgerflow.treasury.control import ControlRefused, parse_control

SOURCES = ("fx", "repos")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"swap please", "not_json"),
        (b"[" * 100_000, "not_json"),
        (b"[1]", "not_json"),
        (json.dumps({"source": "gold", "stream": "x"}).encode(), "unknown_source"),
        (json.dumps({"source": "fx", "stream": "a b"}).encode(), "bad_stream"),
        (json.dumps({"source": "fx", "stream": "s", "offset": -1}).encode(), "bad_offset"),
        (json.dumps({"source": "fx", "stream": "s", "offset": 2**63}).encode(), "bad_offset"),
        (json.dumps({"source": "fx", "stream": "s", "offset": True}).encode(), "bad_offset"),
    ],
)
def test_a_control_message_that_asks_for_no_swap_is_refused_with_its_reason(
    body: bytes, reason: str
) -> None:
    with pytest.raises(ControlRefused) as refused:
        parse_control(body, SOURCES)
    assert refused.value.reason == reason


def test_only_what_was_checked_is_kept_of_a_control_message() -> None:
    body = json.dumps({"source": "fx", "stream": "trades.fx.v2", "note": "\u0000"}).encode()
    swap = parse_control(body, SOURCES)
    assert swap.message == {"source": "fx", "stream": "trades.fx.v2"}
