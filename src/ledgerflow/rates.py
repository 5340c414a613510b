"""Rates: the average price per day of a lane, as the original service answered, and more.

A code is a port code, or a region slug meaning every port of the region and of all the
regions below it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg

from ledgerflow.queries import query

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
        codes.append(code)
    return RatesQuery(date_from, date_to, codes[0], codes[1])


async def resolve(conn: psycopg.AsyncConnection[Any], parameter: str, code: str) -> list[str]:
    """The port codes ``code`` stands for; BadRequest if it is neither a port nor a region."""
    cursor = await conn.execute(query("resolve_codes"), {"code": code})
    ports = [row[0] for row in await cursor.fetchall()]
    if not ports:
        raise BadRequest(parameter, f"no port or region {code!r}")
    return ports


async def daily_rates(conn: psycopg.AsyncConnection[Any], q: RatesQuery) -> list[dict[str, Any]]:
    """One entry per day from date_to down to date_from.

    ``count`` is null on a day without prices; ``price`` (the average) is null when there
    are fewer than three.
    """
    orig = await resolve(conn, "orig_code", q.orig_code)
    dest = await resolve(conn, "dest_code", q.dest_code)
    cursor = await conn.execute(
        query("daily_rates"),
        {"date_from": q.date_from, "date_to": q.date_to, "orig": orig, "dest": dest},
    )
    return [
        {
            "count": count or None,
            "day": day.isoformat(),
            "price": float(average) if count >= MIN_PRICES_FOR_AVERAGE else None,
        }
        for day, count, average in await cursor.fetchall()
    ]
