"""Property: whatever bytes arrive, each message is stored or rejected, exactly once."""

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerflow.messaging.delivery import Delivery
from ledgerflow.transactions.writer import BatchWriter

from .conftest import take_term

pytestmark = pytest.mark.integration

json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
transaction_like = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(-2, 4), st.booleans(), st.none(), st.text(max_size=2))},
    optional={
        "value": st.one_of(
            st.integers(), st.floats(allow_nan=True), st.decimals(), st.text(max_size=3)
        ),
        "extra": json_like,
    },
)
bodies = st.one_of(
    st.binary(max_size=64),
    json_like.map(lambda v: repr(v).encode()),
    transaction_like.map(
        lambda v: (
            str(v)
            .replace("'", '"')
            .replace("None", "null")
            .replace("True", "true")
            .replace("False", "false")
            .encode()
        )
    ),
)


async def count(conn: Any, sql: str) -> int:
    row = await (await conn.execute(sql)).fetchone()
    await conn.commit()
    return int(row[0])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(bodies, min_size=1, max_size=20))
async def test_every_body_is_stored_or_rejected_exactly_once(
    seeded: Any, batch: list[bytes]
) -> None:
    conn = seeded
    writer = BatchWriter(conn, "q", "test", await take_term(conn), max_body_bytes=1024)
    before = (
        await count(conn, "SELECT count(*) FROM historical_transactions"),
        await count(conn, "SELECT count(*) FROM ledgerflow.rejected_messages"),
    )
    now = datetime.now(UTC)
    result = await writer.write(
        [Delivery(body, tag, False, now) for tag, body in enumerate(batch, 1)]
    )
    after = (
        await count(conn, "SELECT count(*) FROM historical_transactions"),
        await count(conn, "SELECT count(*) FROM ledgerflow.rejected_messages"),
    )
    assert result.stored + result.rejected == len(batch)
    assert (after[0] - before[0], after[1] - before[1]) == (result.stored, result.rejected)
    outcomes = await count(
        conn, f"SELECT count(*) FROM ledgerflow.messages WHERE batch_id = {result.batch_id}"
    )
    assert outcomes == len(batch)
