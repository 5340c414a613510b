"""A reimplementation of the original rates service's design, for comparison only.

Flask, one psycopg2 connection opened at start and shared by every request, the query
built from untyped date literals, served by gunicorn (``gunicorn -b :PORT
bench.original_rates:app``). Not part of ledgerflow.
"""

from __future__ import annotations

import os
from datetime import datetime

import psycopg2
from flask import Flask, jsonify, request

app = Flask(__name__)
db = psycopg2.connect(os.environ["ORIGINAL_RATES_DSN"])

QUERY = """
SELECT days.day::date AS day, NULLIF(count(p.price), 0) AS count,
       CASE WHEN count(p.price) >= 3 THEN avg(p.price) END AS price
FROM generate_series(%(date_to)s::timestamptz, %(date_from)s::timestamptz, '-1 day') AS days(day)
LEFT JOIN prices p ON p.day = days.day::date AND p.orig_code = %(orig)s AND p.dest_code = %(dest)s
GROUP BY days.day ORDER BY days.day DESC
"""


@app.route("/rates")
def rates():  # type: ignore[no-untyped-def]
    try:
        date_from = datetime.strptime(request.args["date_from"], "%Y-%m-%d").date()
        date_to = datetime.strptime(request.args["date_to"], "%Y-%m-%d").date()
    except (KeyError, ValueError):
        return "Invalid date arguments", 400
    orig, dest = request.args.get("orig_code"), request.args.get("dest_code")
    if not orig or not dest:
        return "Invalid location arguments", 400
    with db.cursor() as cursor:
        cursor.execute(
            QUERY,
            {"date_from": str(date_from), "date_to": str(date_to), "orig": orig, "dest": dest},
        )
        rows = cursor.fetchall()
    return jsonify(
        rates=[
            {"count": count, "day": day.isoformat(), "price": float(price) if price else None}
            for day, count, price in rows
        ]
    )
