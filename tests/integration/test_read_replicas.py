"""Reads on a real PostgreSQL streaming replica (LEDGERFLOW_DATABASE_READ_URLS): a primary
and a standby made for this module with initdb and pg_basebackup on ports of their own,
the API in process. ``/rates`` and the console read from the standby while it keeps up;
they go on from the primary when it lags (replay paused) or is gone (stopped)."""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from starlette.testclient import TestClient

from ledgerflow.db import connections, migrate
from ledgerflow.runtime.api import create_app
from ledgerflow.settings import load_settings

from ..conftest import free_port

pytestmark = pytest.mark.integration

ASKED = {
    "date_from": "2021-01-01",
    "date_to": "2021-01-01",
    "orig_code": "AAAAA",
    "dest_code": "BBBBB",
}


def server_binaries() -> Path | None:
    """PostgreSQL's server programs (initdb, pg_ctl, pg_basebackup), newest first."""
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(found, "initdb").exists():
            return Path(found)
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


@dataclass
class Pair:
    """A primary and its streaming standby."""

    run: Callable[..., None]
    base: Path
    primary: str
    standby: str

    def stop_standby(self) -> None:
        self.run("pg_ctl", "-D", str(self.base / "standby"), "-m", "immediate", "-w", "stop")


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("needs PostgreSQL's server programs (initdb, pg_ctl, pg_basebackup)")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, it needs the user postgres to run PostgreSQL as")
        as_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="ledgerflow-replica-"))
    if as_user:
        shutil.chown(base, "postgres")

    def run(program: str, *args: str) -> None:
        subprocess.run(
            [*as_user, str(binaries / program), *args], check=True, capture_output=True, timeout=120
        )

    primary_port, standby_port = free_port(), free_port()
    user = "root" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    options = f"-c listen_addresses=127.0.0.1 -k {base} -c fsync=off"
    try:
        run("initdb", "-D", str(base / "primary"), "-U", user, "--auth=trust", "--no-sync")
        run(
            "pg_ctl", "-D", str(base / "primary"), "-l", str(base / "primary.log"), "-w",
            "-o", f"-p {primary_port} {options}", "start",
        )  # fmt: skip
        run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary_port), "-U", user,
            "-D", str(base / "standby"), "-R", "-X", "stream",
        )  # fmt: skip
        run(
            "pg_ctl", "-D", str(base / "standby"), "-l", str(base / "standby.log"), "-w",
            "-o", f"-p {standby_port} {options}", "start",
        )  # fmt: skip
        yield Pair(
            run,
            base,
            f"postgresql://{user}@127.0.0.1:{primary_port}/postgres",
            f"postgresql://{user}@127.0.0.1:{standby_port}/postgres",
        )
    finally:
        for cluster in ("standby", "primary"):
            if (base / cluster / "postmaster.pid").exists():
                subprocess.run(
                    [*as_user, str(binaries / "pg_ctl"), "-D", str(base / cluster), "-m",
                     "immediate", "stop"],
                    capture_output=True, check=False,
                )  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


async def seed(url: str, price: int) -> None:
    conn = await connections.connect(url, autocommit=True)
    async with conn:
        await migrate.migrate(conn, ["rates"])
        await conn.execute(
            "INSERT INTO regions VALUES ('world', 'World', NULL) ON CONFLICT DO NOTHING"
        )
        await conn.execute(
            "INSERT INTO ports VALUES ('AAAAA', 'A', 'world'), ('BBBBB', 'B', 'world')"
            " ON CONFLICT DO NOTHING"
        )
        await conn.execute("DELETE FROM prices")
        await conn.execute(
            "INSERT INTO prices (orig_code, dest_code, day, price)"
            " SELECT 'AAAAA', 'BBBBB', '2021-01-01', %s FROM generate_series(1, 3)",
            (price,),
        )


def readers(url: str) -> int:
    """Connections of the API's read pools open on the server at ``url``."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ledgerflow-api-read'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def metric(client: TestClient, name: str, label: str) -> float:
    """A sample of the API's metrics: ``name`` with ``label`` among its labels, 0 if none."""
    text = client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith(name + "{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def average(client: TestClient) -> Decimal:
    answer = client.get("/rates", params=ASKED)
    assert answer.status_code == 200, answer.text
    return Decimal(str(answer.json()["rates"][0]["price"]))


def eventually(check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.2)


def test_with_the_rates_cache_on_its_misses_are_read_from_the_primary(
    pair: Pair, redis_url: str
) -> None:
    """The cache keeps an answer until its lane changes: one read from a lagging replica
    would stay stale, so with the cache on a miss of /rates reads the primary."""
    asyncio.run(seed(pair.primary, 100))
    settings = load_settings(
        database_url=pair.primary,
        database_read_urls=pair.standby,
        rates_cache_url=redis_url,
    )
    with TestClient(create_app(settings)) as client:
        eventually(lambda: metric(client, "ledgerflow_read_replica_in_rotation", "") == 1, 10)
        with psycopg.connect(pair.standby, autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
            try:
                asyncio.run(seed(pair.primary, 200))  # on the primary only
                asked = {**ASKED, "date_to": "2021-01-02"}  # not in the cache: a miss
                answer = client.get("/rates", params=asked)
                assert answer.status_code == 200, answer.text
                day = {r["day"]: r["price"] for r in answer.json()["rates"]}["2021-01-01"]
                assert Decimal(str(day)) == 200  # the paused standby still has 100
            finally:
                conn.execute("SELECT pg_wal_replay_resume()")


def test_reads_go_to_the_standby_and_go_on_when_it_lags_or_is_gone(pair: Pair) -> None:
    asyncio.run(seed(pair.primary, 100))
    settings = load_settings(
        database_url=pair.primary,
        database_read_urls=pair.standby,
        read_replica_max_lag=1.0,
        rates_cache_size=0,
    )
    port = pair.standby.rsplit(":", 1)[1].split("/")[0]
    standby = f"127.0.0.1:{port}"

    def reads(target: str) -> float:
        return metric(client, "ledgerflow_reads_total", f'target="{target}')

    def in_rotation() -> float:
        return metric(client, "ledgerflow_read_replica_in_rotation", standby)

    with TestClient(create_app(settings)) as client:
        eventually(lambda: average(client) == 100, 10)  # replayed, in rotation
        before = reads("primary")
        for _ in range(4):
            assert average(client) == 100
        assert reads("primary") == before  # none of the four from the primary
        assert reads(f"postgresql://{pair.standby.split('//')[1].split('@')[0]}@{standby}") >= 4
        assert readers(pair.standby) >= 1  # the pool's connections, seen on the standby

        # Replay paused: a new price is on the primary only; the standby falls behind and
        # is taken out, and reads see the new price, from the primary.
        with psycopg.connect(pair.standby, autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
            asyncio.run(seed(pair.primary, 200))
            eventually(lambda: average(client) == 200, 10)
            assert in_rotation() == 0
            conn.execute("SELECT pg_wal_replay_resume()")

        # Caught up again: back in rotation, reads from it again.
        eventually(lambda: in_rotation() == 1, 10)
        before = reads("primary")
        assert average(client) == 200
        assert reads("primary") == before

        # Gone: every read still answers, from the primary, and it is out.
        pair.stop_standby()
        for _ in range(5):
            assert average(client) == 200
        assert reads("primary") >= before + 4
        eventually(lambda: in_rotation() == 0, 10)
