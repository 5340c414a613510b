"""`ledgerflow api` as a process: probes, metrics, JSON errors, graceful stop."""

import json
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Callable

from .conftest import Process, eventually


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def test_the_api_serves_probes_metrics_and_json_errors_and_stops_cleanly(
    db_url: str, make_env: Callable[..., dict[str, str]], spawn: Callable[..., Process]
) -> None:
    port = free_port()
    api = spawn(["api"], make_env(db_url, http_port=str(port), http_host="127.0.0.1"))
    base = f"http://127.0.0.1:{port}"
    eventually(lambda: get(f"{base}/healthz")[0] == 200, 20, "the API to listen")
    status, body = get(f"{base}/readyz")
    assert status == 200
    assert json.loads(body)["checks"] == {"postgres": "ok", "keydb": "ok"}
    status, body = get(f"{base}/nowhere")
    assert status == 404 and json.loads(body) == {"error": "no route /nowhere"}
    status, body = get(f"{base}/metrics")
    text = body.decode()
    assert 'ledgerflow_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'ledgerflow_http_requests_total{method="GET",route="other",status="404"}' in text
    api.signal(signal.SIGTERM)
    assert api.wait(25) == 0, api.output()
    assert "http.access" in api.output()
