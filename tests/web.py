"""Signing in to the console from a test client, as a person does with the form."""

from __future__ import annotations

import re
from typing import Any

from starlette.testclient import TestClient

PASSWORD = "correct horse battery"


def csrf_of(page: str) -> str:
    """The CSRF token a page's form carries."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found
    return found[1]


def signed_in(app: Any, name: str, password: str = PASSWORD) -> TestClient:
    """A started client of ``app``, signed in as ``name`` (close it with ``__exit__``)."""
    client = TestClient(app)
    client.__enter__()
    form = client.get("/signin").text
    client.post("/signin", data={"name": name, "password": password, "csrf_token": csrf_of(form)})
    return client
