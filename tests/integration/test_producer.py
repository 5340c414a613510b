"""The example producer on real RabbitMQ streams and ledgerflow's own schema store: every
message it reports arrives on its source's stream, in the order the seed makes them, and
no other; the malformed ones, and only they, are rejected by the normaliser."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from itertools import islice

import pytest
from psycopg_pool import AsyncConnectionPool

from ledgerflow.treasury.normalise import Normaliser, RejectedTrade
from ledgerflow.treasury.producer import SOURCES, example_messages, produce, subject_of
from ledgerflow.treasury.registry import PostgresSchemaStore
from ledgerflow.treasury.streams import RabbitStreams

pytestmark = pytest.mark.integration
SEED = 20260302
COUNT, BAD_RATIO, AVRO_RATIO = 500, 0.05, 0.5


@pytest.fixture
async def registry(db_url: str) -> AsyncIterator[PostgresSchemaStore]:
    async with AsyncConnectionPool(db_url, open=False, kwargs={"autocommit": True}) as pool:
        yield PostgresSchemaStore(pool)


async def read(streams: RabbitStreams, stream: str, count: int) -> list[bytes]:
    """The first ``count`` messages of ``stream``."""
    bodies: list[bytes] = []
    if count == 0:
        return bodies
    async with asyncio.timeout(30), contextlib.aclosing(streams.read(stream, 0)) as messages:
        async for message in messages:
            bodies.append(message.body)
            if len(bodies) == count:
                break
    return bodies


async def ends_at(streams: RabbitStreams, stream: str, offset: int) -> bool:
    """Whether ``stream`` has nothing at ``offset`` (nothing comes within a second)."""
    async with contextlib.aclosing(streams.read(stream, offset)) as messages:
        try:
            async with asyncio.timeout(1):
                await anext(messages)
        except TimeoutError:
            return True
    return False


async def test_every_reported_message_arrives_on_its_stream(
    streams: RabbitStreams, registry: PostgresSchemaStore
) -> None:
    token = uuid.uuid4().hex[:12]

    def stream_of(source: str) -> str:
        return f"lf_test_{token}.trades.{source}"

    report = await produce(
        streams,
        registry,
        count=COUNT,
        rate=None,
        bad_ratio=BAD_RATIO,
        avro_ratio=AVRO_RATIO,
        seed=SEED,
        run_id=token,
        stream_of=stream_of,
    )
    why = f"seed {SEED}: {report}"
    assert report.total == COUNT, why
    for source in SOURCES:
        assert (await registry.latest(subject_of(source))).id == report.schema_ids[source]
    expected = list(
        islice(
            example_messages(
                random.Random(SEED),
                report.schema_ids,
                bad_ratio=BAD_RATIO,
                avro_ratio=AVRO_RATIO,
                run_id=token,
            ),
            COUNT,
        )
    )
    wanted = {s: [m.body for m in expected if m.source == s] for s in SOURCES}
    arrived = await asyncio.gather(*(read(streams, stream_of(s), len(wanted[s])) for s in SOURCES))
    ends = await asyncio.gather(*(ends_at(streams, stream_of(s), len(wanted[s])) for s in SOURCES))
    normaliser = await Normaliser.start(registry)
    for source, bodies, ended in zip(SOURCES, arrived, ends, strict=True):
        assert report.per_source[source] == len(wanted[source]) > 0, why
        assert bodies == wanted[source], f"{why}: {source}"
        assert ended, f"{why}: {source} has more messages than reported"
        kinds = {"json": 0, "avro": 0, "bad": 0}
        for body in bodies:
            try:
                await normaliser.normalise(source, body)
            except RejectedTrade:
                kinds["bad"] += 1
            else:
                kinds["avro" if body[0] == 0 else "json"] += 1
        assert report.counts[source] == kinds, f"{why}: {source}"
    assert 10 <= report.per_kind["bad"] <= 45, why
    assert 180 <= report.per_kind["avro"] <= 300, why
