"""Rates: the original's answers, region slugs, strict parameters, time zones."""

from datetime import date
from pathlib import Path
from statistics import mean
from typing import Any

import psycopg
import pytest

from ledgerflow.rates import dumps
from ledgerflow.rates.lanes import QUERIES, BadRequest, RatesQuery, daily_rates, parse_rates_query

pytestmark = pytest.mark.integration

DUMP = Path(__file__).parents[3] / "shared" / "data" / "rates.sql"
REGIONS = [
    ("europe", "Europe", None),
    ("nordics", "Nordics", "europe"),
    ("norway", "Norway", "nordics"),
    ("asia", "Asia", None),
]
PORTS = [
    ("NOOSL", "Oslo", "norway"),
    ("SEGOT", "Gothenburg", "nordics"),
    ("DEHAM", "Hamburg", "europe"),
    ("CNSHA", "Shanghai", "asia"),
    ("CNGGZ", "Guangzhou", "asia"),
]


@pytest.fixture
async def lanes(conn: psycopg.AsyncConnection[Any]) -> psycopg.AsyncConnection[Any]:
    """A small region tree with prices: CNSHA→NOOSL has 3, 2, 0 prices on Jan 3, 2, 1."""
    async with conn.transaction():
        for row in REGIONS:
            await conn.execute("INSERT INTO regions VALUES (%s, %s, %s)", row)
        for row in PORTS:
            await conn.execute("INSERT INTO ports VALUES (%s, %s, %s)", row)
        for orig, dest, day, price in [
            ("CNSHA", "NOOSL", "2021-01-03", 100),
            ("CNSHA", "NOOSL", "2021-01-03", 200),
            ("CNSHA", "NOOSL", "2021-01-03", 301),
            ("CNSHA", "NOOSL", "2021-01-02", 50),
            ("CNSHA", "NOOSL", "2021-01-02", 70),
            ("CNGGZ", "SEGOT", "2021-01-03", 1000),
            ("CNGGZ", "DEHAM", "2021-01-03", 7),
        ]:
            await conn.execute(
                "INSERT INTO prices VALUES (%s, %s, %s, %s)", (orig, dest, day, price)
            )
    return conn


def ask(orig: str, dest: str, first: str = "2021-01-01", last: str = "2021-01-03") -> RatesQuery:
    return RatesQuery(date.fromisoformat(first), date.fromisoformat(last), orig, dest)


async def test_one_entry_per_day_newest_first_with_the_original_null_rules(lanes: Any) -> None:
    assert await daily_rates(lanes, ask("CNSHA", "NOOSL")) == [
        {"count": 3, "day": "2021-01-03", "price": 601 / 3},
        {"count": 2, "day": "2021-01-02", "price": None},  # fewer than 3 prices: no average
        {"count": None, "day": "2021-01-01", "price": None},  # no prices: no count either
    ]


async def test_a_region_slug_means_every_port_below_it(lanes: Any) -> None:
    # asia → {CNSHA, CNGGZ}; nordics → {NOOSL (via norway), SEGOT}: four prices on Jan 3.
    [jan3, *_] = await daily_rates(lanes, ask("asia", "nordics"))
    assert jan3 == {"count": 4, "day": "2021-01-03", "price": (100 + 200 + 301 + 1000) / 4}
    [jan3, *_] = await daily_rates(lanes, ask("asia", "europe"))  # the whole tree
    assert jan3["count"] == 5


@pytest.mark.parametrize(
    ("orig", "dest", "named"),
    [("CNSHA", "atlantis", "dest_code"), ("atlantis", "asia", "orig_code")],
)
async def test_an_unknown_code_is_a_bad_request_naming_it(
    lanes: Any, orig: str, dest: str, named: str
) -> None:
    with pytest.raises(BadRequest) as raised:
        await daily_rates(lanes, ask(orig, dest))
    assert raised.value.parameter == named


async def test_the_same_code_on_both_sides_stands_for_the_same_ports(lanes: Any) -> None:
    # Both codes are resolved in one query: asia → asia is every lane inside asia.
    for orig, dest, price in [
        ("CNSHA", "CNGGZ", 40),
        ("CNGGZ", "CNSHA", 60),
        ("CNSHA", "CNSHA", 80),
    ]:
        await lanes.execute(
            "INSERT INTO prices VALUES (%s, %s, '2021-01-03', %s)", (orig, dest, price)
        )
    await lanes.commit()
    [jan3, *_] = await daily_rates(lanes, ask("asia", "asia"))
    assert jan3 == {"count": 3, "day": "2021-01-03", "price": 60.0}


async def test_the_day_series_does_not_depend_on_the_time_zone(lanes: Any) -> None:
    # In Sao Paulo daylight saving time once started at midnight, which made the original
    # skip a day. 2018-11-04 was such a day.
    await lanes.execute("SET TimeZone = 'America/Sao_Paulo'")
    days = [
        r["day"]
        for r in await daily_rates(lanes, ask("CNSHA", "NOOSL", "2018-11-01", "2018-11-06"))
    ]
    assert days == [f"2018-11-0{d}" for d in range(6, 0, -1)]


async def test_the_rates_query_finds_the_lane_in_its_index(lanes: Any) -> None:
    """The codes compare in the index's collation, or the index cannot look them up."""
    await lanes.execute("SET enable_seqscan = off")  # a tiny table would be scanned anyway
    cursor = await lanes.execute(
        "EXPLAIN (COSTS OFF) " + QUERIES["daily_rates"],
        {
            "date_from": date(2021, 1, 1),
            "date_to": date(2021, 1, 3),
            "orig": ["CNSHA"],
            "dest": ["NOOSL"],
        },
    )
    plan = [row[0].strip() for row in await cursor.fetchall()]
    lookups = [line for line in plan if line.startswith("Index Cond:")]
    assert any("prices_lane_day_idx" in line for line in plan), plan
    assert any("orig_code = ANY" in c and "dest_code = ANY" in c for c in lookups), plan


def test_parameters_are_strict_and_errors_name_them() -> None:
    good = {"date_from": "2021-01-01", "date_to": "2021-01-31", "orig_code": "A", "dest_code": "B"}
    assert parse_rates_query(good, 366).date_to == date(2021, 1, 31)
    for broken, parameter in [
        ({**good, "date_from": "2021-1-1"}, "date_from"),
        ({**good, "date_to": "20210131"}, "date_to"),
        ({**good, "date_to": "2021-02-30"}, "date_to"),
        ({k: v for k, v in good.items() if k != "orig_code"}, "orig_code"),
        ({**good, "dest_code": " "}, "dest_code"),
        ({**good, "date_to": "2023-01-01"}, "date_to"),  # over the 366-day cap
    ]:
        with pytest.raises(BadRequest) as raised:
            parse_rates_query(broken, 366)
        assert raised.value.parameter == parameter


@pytest.fixture
def dump_loaded(db_url: str) -> str:
    if not DUMP.exists():
        pytest.skip(f"the original dump is not here ({DUMP.name}); nothing to compare against")
    with psycopg.connect(db_url) as conn:
        added = dumps.load(conn, dumps.read([DUMP]))
    assert added == {"regions": 20, "ports": 143, "prices": 56_689}
    return db_url


async def test_the_original_answers_are_reproduced_on_the_dump(dump_loaded: str) -> None:
    conn = await psycopg.AsyncConnection.connect(dump_loaded)
    async with conn:
        rates = await daily_rates(conn, ask("CNGGZ", "EETLL", "2021-01-01", "2021-01-31"))
        assert (
            len(rates) == 31
            and rates[0]["day"] == "2021-01-31"
            and rates[-1]["day"] == "2021-01-01"
        )
        # The brief's own example: {"count": 3, "day": "2021-01-31", "price": 1154.33333333333}
        assert rates[0]["count"] == 3 and rates[0]["price"] == pytest.approx(1154.33333333333)
        # Every day and lane, against the dump's own rows computed independently here.
        cursor = await conn.execute(
            "SELECT orig_code, dest_code, day, price FROM prices WHERE day BETWEEN '2021-01-10' AND '2021-01-12'"
        )
        by_lane: dict[tuple[str, str], dict[str, list[int]]] = {}
        for orig, dest, day, price in await cursor.fetchall():
            by_lane.setdefault((orig, dest), {}).setdefault(day.isoformat(), []).append(price)
        for (orig, dest), days in list(by_lane.items())[:40]:
            answer = await daily_rates(conn, ask(orig, dest, "2021-01-10", "2021-01-12"))
            for entry in answer:
                prices = days.get(entry["day"], [])
                assert entry["count"] == (len(prices) or None)
                assert entry["price"] == (pytest.approx(mean(prices)) if len(prices) >= 3 else None)
