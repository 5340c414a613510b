"""The console in a real Chromium (Debian's, driven by Playwright): signing in, a balance
arriving over the WebSocket after a boundary without a reload, copying a table as CSV and
reading the clipboard back, downloading a CSV, a page refused to a role, and lineage: a
rule added in the form filtering messages, the graph, the chart, a trace and the PDF.

Skipped, with the reason, where no Chromium is installed (`make test` installs Debian's
where it can: scripts/dev-env.sh browser)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from ..conftest import free_port
from .browser import PASSWORD, add_user, answers, browser, needs_chromium
from .conftest import Process, eventually, query

pytestmark = needs_chromium
__all__ = ["browser"]  # a fixture


def outward_address() -> str | None:
    """This machine's address on its network (not loopback), where plain HTTP is not a
    secure context for the browser; None if it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


@pytest.fixture
def stack(
    db_url: str,
    make_env: Callable[..., dict[str, str]],
    spawn: Callable[..., Process],
    publish: Callable[..., None],
) -> Iterator[dict[str, Any]]:
    """A worker publishing every 2 s and the API on all interfaces, with the brief's two
    providers, an operator and a viewer."""
    query(
        db_url,
        "INSERT INTO initial_data (provider_name, initial_value) VALUES ('Visa', 1000), ('Mastercard', 2000)",
    )
    port = free_port()
    env = make_env(db_url, http_port=str(port), http_host="0.0.0.0", publish_interval="2")
    add_user(env, "olga", "operator")
    add_user(env, "vic", "viewer")
    add_user(env, "ada", "admin")
    spawn(["worker"], env)
    spawn(["api"], env)
    base = f"http://127.0.0.1:{port}"
    eventually(lambda: answers(f"{base}/healthz"), 20, "the API to listen")
    yield {"base": base, "port": port, "publish": publish, "db_url": db_url}


def sign_in(page: Any, base: str, name: str) -> None:
    page.goto(f"{base}/")
    assert "/signin" in page.url  # not signed in: sent to the sign-in page
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_a_balance_arrives_live_and_tables_copy_and_download_as_csv(
    stack: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    base = stack["base"]
    context = browser.new_context(accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    sign_in(page, base, "olga")
    page.wait_for_selector('#live-status[data-state="open"]', timeout=15_000)
    published = page.locator('tr[data-id="1_Visa"] td[data-key="published"]')
    expect(published).to_have_text("1000", timeout=15_000)  # the first publication
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads

    stack["publish"](b'{"id": 1, "value": 600.25}')
    expect(published).to_have_text("1600.25", timeout=15_000)
    assert page.evaluate("window.loadedOnce") is True  # no reload: it came over /live

    page.click('button[data-copy="balances"]')
    page.wait_for_selector("text=Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    lines = copied.splitlines()
    assert lines[0] == "Provider,Published,Stored now,"
    assert "1_Visa,1600.25,1600.25," in lines
    assert any(line.startswith("2_Mastercard,2000,2000") for line in lines)

    with page.expect_download() as download:
        page.click("#balances a[download]")
    saved = tmp_path / "balances.csv"
    download.value.save_as(saved)
    assert saved.read_text().splitlines() == [
        "provider,published,stored,difference",
        "1_Visa,1600.25,1600.25,",
        "2_Mastercard,2000,2000,",
    ]
    context.close()


def test_copy_as_csv_works_over_plain_http_without_the_clipboard_api(
    stack: dict[str, Any], browser: Any
) -> None:
    address = outward_address()
    if address is None:
        pytest.skip("this machine has no address besides loopback to reach plain HTTP at")
    plain = f"http://{address}:{stack['port']}"
    context = browser.new_context()
    context.grant_permissions(["clipboard-read"], origin=stack["base"])
    page = context.new_page()
    sign_in(page, plain, "vic")
    assert page.evaluate("window.isSecureContext") is False
    page.click('button[data-copy="workers"]')
    page.wait_for_selector("text=Copied")
    reader = context.new_page()  # read it back where the clipboard API is allowed
    reader.goto(f"{stack['base']}/signin")
    copied = reader.evaluate("navigator.clipboard.readText()")
    assert copied.splitlines()[0].startswith("Instance,Role,Host")
    context.close()


def test_a_page_the_role_may_not_see_is_refused(stack: dict[str, Any], browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, stack["base"], "vic")
    assert page.locator('nav a[href="/audit"]').count() == 0  # not offered to a viewer
    response = page.goto(f"{stack['base']}/audit")
    assert response is not None and response.status == 403
    assert "this page is for the role admin" in page.content()
    context.close()


def test_a_rule_added_in_the_console_filters_and_the_lineage_page_shows_it(
    stack: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    base = stack["base"]
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    sign_in(page, base, "ada")
    page.goto(f"{base}/lineage/rules")
    page.fill("#rule-name", "big-values")
    page.fill("#rule-condition", "value > 900 &&")  # unfinished: refused, the field marked
    page.fill("#rule-technical", "over the desk limit")
    page.fill("#rule-functional", "reviewed by risk before booking")
    page.click('button[value="add"]')
    expect(page.locator("#problem")).to_contain_text("condition: syntax error")
    expect(page.locator("#rule-condition")).to_have_attribute("aria-invalid", "true")
    page.fill("#rule-condition", "value > 900")
    page.click('button[value="add"]')
    expect(page.locator('tr[data-rule="big-values"]')).to_contain_text("enabled")

    stack["publish"](b'{"id": 1, "value": 950}', message_id="big-1")
    stack["publish"](b'{"id": 2, "value": 5}', message_id="small-1")
    eventually(
        lambda: (
            query(stack["db_url"], "SELECT count(*) FROM ledgerflow.filtered_messages") == [(1,)]
        ),
        20,
        "the message to be filtered",
    )
    page.goto(f"{base}/lineage")
    expect(page.locator("#flow svg")).to_contain_text("big-values")  # the graph's branch
    expect(page.locator("#flow table")).to_contain_text("filtered: big-values v1")
    expect(page.locator("#filtering-chart canvas")).to_have_count(1)  # drawn by the script
    page.screenshot(path=str(tmp_path / "lineage.png"), full_page=True)

    page.goto(f"{base}/lineage/trace?key=big-1")
    expect(page.locator("section.trace")).to_contain_text("reviewed by risk before booking")
    page.goto(f"{base}/lineage")
    with page.expect_download() as download:
        page.click('a[href*="format=pdf"]')
    saved = tmp_path / "lineage.pdf"
    download.value.save_as(saved)
    assert saved.read_bytes().startswith(b"%PDF")
    context.close()
