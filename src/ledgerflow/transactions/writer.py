"""Storing a batch of deliveries: every message stored, rejected or recognised as a duplicate,
all in one transaction together with the record of what the batch consumed."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, LiteralString, NamedTuple

import psycopg
import structlog
from psycopg.types.json import Jsonb

from ledgerflow.cluster.leadership import ensure_term, lock_term_query
from ledgerflow.db.queries import Queries
from ledgerflow.db.rejected import RejectedMessage, record_rejected
from ledgerflow.messaging.delivery import Delivery, properties_json
from ledgerflow.transactions.conditions import VARIABLES, Type
from ledgerflow.transactions.messages import Reason, Rejection, Transaction, parse_transaction
from ledgerflow.transactions.redeliveries import RedeliveryMatcher
from ledgerflow.transactions.rules import RuleSet, load_rule_set

log = structlog.get_logger(__name__)
QUERIES = Queries.of("ledgerflow.transactions")

DIGEST = hashlib.sha256().digest_size
# How each message's outcome is written in ledgerflow.batches.outcomes.
OUTCOME_LETTER = {
    "stored": "S",
    "rejected": "R",
    "duplicate": "D",
    "redelivered": "A",
    "filtered": "F",
}
# A batch met a newer rule set than it was written with: written again with the new one.
RULE_SET_ATTEMPTS = 5


class RulesChanged(Exception):
    """The rules changed since the writer loaded them; the batch was rolled back."""


class Prepared(NamedTuple):
    """A delivery hashed and parsed as it arrived (``outcome`` is None if parsing failed:
    ``BatchWriter.write`` parses it again and so fails the batch with the parser's error).
    A named tuple, as Delivery is: one is made for every message."""

    delivery: Delivery
    digest: bytes
    outcome: Transaction | Rejection | None


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
    filtered: int = 0
    filtered_by_rule: Counter[int] | None = None  # rule version id -> messages


def message_variable(delivery: Delivery, name: str) -> Any:
    """What a rule's condition reads as ``name`` for this delivery (besides id and value)."""
    if name == "message_id":
        return delivery.message_id
    if name == "redelivered":
        return delivery.redelivered
    properties = properties_json(delivery.properties)
    if name == "headers":
        headers = properties.get("headers")
        return Jsonb(headers if isinstance(headers, dict) else {})
    value = properties.get(name)
    if VARIABLES[name].type is Type.INT:  # priority, delivery_mode: a property of another
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return None if value is None else str(value)


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
        fence: tuple[LiteralString, Mapping[str, Any]] | None = None,
    ) -> None:
        # fence: the query that locks the current term until the batch's transaction ends
        # and returns it, with its parameters; the leader's term by default, a shard's for
        # a shard (cluster/shards.py).
        self._conn = conn
        self._queue = queue
        self._instance = instance
        self._term = term
        self._fence = fence or (lock_term_query(), {})
        self._max_body_bytes = max_body_bytes
        self._providers: set[int] = set()
        self._redeliveries = RedeliveryMatcher([])
        self._rules = RuleSet(-1, ())  # -1: never loaded, so the first batch loads them
        self._statement = b""  # the rule set's insert, rendered once per rule set

    @property
    def term(self) -> int:
        """The term every batch checks."""
        return self._term

    @term.setter
    def term(self, term: int) -> None:
        self._term = term

    @property
    def rules(self) -> RuleSet:
        """The rule set the last batch was written with."""
        return self._rules

    async def expect_redeliveries(self, last_acknowledged_batch: int) -> int:
        """Load the messages committed after ``last_acknowledged_batch``; return how many.

        RabbitMQ delivers those again first, in the same order, flagged as redelivered:
        their acknowledgement never reached it. They are recognised by their body's hash
        and recorded as redelivered instead of being stored a second time.
        """
        cursor = await self._conn.execute(
            QUERIES["unacknowledged_batches"],
            {"queue": self._queue, "after": last_acknowledged_batch},
        )
        expected = []
        for hashes, outcomes in await cursor.fetchall():
            for position, letter in enumerate(outcomes):
                if letter != OUTCOME_LETTER["redelivered"]:  # already counted as its original
                    expected.append(bytes(hashes[position * DIGEST : (position + 1) * DIGEST]))
        await self._conn.commit()
        self._redeliveries = RedeliveryMatcher(expected)
        return len(expected)

    async def load_rules(self) -> None:
        """Load and compile the current rule set (before the first batch, and whenever a
        batch finds the rules changed)."""
        self._rules = await load_rule_set(self._conn)
        await self._conn.commit()
        self._statement = self._rules.statement().as_bytes(self._conn) if self._rules.rules else b""
        log.info("ingest.rules_loaded", version=self._rules.version, rules=len(self._rules.rules))

    async def last_batch(self) -> int:
        """The id of this queue's last committed batch (0 when none)."""
        cursor = await self._conn.execute(QUERIES["last_batch"], {"queue": self._queue})
        row = await cursor.fetchone()
        await self._conn.commit()
        return int(row[0]) if row else 0

    async def has_batches(self) -> bool:
        """Whether any batch of this queue was ever committed."""
        cursor = await self._conn.execute(QUERIES["has_batches"], {"queue": self._queue})
        row = await cursor.fetchone()
        await self._conn.commit()
        return bool(row and row[0])

    def prepare(self, delivery: Delivery) -> Prepared:
        """Hash and parse a delivery as it arrives: work taken off the batch's commit path.

        The event loop does it while it waits for PostgreSQL to commit the batch before,
        so the two overlap; ``write`` does it itself for deliveries not prepared.
        """
        digest = hashlib.sha256(delivery.body).digest()
        try:
            parsed = parse_transaction(delivery.body, self._max_body_bytes)
        except Exception:  # a parser bug: ``write`` meets it again and fails the batch
            log.exception("ingest.prepare_failed", tag=delivery.tag)
            return Prepared(delivery, digest, None)
        return Prepared(delivery, digest, parsed)

    def _parsed(self, item: Prepared | Delivery) -> tuple[bytes, Transaction | Rejection]:
        if isinstance(item, Delivery):
            item = self.prepare(item)
        if item.outcome is None:  # raises what prepare logged
            return item.digest, parse_transaction(item.delivery.body, self._max_body_bytes)
        return item.digest, item.outcome

    async def write(self, items: Sequence[Prepared | Delivery]) -> BatchResult:
        """Commit the batch; raise LeadershipLost (nothing written) if the term is over.

        The statements go out in pipeline mode: the transaction costs three round trips
        to PostgreSQL (four when messages carry ids), whatever the batch size. The batch
        is filtered by the rule set current when it commits: if the rules changed since
        the writer loaded them, the transaction is rolled back and the batch written
        again with the new rules, so every batch is filtered by one rule-set version.
        """
        deliveries = [i.delivery if isinstance(i, Prepared) else i for i in items]
        prepared = [self._parsed(item) for item in items]
        hashes = [digest for digest, _ in prepared]
        match = self._redeliveries.match([d.redelivered for d in deliveries], hashes)
        if match.broke_at is not None:
            log.warning(
                "ingest.redeliveries_differ",
                expected=match.unmatched,
                tag=deliveries[match.broke_at].tag,
                redelivered=deliveries[match.broke_at].redelivered,
            )
        for _ in range(RULE_SET_ATTEMPTS - 1):
            try:
                result = await self._write_once(deliveries, prepared, hashes, match.recognised)
                break
            except RulesChanged:
                await self.load_rules()
        else:
            result = await self._write_once(deliveries, prepared, hashes, match.recognised)
        self._redeliveries.advance(match)  # only once the batch is committed
        return result

    async def _write_once(
        self,
        deliveries: list[Delivery],
        prepared: list[tuple[bytes, Transaction | Rejection]],
        hashes: list[bytes],
        recognised: Sequence[bool],
    ) -> BatchResult:
        skip: list[str | None] = ["redelivered" if r else None for r in recognised]
        outcomes: list[Transaction | Rejection | None] = [
            None if skip[i] else parsed for i, (_, parsed) in enumerate(prepared)
        ]
        async with self._conn.pipeline(), self._conn.transaction():
            locked = await self._conn.execute(*self._fence)
            rules = await self._conn.execute(QUERIES["rule_set_version"])
            cursor = await self._conn.execute(
                QUERIES["insert_batch"],
                {
                    "queue": self._queue,
                    "term": self._term,
                    "instance": self._instance,
                    "message_count": len(deliveries),
                },
            )
            await ensure_term(locked, self._term)
            version = await rules.fetchone()
            if version is None or version[0] != self._rules.version:
                raise RulesChanged  # rolls the transaction back
            row = await cursor.fetchone()
            assert row is not None
            batch_id: int = row[0]
            await self._reject_unknown_providers(outcomes)
            await self._skip_duplicates(batch_id, deliveries, skip, outcomes)
            return await self._insert(batch_id, deliveries, hashes, outcomes, skip)

    async def _reject_unknown_providers(
        self, outcomes: list[Transaction | Rejection | None]
    ) -> None:
        wanted = {o.provider_id for o in outcomes if isinstance(o, Transaction)}
        if not wanted <= self._providers:
            cursor = await self._conn.execute(QUERIES["provider_ids"])
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
            QUERIES["claim_message_ids"], {"batch_id": batch_id, "message_ids": ids}
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
        filter_rules: list[int | None] = [None] * len(deliveries)
        filtered: Counter[int] = Counter()
        if stored and self._rules.rules:
            stored = await self._insert_filtered(
                batch_id, deliveries, stored, transaction_ids, filter_rules
            )
            filtered.update(r for r in filter_rules if r is not None)
            for i, rule in enumerate(filter_rules):
                if rule is not None:
                    skip[i] = "filtered"
        elif stored:
            cursor = await self._conn.execute(
                QUERIES["insert_transactions"],
                {
                    "provider_ids": _numbers_array([t.provider_id for _, t in stored]),
                    "values": _numbers_array([t.value for _, t in stored]),
                },
            )
            ids = sorted(r[0] for r in await cursor.fetchall())
            for (i, _), row_id in zip(stored, ids, strict=True):
                transaction_ids[i] = row_id
        if filtered:
            await self._conn.execute(
                QUERIES["insert_batch_filters"],
                {
                    "batch_id": batch_id,
                    "rules": list(filtered),
                    "counts": list(filtered.values()),
                },
            )

        rejected_ids: list[int | None] = [None] * len(deliveries)
        reasons: Counter[str] = Counter(r.reason.value for _, r in rejected)
        if rejected:
            ids = await record_rejected(
                self._conn,
                self._queue,
                [
                    RejectedMessage(
                        deliveries[i].message_id,
                        r.reason.value,
                        r.detail,
                        deliveries[i].body,
                        properties_json(deliveries[i].properties),
                        deliveries[i].received_at,
                    )
                    for i, r in rejected
                ],
            )
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
        # The first 8 bytes of each hash as a signed integer: what a trace by hash finds
        # through the batches' GIN index.
        hash_keys = [int.from_bytes(h[:8], "big", signed=True) for h in hashes]
        message_ids = [d.message_id for d in deliveries]
        await self._conn.execute(
            QUERIES["finish_batch"],
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
                "filtered_count": len(filter_rules) - filter_rules.count(None),
                "filter_rules": _numbers_array(filter_rules) if filtered else None,
                "hash_keys": _numbers_array(hash_keys),
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
            filtered=sum(filtered.values()),
            filtered_by_rule=filtered,
        )

    async def _insert_filtered(
        self,
        batch_id: int,
        deliveries: list[Delivery],
        stored: list[tuple[int, Transaction]],
        transaction_ids: list[int | None],
        filter_rules: list[int | None],
    ) -> list[tuple[int, Transaction]]:
        """Insert the valid messages no rule matches, in one statement that evaluates the
        rules; fill ``transaction_ids`` and ``filter_rules``; return what was stored."""
        params: dict[str, Any] = {
            "batch_id": batch_id,
            "position": _numbers_array([i for i, _ in stored]),
            "id": _numbers_array([t.provider_id for _, t in stored]),
            "value": _numbers_array([t.value for _, t in stored]),
        }
        for name in self._rules.variables:
            params[name] = [message_variable(deliveries[i], name) for i, _ in stored]
        cursor = await self._conn.execute(self._statement, params)
        row = await cursor.fetchone()
        assert row is not None
        ids, rules = row[0] or [], row[1]
        kept = []
        for (i, transaction), rule in zip(stored, rules, strict=True):
            if rule is None:
                kept.append((i, transaction))
            else:
                filter_rules[i] = rule
        for (i, _), row_id in zip(kept, ids, strict=True):
            transaction_ids[i] = row_id
        return kept
