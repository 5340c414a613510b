"""Storing a batch of deliveries: every message stored, rejected or recognised as a duplicate,
all in one transaction together with the record of what the batch consumed."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import structlog
from psycopg.types.json import Jsonb

from ledgerflow.leadership import ensure_term
from ledgerflow.messages import Reason, Rejection, Transaction, parse_transaction
from ledgerflow.queries import query

log = structlog.get_logger(__name__)

DIGEST = hashlib.sha256().digest_size
# How each message's outcome is written in ledgerflow_batches.outcomes.
OUTCOME_LETTER = {"stored": "S", "rejected": "R", "duplicate": "D", "redelivered": "A"}


@dataclass(slots=True)
class Delivery:
    """One message as the broker handed it over."""

    body: bytes
    tag: int
    redelivered: bool
    received_at: datetime
    message_id: str | None = None
    # A mapping, or an object whose attributes are the properties (pika's BasicProperties):
    # turned into JSON only for the rare message that is rejected.
    properties: Any = field(default_factory=dict)
    trace: Any = None  # the message's span context when tracing is on
    # Filled on arrival by BatchWriter.prepare, while the previous batch is in PostgreSQL.
    digest: bytes | None = None
    parsed: Transaction | Rejection | None = None


@dataclass(frozen=True)
class BatchResult:
    """What a committed batch did with its messages."""

    batch_id: int
    stored: int
    rejected: int
    duplicates: int
    redelivered: int
    rejected_by_reason: Counter[str]
    transaction_ids: list[int]


def properties_json(properties: Any) -> Any:
    """The AMQP properties of a delivery as JSON that PostgreSQL's jsonb accepts."""
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


def _numbers_array(numbers: Iterable[object]) -> str:
    """An array of integers or decimals as PostgreSQL's array text (the query casts it).

    Several times cheaper than adapting each number: a batch's arrays are the hot path.
    """
    return "{" + ",".join("NULL" if n is None else str(n) for n in numbers) + "}"


class BatchWriter:
    """Writes batches for the leader of ``term``; every write checks the term first."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        queue: str,
        instance: str,
        term: int,
        max_body_bytes: int,
    ) -> None:
        self._conn = conn
        self._queue = queue
        self._instance = instance
        self._term = term
        self._max_body_bytes = max_body_bytes
        self._providers: set[int] = set()
        self._expected: list[bytes] = []
        self._next_expected = 0

    async def expect_redeliveries(self, last_acknowledged_batch: int) -> int:
        """Load the messages committed after ``last_acknowledged_batch``; return how many.

        RabbitMQ delivers those again first, in the same order, flagged as redelivered:
        their acknowledgement never reached it. They are recognised by their body's hash
        and recorded as redelivered instead of being stored a second time.
        """
        cursor = await self._conn.execute(
            query("unacknowledged_batches"),
            {"queue": self._queue, "after": last_acknowledged_batch},
        )
        expected = []
        for hashes, outcomes in await cursor.fetchall():
            for position, letter in enumerate(outcomes):
                if letter != OUTCOME_LETTER["redelivered"]:  # already counted as its original
                    expected.append(bytes(hashes[position * DIGEST : (position + 1) * DIGEST]))
        await self._conn.commit()
        self._expected, self._next_expected = expected, 0
        return len(expected)

    async def has_batches(self) -> bool:
        """Whether any batch of this queue was ever committed."""
        cursor = await self._conn.execute(query("has_batches"), {"queue": self._queue})
        row = await cursor.fetchone()
        await self._conn.commit()
        return bool(row and row[0])

    def prepare(self, delivery: Delivery) -> None:
        """Hash and parse a delivery as it arrives: work taken off the batch's commit path.

        The event loop does it while it waits for PostgreSQL to commit the batch before,
        so the two overlap; ``write`` does it itself for deliveries not prepared.
        """
        try:
            parsed = parse_transaction(delivery.body, self._max_body_bytes)
        except Exception:  # a parser bug: ``write`` meets it again and fails the batch
            log.exception("ingest.prepare_failed", tag=delivery.tag)
            return
        delivery.digest, delivery.parsed = hashlib.sha256(delivery.body).digest(), parsed

    def _prepared(self, delivery: Delivery) -> tuple[bytes, Transaction | Rejection]:
        if delivery.digest is None or delivery.parsed is None:  # raises what prepare logged
            parsed = parse_transaction(delivery.body, self._max_body_bytes)
            return hashlib.sha256(delivery.body).digest(), parsed
        return delivery.digest, delivery.parsed

    async def write(self, deliveries: list[Delivery]) -> BatchResult:
        """Commit the batch; raise LeadershipLost (nothing written) if the term is over.

        The statements go out in pipeline mode: the transaction costs three round trips
        to PostgreSQL (four when messages carry ids), whatever the batch size.
        """
        prepared = [self._prepared(d) for d in deliveries]
        hashes = [digest for digest, _ in prepared]
        skip, next_expected = self._match_redeliveries(deliveries, hashes)
        outcomes: list[Transaction | Rejection | None] = [
            None if skip[i] else parsed for i, (_, parsed) in enumerate(prepared)
        ]
        async with self._conn.pipeline(), self._conn.transaction():
            locked = await self._conn.execute(query("lock_term"))
            cursor = await self._conn.execute(
                query("insert_batch"),
                {
                    "queue": self._queue,
                    "term": self._term,
                    "instance": self._instance,
                    "message_count": len(deliveries),
                },
            )
            await ensure_term(locked, self._term)
            row = await cursor.fetchone()
            assert row is not None
            batch_id: int = row[0]
            await self._reject_unknown_providers(outcomes)
            await self._skip_duplicates(batch_id, deliveries, skip, outcomes)
            result = await self._insert(batch_id, deliveries, hashes, outcomes, skip)
        self._next_expected = next_expected  # only once the batch is committed
        return result

    def _match_redeliveries(
        self, deliveries: list[Delivery], hashes: list[bytes]
    ) -> tuple[list[str | None], int]:
        skip: list[str | None] = [None] * len(deliveries)
        position = self._next_expected
        for i, delivery in enumerate(deliveries):
            if position >= len(self._expected):
                break
            if delivery.redelivered and hashes[i] == self._expected[position]:
                skip[i] = "redelivered"
                position += 1
            else:
                log.warning(
                    "ingest.redeliveries_differ",
                    expected=len(self._expected) - position,
                    tag=delivery.tag,
                    redelivered=delivery.redelivered,
                )
                position = len(self._expected)
        return skip, position

    async def _reject_unknown_providers(
        self, outcomes: list[Transaction | Rejection | None]
    ) -> None:
        wanted = {o.provider_id for o in outcomes if isinstance(o, Transaction)}
        if not wanted <= self._providers:
            cursor = await self._conn.execute(query("provider_ids"))
            self._providers = {row[0] for row in await cursor.fetchall()}
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, Transaction) and outcome.provider_id not in self._providers:
                outcomes[i] = Rejection(
                    Reason.UNKNOWN_PROVIDER, f"no provider with id {outcome.provider_id}"
                )

    async def _skip_duplicates(
        self,
        batch_id: int,
        deliveries: list[Delivery],
        skip: list[str | None],
        outcomes: list[Transaction | Rejection | None],
    ) -> None:
        """Claim the batch's message_ids; a message whose id was claimed before is skipped."""
        ids = list(
            dict.fromkeys(
                d.message_id
                for i, d in enumerate(deliveries)
                if d.message_id is not None and not skip[i]
            )
        )
        if not ids:
            return
        cursor = await self._conn.execute(
            query("claim_message_ids"), {"batch_id": batch_id, "message_ids": ids}
        )
        unclaimed = {row[0] for row in await cursor.fetchall()}
        for i, delivery in enumerate(deliveries):
            if delivery.message_id is None or skip[i]:
                continue
            if delivery.message_id in unclaimed:
                unclaimed.discard(delivery.message_id)  # the first one counts, once
            else:
                skip[i], outcomes[i] = "duplicate", None

    async def _insert(
        self,
        batch_id: int,
        deliveries: list[Delivery],
        hashes: list[bytes],
        outcomes: list[Transaction | Rejection | None],
        skip: list[str | None],
    ) -> BatchResult:
        stored = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, Transaction)]
        rejected = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, Rejection)]
        transaction_ids: list[int | None] = [None] * len(deliveries)
        if stored:
            cursor = await self._conn.execute(
                query("insert_transactions"),
                {
                    "provider_ids": _numbers_array([t.provider_id for _, t in stored]),
                    "values": _numbers_array([t.value for _, t in stored]),
                },
            )
            ids = sorted(r[0] for r in await cursor.fetchall())
            for (i, _), row_id in zip(stored, ids, strict=True):
                transaction_ids[i] = row_id

        rejected_ids: list[int | None] = [None] * len(deliveries)
        reasons: Counter[str] = Counter(r.reason.value for _, r in rejected)
        if rejected:
            cursor = await self._conn.execute(
                query("insert_rejected"),
                {
                    "queue": self._queue,
                    "message_ids": [deliveries[i].message_id for i, _ in rejected],
                    "reasons": [r.reason.value for _, r in rejected],
                    "details": [r.detail for _, r in rejected],
                    "bodies": [deliveries[i].body for i, _ in rejected],
                    "properties": [
                        Jsonb(properties_json(deliveries[i].properties)) for i, _ in rejected
                    ],
                    "received_at": [deliveries[i].received_at for i, _ in rejected],
                },
            )
            ids = sorted(r[0] for r in await cursor.fetchall())
            for (i, rejection), row_id in zip(rejected, ids, strict=True):
                rejected_ids[i] = row_id
                log.debug(
                    "ingest.rejected",
                    tag=deliveries[i].tag,
                    message_id=deliveries[i].message_id,
                    reason=rejection.reason.value,
                    detail=rejection.detail,
                    rejected_id=row_id,
                )

        letters = "".join(
            OUTCOME_LETTER[skip[i] or ("stored" if transaction_ids[i] else "rejected")]
            for i in range(len(deliveries))
        )
        message_ids = [d.message_id for d in deliveries]
        await self._conn.execute(
            query("finish_batch"),
            {
                "batch_id": batch_id,
                "stored_count": len(stored),
                "rejected_count": len(rejected),
                "duplicate_count": skip.count("duplicate"),
                "redelivered_count": skip.count("redelivered"),
                "body_hashes": b"".join(hashes),
                "outcomes": letters,
                "message_ids": message_ids if any(message_ids) else None,
                "transaction_ids": _numbers_array(transaction_ids) if stored else None,
                "rejected_ids": rejected_ids if rejected else None,
            },
        )
        return BatchResult(
            batch_id=batch_id,
            stored=len(stored),
            rejected=len(rejected),
            duplicates=skip.count("duplicate"),
            redelivered=skip.count("redelivered"),
            rejected_by_reason=reasons,
            transaction_ids=[row_id for row_id in transaction_ids if row_id is not None],
        )
