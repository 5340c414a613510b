"""Providers sharded over quorum queues (LEDGERFLOW_SHARDS), on RabbitMQ's own machinery.

A consistent-hash exchange, ``ledgerflow.transactions`` (the
``rabbitmq_consistent_hash_exchange`` plugin), routes each message by its routing key, the
provider id, to one of N quorum queues ``<queue>.0`` to ``<queue>.<N-1>``, each bound with
the same weight. Each queue has ``x-single-active-consumer``: every worker consumes every
shard, and RabbitMQ delivers each shard to one consumer at a time, moving it to another
when that consumer's channel goes. A provider always hashes to the same shard, so its
messages stay in order while N does not change (docs/scaling.md: changing N).

Producers that publish to the original queue (the original producer does) are bridged:
the leader consumes ``<queue>`` and forwards each message to the exchange, keyed by the
provider id in its body, publishing and acknowledging in one RabbitMQ transaction, so a
crash between the two forwards nothing or acknowledges everything forwarded.
"""

from __future__ import annotations

import json
from typing import Any

import pika.channel
import pika.exceptions

DEFAULT_QUEUE = "incoming_transactions"
EXCHANGE = "ledgerflow.transactions"  # the default queue's; another queue's has its name
# A shard's queue: quorum (replicated over the cluster's nodes), one active consumer.
SHARD_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum", "x-single-active-consumer": True}
# A shard's acknowledgement marker: quorum as well, so that it survives a node's loss.
MARKER_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum", "x-max-length": 1}
BINDING_WEIGHT = "1"  # every shard takes an equal share of the hash ring


def exchange_for(queue: str) -> str:
    """The consistent-hash exchange of ``queue``'s shards: ``ledgerflow.transactions`` for
    the original queue, one of its own for any other (two deployments on one virtual host
    never share a hash ring)."""
    return EXCHANGE if queue == DEFAULT_QUEUE else f"{EXCHANGE}.{queue}"


def shard_queue(queue: str, shard: int) -> str:
    """The name of shard ``shard`` of ``queue``."""
    return f"{queue}.{shard}"


def routing_key(body: bytes) -> str:
    """The provider id a message's body names, as its routing key; "" when it names none
    (the shard it goes to rejects it with its reason, as the queue would have)."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""
    provider = message.get("id") if isinstance(message, dict) else None
    if isinstance(provider, int) and not isinstance(provider, bool):
        return str(provider)
    return ""


def declare_shards(channel: pika.channel.Channel | Any, queue: str, shards: int) -> None:
    """Declare the exchange and the N shard queues, bound (a blocking channel; idempotent)."""
    exchange = exchange_for(queue)
    channel.exchange_declare(exchange, exchange_type="x-consistent-hash", durable=True)
    for shard in range(shards):
        name = shard_queue(queue, shard)
        channel.queue_declare(name, durable=True, arguments=SHARD_ARGUMENTS)
        channel.queue_bind(name, exchange, routing_key=BINDING_WEIGHT)


class MoreShardsThanConfigured(Exception):
    """More shards exist than the number configured; says what to do."""


def ensure_shards(connection: Any, queue: str, shards: int) -> None:
    """Declare the shards (a blocking connection; the number agreed in the database, see
    cluster/shards.py), unless more of them exist: their messages would be stranded
    (``resize_shards`` is the way). Fewer may exist: another worker is declaring them."""
    found = existing_shards(connection, queue)
    if len(found) > shards:
        raise MoreShardsThanConfigured(
            f"{len(found)} shards of {queue} exist and LEDGERFLOW_SHARDS is {shards}: run"
            f" `ledgerflow shards resize {shards}` (docs/scaling.md) or set"
            f" LEDGERFLOW_SHARDS={len(found)}"
        )
    declare_shards(connection.channel(), queue, shards)


class ResizeRefused(Exception):
    """Changing the number of shards now would lose or reorder messages; says why."""


def existing_shards(connection: Any, queue: str, limit: int = 1024) -> dict[int, int]:
    """The shard queues of ``queue`` that exist, numbered from 0 up to the first missing,
    with the messages each holds, ready or delivered and not acknowledged, or -1 while a
    consumer has it (a blocking connection)."""
    found: dict[int, int] = {}
    for shard in range(limit):
        channel = connection.channel()
        try:
            frame = channel.queue_declare(shard_queue(queue, shard), passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                break
            raise
        found[shard] = -1 if frame.method.consumer_count else int(frame.method.message_count)
        channel.close()
    return found


def resize_shards(connection: Any, queue: str, shards: int) -> dict[str, Any]:
    """Change the number of shards of ``queue`` to ``shards`` (a blocking connection), only
    when every shard is empty: otherwise a provider's messages could be split between its
    old shard and its new one, or a removed shard's messages lost. Shards removed are
    unbound first, then deleted only if still empty, so a message published meanwhile is
    never deleted with its queue; their markers stay. Raise ResizeRefused saying why."""
    if shards < 1:
        raise ResizeRefused("give at least one shard (LEDGERFLOW_SHARDS=0 is the one queue)")
    before = existing_shards(connection, queue)
    consumed = sorted(shard_queue(queue, n) for n, count in before.items() if count < 0)
    if consumed:
        raise ResizeRefused(
            f"shards still have consumers ({', '.join(consumed)}): stop every worker first"
        )
    holding = {shard_queue(queue, n): count for n, count in before.items() if count}
    if holding:
        listed = ", ".join(f"{name} {count}" for name, count in sorted(holding.items()))
        raise ResizeRefused(
            f"shards still hold messages ({listed}): run the workers with the current number"
            " of shards until `ledgerflow status` shows 0 ready, stop them, and try again"
        )
    channel = connection.channel()
    declare_shards(channel, queue, shards)
    removed = []
    for n in sorted(before):
        if n >= shards:
            name = shard_queue(queue, n)
            channel.queue_unbind(name, exchange_for(queue), routing_key=BINDING_WEIGHT)
            # Unbound, nothing reaches it any more: what it holds now is all it will hold.
            # (Quorum queues have no delete-if-empty; this check stands in for it.)
            left = channel.queue_declare(name, passive=True).method.message_count
            if left:
                raise ResizeRefused(
                    f"{name} received {left} messages while it was being removed: it is"
                    " unbound and kept; start a worker with"
                    f" LEDGERFLOW_SHARDS={len(before)} to drain it, stop it, and run this again"
                )
            channel.queue_delete(name)
            # Its acknowledgement marker stays: should the shard come back, it knows that
            # every batch it committed was acknowledged.
            removed.append(name)
    channel.close()
    return {"before": len(before), "after": shards, "removed": removed}
