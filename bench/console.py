"""``make bench`` (fourth part): the console at the 10-million scale, and the live feed.

    python -m bench.console [--rows 10000000] [--clients 100] [--boundaries 20]

On a database holding ``--rows`` stored transactions (and, in proportion, committed
batches and rejected messages), a real ``ledgerflow worker`` publishes every second and a
real ``ledgerflow api`` serves the console. Measured:

- push latency: ``--clients`` WebSocket clients subscribed to balances; for each
  publication, the time from the moment KeyDB acknowledged the balances (the boundary
  plus the publication's lag) to each client's receipt;
- page times: each console page requested repeatedly by a signed-in person, server and
  network included (the user's rule: under 2 s; the aim: under 200 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime
from typing import Any

import httpx2
import psycopg
import websockets

from bench.ingest import RESULTS, admin, cleanup, worker_env
from bench.lag import fresh_database

PASSWORD = "bench password, long enough"


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "samples": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def fill_history(url: str, rows: int) -> None:
    """Batches and rejected messages in the proportion a busy ledger has them: one batch
    row a 500 messages, one rejected message in twenty."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ledgerflow.batches (queue, leader_term, instance, message_count,"
            " stored_count, rejected_count, duplicate_count, committed_at)"
            " SELECT 'history', 1, 'bench', 500, 475, 25, 0,"
            " now() - make_interval(secs => g) FROM generate_series(1, %s) AS g",
            (rows // 500,),
        )
        conn.execute(
            "INSERT INTO ledgerflow.rejected_messages"
            " (queue, message_id, reason, detail, body, properties, received_at)"
            " SELECT 'history', NULL,"
            " (ARRAY['invalid_json','unknown_provider','value_out_of_range'])[1 + g %% 3],"
            " 'detail', convert_to('{\"id\": 9, \"value\": ' || g || '}', 'UTF8'), '{}',"
            " now() - make_interval(secs => g) FROM generate_series(1, %s) AS g",
            (rows // 20,),
        )
        conn.execute("VACUUM ANALYZE ledgerflow.batches")
        conn.execute("VACUUM ANALYZE ledgerflow.rejected_messages")


def ledgerflow(args: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ledgerflow", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


async def push_latency(port: int, token: str, clients: int, boundaries: int) -> dict[str, Any]:
    """Every client's delay from a publication to its receipt, once all the clients are
    connected and have their first snapshot (a hundred snapshots at once are a start-up
    cost, not the feed's)."""
    delays: list[float] = []
    ready = 0
    all_ready = asyncio.Event()

    async def client() -> None:
        nonlocal ready
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/live",
            additional_headers={"Authorization": f"Bearer {token}"},
            max_size=None,
        ) as socket:
            await socket.send(json.dumps({"subscribe": ["balances"]}))
            seen = 0
            while seen < boundaries:
                event = json.loads(await socket.recv())
                if event["type"] == "snapshot" and not all_ready.is_set():
                    ready += 1
                    if ready == clients:
                        all_ready.set()
                if event["type"] != "balances" or not all_ready.is_set():
                    continue
                received = time.time()
                published = datetime.fromisoformat(event["boundary"]).timestamp()
                delays.append(received - published - event["lag_ms"] / 1000)
                seen += 1

    await asyncio.wait_for(
        asyncio.gather(*(client() for _ in range(clients))), timeout=boundaries * 3 + 60
    )
    return {"clients": clients, **percentiles(delays)}


def page_times(base: str, repeats: int) -> dict[str, Any]:
    """Each page's time, signed in as an administrator."""
    with httpx2.Client(base_url=base, timeout=30) as client:
        form = client.get("/signin").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token, form
        client.post("/signin", data={"name": "admin", "password": PASSWORD, "csrf_token": token[1]})
        pages = {
            "overview": "/",
            "rejected": "/rejected",
            "rejected, one reason": "/rejected?reason=value_out_of_range",
            "rejected, page 100": None,  # filled below: a page deep into the history
            "audit log": "/audit",
            "balances as CSV": "/?table=balances&format=csv",
        }
        deep = client.get("/rejected?limit=1000")
        ids = [int(n) for n in re.findall(r'<td class="number">(\d+)</td>', deep.text)]
        pages["rejected, page 100"] = (
            f"/rejected?before={ids[-1] - 99 * 50}" if ids else "/rejected"
        )
        results = {}
        for name, path in pages.items():
            assert path is not None
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                response = client.get(path)
                times.append(time.perf_counter() - started)
                assert response.status_code == 200, (path, response.status_code)
            results[name] = {"path": path, **percentiles(times)}
        return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--boundaries", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    print(f"bench: a ledger of {args.rows:,} transactions...", file=sys.stderr, flush=True)
    database, url = fresh_database(args.rows)
    queue = f"ledgerflow_bench_{uuid.uuid4().hex[:8]}"
    processes: list[subprocess.Popen[bytes]] = []
    results: dict[str, Any] = {"rows": args.rows}
    try:
        fill_history(url, args.rows)
        env = worker_env(url, queue, interval=1)
        port = 3111
        env.update(LEDGERFLOW_HTTP_PORT=str(port), LEDGERFLOW_HTTP_HOST="127.0.0.1")
        ledgerflow(["users", "add", "admin", "--role", "admin"], env, PASSWORD + "\n")
        token = ledgerflow(["tokens", "create", "--scope", "read", "--name", "bench"], env)
        processes.append(subprocess.Popen([sys.executable, "-m", "ledgerflow", "worker"], env=env))
        processes.append(subprocess.Popen([sys.executable, "-m", "ledgerflow", "api"], env=env))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.2)
        print("bench: page times...", file=sys.stderr, flush=True)
        results["pages"] = page_times(base, args.repeats)
        print(
            f"bench: push latency to {args.clients} WebSocket clients...",
            file=sys.stderr,
            flush=True,
        )
        results["push"] = asyncio.run(push_latency(port, token, args.clients, args.boundaries))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        cleanup(database, queue)
        admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    print(json.dumps(results, indent=2))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"console-{time.strftime('%Y-%m-%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
