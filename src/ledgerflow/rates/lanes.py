"""Rates: the average price per day of a lane, as the original service answered, and more.

A code is a port code, or a region slug meaning every port of the region and of all the
regions below it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg

from ledgerflow.db.queries import Queries

QUERIES = Queries.of("ledgerflow.rates")
# Fewer prices than this on a day give no average (the original's rule).
MIN_PRICES_FOR_AVERAGE = 3
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class BadRequest(Exception):
    """A request parameter is missing or wrong; the message names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


@dataclass(frozen=True)
class RatesQuery:
    """What ``GET /rates`` asks."""

    date_from: date
    date_to: date
    orig_code: str
    dest_code: str


def _date(params: Mapping[str, str], name: str) -> date:
    raw = params.get(name)
    if not raw:
        raise BadRequest(name, "required, as YYYY-MM-DD")
    if not _ISO_DATE.fullmatch(raw):
        raise BadRequest(name, f"{raw!r} is not a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(name, f"{raw!r} is not a calendar date") from None


def parse_rates_query(params: Mapping[str, str], max_days: int) -> RatesQuery:
    """Validate the query string strictly; raise BadRequest naming the first bad parameter."""
    date_from, date_to = _date(params, "date_from"), _date(params, "date_to")
    if (date_to - date_from).days + 1 > max_days:
        raise BadRequest("date_to", f"the range is limited to {max_days} days")
    codes = []
    for name in ("orig_code", "dest_code"):
        code = params.get(name, "").strip()
        if not code:
            raise BadRequest(name, "required: a port code or a region slug")
        if any(ord(c) < 0x20 for c in code):  # PostgreSQL's text takes no NUL, codes no control
            raise BadRequest(name, "a port code or a region slug has no control characters")
        codes.append(code)
    return RatesQuery(date_from, date_to, codes[0], codes[1])


async def resolve(conn: psycopg.AsyncConnection[Any], parameter: str, code: str) -> list[str]:
    """The port codes ``code`` stands for; BadRequest if it is neither a port nor a region."""
    cursor = await conn.execute(QUERIES["resolve_codes"], {"code": code})
    ports = [row[0] for row in await cursor.fetchall()]
    if not ports:
        raise BadRequest(parameter, f"no port or region {code!r}")
    return ports


@dataclass(frozen=True)
class Lanes:
    """A query with its codes resolved to ports: what an answer depends on."""

    date_from: date
    date_to: date
    orig: tuple[str, ...]
    dest: tuple[str, ...]

    def cache_key(self) -> str:
        """The same for every query that resolves to the same ports and days."""
        ports = hashlib.sha256(("|".join(self.orig) + ">" + "|".join(self.dest)).encode())
        return f"{self.date_from}:{self.date_to}:{ports.hexdigest()[:32]}"

    def tags(self) -> list[str]:
        """What a price batch must touch to make the answer stale: a port on each side
        (see ``lane_tags``), within ``span``."""
        return [f"orig:{code}" for code in self.orig] + [f"dest:{code}" for code in self.dest]

    def span(self) -> tuple[str, str]:
        """The days the answer covers, as ISO dates (they compare in order)."""
        return (self.date_from.isoformat(), self.date_to.isoformat())


def lane_tags(orig: str, dest: str) -> list[str]:
    """The tags of the answers a change of the lane ``orig`` -> ``dest`` may make stale."""
    return [f"orig:{orig}", f"dest:{dest}"]


async def lanes_for(conn: psycopg.AsyncConnection[Any], q: RatesQuery) -> Lanes:
    """Resolve both codes; BadRequest names one that is neither a port nor a region."""
    orig = await resolve(conn, "orig_code", q.orig_code)
    dest = await resolve(conn, "dest_code", q.dest_code)
    return Lanes(q.date_from, q.date_to, tuple(sorted(orig)), tuple(sorted(dest)))


async def daily_rates(conn: psycopg.AsyncConnection[Any], q: RatesQuery) -> list[dict[str, Any]]:
    """One entry per day from date_to down to date_from (see ``lane_rates``)."""
    return await lane_rates(conn, await lanes_for(conn, q))


async def lane_rates(conn: psycopg.AsyncConnection[Any], lanes: Lanes) -> list[dict[str, Any]]:
    """One entry per day from date_to down to date_from.

    ``count`` is null on a day without prices; ``price`` (the average) is null when there
    are fewer than three.
    """
    cursor = await conn.execute(
        QUERIES["daily_rates"],
        {
            "date_from": lanes.date_from,
            "date_to": lanes.date_to,
            "orig": list(lanes.orig),
            "dest": list(lanes.dest),
        },
    )
    return [
        {
            "count": count or None,
            "day": day.isoformat(),
            "price": float(average) if count >= MIN_PRICES_FOR_AVERAGE else None,
        }
        for day, count, average in await cursor.fetchall()
    ]
