"""Recognising the messages RabbitMQ delivers again after a crash.

A batch committed in PostgreSQL whose acknowledgement RabbitMQ never processed comes back
first after a restart, in the same order, flagged as redelivered. Its messages are known
by their bodies' SHA-256 digests (loaded from the batches committed after the last
acknowledged one), so they are recorded as redelivered instead of being stored twice,
even without a message_id. The first delivery that breaks the expected sequence ends the
recognition: from then on every message is new (docs/delivery.md has the argument).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from ledgerflow.messaging.queue import Queue

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Match:
    """What ``RedeliveryMatcher.match`` found in one batch."""

    recognised: list[bool]  # per delivery: a redelivery of a committed message
    position: int  # where the next batch's matching starts, once this one is committed
    broke_at: int | None  # the delivery that broke the expected sequence, if one did
    unmatched: int  # expected redeliveries given up on at the break (0 without one)


class RedeliveryMatcher:
    """The digests of the committed but unacknowledged messages, in the order RabbitMQ
    delivers them again, and how far the deliveries have matched them."""

    def __init__(self, expected: Sequence[bytes]) -> None:
        self._expected = list(expected)
        self._position = 0

    def __len__(self) -> int:
        return len(self._expected)

    @property
    def remaining(self) -> int:
        """Redeliveries still expected."""
        return len(self._expected) - self._position

    def match(self, redelivered: Sequence[bool], digests: Sequence[bytes]) -> Match:
        """Which of a batch's deliveries (their redelivered flags and body digests, in
        delivery order) repeat committed messages. Changes nothing until ``advance``."""
        recognised = [False] * len(digests)
        position = self._position
        for i, digest in enumerate(digests):
            if position >= len(self._expected):
                break
            if redelivered[i] and digest == self._expected[position]:
                recognised[i] = True
                position += 1
            else:
                return Match(recognised, len(self._expected), i, len(self._expected) - position)
        return Match(recognised, position, None, 0)

    def advance(self, match: Match) -> None:
        """Move past a batch's matches once that batch has committed."""
        self._position = match.position


class CommittedBatches(Protocol):
    """What ``prepare_redeliveries`` asks of BatchWriter."""

    async def has_batches(self) -> bool:
        """Whether any batch of the queue was ever committed."""
        ...

    async def last_batch(self) -> int:
        """The id of the queue's last committed batch (0 when none)."""
        ...

    async def expect_redeliveries(self, last_acknowledged_batch: int) -> int:
        """Expect the messages committed after that batch; return how many."""
        ...


async def prepare_redeliveries(broker: Queue, writer: CommittedBatches) -> None:
    """Learn which committed messages RabbitMQ will deliver again: those of the batches
    committed after the one the acknowledgement marker names (see QueueConsumer)."""
    acknowledged = await broker.last_acknowledged()
    if acknowledged is None:
        if await writer.has_batches():
            log.warning(
                "worker.ack_marker_missing",
                detail="the acknowledgement marker queue was emptied or deleted; assuming "
                "every committed batch was acknowledged",
            )
            # Written down, so that a crash before this worker's first acknowledgement
            # does not make the next one assume its batches were acknowledged too.
            await broker.mark_acknowledged(await writer.last_batch())
            return
        await broker.mark_acknowledged(0)
        acknowledged = 0
    expected = await writer.expect_redeliveries(acknowledged)
    if expected:
        log.info("worker.expecting_redeliveries", messages=expected, after_batch=acknowledged)
