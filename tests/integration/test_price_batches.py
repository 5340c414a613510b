"""Price batches: all or nothing, and idempotent by batch_id."""

from typing import Any

import psycopg
import pytest

from ledgerflow.rates import price_batches as batches
from ledgerflow.rates.price_batches import BatchRejected

from .conftest import scalar

pytestmark = pytest.mark.integration


@pytest.fixture
async def ports(conn: psycopg.AsyncConnection[Any]) -> psycopg.AsyncConnection[Any]:
    async with conn.transaction():
        await conn.execute("INSERT INTO regions VALUES ('world', 'World', NULL)")
        await conn.execute(
            "INSERT INTO ports VALUES ('CNGGZ', 'Guangzhou', 'world'), ('EETLL', 'Tallinn', 'world')"
        )
    return conn


def row(day: str = "2021-02-01", price: Any = 1200, **fields: Any) -> dict[str, Any]:
    return {"orig_code": "CNGGZ", "dest_code": "EETLL", "day": day, "price": price, **fields}


async def test_a_valid_batch_commits_whole_and_a_resent_one_adds_nothing(ports: Any) -> None:
    document = {"batch_id": "b-1", "prices": [row(), row(price=1300), row("2021-02-02")]}
    outcome = await batches.commit(ports, batches.from_json(document), "http")
    assert (outcome.rows, outcome.duplicate) == (3, False)
    again = await batches.commit(ports, batches.from_json(document), "http")
    assert (again.rows, again.duplicate) == (3, True)
    assert await scalar(ports, "SELECT count(*) FROM prices") == 3


async def test_one_bad_row_rejects_the_batch_naming_every_bad_row(ports: Any) -> None:
    document = {
        "batch_id": "b-2",
        "prices": [
            row(),
            row(price=0),
            row("2021-2-1"),
            row(price=12.5),
            row(price=True),
            {"orig_code": "CNGGZ", "day": "2021-02-01", "price": 1},
            row("2021-02-30"),
        ],
    }
    with pytest.raises(BatchRejected) as raised:
        batches.from_json(document)
    assert [p["row"] for p in raised.value.problems] == [2, 3, 4, 5, 6, 7]
    assert raised.value.as_json()["problem_count"] == 6
    assert await scalar(ports, "SELECT count(*) FROM prices") == 0


async def test_unknown_ports_reject_the_batch_and_leave_its_id_free(ports: Any) -> None:
    bad = {"batch_id": "b-3", "prices": [row(), row(dest_code="XXXXX")]}
    with pytest.raises(BatchRejected) as raised:
        await batches.commit(ports, batches.from_json(bad), "http")
    assert raised.value.problems == [{"row": 2, "problems": ["unknown port 'XXXXX'"]}]
    assert await scalar(ports, "SELECT count(*) FROM prices") == 0
    fixed = {"batch_id": "b-3", "prices": [row(), row()]}
    outcome = await batches.commit(ports, batches.from_json(fixed), "http")
    assert (outcome.rows, outcome.duplicate) == (2, False)


async def test_csv_batches_follow_the_same_rules(ports: Any) -> None:
    text = (
        "orig_code,dest_code,day,price\nCNGGZ,EETLL,2021-02-01,1200\nCNGGZ,EETLL,2021-02-02,1250\n"
    )
    outcome = await batches.commit(ports, batches.from_csv("b-4", text), "http")
    assert outcome.rows == 2
    with pytest.raises(BatchRejected) as raised:
        batches.from_csv("b-5", text + "CNGGZ,EETLL,2021-02-03,-5\n")
    assert [p["row"] for p in raised.value.problems] == [3]
    with pytest.raises(BatchRejected, match="batch_id"):
        batches.from_csv(None, text)


async def test_a_batch_of_fifty_thousand_rows_goes_in_whole(ports: Any) -> None:
    prices = [row(f"2021-0{1 + i % 9}-{1 + i % 28:02d}", 1 + i) for i in range(50_000)]
    outcome = await batches.commit(
        ports, batches.from_json({"batch_id": "big", "prices": prices}), "http"
    )
    assert outcome.rows == 50_000
    assert await scalar(ports, "SELECT count(*) FROM prices") == 50_000
