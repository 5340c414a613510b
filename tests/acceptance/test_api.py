"""`ledgerflow api` as a process: probes, metrics, JSON errors, graceful stop."""

import json
import signal
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from ..conftest import free_port
from .conftest import Process, can_restart, eventually, query, restart_postgresql, run_ledgerflow


def get(url: str) -> tuple[int, bytes]:
    """The status and body of a GET, or ``(0, b"")`` where no answer came (refused, timed out,
    closed)."""
    try:
        response = httpx2.get(url, timeout=5, follow_redirects=True)
    except httpx2.TransportError:
        return 0, b""
    return response.status_code, response.content


class Api:
    """Starts `ledgerflow api` processes on this test's database and one port."""

    def __init__(self, env: dict[str, str], port: int, spawn: Callable[..., Process]) -> None:
        self.env, self.spawn = env, spawn
        self.base = f"http://127.0.0.1:{port}"
        self._token: str | None = None

    @property
    def token(self) -> str:
        """A token with the scope prices:write, made as an operator would."""
        if self._token is None:
            made = run_ledgerflow(
                ["tokens", "create", "--scope", "prices:write", "--name", "acceptance"], self.env
            )
            assert made.returncode == 0, made.stderr
            self._token = made.stdout.strip()
        return self._token

    def start(self) -> Process:
        process = self.spawn(["api"], self.env)
        eventually(lambda: get(f"{self.base}/healthz")[0] == 200, 20, "the API to listen")
        return process


@pytest.fixture
def api(db_url: str, make_env: Callable[..., dict[str, str]], spawn: Callable[..., Process]) -> Api:
    port = free_port()
    return Api(make_env(db_url, http_port=str(port), http_host="127.0.0.1"), port, spawn)


def test_the_api_serves_probes_metrics_and_json_errors_and_stops_cleanly(
    api: Api,
) -> None:
    process = api.start()
    base = api.base
    status, body = get(f"{base}/readyz")
    assert status == 200
    assert json.loads(body)["checks"] == {"postgres": "ok", "keydb": "ok"}
    status, body = get(f"{base}/nowhere")
    assert status == 404 and json.loads(body) == {"error": "no route /nowhere"}
    status, body = get(f"{base}/metrics")
    text = body.decode()
    assert 'ledgerflow_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'ledgerflow_http_requests_total{method="GET",route="other",status="404"}' in text
    process.signal(signal.SIGTERM)
    assert process.wait(25) == 0, process.output()
    assert "http.access" in process.output()


def seed_one_lane(db_url: str) -> None:
    """Shanghai (asia) to Oslo (europe): three prices on 2021-01-02, none the day before."""
    query(db_url, "INSERT INTO regions VALUES ('asia', 'Asia', NULL), ('europe', 'Europe', NULL)")
    query(
        db_url,
        "INSERT INTO ports VALUES ('CNSHA', 'Shanghai', 'asia'), ('NOOSL', 'Oslo', 'europe')",
    )
    query(
        db_url,
        "INSERT INTO prices SELECT 'CNSHA', 'NOOSL', '2021-01-02', p FROM unnest(ARRAY[10, 20, 40]) p",
    )


def test_rates_over_http_with_json_errors_and_a_database_that_drops_its_sessions(
    db_url: str, api: Api
) -> None:
    seed_one_lane(db_url)
    process = api.start()
    base = api.base
    url = f"{base}/rates?date_from=2021-01-01&date_to=2021-01-02&orig_code=CNSHA&dest_code=europe"
    status, body = get(url)
    assert status == 200
    assert json.loads(body) == {
        "rates": [
            {"count": 3, "day": "2021-01-02", "price": 70 / 3},
            {"count": None, "day": "2021-01-01", "price": None},
        ]
    }
    status, body = get(
        f"{base}/rates?date_from=yesterday&date_to=2021-01-02&orig_code=A&dest_code=B"
    )
    assert status == 400
    assert json.loads(body) == {
        "error": "date_from: 'yesterday' is not a date as YYYY-MM-DD",
        "parameter": "date_from",
    }
    # The database ends every session (a restart, a failover): later requests still work.
    query(
        db_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'ledgerflow-api' AND datname = current_database()",
    )
    answers = [get(url)[0] for _ in range(5)]
    assert answers[-1] == 200 and set(answers) <= {200, 503}, answers
    process.signal(signal.SIGTERM)
    assert process.wait(25) == 0


def test_rates_are_answered_again_once_postgresql_has_restarted(db_url: str, api: Api) -> None:
    if reason := can_restart("postgresql"):
        pytest.skip(reason)
    seed_one_lane(db_url)
    api.env["LEDGERFLOW_RATES_CACHE_SIZE"] = "0"  # every answer from PostgreSQL
    process = api.start()
    url = (
        f"{api.base}/rates?date_from=2021-01-01&date_to=2021-01-02&orig_code=CNSHA&dest_code=NOOSL"
    )
    assert get(url)[0] == 200
    restart_postgresql()
    answers: list[tuple[int, bytes]] = []

    def answered() -> bool:
        answers.append(get(url))
        return answers[-1][0] == 200

    eventually(answered, 60, "the API to answer again")
    for status, body in answers[:-1]:  # while its pooled connections were dead
        assert status == 503 and "error" in json.loads(body), (status, body)
    process.signal(signal.SIGTERM)
    assert process.wait(25) == 0


def post(url: str, body: bytes, content_type: str, token: str) -> tuple[int, dict[str, Any]]:
    response = httpx2.post(
        url,
        content=body,
        headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"},
        timeout=30,
        follow_redirects=True,
    )
    return response.status_code, json.loads(response.content)


def test_price_batches_over_http_are_atomic_and_idempotent(db_url: str, api: Api) -> None:
    query(db_url, "INSERT INTO regions VALUES ('world', 'World', NULL)")
    query(
        db_url,
        "INSERT INTO ports VALUES ('CNGGZ', 'Guangzhou', 'world'), ('EETLL', 'Tallinn', 'world')",
    )
    process = api.start()
    base = api.base
    prices = [
        {"orig_code": "CNGGZ", "dest_code": "EETLL", "day": "2021-02-01", "price": 1200 + i}
        for i in range(3)
    ]
    body = json.dumps({"batch_id": "client-7", "prices": prices}).encode()
    status, answer = post(f"{base}/prices/batches", body, "application/json", api.token)
    assert status == 201 and answer["rows"] == 3 and answer["duplicate"] is False
    status, answer = post(f"{base}/prices/batches", body, "application/json", api.token)
    assert status == 200 and answer["rows"] == 3 and answer["duplicate"] is True
    broken = json.dumps(
        {"batch_id": "client-8", "prices": [*prices, {**prices[0], "price": -1}]}
    ).encode()
    status, answer = post(f"{base}/prices/batches", broken, "application/json", api.token)
    assert status == 422 and answer["problems"][0]["row"] == 4
    csv_body = b"orig_code,dest_code,day,price\nCNGGZ,EETLL,2021-02-02,999\n"
    status, answer = post(
        f"{base}/prices/batches?batch_id=client-9", csv_body, "text/csv", api.token
    )
    assert status == 201 and answer["rows"] == 1
    status, answer = post(f"{base}/prices/batches", b"{not json", "application/json", api.token)
    assert status == 422 and "not JSON" in answer["error"]
    assert query(db_url, "SELECT count(*) FROM prices") == [(4,)]
    process.signal(signal.SIGTERM)
    assert process.wait(25) == 0


def test_the_rates_cache_survives_a_restart_and_follows_committed_batches(
    db_url: str, api: Api
) -> None:
    seed_one_lane(db_url)
    base = api.base
    url = f"{base}/rates?date_from=2021-01-01&date_to=2021-01-02&orig_code=CNSHA&dest_code=europe"

    def lookups() -> dict[str, float]:
        text = get(f"{base}/metrics")[1].decode()
        return {
            result: float(line.rsplit(" ", 1)[1])
            for result in ("hit", "miss")
            for line in text.splitlines()
            if line.startswith(f'ledgerflow_rates_cache_lookups_total{{result="{result}"}}')
        }

    process = api.start()
    first = json.loads(get(url)[1])
    assert json.loads(get(url)[1]) == first
    assert lookups() == {"miss": 1.0, "hit": 1.0}
    process.signal(signal.SIGTERM)
    assert process.wait(25) == 0

    process = api.start()  # a new process finds the answer in KeyDB
    assert json.loads(get(url)[1]) == first
    assert lookups() == {"hit": 1.0}

    def batch(batch_id: str, orig: str, dest: str, day: str) -> None:
        rows = [{"orig_code": orig, "dest_code": dest, "day": day, "price": p} for p in (5, 6, 7)]
        body = json.dumps({"batch_id": batch_id, "prices": rows}).encode()
        assert post(f"{base}/prices/batches", body, "application/json", api.token)[0] == 201

    batch("elsewhere", "NOOSL", "CNSHA", "2021-01-01")  # another lane: the answer stands
    assert json.loads(get(url)[1]) == first
    assert lookups() == {"hit": 2.0}
    batch("this-lane", "CNSHA", "NOOSL", "2021-01-01")  # this lane and day: recomputed
    fresh = json.loads(get(url)[1])
    assert fresh["rates"][1] == {"count": 3, "day": "2021-01-01", "price": 6.0}
    assert lookups() == {"hit": 2.0, "miss": 1.0}
    process.signal(signal.SIGTERM)
    assert process.wait(25) == 0
