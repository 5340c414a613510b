"""Tracing one message: by its message id or its body's SHA-256, from its batch to the
row it became, the rule or reason that kept it out, and the publication that first put
its amount into KeyDB.

Every lookup goes through an index (``message_ids`` by id, the GIN index of the batches'
hash keys by hash), so a trace costs a few milliseconds however long the history is.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row

from ledgerflow.db.queries import Queries

QUERIES = Queries.of("ledgerflow.lineage", "trace.sql")
OUTCOMES = {
    "S": "stored",
    "R": "rejected",
    "D": "duplicate",
    "A": "redelivered",
    "F": "filtered",
}
SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_MATCHES = 100  # the same body may have been sent many times; a trace shows the first


async def _one(
    conn: psycopg.AsyncConnection[Any], query: LiteralString, params: dict[str, Any]
) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query, params)
        return await cursor.fetchone()


async def find(conn: psycopg.AsyncConnection[Any], key: str) -> list[tuple[int, int]]:
    """The (batch, position) of every message ``key`` names: the delivery that counted a
    message id, or every delivery of a body with that SHA-256 (hex), oldest first."""
    found: list[tuple[int, int]] = []
    if SHA256_HEX.match(key):
        digest = bytes.fromhex(key)
        cursor = await conn.execute(
            QUERIES["by_hash"],
            {
                "key": int.from_bytes(digest[:8], "big", signed=True),
                "digest": digest,
                "limit": MAX_MATCHES,
            },
        )
        found = [(row[0], row[1]) for row in await cursor.fetchall()]
    if not found:  # a message id may look like a hash too
        cursor = await conn.execute(QUERIES["by_message_id"], {"message_id": key})
        found = [(row[0], row[1]) for row in await cursor.fetchall() if row[1] is not None]
    return found


async def trace(conn: psycopg.AsyncConnection[Any], key: str) -> dict[str, Any]:
    """Everything ledgerflow knows of the messages ``key`` names, as JSON-ready data."""
    messages = [await _message(conn, batch, position) for batch, position in await find(conn, key)]
    # A redelivery is the same message again: point at the delivery it repeats.
    for i, message in enumerate(messages):
        if message["outcome"] == "redelivered":
            original = next(
                (
                    m
                    for m in reversed(messages[:i])
                    if m["queue"] == message["queue"] and m["outcome"] != "redelivered"
                ),
                None,
            )
            if original is not None:
                message["repeats"] = {
                    "batch_id": original["batch_id"],
                    "position": original["position"],
                }
    return {"query": key, "found": len(messages), "messages": messages}


async def _message(conn: psycopg.AsyncConnection[Any], batch: int, position: int) -> dict[str, Any]:
    row = await _one(conn, QUERIES["message"], {"batch_id": batch, "position": position})
    assert row is not None
    outcome = OUTCOMES.get(row["letter"], "unknown")
    message: dict[str, Any] = {
        "batch_id": row["batch_id"],
        "position": row["position"],
        "queue": row["queue"],
        "committed_at": _iso(row["committed_at"]),
        "instance": row["instance"],
        "term": row["term"],
        "message_id": row["message_id"],
        "body_sha256": bytes(row["body_sha256"]).hex(),
        "outcome": outcome,
    }
    if row["transaction_id"] is not None:
        message["transaction"] = await _transaction(conn, row)
    if row["rejected_id"] is not None:
        rejection = await _one(conn, QUERIES["rejection"], {"id": row["rejected_id"]})
        if rejection is not None:
            message["rejection"] = {
                "id": row["rejected_id"],
                "reason": rejection["reason"],
                "detail": rejection["detail"],
            }
    if row["rule_version_id"] is not None:
        rule = await _one(conn, QUERIES["rule"], {"id": row["rule_version_id"]})
        parsed = await _one(conn, QUERIES["filtered"], {"batch_id": batch, "position": position})
        if rule is not None:
            message["rule"] = {
                "version_id": row["rule_version_id"],
                **{k: _iso(v) if isinstance(v, datetime) else v for k, v in rule.items()},
            }
        if parsed is not None:
            message["parsed"] = {
                "provider_id": parsed["provider_id"],
                "value": str(parsed["value"]),
            }
    if outcome == "duplicate" and row["message_id"] is not None:
        counted = await _one(conn, QUERIES["counted_in"], {"message_id": row["message_id"]})
        if counted is not None:
            message["counted_in_batch"] = counted["batch_id"]
    return message


async def _transaction(conn: psycopg.AsyncConnection[Any], row: dict[str, Any]) -> dict[str, Any]:
    """The stored row, and the first publication that included it, with what it wrote."""
    stored = await _one(conn, QUERIES["transaction"], {"id": row["transaction_id"]})
    if stored is None:
        return {"id": row["transaction_id"], "missing": True}
    result: dict[str, Any] = {
        "id": stored["id"],
        "provider_id": stored["provider_id"],
        "provider_name": stored["provider_name"],
        "value": str(stored["value"]),
    }
    if row["xid"] is not None and stored["key"] is not None:
        publication = await _one(
            conn,
            QUERIES["first_publication"],
            {"key": stored["key"], "committed_at": row["committed_at"], "xid": row["xid"]},
        )
        result["first_publication"] = (
            None
            if publication is None
            else {
                "boundary": _iso(publication["boundary"]),
                "published_at": _iso(publication["published_at"]),
                "instance": publication["instance"],
                "key": stored["key"],
                "value": publication["value"],
            }
        )
    return result


def _iso(value: datetime) -> str:
    return value.isoformat()


def body_sha256(body: bytes) -> str:
    """The hex SHA-256 of a body, as a trace takes it."""
    return hashlib.sha256(body).hexdigest()
