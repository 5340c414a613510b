"""Storing a batch of deliveries: every message stored, rejected or recognised as a duplicate,
all in one transaction together with the record of what the batch consumed."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ledgerflow.leadership import check_term
from ledgerflow.messages import Reason, Rejection, Transaction, parse_transaction
from ledgerflow.queries import query


@dataclass(slots=True)
class Delivery:
    """One message as the broker handed it over."""

    body: bytes
    tag: int
    redelivered: bool
    received_at: datetime
    message_id: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchResult:
    """What a committed batch did with its messages."""

    batch_id: int
    stored: int
    rejected: int
    duplicates: int
    rejected_by_reason: Counter[str]
    transaction_ids: list[int]


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

    async def _provider_ids(self) -> set[int]:
        cursor = await self._conn.execute(query("provider_ids"))
        return {row[0] for row in await cursor.fetchall()}

    async def write(self, deliveries: list[Delivery]) -> BatchResult:
        """Commit the batch; raise LeadershipLost (nothing written) if the term is over."""
        async with self._conn.transaction():
            await check_term(self._conn, self._term)
            outcomes = [parse_transaction(d.body, self._max_body_bytes) for d in deliveries]
            duplicate = await self._find_duplicates(deliveries)
            wanted = {o.provider_id for o in outcomes if isinstance(o, Transaction)}
            if not wanted <= self._providers:
                self._providers = await self._provider_ids()
            for i, outcome in enumerate(outcomes):
                if isinstance(outcome, Transaction) and outcome.provider_id not in self._providers:
                    outcomes[i] = Rejection(
                        Reason.UNKNOWN_PROVIDER, f"no provider with id {outcome.provider_id}"
                    )
            return await self._insert(deliveries, outcomes, duplicate)

    async def _find_duplicates(self, deliveries: list[Delivery]) -> list[bool]:
        ids = [d.message_id for d in deliveries if d.message_id is not None]
        seen: set[str] = set()
        if ids:
            cursor = await self._conn.execute(query("seen_message_ids"), {"message_ids": ids})
            seen = {row[0] for row in await cursor.fetchall()}
        duplicate = []
        for delivery in deliveries:
            if delivery.message_id is None:
                duplicate.append(False)
            else:
                duplicate.append(delivery.message_id in seen)
                seen.add(delivery.message_id)
        return duplicate

    async def _insert(
        self,
        deliveries: list[Delivery],
        outcomes: list[Transaction | Rejection],
        duplicate: list[bool],
    ) -> BatchResult:
        stored = [
            i for i, o in enumerate(outcomes) if isinstance(o, Transaction) and not duplicate[i]
        ]
        rejected = [
            i for i, o in enumerate(outcomes) if isinstance(o, Rejection) and not duplicate[i]
        ]
        cursor = await self._conn.execute(
            query("insert_batch"),
            {
                "queue": self._queue,
                "term": self._term,
                "instance": self._instance,
                "message_count": len(deliveries),
                "stored_count": len(stored),
                "rejected_count": len(rejected),
                "duplicate_count": sum(duplicate),
            },
        )
        row = await cursor.fetchone()
        assert row is not None
        batch_id: int = row[0]

        transaction_ids: dict[int, int] = {}
        if stored:
            txs = [outcomes[i] for i in stored]
            cursor = await self._conn.execute(
                query("insert_transactions"),
                {
                    "provider_ids": [t.provider_id for t in txs],  # type: ignore[union-attr]
                    "values": [t.value for t in txs],  # type: ignore[union-attr]
                },
            )
            ids = sorted(r[0] for r in await cursor.fetchall())
            transaction_ids = dict(zip(stored, ids, strict=True))

        rejected_ids: dict[int, int] = {}
        reasons: Counter[str] = Counter()
        if rejected:
            rejections = [outcomes[i] for i in rejected]
            reasons.update(str(r.reason) for r in rejections)  # type: ignore[union-attr]
            cursor = await self._conn.execute(
                query("insert_rejected"),
                {
                    "queue": self._queue,
                    "message_ids": [deliveries[i].message_id for i in rejected],
                    "reasons": [str(r.reason) for r in rejections],  # type: ignore[union-attr]
                    "details": [r.detail for r in rejections],  # type: ignore[union-attr]
                    "bodies": [deliveries[i].body for i in rejected],
                    "properties": [Jsonb(_json_safe(deliveries[i].properties)) for i in rejected],
                    "received_at": [deliveries[i].received_at for i in rejected],
                },
            )
            ids = sorted(r[0] for r in await cursor.fetchall())
            rejected_ids = dict(zip(rejected, ids, strict=True))

        await self._conn.execute(
            query("insert_messages"),
            {
                "batch_id": batch_id,
                "positions": list(range(len(deliveries))),
                "message_ids": [d.message_id for d in deliveries],
                "redelivered": [d.redelivered for d in deliveries],
                "hashes": [hashlib.sha256(d.body).digest() for d in deliveries],
                "outcomes": [
                    _outcome(i, duplicate, transaction_ids) for i in range(len(deliveries))
                ],
                "transaction_ids": [transaction_ids.get(i) for i in range(len(deliveries))],
                "rejected_ids": [rejected_ids.get(i) for i in range(len(deliveries))],
            },
        )
        return BatchResult(
            batch_id=batch_id,
            stored=len(stored),
            rejected=len(rejected),
            duplicates=sum(duplicate),
            rejected_by_reason=reasons,
            transaction_ids=[transaction_ids[i] for i in stored],
        )


def _outcome(index: int, duplicate: list[bool], transaction_ids: dict[int, int]) -> str:
    if duplicate[index]:
        return "duplicate"
    return "stored" if index in transaction_ids else "rejected"
