"""``python -m bench.live``: how fast an event reaches an API replica, through KeyDB
pub/sub against PostgreSQL LISTEN/NOTIFY, the two ways the console's live feed could fan
out. Same payloads, same pace, one run; the figures chose the transport (docs/console.md).

Each of ``--count`` events (a JSON of about 300 bytes, as a balances event is) carries the
time it was sent; the listener notes when it arrived. Reported: p50/p99/max latency and
the sender's time per event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import psycopg
import redis.asyncio as redis

from bench.ingest import RESULTS, url_for
from ledgerflow.settings import load_settings

CHANNEL = "ledgerflow_bench_live"


def payload(n: int) -> str:
    balances = {f"{i}_Provider{i}": f"{1000 + i * 37}.25" for i in range(1, 12)}
    event = {"type": "balances", "n": n, "sent": time.perf_counter(), "balances": balances}
    return json.dumps(event)


def summary(latencies: list[float], send_seconds: float, count: int) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "events": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "send_us_per_event": round(send_seconds / count * 1e6, 1),
    }


async def through_keydb(url: str, count: int, rate: float) -> dict[str, Any]:
    sender, listener = redis.Redis.from_url(url), redis.Redis.from_url(url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(CHANNEL)
    await pubsub.get_message(timeout=1)  # the subscription's confirmation
    latencies: list[float] = []

    async def listen() -> None:
        while len(latencies) < count:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                latencies.append(time.perf_counter() - json.loads(message["data"])["sent"])

    listening = asyncio.create_task(listen())
    spent = 0.0
    for n in range(count):
        started = time.perf_counter()
        await sender.publish(CHANNEL, payload(n))
        spent += time.perf_counter() - started
        await asyncio.sleep(1 / rate)
    await asyncio.wait_for(listening, 10)
    await pubsub.aclose()
    await sender.aclose()
    await listener.aclose()
    return summary(latencies, spent, count)


async def through_postgresql(url: str, count: int, rate: float) -> dict[str, Any]:
    sender = await psycopg.AsyncConnection.connect(url, autocommit=True)
    listener = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await listener.execute(f"LISTEN {CHANNEL}")
    latencies: list[float] = []

    async def listen() -> None:
        async for notify in listener.notifies():
            latencies.append(time.perf_counter() - json.loads(notify.payload)["sent"])
            if len(latencies) >= count:
                return

    listening = asyncio.create_task(listen())
    spent = 0.0
    for n in range(count):
        started = time.perf_counter()
        await sender.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload(n)))
        spent += time.perf_counter() - started
        await asyncio.sleep(1 / rate)
    await asyncio.wait_for(listening, 10)
    await sender.close()
    await listener.close()
    return summary(latencies, spent, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=500.0, help="events a second")
    args = parser.parse_args()
    settings = load_settings()
    results: dict[str, Any] = {}
    for name, run, url in (
        ("keydb pub/sub", through_keydb, settings.redis_url),
        ("postgresql notify", through_postgresql, url_for("postgres")),
        ("keydb pub/sub again", through_keydb, settings.redis_url),
        ("postgresql notify again", through_postgresql, url_for("postgres")),
    ):
        results[name] = asyncio.run(run(url, args.count, args.rate))
        print(f"{name}: {results[name]}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"live-{time.strftime('%Y-%m-%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
