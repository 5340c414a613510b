"""The HTTP API described: /openapi.json covers every route, and schemathesis, generating
requests from it against a real `ledgerflow api`, finds no server error and no answer
that contradicts the document."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from ..conftest import free_port
from .conftest import Process, eventually, query, run_ledgerflow

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


@pytest.fixture
def api_url(
    db_url: str, make_env: Callable[..., dict[str, str]], spawn: Callable[..., Process]
) -> tuple[str, str]:
    """A running `ledgerflow api` with a few prices, and a token that may read and write."""
    query(db_url, "INSERT INTO regions VALUES ('north', 'North', NULL)")
    query(db_url, "INSERT INTO ports VALUES ('AAAAA', 'A', 'north'), ('BBBBB', 'B', 'north')")
    query(db_url, "INSERT INTO prices VALUES ('AAAAA', 'BBBBB', '2021-01-01', 10)")
    port = free_port()
    env = make_env(db_url, http_port=str(port), http_host="127.0.0.1", log_level="warning")
    made = run_ledgerflow(
        ["tokens", "create", "--scope", "read", "--scope", "prices:write", "--name", "fuzz"], env
    )
    assert made.returncode == 0, made.stderr
    spawn(["api"], env)
    base = f"http://127.0.0.1:{port}"
    eventually(lambda: _answers(f"{base}/healthz"), 20, "the API to listen")
    return base, made.stdout.strip()


def _answers(url: str) -> bool:
    try:
        return httpx2.get(url, timeout=2).status_code == 200
    except httpx2.TransportError:
        return False


def test_the_document_is_openapi_3_1_and_covers_every_route(api_url: tuple[str, str]) -> None:
    base, _ = api_url
    document = httpx2.get(f"{base}/openapi.json", timeout=5).json()
    assert document["openapi"].startswith("3.1")
    documented = {
        (path, method.upper()) for path, ops in document["paths"].items() for method in ops
    }
    from ledgerflow.runtime.api import create_app
    from ledgerflow.settings import load_settings

    app = create_app(load_settings())
    while hasattr(app, "app"):
        app = app.app
    served = {
        (route.path, method)
        for route in app.routes
        if getattr(route, "methods", None) and route.path != "/openapi.json"
        for method in route.methods
        if method != "HEAD"
    }
    served |= {
        (path, method.upper()) for path, ops in app.openapi()["paths"].items() for method in ops
    }
    assert served <= documented
    assert {
        ("/rates", "GET"),
        ("/prices/batches", "POST"),
        ("/signin", "POST"),
        ("/docs", "GET"),
    } <= documented
    reference = httpx2.get(f"{base}/docs", timeout=5)
    assert reference.status_code == 200 and "/prices/batches" in reference.text


@pytest.mark.parametrize("credentials", ["token", "none"])
def test_schemathesis_finds_no_server_error_and_no_contradiction(
    api_url: tuple[str, str], credentials: str, tmp_path: Path
) -> None:
    base, token = api_url
    seed = random.SystemRandom().randrange(2**32)
    headers = ["-H", f"Authorization: Bearer {token}"] if credentials == "token" else []
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert schemathesis, "schemathesis is installed with the dev extra"
    result = subprocess.run(
        [
            schemathesis,
            "run",
            f"{base}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            "40",
            "--seed",
            str(seed),
            "--no-color",
            "--report",
            "json",
            "--report-json-path",
            str(tmp_path / "report.json"),
            *headers,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"seed {seed}:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    summary = json.loads((tmp_path / "report.json").read_text())
    assert summary, "schemathesis wrote its report"
