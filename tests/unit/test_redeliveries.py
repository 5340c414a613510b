"""Recognising redeliveries: the matcher alone, and the marker read at the start of a term."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.testing import FakeBroker
from ledgerflow.transactions.redeliveries import RedeliveryMatcher, prepare_redeliveries


def digest(n: int) -> bytes:
    return hashlib.sha256(str(n).encode()).digest()


def test_committed_messages_coming_back_are_recognised_across_batches() -> None:
    matcher = RedeliveryMatcher([digest(1), digest(2), digest(3)])
    first = matcher.match([True, True], [digest(1), digest(2)])
    assert first.recognised == [True, True] and first.broke_at is None
    matcher.advance(first)
    second = matcher.match([True, False], [digest(3), digest(4)])
    assert second.recognised == [True, False] and second.broke_at is None
    matcher.advance(second)
    assert matcher.remaining == 0


def test_a_message_not_flagged_redelivered_ends_recognition_even_if_it_looks_the_same() -> None:
    matcher = RedeliveryMatcher([digest(1), digest(1)])
    match = matcher.match([True, False, True], [digest(1), digest(1), digest(1)])
    assert match.recognised == [True, False, False]
    assert (match.broke_at, match.unmatched) == (1, 1)
    matcher.advance(match)
    assert matcher.remaining == 0  # given up: everything after is new


def test_nothing_moves_until_the_batch_commits() -> None:
    matcher = RedeliveryMatcher([digest(1)])
    matcher.match([True], [digest(1)])  # the batch failed: not advanced
    assert matcher.remaining == 1
    assert matcher.match([True], [digest(1)]).recognised == [True]


@given(
    committed=st.lists(st.integers(0, 3), max_size=30),
    new=st.lists(st.integers(0, 3), max_size=10),
    cuts=st.lists(st.integers(1, 7), min_size=1, max_size=10),
)
def test_exactly_the_committed_messages_are_recognised_however_batches_fall(
    committed: list[int], new: list[int], cuts: list[int]
) -> None:
    """RabbitMQ gives back the committed messages first, flagged; then new ones come, some
    with the same bodies. Whatever the batch boundaries, the first are recognised, the
    others not."""
    deliveries = [(True, digest(n)) for n in committed] + [(False, digest(n)) for n in new]
    matcher = RedeliveryMatcher([digest(n) for n in committed])
    recognised: list[bool] = []
    at, cut = 0, 0
    while at < len(deliveries):
        size = cuts[cut % len(cuts)]
        batch = deliveries[at : at + size]
        match = matcher.match([r for r, _ in batch], [d for _, d in batch])
        matcher.advance(match)
        recognised += match.recognised
        at, cut = at + size, cut + 1
    assert recognised == [True] * len(committed) + [False] * len(new)


class Writer:
    """What prepare_redeliveries asks of BatchWriter, recorded."""

    def __init__(self, has_batches: bool) -> None:
        self._has_batches = has_batches
        self.expected_after: int | None = None

    async def has_batches(self) -> bool:
        return self._has_batches

    async def last_batch(self) -> int:
        return 57 if self._has_batches else 0

    async def expect_redeliveries(self, last_acknowledged_batch: int) -> int:
        self.expected_after = last_acknowledged_batch
        return 0


async def test_a_first_term_sets_the_marker_to_zero() -> None:
    queue, writer = FakeBroker().consumer("q", 10), Writer(has_batches=False)
    await queue.start(lambda _d: None)
    await prepare_redeliveries(queue, writer)
    assert await queue.last_acknowledged() == 0
    assert writer.expected_after == 0


async def test_a_later_term_expects_what_follows_the_marker() -> None:
    broker = FakeBroker()
    broker.state("q").marker = 41
    queue, writer = broker.consumer("q", 10), Writer(has_batches=True)
    await queue.start(lambda _d: None)
    await prepare_redeliveries(queue, writer)
    assert writer.expected_after == 41


async def test_a_lost_marker_with_committed_batches_expects_nothing_and_says_so() -> None:
    queue, writer = FakeBroker().consumer("q", 10), Writer(has_batches=True)
    await queue.start(lambda _d: None)
    await prepare_redeliveries(queue, writer)
    assert writer.expected_after is None
    # The assumption is written down: a crash before the first acknowledgement must not
    # make the next term assume this term's batches were acknowledged as well.
    assert await queue.last_acknowledged() == 57
