"""The API's rates routes in process, on a database with and without the rates tables."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from ledgerflow.auth import store
from ledgerflow.db import connections, migrate
from ledgerflow.runtime.api import create_app
from ledgerflow.settings import load_settings

pytestmark = pytest.mark.integration


def client_for(db_url: str, redis_url: str) -> TestClient:
    settings = load_settings(database_url=db_url, rates_cache_url=redis_url)
    return TestClient(create_app(settings))


async def test_a_database_without_rates_says_what_to_run(empty_db_url: str, redis_url: str) -> None:
    conn = await connections.connect(empty_db_url)
    async with conn:
        await migrate.migrate(conn)  # the transactions job only
        token = await store.create_token(conn, "t", ["prices:write"], "test")
    with client_for(empty_db_url, redis_url) as client:
        answer = client.get(
            "/rates",
            params={
                "date_from": "2021-01-01",
                "date_to": "2021-01-02",
                "orig_code": "north",
                "dest_code": "south",
            },
        )
        posted = client.post(
            "/prices/batches",
            content=json.dumps(
                {
                    "batch_id": "b",
                    "prices": [
                        {"orig_code": "A", "dest_code": "B", "day": "2021-01-01", "price": 1}
                    ],
                }
            ),
            headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
        )
    for response in (answer, posted):
        assert response.status_code == 503
        assert "ledgerflow migrate --rates" in response.json()["error"]


async def test_the_cache_answers_until_a_batch_changes_the_lane(
    conn: psycopg.AsyncConnection[Any], db_url: str, redis_url: str
) -> None:
    async with conn.transaction():
        await conn.execute("INSERT INTO regions VALUES ('world', 'World', NULL)")
        await conn.execute(
            "INSERT INTO ports VALUES ('AAAAA', 'A', 'world'), ('BBBBB', 'B', 'world')"
        )
    params = {
        "date_from": "2021-01-01",
        "date_to": "2021-01-03",
        "orig_code": "AAAAA",
        "dest_code": "world",
    }

    def batch(batch_id: str, day: str) -> dict[str, Any]:
        rows = [
            {"orig_code": "AAAAA", "dest_code": "BBBBB", "day": day, "price": p}
            for p in (10, 20, 30)
        ]
        return {"batch_id": batch_id, "prices": rows}

    token = await store.create_token(conn, "t", ["prices:write"], "test")
    with client_for(db_url, redis_url) as client:
        client.headers["authorization"] = f"Bearer {token}"
        empty = client.get("/rates", params=params).json()
        assert client.get("/rates", params=params).json() == empty  # from the cache
        # A batch on days the answer does not cover leaves it standing.
        assert client.post("/prices/batches", json=batch("later", "2021-02-01")).status_code == 201
        assert client.get("/rates", params=params).json() == empty
        assert client.post("/prices/batches", json=batch("inside", "2021-01-02")).status_code == 201
        fresh = client.get("/rates", params=params).json()
    assert fresh["rates"][1] == {"count": 3, "day": "2021-01-02", "price": 20.0}
