"""Who may do what over HTTP: tokens and scopes, sessions and CSRF, lockout, single sign-on
through a trusted proxy, body limits, security headers and the audit log. In process,
against the real PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from ledgerflow.auth import store
from ledgerflow.auth.model import Role
from ledgerflow.runtime.api import create_app
from ledgerflow.settings import load_settings
from ledgerflow.web.serving import behind_proxies

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
BATCH = {
    "batch_id": "b-1",
    "prices": [{"orig_code": "AAAAA", "dest_code": "BBBBB", "day": "2021-01-01", "price": 7}],
}
RATES = {
    "date_from": "2021-01-01",
    "date_to": "2021-01-02",
    "orig_code": "AAAAA",
    "dest_code": "BBBBB",
}


@pytest.fixture
async def people(conn: psycopg.AsyncConnection[Any]) -> psycopg.AsyncConnection[Any]:
    """An admin, an operator and a viewer, all with PASSWORD; two ports to price."""
    for name, role in (("ada", Role.ADMIN), ("olga", Role.OPERATOR), ("vic", Role.VIEWER)):
        await store.add_user(conn, name, role, PASSWORD)
    async with conn.transaction():
        await conn.execute("INSERT INTO regions VALUES ('world', 'World', NULL)")
        await conn.execute(
            "INSERT INTO ports VALUES ('AAAAA', 'A', 'world'), ('BBBBB', 'B', 'world')"
        )
    return conn


@pytest.fixture
def client_for(db_url: str, redis_url: str) -> Callable[..., TestClient]:
    """A client of the API app on this test's database, served as `ledgerflow api` serves it
    (the test client's address, "testclient", is a trusted proxy unless said otherwise)."""

    def make(trusted: tuple[str, ...] = ("testclient",), **overrides: Any) -> TestClient:
        settings = load_settings(database_url=db_url, rates_cache_url=redis_url, **overrides)
        return TestClient(behind_proxies(create_app(settings), trusted), follow_redirects=False)

    return make


@pytest.fixture
async def client(client_for: Callable[..., TestClient], people: Any) -> AsyncIterator[TestClient]:
    with client_for() as made:
        yield made


def sign_in(client: TestClient, name: str, password: str = PASSWORD) -> Any:
    """Fill in and send the sign-in form as a browser would."""
    form = client.get("/signin")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token, form.text
    return client.post(
        "/signin", data={"name": name, "password": password, "csrf_token": token[1], "next": "/"}
    )


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found[1]


async def audit(conn: psycopg.AsyncConnection[Any]) -> list[tuple[str, str, str | None]]:
    cursor = await conn.execute(
        "SELECT actor, action, target FROM ledgerflow.audit_log ORDER BY id"
    )
    rows = await cursor.fetchall()
    await conn.commit()
    return [(r[0], r[1], r[2]) for r in rows]


async def test_a_write_needs_credentials_and_its_scope(
    client: TestClient, people: psycopg.AsyncConnection[Any]
) -> None:
    reader = await store.create_token(people, "reader", ["read"], "test")
    writer = await store.create_token(people, "writer", ["prices:write"], "test")
    anonymous = client.post("/prices/batches", json=BATCH)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert "token" in anonymous.json()["error"]
    wrong_scope = client.post("/prices/batches", json=BATCH, headers=bearer(reader))
    assert wrong_scope.status_code == 403
    assert wrong_scope.json() == {"error": "the token of 'reader' does not allow prices:write"}
    assert (
        client.post("/prices/batches", json=BATCH, headers=bearer("lf_made_up")).status_code == 401
    )
    malformed = client.post("/prices/batches", json=BATCH, headers={"authorization": "Basic eDp5"})
    assert malformed.status_code == 401 and "Bearer" in malformed.json()["error"]
    committed = client.post("/prices/batches", json=BATCH, headers=bearer(writer))
    assert committed.status_code == 201
    assert ("token:writer", "prices.batch", "b-1") in await audit(people)


async def test_a_revoked_token_stops_working(
    client_for: Callable[..., TestClient], people: psycopg.AsyncConnection[Any]
) -> None:
    token = await store.create_token(people, "ci", ["prices:write"], "test")
    await store.revoke_token(people, "ci")
    with client_for() as client:  # a new process: nothing cached
        assert client.post("/prices/batches", json=BATCH, headers=bearer(token)).status_code == 401


async def test_tokens_and_passwords_are_stored_hashed(
    people: psycopg.AsyncConnection[Any],
) -> None:
    token = await store.create_token(people, "ci", ["read"], "test")
    cursor = await people.execute("SELECT password_hash FROM ledgerflow.users")
    hashes = [row[0] for row in await cursor.fetchall()]
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)
    cursor = await people.execute("SELECT token_sha256, prefix FROM ledgerflow.api_tokens")
    [(digest, prefix)] = await cursor.fetchall()
    assert bytes(digest) == store.digest(token) and token.startswith(prefix) and len(prefix) == 8


async def test_rates_stay_open_unless_a_token_is_required(
    client_for: Callable[..., TestClient], people: psycopg.AsyncConnection[Any]
) -> None:
    reader = await store.create_token(people, "reader", ["read"], "test")
    writer = await store.create_token(people, "writer", ["prices:write"], "test")
    with client_for() as client:
        assert client.get("/rates", params=RATES).status_code == 200
    with client_for(rates_require_token=True) as client:
        assert client.get("/rates", params=RATES).status_code == 401
        assert client.get("/rates", params=RATES, headers=bearer(writer)).status_code == 403
        assert client.get("/rates", params=RATES, headers=bearer(reader)).status_code == 200


async def test_signing_in_and_out_with_a_session_cookie(
    client: TestClient, people: psycopg.AsyncConnection[Any]
) -> None:
    assert client.get("/").status_code == 303  # to /signin
    assert client.get("/").headers["location"] == "/signin?next=/"
    signed_in = sign_in(client, "vic")
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
    cookie = signed_in.headers["set-cookie"]
    assert "ledgerflow_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over TLS it is Secure
    overview = client.get("/")
    assert overview.status_code == 200 and "vic" in overview.text
    refused = client.post("/signout", data={"csrf_token": "forged"})
    assert refused.status_code == 403  # no sign-out from another site's form
    signed_out = client.post("/signout", data={"csrf_token": csrf_of(overview.text)})
    assert signed_out.status_code == 303
    assert client.get("/").status_code == 303  # the session is over
    assert [(a, b) for a, b, _ in await audit(people)] == [
        ("vic", "sign_in"),
        ("vic", "sign_out"),
    ]


async def test_a_change_made_with_a_session_needs_its_csrf_token(
    client: TestClient, people: psycopg.AsyncConnection[Any]
) -> None:
    sign_in(client, "olga")
    page = client.get("/")
    forged = client.post("/prices/batches", json=BATCH)
    assert forged.status_code == 403 and "CSRF" in forged.json()["error"]
    sent = client.post("/prices/batches", json=BATCH, headers={"x-csrf-token": csrf_of(page.text)})
    assert sent.status_code == 201
    assert ("olga", "prices.batch", "b-1") in await audit(people)


async def test_a_viewer_may_not_write_and_an_operator_may(
    client: TestClient, people: psycopg.AsyncConnection[Any]
) -> None:
    sign_in(client, "vic")
    token = csrf_of(client.get("/").text)
    refused = client.post("/prices/batches", json=BATCH, headers={"x-csrf-token": token})
    assert refused.status_code == 403
    assert refused.json() == {"error": "the role viewer of 'vic' does not allow prices:write"}


async def test_repeated_failures_lock_the_user(
    client: TestClient, people: psycopg.AsyncConnection[Any]
) -> None:
    for _ in range(5):
        failed = sign_in(client, "ada", "wrong password!")
        assert failed.status_code == 401
    assert "ledgerflow_session" not in failed.headers.get("set-cookie", "")
    locked = sign_in(client, "ada")  # the right password, too late
    assert locked.status_code == 401 and "too many failed sign-ins" in locked.text
    assert 'aria-invalid="true"' in locked.text  # the form says which fields
    actions = [b for _, b, _ in await audit(people)]
    assert actions == ["sign_in_failed"] * 6
    cursor = await people.execute(
        "SELECT failed_sign_ins, locked_until > now() FROM ledgerflow.users WHERE name = 'ada'"
    )
    assert await cursor.fetchone() == (5, True)


async def test_an_unknown_name_fails_like_a_wrong_password(client: TestClient) -> None:
    unknown = sign_in(client, "mallory")
    wrong = sign_in(client, "ada", "not the password")
    assert unknown.status_code == wrong.status_code == 401
    assert "wrong name or password" in unknown.text and "wrong name or password" in wrong.text


async def test_the_sign_in_form_needs_its_own_csrf_token(client: TestClient) -> None:
    response = client.post("/signin", data={"name": "ada", "password": PASSWORD, "csrf_token": "x"})
    assert response.status_code == 400 and "ledgerflow_session" not in str(response.headers)


async def test_a_trusted_proxy_signs_people_in_by_header(
    client_for: Callable[..., TestClient], people: Any
) -> None:
    header = {"x-remote-user": "ada"}
    with client_for(trusted_auth_header="X-Remote-User") as client:
        page = client.get("/", headers=header)
        assert page.status_code == 200 and "ada" in page.text
        stranger = client.get("/", headers={"x-remote-user": "nobody"})
        assert stranger.status_code == 303  # no such user: not signed in
    with client_for(trusted=(), trusted_auth_header="X-Remote-User") as client:
        assert client.get("/", headers=header).status_code == 303  # not from a trusted proxy
    with client_for() as client:  # the setting is off: the header means nothing
        assert client.get("/", headers=header).status_code == 303


async def test_bodies_over_the_limit_are_refused_unread(
    client_for: Callable[..., TestClient], people: psycopg.AsyncConnection[Any]
) -> None:
    token = await store.create_token(people, "writer", ["prices:write"], "test")
    big = json.dumps({**BATCH, "pad": "x" * 5000}).encode()
    with client_for(max_request_bytes=4096) as client:
        declared = client.post("/prices/batches", content=big, headers=bearer(token))
        assert declared.status_code == 413 and "4096 bytes" in declared.json()["error"]

        def chunks() -> Any:  # no Content-Length: counted as it arrives
            for start in range(0, len(big), 1000):
                yield big[start : start + 1000]

        streamed = client.post("/prices/batches", content=chunks(), headers=bearer(token))
        assert streamed.status_code == 413
        small = client.post("/prices/batches", json=BATCH, headers=bearer(token))
        assert small.status_code == 201


async def test_pages_and_answers_carry_the_security_headers(client: TestClient) -> None:
    for response in (client.get("/signin"), client.get("/rates", params=RATES)):
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_page_refuses_a_role_it_is_not_for(client: TestClient) -> None:
    sign_in(client, "vic")
    refused = client.get("/audit")
    assert refused.status_code == 403
    assert "admin" in refused.text and "viewer" in refused.text
    client.cookies.clear()
    sign_in(client, "ada")
    allowed = client.get("/audit")
    assert allowed.status_code == 200 and "sign_in" in allowed.text


async def test_errors_are_json(client: TestClient) -> None:
    assert client.get("/nowhere").json() == {"error": "no route /nowhere"}
    missing = client.get("/rates", params={"date_from": "2021-01-01"})
    assert missing.status_code == 400 and missing.json()["parameter"] == "date_to"
    assert client.delete("/rates").status_code == 405


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_a_change_through_the_proxy_needs_the_csrf_cookies_token(
    client_for: Callable[..., TestClient], people: psycopg.AsyncConnection[Any]
) -> None:
    """The proxy signs in every request, a forged cross-site one too: a change must carry
    the token of the CSRF cookie, which only the console's own pages can read."""
    header = {"x-remote-user": "olga"}
    with client_for(trusted_auth_header="X-Remote-User") as client:
        page = client.get("/", headers=header)
        assert page.status_code == 200
        token = client.cookies["ledgerflow_csrf"]
        assert csrf_of(page.text) == token  # the page's forms carry it
        forged = client.post("/prices/batches", json=BATCH, headers=header)
        assert forged.status_code == 403 and "CSRF" in forged.json()["error"]
        mine = client.post("/prices/batches", json=BATCH, headers={**header, "x-csrf-token": token})
        assert mine.status_code == 201
    assert ("olga", "prices.batch", "b-1") in await audit(people)


async def test_a_csrf_token_of_any_characters_is_refused_not_a_crash(client: TestClient) -> None:
    sign_in(client, "olga")
    odd = client.post(
        "/prices/batches", json=BATCH, headers={b"x-csrf-token": ("é" * 43).encode("latin-1")}
    )
    assert odd.status_code == 403
    form = client.post("/signin", data={"name": "olga", "password": PASSWORD, "csrf_token": "ü"})
    assert form.status_code == 400


async def test_a_nul_in_the_sign_in_form_or_a_batch_is_refused_not_a_crash(
    client: TestClient, people: psycopg.AsyncConnection[Any]
) -> None:
    form = client.get("/signin")
    refused = client.post(
        "/signin", data={"name": "ada\x00", "password": PASSWORD, "csrf_token": csrf_of(form.text)}
    )
    assert refused.status_code == 401
    writer = await store.create_token(people, "writer", ["prices:write"], "test")
    bad = {**BATCH, "prices": [{**BATCH["prices"][0], "orig_code": "AA\x00"}]}  # type: ignore[dict-item]
    answer = client.post("/prices/batches", json=bad, headers=bearer(writer))
    assert answer.status_code == 422
    assert "NUL" in json.dumps(answer.json())
