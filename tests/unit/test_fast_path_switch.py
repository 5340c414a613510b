"""The fast path is one module behind a switch: a pika without what it reads falls back."""

from __future__ import annotations

import pytest
from pika.adapters.asyncio_connection import AsyncioConnection
from structlog.testing import capture_logs

from ledgerflow.messaging import fast_path
from ledgerflow.settings import load_settings


def test_this_pika_has_what_the_fast_path_reads() -> None:
    assert fast_path.missing_internals() == []
    assert fast_path.connection_class() is fast_path.DirectDeliveryConnection


def test_a_pika_without_them_gets_pikas_own_connection_and_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fast_path, "PIKA_METHODS", (*fast_path.PIKA_METHODS, "_renamed_later"))
    with capture_logs() as logs:
        assert fast_path.connection_class() is AsyncioConnection
    [warning] = [line for line in logs if line["event"] == "amqp.fast_path_unavailable"]
    assert warning["missing"] == ["_renamed_later"]


def test_the_switch_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().amqp_fast_path is True
    monkeypatch.setenv("LEDGERFLOW_AMQP_FAST_PATH", "false")
    assert load_settings().amqp_fast_path is False
