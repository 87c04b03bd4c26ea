"""The web console in a real browser (Debian's Chromium through playwright), against alertd
running as a process: sign-in, hostile alert text, closing a ticket, a cross-site form."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.api_client import AUTH, TOKEN
from tests.browser import launch, require_browser
from tests.daemon_process import Daemon

DATTO_SECRET = "datto-shared-secret-browser-1"
UID = "3c1e9a7b-2d4f-4b6a-8e0c-5f1a2b3c4d5e"
SCRIPT = "<script>window.__pwned = true; alert('xss')</script>"
IMG = "<img src=x onerror=\"window.__pwned = true; alert('img')\">"


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    require_browser()
    instance = Daemon(tmp_path, f'[api]\ntokens = ["{TOKEN}"]\n'
                                f'[datto]\nwebhook_secret = "{DATTO_SECRET}"\n')
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()
        instance.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await launch(playwright)
        try:
            yield chromium
        finally:
            await chromium.close()


async def hostile_webhook(daemon: Daemon) -> int:
    """A Datto webhook whose text holds markup and script; returns the ticket id."""
    body = {"alert_uid": UID, "alert_resolved": "false", "state": DATTO_SECRET,
            "alert_message": f"Disk full {SCRIPT}", "device_hostname": f"FS-01 {IMG}",
            "alert_priority": "High", "site_name": "Acme <b>Dental</b>"}
    async with aiohttp.ClientSession() as session, session.post(
            daemon.url("/api/notify/datto"), json=body) as response:
        assert response.status == 201, await response.text()
        return int((await response.json())["events"][0]["ticket_id"])


async def signed_in_page(browser: Any, daemon: Daemon) -> Any:
    page = await browser.new_page()
    page.dialogs = []
    page.console_errors = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error"
            else None)
    await page.goto(daemon.url("/"))
    await page.get_by_label("API token").fill(TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/ui/tickets")
    return page


async def api_get(daemon: Daemon, path: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(daemon.url(path),
                                                               headers=AUTH) as response:
        return await response.json()


async def test_sign_in_with_a_wrong_then_the_right_token(daemon: Daemon, browser: Any) -> None:
    page = await browser.new_page()
    await page.goto(daemon.url("/"))
    assert page.url.endswith("/ui/signin?next=%2Fui%2Ftickets")
    await page.get_by_label("API token").fill("not-the-token-0123")
    await page.get_by_role("button", name="Sign in").click()
    assert "/ui/signin" in page.url
    assert await page.get_by_role("alert").inner_text() == "That API token is not accepted."
    await page.get_by_label("API token").fill(TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/ui/tickets")
    assert await page.get_by_role("heading", name="Tickets").is_visible()
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["alertd_session"]["httpOnly"] and cookies["alertd_session"]["sameSite"] == \
        "Strict"
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/ui/signin")
    await page.goto(daemon.url("/ui/tickets"))
    assert "/ui/signin" in page.url


async def test_hostile_alert_text_shows_as_text_and_runs_nothing(daemon: Daemon,
                                                                 browser: Any) -> None:
    ticket_id = await hostile_webhook(daemon)
    page = await signed_in_page(browser, daemon)
    summary = await page.locator("td.summary").inner_text()
    assert IMG in summary and SCRIPT in summary  # the list shows the markup as text too
    await page.goto(daemon.url(f"/ui/tickets/{ticket_id}"))
    details = await page.locator("pre.details").inner_text()
    assert SCRIPT in details  # shown as the characters it is made of
    assert IMG in await page.locator("h1").inner_text()
    assert await page.evaluate("window.__pwned === undefined")
    assert await page.locator("img").count() == 0
    assert page.dialogs == []


async def test_closing_with_a_note_queues_the_resolve(daemon: Daemon, browser: Any) -> None:
    ticket_id = await hostile_webhook(daemon)
    page = await signed_in_page(browser, daemon)
    await page.goto(daemon.url(f"/ui/tickets/{ticket_id}"))
    close = page.get_by_role("form", name="Close the ticket")
    await close.get_by_label("Note").fill("Freed 20 GB on C:")
    await close.get_by_role("button", name="Close").click()
    await page.wait_for_load_state()
    assert await page.locator(".facts .state").inner_text() == "CLOSED"
    assert "Freed 20 GB on C:" in await page.locator(".note pre").inner_text()
    outbox = await api_get(daemon, "/api/outbox")
    [row] = outbox["items"]
    assert (row["action"], row["source"], row["target"], row["status"]) == (
        "resolve_alert", "datto", UID, "pending")
    assert "upstream resolve pending" in await page.locator("ol.timeline").inner_text()


async def test_a_maintenance_window_set_in_the_console_suppresses_alerts(
        daemon: Daemon, browser: Any) -> None:
    page = await signed_in_page(browser, daemon)
    await page.goto(daemon.url("/ui/maintenance"))
    form = page.get_by_role("form", name="Set a window")
    await form.get_by_label("Scope").select_option("all")
    await form.get_by_label("Duration (e.g. 90m, 4h, 2d)").fill("90m")
    await form.get_by_label("Reason").fill("Patch night")
    await form.get_by_role("button", name="Set window").click()
    await page.wait_for_load_state()
    row = page.locator("table.list tbody tr").first
    text = (await row.inner_text()).lower()
    assert "active" in text and "patch night" in text
    body = {"alert_uid": UID, "alert_resolved": "false", "state": DATTO_SECRET,
            "alert_message": "Disk full", "device_hostname": "FS-01"}
    async with aiohttp.ClientSession() as session, session.post(
            daemon.url("/api/notify/datto"), json=body) as response:
        answer = await response.json()
    assert answer["events"][0]["outcome"] == "suppressed"  # held back: no ticket
    assert (await api_get(daemon, "/api/tickets"))["items"] == []
    await page.reload()
    assert await row.locator("td").nth(5).inner_text() == "1"  # suppressed
    await row.get_by_role("button", name="End now").click()
    await page.wait_for_load_state()
    assert "ended" in (await page.locator("table.list tbody tr").first.inner_text()).lower()


async def test_a_cross_site_form_post_is_refused(daemon: Daemon, browser: Any,
                                                 aiohttp_server: Any) -> None:
    ticket_id = await hostile_webhook(daemon)
    page = await signed_in_page(browser, daemon)
    attacker = web.Application()

    async def lure(request: web.Request) -> web.Response:
        return web.Response(content_type="text/html", text=(
            f'<form method="post" action="{daemon.url(f"/ui/tickets/{ticket_id}/close")}">'
            '<input name="note" value="closed by a stranger"><input name="csrf" value="x">'
            '<button id="go">Win a prize</button></form>'))

    attacker.router.add_get("/", lure)
    server = await aiohttp_server(attacker)
    await page.goto(str(server.make_url("/")))
    await page.click("#go")
    await page.wait_for_load_state()
    assert "Refused" in await page.content()
    ticket = await api_get(daemon, f"/api/tickets/{ticket_id}")
    assert ticket["status"] == "open" and ticket["notes"] == []


async def test_the_rules_tester_names_the_rule_that_hits(daemon: Daemon, browser: Any) -> None:
    page = await signed_in_page(browser, daemon)
    await page.get_by_role("link", name="Rules").click()
    await page.get_by_label("Message").fill(
        "From: rmm@example-msp.com\nTo: alerts@example-msp.com\nSubject: Alert on device: "
        f"FS-01 - Alert{{{UID}}}\n\nDisk full\n")
    await page.get_by_role("button", name="Test").click()
    await page.wait_for_load_state()
    result = page.get_by_role("region", name="Result")
    hit = result.locator("table.trace tr.hit")
    assert await hit.locator("td").first.inner_text() == "Datto RMM Alerts"
    assert "raise" in await hit.locator("td").nth(1).inner_text()
    assert UID in await result.locator(".verdict").inner_text()


async def test_every_page_renders(daemon: Daemon, browser: Any) -> None:
    ticket_id = await hostile_webhook(daemon)
    page = await signed_in_page(browser, daemon)
    delivery_id = (await api_get(daemon, "/api/deliveries"))["items"][0]["id"]
    pages = [href for href in await page.locator("header.top nav a").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))")]
    assert len(pages) == 9
    for path in (*pages, f"/ui/tickets/{ticket_id}", "/ui/tickets?status=open",
                 f"/ui/deliveries/{delivery_id}", "/ui/browse/sites", "/ui/browse/assets",
                 "/ui/browse/end-users"):
        response = await page.goto(daemon.url(path))
        assert response.status == 200, path
        assert await page.locator("h1").count() == 1, path
        assert await page.evaluate(
            "getComputedStyle(document.querySelector('header.top')).display") == "flex", path
    assert page.console_errors == []  # e.g. a CSP violation would be reported here
    assert json.loads(json.dumps(page.dialogs)) == []
