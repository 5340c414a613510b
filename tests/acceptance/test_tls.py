"""`ledgerflow api` over HTTPS, with a certificate and key given by configuration."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from ..conftest import free_port
from .conftest import Process, eventually, run_ledgerflow

pytestmark = pytest.mark.skipif(
    not shutil.which("openssl"), reason="no openssl to make a certificate"
)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_the_api_speaks_https_and_its_cookies_are_secure(
    db_url: str,
    make_env: Callable[..., dict[str, str]],
    spawn: Callable[..., Process],
    tmp_path: Path,
) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    env = make_env(
        db_url,
        http_port=str(port),
        http_host="127.0.0.1",
        tls_certfile=str(cert),
        tls_keyfile=str(key),
    )
    spawn(["api"], env)
    verify = ssl.create_default_context(cafile=str(cert))
    base = f"https://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx2.get(f"{base}/healthz", verify=verify, timeout=2).status_code == 200
        except httpx2.TransportError:
            return False

    eventually(answers, 20, "the API to listen over HTTPS")
    signin = httpx2.get(f"{base}/signin", verify=verify, timeout=5)
    assert signin.status_code == 200
    assert signin.headers["strict-transport-security"].startswith("max-age=")
    assert all("Secure" in cookie for cookie in signin.headers.get_list("set-cookie"))
    with pytest.raises(httpx2.TransportError):  # HTTPS only: plain HTTP is not answered
        httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_half_a_tls_configuration_is_refused_naming_the_variable(
    db_url: str, make_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    cert, _ = self_signed(tmp_path)
    env = make_env(db_url, tls_certfile=str(cert))
    refused = run_ledgerflow(["api"], env)
    assert refused.returncode == 1
    assert "LEDGERFLOW_TLS_CERTFILE needs LEDGERFLOW_TLS_KEYFILE too" in refused.stderr
