"""``make bench`` (third part): /rates and price batches, against the original's design.

    python -m bench.rates [--scale 100] [--seconds 20] [--concurrency 8]

On a synthetic dataset ``--scale`` times the original dump (100: about 5.7 million
prices), each server answers 31-day ``/rates`` requests for random lanes from
``--concurrency`` keep-alive connections for ``--seconds``: ledgerflow's API (one
process, its cache off, so every answer is computed) and a reimplementation of the
original design (Flask, one psycopg2 connection, gunicorn's sync worker, the original
schema without ledgerflow's index). And a 50,000-row batch through ledgerflow (validation
and commit) against the same rows inserted one INSERT at a time in one transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from bench.ingest import RESULTS, admin, prepare_database
from ledgerflow.rates import dumps, synthetic


async def _one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, headers: str = ""
) -> tuple[int, bool]:
    """One request; its status, and whether the server keeps the connection open."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{headers}\r\n".encode())
    await writer.drain()
    return await _response(reader)


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; its status, and whether the server keeps the connection open."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    length, keep_alive = 0, True
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
        elif name.lower() == b"connection" and value.strip().lower() == b"close":
            keep_alive = False  # gunicorn's sync workers answer one request a connection
    await reader.readexactly(length)
    return int(status_line.split()[1]), keep_alive


async def load(
    port: int, paths: list[str], seconds: float, concurrency: int, headers: str = ""
) -> dict[str, float]:
    """Requests per second and latency percentiles over keep-alive connections."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        connection = None
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", port)
            status, keep_alive = await _one(*connection, rng.choice(paths), headers)
            latencies.append(time.perf_counter() - started)
            errors += status != 200
            if not keep_alive:
                connection[1].close()
                connection = None
        if connection is not None:
            connection[1].close()

    began = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "errors": errors,
        "rps": round(len(ordered) / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2),
    }


async def post_batches(
    port: int, lanes: list[tuple[str, str]], seconds: float, token: str, rows: int = 50_000
) -> dict[str, float]:
    """Large price batches back to back over HTTP for ``seconds``: how long each took."""
    rng = random.Random(11)
    took: list[float] = []
    deadline = time.perf_counter() + seconds
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while time.perf_counter() < deadline:
        prices = [
            {
                "orig_code": o,
                "dest_code": d,
                "day": f"2021-03-{1 + rng.randrange(28):02d}",
                "price": rng.randint(539, 5893),
            }
            for o, d in (rng.choice(lanes) for _ in range(rows))
        ]
        body = json.dumps({"batch_id": f"burst-{uuid.uuid4()}", "prices": prices}).encode()
        started = time.perf_counter()
        writer.write(
            b"POST /prices/batches HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        status, _ = await _response(reader)
        assert status == 201, status
        took.append(time.perf_counter() - started)
    writer.close()
    return {
        "batches": len(took),
        "rows_each": rows,
        "mean_s": round(statistics.mean(took), 3),
        "max_s": round(max(took), 3),
    }


async def mixed(
    port: int,
    paths: list[str],
    lanes: list[tuple[str, str]],
    seconds: float,
    concurrency: int,
    token: str,
) -> dict[str, Any]:
    """Readers and a stream of large batches at once: neither may starve the other."""
    readers, writers = await asyncio.gather(
        load(port, paths, seconds, concurrency), post_batches(port, lanes, seconds, token)
    )
    return {"readers": readers, "batches": writers}


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    import socket

    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"the server on {port} exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    database = f"ledgerflow_bench_{uuid.uuid4().hex[:8]}"
    url = prepare_database(database, ledgerflow=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        print(f"bench: generating and loading scale {args.scale:g}...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as directory:
            counts = synthetic.write_csv(synthetic.generate(args.scale, seed=7), Path(directory))
            names = ("regions", "ports", "prices")
            with psycopg.connect(url) as conn:
                dumps.load(conn, dumps.read(Path(directory) / f"{n}.csv" for n in names))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE prices")
            lanes = conn.execute(
                "SELECT DISTINCT orig_code, dest_code FROM prices LIMIT 5000"
            ).fetchall()
        paths = [
            f"/rates?date_from=2021-01-01&date_to=2021-01-31&orig_code={o}&dest_code={d}"
            for o, d in lanes
        ]
        results: dict[str, Any] = {"prices": counts["prices"], "concurrency": args.concurrency}
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
        token = make_token(url, env)
        servers = {
            "ledgerflow": (
                [sys.executable, "-m", "ledgerflow", "api"],
                {
                    **env,
                    "LEDGERFLOW_DATABASE_URL": url,
                    "LEDGERFLOW_RATES_CACHE_SIZE": "0",
                    "LEDGERFLOW_LOG_LEVEL": "warning",
                    "LEDGERFLOW_HTTP_HOST": "127.0.0.1",
                },
            ),
            "original design": (
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--log-level",
                    "warning",
                    "-b",
                    "127.0.0.1:{port}",
                    "bench.original_rates:app",
                ],
                {**env, "ORIGINAL_RATES_DSN": url},
            ),
        }
        for port, (name, (command, server_env)) in enumerate(servers.items(), start=3101):
            if name == "original design":
                # The original schema has no index on prices: its design ran without one.
                results["batch"] = batch_benchmark(url, lanes)
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("DROP INDEX prices_lane_day_idx")
            command = [part.replace("{port}", str(port)) for part in command]
            process = subprocess.Popen(
                command, env={**server_env, "LEDGERFLOW_HTTP_PORT": str(port)}
            )
            processes.append(process)
            wait_listening(port, process)
            asyncio.run(load(port, paths[:50], 2, args.concurrency))  # warm up
            print(f"bench: {name}: {args.seconds:g} s of /rates...", file=sys.stderr, flush=True)
            results[name] = asyncio.run(load(port, paths, args.seconds, args.concurrency))
            if name == "ledgerflow":
                results["authentication"] = authentication_cost(
                    paths, args.seconds, args.concurrency, server_env, token
                )
                print(
                    "bench: ledgerflow: /rates during batch bursts...", file=sys.stderr, flush=True
                )
                results["ledgerflow during batch bursts"] = asyncio.run(
                    mixed(port, paths, lanes, args.seconds, args.concurrency, token)
                )
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        results["rps_ratio"] = round(
            results["ledgerflow"]["rps"] / results["original design"]["rps"], 2
        )
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    print(json.dumps(results, indent=2))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"rates-{time.strftime('%Y-%m-%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {path}")
    return 0


BENCH_SCOPES = ["--scope", "read", "--scope", "prices:write", "--name", "bench"]


def make_token(url: str, env: dict[str, str]) -> str:
    """A token that may read and commit price batches, made with the CLI."""
    made = subprocess.run(
        [sys.executable, "-m", "ledgerflow", "tokens", "create", *BENCH_SCOPES],
        env={**env, "LEDGERFLOW_DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip()


def authentication_cost(
    paths: list[str], seconds: float, concurrency: int, env: dict[str, str], token: str
) -> dict[str, Any]:
    """/rates open (as the original) against /rates with LEDGERFLOW_RATES_REQUIRE_TOKEN
    and a token on every request: alternately, twice each, so that the spread between
    runs of the same setting shows beside the difference between settings."""
    port = 3103
    header = f"Authorization: Bearer {token}\r\n"
    runs: dict[str, list[dict[str, float]]] = {"open": [], "token required": []}
    for setting in ("open", "token required", "open", "token required"):
        required = setting == "token required"
        process = subprocess.Popen(
            [sys.executable, "-m", "ledgerflow", "api"],
            env={
                **env,
                "LEDGERFLOW_HTTP_PORT": str(port),
                "LEDGERFLOW_RATES_REQUIRE_TOKEN": "true" if required else "false",
            },
        )
        try:
            wait_listening(port, process)
            headers = header if required else ""
            asyncio.run(load(port, paths[:50], 2, concurrency, headers))  # warm up
            print(f"bench: /rates, {setting}...", file=sys.stderr, flush=True)
            runs[setting].append(asyncio.run(load(port, paths, seconds, concurrency, headers)))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    mean = {k: statistics.mean(r["rps"] for r in v) for k, v in runs.items()}
    spread = max(
        abs(v[0]["rps"] - v[1]["rps"]) / max(v[0]["rps"], v[1]["rps"]) for v in runs.values()
    )
    return {
        **runs,
        "rps_ratio_token_to_open": round(mean["token required"] / mean["open"], 3),
        "spread_between_runs_of_one_setting": round(spread, 3),
    }


def batch_benchmark(url: str, lanes: list[tuple[str, str]]) -> dict[str, float]:
    """A 50,000-row batch through ledgerflow against one INSERT per row in one transaction."""
    from ledgerflow.rates.price_batches import commit, from_json

    rng = random.Random(3)
    rows = [
        {
            "orig_code": o,
            "dest_code": d,
            "day": f"2021-02-{1 + rng.randrange(28):02d}",
            "price": rng.randint(539, 5893),
        }
        for o, d in (rng.choice(lanes) for _ in range(50_000))
    ]

    async def through_ledgerflow() -> tuple[float, float]:
        """Seconds for validation and commit together, and for validation alone."""
        document = {"batch_id": f"bench-50k-{uuid.uuid4()}", "prices": rows}
        conn = await psycopg.AsyncConnection.connect(url)
        async with conn:
            started = time.perf_counter()  # validation included
            batch = from_json(document)
            validated = time.perf_counter()
            await commit(conn, batch, "bench")
            return time.perf_counter() - started, validated - started

    ours, validation = asyncio.run(through_ledgerflow())
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        with conn.transaction():
            for row in rows:
                conn.execute(
                    "INSERT INTO prices (orig_code, dest_code, day, price) VALUES (%s, %s, %s, %s)",
                    (row["orig_code"], row["dest_code"], row["day"], row["price"]),
                )
        theirs = time.perf_counter() - started
    return {
        "rows": 50_000,
        "ledgerflow_seconds": round(ours, 3),
        "ledgerflow_validation_seconds": round(validation, 3),
        "row_by_row_seconds": round(theirs, 3),
        "ratio": round(theirs / ours, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
