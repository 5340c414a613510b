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

EXCHANGE = "ledgerflow.transactions"
# A shard's queue: quorum (replicated over the cluster's nodes), one active consumer.
SHARD_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum", "x-single-active-consumer": True}
# A shard's acknowledgement marker: quorum as well, so that it survives a node's loss.
MARKER_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum", "x-max-length": 1}
BINDING_WEIGHT = "1"  # every shard takes an equal share of the hash ring


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
    channel.exchange_declare(EXCHANGE, exchange_type="x-consistent-hash", durable=True)
    for shard in range(shards):
        name = shard_queue(queue, shard)
        channel.queue_declare(name, durable=True, arguments=SHARD_ARGUMENTS)
        channel.queue_bind(name, EXCHANGE, routing_key=BINDING_WEIGHT)
