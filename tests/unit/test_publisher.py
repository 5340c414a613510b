"""Publishing balances, on the in-memory ledger and store (see test_contracts.py)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from ledgerflow.cluster.leadership import LeadershipLost
from ledgerflow.core.clock import BoundarySchedule
from ledgerflow.core.health import Health
from ledgerflow.core.tracing import MessageTracer
from ledgerflow.kv.balance_store import BalanceStoreError
from ledgerflow.testing import FakeBalanceLedger, FakeBalanceStore, FakeClock
from ledgerflow.transactions.metrics import IngestMetrics
from ledgerflow.transactions.publisher import BalancePublisher, publish_forever

from ..polling import eventually

BOUNDARY = 1_800_000_060.0


def brief_ledger() -> FakeBalanceLedger:
    """The brief's example: Visa 1000 + 100 + 200 + 600, Mastercard 2000 - 200."""
    ledger = FakeBalanceLedger()
    visa = ledger.add_provider("Visa", Decimal(1000))
    mastercard = ledger.add_provider("Mastercard", Decimal(2000))
    for value in (100, 200, 600):
        ledger.add_transaction(visa, Decimal(value))
    ledger.add_transaction(mastercard, Decimal(-200))
    return ledger


async def test_every_balance_goes_out_in_one_write_as_an_exact_string() -> None:
    ledger, store, clock = brief_ledger(), FakeBalanceStore(), FakeClock(BOUNDARY + 0.004)
    ledger.add_provider("Amex", Decimal("12.50"))
    publication = await BalancePublisher(ledger, store, clock, ledger.take_term(), "w").publish(
        BOUNDARY
    )
    expected = {"1_Visa": "1900", "2_Mastercard": "1800", "3_Amex": "12.5"}
    assert store.writes == [expected]
    assert publication.keys == expected
    assert publication.lag == pytest.approx(0.004, abs=1e-6)
    assert list(ledger.publications.values()) == [3]


async def test_a_refused_write_records_nothing_and_the_next_boundary_publishes_again() -> None:
    ledger, store, clock = brief_ledger(), FakeBalanceStore(), FakeClock(BOUNDARY)
    publisher = BalancePublisher(ledger, store, clock, ledger.take_term(), "w")
    store.down = True
    with pytest.raises(BalanceStoreError):
        await publisher.publish(BOUNDARY)
    assert ledger.publications == {}
    store.down = False
    await publisher.publish(BOUNDARY + 60)
    assert store.values == {"1_Visa": "1900", "2_Mastercard": "1800"}


async def test_a_boundary_another_term_published_is_skipped() -> None:
    ledger, store, clock = brief_ledger(), FakeBalanceStore(), FakeClock(BOUNDARY)
    old = ledger.take_term()
    await BalancePublisher(ledger, store, clock, old, "old").publish(BOUNDARY)
    new = BalancePublisher(ledger, store, clock, ledger.take_term(), "new")
    assert (await new.publish(BOUNDARY)).skipped
    assert len(store.writes) == 1
    assert not (await new.publish(BOUNDARY + 60)).skipped


async def test_a_deposed_leader_writes_nothing() -> None:
    ledger, store, clock = brief_ledger(), FakeBalanceStore(), FakeClock(BOUNDARY)
    old = ledger.take_term()
    ledger.take_term()
    with pytest.raises(LeadershipLost):
        await BalancePublisher(ledger, store, clock, old, "old").publish(BOUNDARY)
    assert store.writes == []


async def test_the_loop_counts_a_failed_boundary_and_publishes_the_next() -> None:
    ledger, store, clock = brief_ledger(), FakeBalanceStore(), FakeClock(BOUNDARY - 30)
    registry, health = CollectorRegistry(), Health(role="active")
    metrics = IngestMetrics(registry)

    def publishes(result: str) -> float | None:
        return registry.get_sample_value("ledgerflow_publishes_total", {"result": result})

    publisher = BalancePublisher(ledger, store, clock, ledger.take_term(), "w")
    store.down = True

    async def recover_after_first_failure() -> None:
        await eventually(lambda: publishes("failed") == 1, every=0)
        store.down = False

    loop = asyncio.create_task(
        publish_forever(
            publisher, BoundarySchedule(60, clock), metrics, health, MessageTracer(None)
        )
    )
    await recover_after_first_failure()
    await eventually(lambda: store.writes, every=0)
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    assert (publishes("failed"), publishes("published"), publishes("skipped")) == (1, 1, 0)
    assert health.last_publish is not None and health.last_publish >= BOUNDARY + 60
    assert [boundary.timestamp() for boundary, _ in ledger.publications] == [BOUNDARY + 60]


async def test_an_outage_is_announced_once_and_again_after_a_recovery() -> None:
    ledger, store, clock = brief_ledger(), FakeBalanceStore(), FakeClock(BOUNDARY - 30)
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)

    def publishes(result: str) -> float:
        return registry.get_sample_value("ledgerflow_publishes_total", {"result": result}) or 0

    announced: list[str] = []
    publisher = BalancePublisher(ledger, store, clock, ledger.take_term(), "w")
    store.down = True
    loop = asyncio.create_task(
        publish_forever(
            publisher,
            BoundarySchedule(60, clock),
            metrics,
            Health(role="active"),
            MessageTracer(None),
            on_failure=announced.append,
        )
    )
    await eventually(lambda: publishes("failed") == 2, every=0)
    store.down = False
    await eventually(lambda: publishes("published") == 1, every=0)
    store.down = True
    await eventually(lambda: publishes("failed") == 3, every=0)
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    assert len(announced) == 2  # two outages, three failed boundaries
