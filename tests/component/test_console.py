"""The web console's safety and its ticket flows, through aiohttp's test client (the browser
tests in tests/system/test_console_browser.py drive the same pages in Chromium)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from daemon.config import Config
from daemon.console.state import CONSOLE
from daemon.http.app import create_app
from daemon.service.wiring import ROUTES, Services, build_services
from daemon.store.database import Database
from daemon.store.models import ConsoleSession, Customer, Delivery, OutboxAction, Ticket
from daemon.store.queries import Page
from daemon.tickets.statements import MAX_NOTE_CHARS
from tests.api_client import AUTH, TOKEN

UID = "7d1f3c2a-9b4e-4e1a-8c55-0a1b2c3d4e5f"
HOSTILE = {"summary": "<b>bold</b> <img src=x onerror=alert(1)>",
           "details": "line 1\n<script>alert('xss')</script>\nline 3"}


class Console:
    def __init__(self, client: TestClient, services: Services):
        self.client = client
        self.services = services

    async def signin(self, token: str = TOKEN) -> Any:
        page = await self.client.get("/ui/signin")
        nonce = _hidden(await page.text(), "nonce")
        return await self.client.post("/ui/signin", data={"token": token, "nonce": nonce},
                                      allow_redirects=False)

    async def csrf(self, path: str = "/ui/tickets") -> str:
        return _hidden(await (await self.client.get(path)).text(), "csrf")


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert match, f"no hidden {name} field"
    return match.group(1)


@pytest.fixture
async def console(aiohttp_client: Callable[..., Any], make_config: Callable[..., Config],
                  db: Database, db_url: str) -> Console:
    config = make_config(f'[api]\ntokens = ["{TOKEN}"]\n', db_url=db_url)
    services = build_services(config, db)
    return Console(await aiohttp_client(create_app(services.http, ROUTES)), services)


async def raise_ticket(console: Console, **ticket: str) -> int:
    response = await console.client.post("/api/alerts", headers=AUTH, json={
        "source": "datto", "uid": UID, "action": "raise", "device": "WEB-01",
        "message": "CPU 99%", "ticket": ticket or HOSTILE})
    assert response.status == 201
    return int((await response.json())["events"][0]["ticket_id"])


async def ticket_status(console: Console, ticket_id: int) -> str:
    return str(await console.services.db.read(
        lambda s: s.scalar(select(Ticket.status).where(Ticket.id == ticket_id))))


# --- sign-in -------------------------------------------------------------------------------

async def test_a_visitor_is_sent_to_sign_in(console: Console) -> None:
    home = await console.client.get("/", allow_redirects=False)
    assert (home.status, home.headers["Location"]) == (303, "/ui/tickets")
    page = await console.client.get("/ui/tickets?status=open", allow_redirects=False)
    assert page.status == 303
    assert page.headers["Location"] == "/ui/signin?next=%2Fui%2Ftickets%3Fstatus%3Dopen"
    signin = await console.client.get(page.headers["Location"])
    html = await signin.text()
    assert '<label for="token">API token</label>' in html and ">Sign in</button>" in html


async def test_a_wrong_token_stays_on_the_page_and_opens_nothing(console: Console) -> None:
    response = await console.signin("not-the-token-at-all")
    assert response.status == 401
    assert "That API token is not accepted." in await response.text()
    assert "alertd_session" not in response.cookies
    assert await console.services.db.read(lambda s: s.scalars(select(ConsoleSession)).all()) == []


async def test_the_session_cookie_is_strict_and_holds_no_token(console: Console) -> None:
    response = await console.signin()
    assert (response.status, response.headers["Location"]) == (303, "/ui/tickets")
    header = next(v for v in response.headers.getall("Set-Cookie")
                  if v.startswith("alertd_session="))
    cookie = SimpleCookie(header)["alertd_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/ui"
    assert not cookie["secure"]  # public_url is http here; https is tested below
    assert TOKEN not in header and cookie.value != TOKEN
    [row] = await console.services.db.read(lambda s: s.scalars(select(ConsoleSession)).all())
    assert cookie.value not in (row.id, row.token_sha256)  # only digests are stored
    tickets = await console.client.get("/ui/tickets")
    assert tickets.status == 200 and "<h1>Tickets</h1>" in await tickets.text()


async def test_sign_in_needs_its_form_nonce(console: Console) -> None:
    response = await console.client.post("/ui/signin", data={"token": TOKEN},
                                         allow_redirects=False)
    assert response.status == 403
    assert "alertd_session" not in response.cookies


async def test_https_public_url_makes_the_cookie_secure(
        aiohttp_client: Callable[..., Any], make_config: Callable[..., Config],
        db: Database) -> None:
    config = make_config(f'[api]\ntokens = ["{TOKEN}"]\n'
                         '[http]\npublic_url = "https://alertd.example.com"\n')
    services = build_services(config, db)
    client = await aiohttp_client(create_app(services.http, ROUTES))
    page = await client.get("/ui/signin")
    nonce_cookie = SimpleCookie(page.headers["Set-Cookie"])["alertd_signin"]
    assert nonce_cookie["secure"]
    # The test client speaks plain HTTP and keeps Secure cookies to itself: send it by hand,
    # as a browser would over TLS.
    response = await client.post(
        "/ui/signin", data={"token": TOKEN, "nonce": _hidden(await page.text(), "nonce")},
        headers={"Cookie": f"alertd_signin={nonce_cookie.value}"}, allow_redirects=False)
    assert response.status == 303
    header = next(v for v in response.headers.getall("Set-Cookie")
                  if v.startswith("alertd_session="))
    assert SimpleCookie(header)["alertd_session"]["secure"]


async def test_sign_out_ends_the_session(console: Console) -> None:
    await console.signin()
    csrf = await console.csrf()
    response = await console.client.post("/ui/signout", data={"csrf": csrf},
                                         allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/ui/signin")
    assert await console.services.db.read(lambda s: s.scalars(select(ConsoleSession)).all()) == []
    again = await console.client.get("/ui/tickets", allow_redirects=False)
    assert again.status == 303 and again.headers["Location"].startswith("/ui/signin")


async def test_an_idle_session_expires(console: Console) -> None:
    await console.signin()
    state = console.client.app[CONSOLE]
    idle_s = console.services.config.console.session_idle_s
    real_clock = state.clock
    state.clock = lambda: real_clock() + timedelta(seconds=idle_s + 1)
    response = await console.client.get("/ui/tickets", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/ui/signin")


async def test_a_token_removed_by_reload_ends_its_sessions(console: Console) -> None:
    await console.signin()
    console.services.tokens.replace(["another-token-0123456789"])
    response = await console.client.get("/ui/tickets", allow_redirects=False)
    assert response.status == 303


# --- headers, escaping ---------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/ui/signin", "/ui/tickets", "/ui/tickets/1", "/ui/maintenance",
                                  "/ui/nowhere"])
async def test_every_page_carries_the_security_headers(console: Console, path: str) -> None:
    await raise_ticket(console)
    await console.signin()
    response = await console.client.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.status == (404 if path == "/ui/nowhere" else 200)


async def test_alert_text_is_shown_as_text(console: Console) -> None:
    ticket_id = await raise_ticket(console)
    await console.signin()
    for path in ("/ui/tickets", f"/ui/tickets/{ticket_id}"):
        html = await (await console.client.get(path)).text()
        assert "<img src=x" not in html and "<b>bold</b>" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
    html = await (await console.client.get(f"/ui/tickets/{ticket_id}")).text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#39;xss&#39;)" in html
    assert "<script" not in html.replace('<script src="/ui/static/console.js', "")


# --- forms: CSRF and origin ----------------------------------------------------------------

async def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
        console: Console) -> None:
    ticket_id = await raise_ticket(console)
    await console.signin()
    for data in ({"note": "done"}, {"note": "done", "csrf": "forged"}):
        response = await console.client.post(f"/ui/tickets/{ticket_id}/close", data=data,
                                             allow_redirects=False)
        assert response.status == 403
    assert await ticket_status(console, ticket_id) == "open"


@pytest.mark.parametrize("headers", [{"Sec-Fetch-Site": "cross-site"},
                                     {"Sec-Fetch-Site": "same-site"},
                                     {"Origin": "https://attacker.example"}])
async def test_a_post_from_another_site_is_refused_even_with_the_token(
        console: Console, headers: dict[str, str]) -> None:
    ticket_id = await raise_ticket(console)
    await console.signin()
    csrf = await console.csrf()
    response = await console.client.post(f"/ui/tickets/{ticket_id}/close", headers=headers,
                                         data={"csrf": csrf, "note": "x"},
                                         allow_redirects=False)
    assert response.status == 403
    assert await ticket_status(console, ticket_id) == "open"


async def test_a_post_without_a_session_is_refused(console: Console) -> None:
    ticket_id = await raise_ticket(console)
    response = await console.client.post(f"/ui/tickets/{ticket_id}/close",
                                         data={"csrf": "x"}, allow_redirects=False)
    assert response.status == 401
    assert await ticket_status(console, ticket_id) == "open"


# --- ticket flows --------------------------------------------------------------------------

async def test_closing_with_a_note_queues_the_upstream_resolve(console: Console) -> None:
    ticket_id = await raise_ticket(console)
    await console.signin()
    csrf = await console.csrf(f"/ui/tickets/{ticket_id}")
    note = await console.client.post(f"/ui/tickets/{ticket_id}/notes",
                                     data={"csrf": csrf, "note": "looking <now>"},
                                     allow_redirects=False)
    assert (note.status, note.headers["Location"]) == (303, f"/ui/tickets/{ticket_id}")
    close = await console.client.post(f"/ui/tickets/{ticket_id}/close",
                                      data={"csrf": csrf, "note": "cleaned up"},
                                      allow_redirects=False)
    assert close.status == 303
    assert await ticket_status(console, ticket_id) == "closed"
    [row] = await console.services.db.read(lambda s: s.scalars(select(OutboxAction)).all())
    assert (row.action, row.source, row.target, row.status) == (
        "resolve_alert", "datto", UID, "pending")
    html = await (await console.client.get(f"/ui/tickets/{ticket_id}")).text()
    assert "looking &lt;now&gt;" in html and "cleaned up" in html
    assert "upstream resolve pending" in html and "/close" not in html  # no second close
    again = await console.client.post(f"/ui/tickets/{ticket_id}/close", data={"csrf": csrf})
    assert again.status == 409 and "closed already" in await again.text()


async def test_a_worked_ticket_resolved_upstream_stays_open_and_says_so(
        console: Console) -> None:
    """A console note marks the ticket worked on; the upstream resolve then leaves it open
    (`[lifecycle] auto_close = "untouched"`), and both pages say so."""
    ticket_id = await raise_ticket(console)
    await console.signin()
    csrf = await console.csrf(f"/ui/tickets/{ticket_id}")
    assert "not yet" in await (await console.client.get(f"/ui/tickets/{ticket_id}")).text()
    note = await console.client.post(f"/ui/tickets/{ticket_id}/notes",
                                     data={"csrf": csrf, "note": "on it"},
                                     allow_redirects=False)
    assert note.status == 303
    resolve = await console.client.post("/api/alerts", headers=AUTH, json={
        "source": "datto", "uid": UID, "action": "resolve"})
    assert (await resolve.json())["events"][0]["outcome"] == "resolved_left_open"
    assert await ticket_status(console, ticket_id) == "open"
    html = await (await console.client.get(f"/ui/tickets/{ticket_id}")).text()
    assert "resolved upstream</span> at " in html and "Worked on</dt><dd>since " in html
    assert "The alert is resolved in datto already: closing sends nothing there." in html
    listing = await (await console.client.get("/ui/tickets")).text()
    assert "resolved upstream</span>" in listing


async def test_a_ticket_of_several_alerts_shows_them_all(console: Console) -> None:
    """Issue 16, rule 2: the alerts of one condition share a ticket; the list counts its
    raises, the ticket page names its condition, lists its alerts and merges their trails."""
    uids = []
    for n in (1, 2):
        uids.append(f"disk-{n}<b>")
        response = await console.client.post("/api/alerts", headers=AUTH, json={
            "source": "datto", "uid": uids[-1], "action": "raise", "device": "WEB-01",
            "condition": "Disk <i>Usage</i>"})
        assert response.status == 201
        ticket_id = int((await response.json())["events"][0]["ticket_id"])
    await console.signin()
    listing = await (await console.client.get("/ui/tickets")).text()
    assert """title="Raised 2 times (its condition's alerts)">\u00d72</span>""" in listing
    html = await (await console.client.get(f"/ui/tickets/{ticket_id}")).text()
    assert "<code>datto | web-01 | Disk &lt;i&gt;Usage&lt;/i&gt;</code>; raised 2 times" in html
    assert html.count("<li>datto <code>disk-") == 2 and "disk-2&lt;b&gt;" in html
    assert ('alert <code>disk-2&lt;b&gt;</code> <span class="decision">joined</span>'
            in html)
    assert "Closing resolves its 2 open alerts in datto too." in html


async def test_maintenance_windows_are_set_listed_and_ended(console: Console) -> None:
    """Issue 16, rule 4: the maintenance page sets a window from now, shows it (its text as
    text), refuses what cannot be with the reason, and ends it."""
    await console.signin()
    csrf = await console.csrf("/ui/maintenance")
    refused = await console.client.post("/ui/maintenance", data={
        "csrf": csrf, "scope": "device", "value": "WEB-01", "start": "now", "duration": "4x"})
    assert refused.status == 400
    assert "Duration: expected a duration such as" in await refused.text()
    refused = await console.client.post("/ui/maintenance", data={
        "csrf": csrf, "scope": "device", "value": "", "start": "now", "duration": "4h"})
    assert refused.status == 400
    assert "every other scope needs one" in await refused.text()
    for start in ("9999-12-31T20:00-05:00", "0001-01-01T00:30+01:00"):
        refused = await console.client.post("/ui/maintenance", data={
            "csrf": csrf, "scope": "all", "start": start, "duration": "2h"})
        assert refused.status == 400 and "out of range" in await refused.text()
    refused = await console.client.post("/ui/maintenance", data={
        "csrf": csrf, "scope": "all", "start": "9999-12-31T23:00+00:00", "duration": "2h"})
    assert refused.status == 400 and "after the year 9999" in await refused.text()
    refused = await console.client.post("/ui/maintenance", data={
        "csrf": csrf, "scope": "all", "start": "tomorrow", "duration": "4h"})
    assert refused.status == 400 and "Start &#39;tomorrow&#39;" in await refused.text()
    added = await console.client.post("/ui/maintenance", allow_redirects=False, data={
        "csrf": csrf, "scope": "device", "value": "WEB-01<b>", "start": "now",
        "duration": "4h", "reason": "swap <script>"})
    assert added.status == 303
    windows = await console.services.maintenance.listing(Page(10))
    assert [(w["scope"], w["value"], w["state"], w["created_by"])
            for w in windows["items"]] == [("device", "WEB-01<b>", "active", "agent:console")]
    html = await (await console.client.get("/ui/maintenance")).text()
    assert "<code>WEB-01&lt;b&gt;</code>" in html and "swap &lt;script&gt;" in html
    ended = await console.client.post(f"/ui/maintenance/{windows['items'][0]['id']}/end",
                                      data={"csrf": csrf}, allow_redirects=False)
    assert ended.status == 303
    assert (await console.services.maintenance.get(windows["items"][0]["id"]))["state"] == \
        "ended"
    missing = await console.client.post("/ui/maintenance/99/end", data={"csrf": csrf})
    assert missing.status == 404


async def test_an_empty_note_is_refused_and_unknown_tickets_are_404(console: Console) -> None:
    ticket_id = await raise_ticket(console)
    await console.signin()
    csrf = await console.csrf()
    empty = await console.client.post(f"/ui/tickets/{ticket_id}/notes",
                                      data={"csrf": csrf, "note": "  "})
    assert empty.status == 400 and "Write a note first." in await empty.text()
    for path in ("/ui/tickets/999999", "/ui/tickets/abc", "/ui/tickets/1%C2%B2"):
        assert (await console.client.get(path)).status == 404
    missing = await console.client.post("/ui/tickets/999999/notes",
                                        data={"csrf": csrf, "note": "x"})
    assert missing.status == 404


@pytest.mark.parametrize(("note", "reason"), [
    ("a\x00b", "A note cannot hold NUL characters."),
    ("x" * (MAX_NOTE_CHARS + 1), f"A note holds at most {MAX_NOTE_CHARS:,} characters."),
])
@pytest.mark.parametrize("action", ["notes", "close"])
async def test_a_note_that_cannot_be_stored_is_a_400_and_changes_nothing(
        console: Console, note: str, reason: str, action: str) -> None:
    ticket_id = await raise_ticket(console)
    await console.signin()
    csrf = await console.csrf()
    response = await console.client.post(f"/ui/tickets/{ticket_id}/{action}",
                                         data={"csrf": csrf, "note": note})
    assert response.status == 400 and reason in await response.text()
    assert await ticket_status(console, ticket_id) == "open"
    ticket = await console.services.queries.ticket(ticket_id)
    assert ticket is not None and ticket["notes"] == []


async def test_the_tickets_list_filters_and_refuses_a_bad_filter(console: Console) -> None:
    ticket_id = await raise_ticket(console)
    await console.signin()
    html = await (await console.client.get("/ui/tickets?status=open&source=datto")).text()
    assert f'href="/ui/tickets/{ticket_id}"' in html
    html = await (await console.client.get("/ui/tickets?status=closed")).text()
    assert f'href="/ui/tickets/{ticket_id}"' not in html and "No tickets" in html
    found = await (await console.client.get("/ui/tickets?q=line+3")).text()
    assert f'href="/ui/tickets/{ticket_id}"' in found
    for q in ("absent", '%22%28AND+OR', "NEAR%28a+b%29"):  # FTS syntax is plain text here
        response = await console.client.get(f"/ui/tickets?q={q}")
        assert response.status == 200 and "No tickets match" in await response.text(), q
    other = await (await console.client.get("/ui/tickets?customer_id=4242")).text()
    assert "No tickets match" in other and "Only customer 4242" in other
    bad = await console.client.get("/ui/tickets?status=%3Cscript%3E")
    assert bad.status == 400 and "must be one of: open, closed" in await bad.text()
    assert "<script>" not in await bad.text()


# --- deliveries and outbox -----------------------------------------------------------------

async def test_a_delivery_shows_as_text_downloads_raw_and_replays(console: Console) -> None:
    ticket_id = await raise_ticket(console)
    bad = await console.client.post("/api/alerts", headers=AUTH, json={
        "source": "datto", "uid": "x", "action": "explode", "message": "<script>x</script>"})
    assert bad.status == 422
    bad_id = int(re.search(r"rejected delivery (\d+)", (await bad.json())["detail"]).group(1))
    await console.signin()
    listing = await (await console.client.get("/ui/deliveries?status=rejected")).text()
    assert f'href="/ui/deliveries/{bad_id}"' in listing
    page = await console.client.get(f"/ui/deliveries/{bad_id}")
    html = await page.text()
    assert page.status == 200 and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<script>x" not in html and ">Replay</button>" in html
    raw = await console.client.get(f"/ui/deliveries/{bad_id}/raw")
    assert raw.headers["Content-Type"] == "application/octet-stream"
    assert raw.headers["Content-Disposition"] == \
        f'attachment; filename="delivery-{bad_id}.json"'
    assert b'"action": "explode"' in await raw.read()
    csrf = _hidden(html, "csrf")
    replay = await console.client.post(f"/ui/deliveries/{bad_id}/replay", data={"csrf": csrf},
                                       allow_redirects=False)
    assert replay.status == 303  # replayed: still not an alert, so it is failed now
    after = await (await console.client.get(f"/ui/deliveries/{bad_id}")).text()
    assert "state-failed" in after
    applied = await console.client.post("/ui/deliveries/1/replay", data={"csrf": csrf})
    assert applied.status == 409 and "processed already" in await applied.text()
    assert ticket_id == 1
    for path in ("/ui/deliveries/999999", "/ui/deliveries/abc", "/ui/deliveries/999999/raw"):
        assert (await console.client.get(path)).status == 404, path
    assert (await console.client.get("/ui/deliveries?channel=pigeon")).status == 400


async def test_outbox_rows_can_be_dropped_and_retried(console: Console) -> None:
    ticket_id = await raise_ticket(console)
    await console.signin()
    csrf = await console.csrf()
    await console.client.post(f"/ui/tickets/{ticket_id}/close", data={"csrf": csrf})
    html = await (await console.client.get("/ui/outbox?status=pending")).text()
    [row_id] = re.findall(r'action="/ui/outbox/(\d+)/drop"', html)
    drop = await console.client.post(f"/ui/outbox/{row_id}/drop", data={"csrf": csrf},
                                     allow_redirects=False)
    assert drop.status == 303
    again = await console.client.post(f"/ui/outbox/{row_id}/retry", data={"csrf": csrf})
    assert again.status == 409 and "dropped" in await again.text()
    [row] = await console.services.db.read(lambda s: s.scalars(select(OutboxAction)).all())
    assert row.status == "dropped"
    assert (await console.client.post("/ui/outbox/77/retry", data={"csrf": csrf})).status == 404
    assert (await console.client.post("/ui/outbox/1/explode", data={"csrf": csrf})).status == 404


# --- rules, webhooks, sync, status, browse -------------------------------------------------

DATTO_MAIL = (b"From: rmm@example-msp.com\r\nTo: alerts@example-msp.com\r\n"
              b"Message-ID: <t1@example>\r\nSubject: Alert on device: FS-01 - Alert{"
              + UID.encode() + b"}\r\n\r\nDisk <b>full</b>\r\n")


async def test_the_rules_tester_names_the_rule_and_stores_nothing(console: Console) -> None:
    await console.signin()
    page = await console.client.get("/ui/rules")
    html = await page.text()
    assert page.status == 200 and "Datto RMM Alerts" in html and 'for="message">Message<' in html
    csrf = _hidden(html, "csrf")
    pasted = await console.client.post("/ui/rules/test", data={
        "csrf": csrf, "message": DATTO_MAIL.decode()})
    result = await pasted.text()
    assert pasted.status == 200
    assert "<strong>hit</strong> &rarr; raise" in result and "Datto RMM Alerts" in result
    assert f"<code>{UID}</code>" in result and "Disk &lt;b&gt;full&lt;/b&gt;" in result
    form = aiohttp.FormData()
    form.add_field("csrf", csrf)
    form.add_field("file", DATTO_MAIL, filename="alert.eml", content_type="message/rfc822")
    uploaded = await console.client.post("/ui/rules/test", data=form)
    assert uploaded.status == 200 and "&rarr; raise" in await uploaded.text()
    empty = await console.client.post("/ui/rules/test", data={"csrf": csrf, "message": " "})
    assert empty.status == 400 and "Paste a message" in await empty.text()
    rows = await console.services.db.read(lambda s: s.scalars(select(Delivery)).all())
    assert rows == []


async def test_the_webhooks_page_masks_the_secret_until_revealed(
        aiohttp_client: Callable[..., Any], make_config: Callable[..., Config],
        db: Database) -> None:
    secret = "datto-webhook-secret-for-the-console"
    config = make_config(f'[api]\ntokens = ["{TOKEN}"]\n[datto]\nwebhook_secret = "{secret}"\n')
    services = build_services(config, db)
    console = Console(await aiohttp_client(create_app(services.http, ROUTES)), services)
    await console.signin()
    html = await (await console.client.get("/ui/webhooks")).text()
    assert "/api/notify/datto" in html and "********" in html
    assert html.count(secret) == 1  # only inside the closed "Reveal the secret" box
    assert re.search(r"<details class=\"reveal\"><summary>Reveal the secret</summary>"
                     rf"<code>{secret}</code></details>", html)
    assert "[syncro] webhook_token is not set" in html


async def test_sync_without_credentials_says_so(console: Console) -> None:
    await console.signin()
    html = await (await console.client.get("/ui/sync")).text()
    assert "No API credentials in <code>[datto]</code>" in html and "No sync has run yet" in html
    csrf = _hidden(html, "csrf")
    refused = await console.client.post("/ui/sync/datto/run", data={"csrf": csrf})
    assert refused.status == 409 and "API credentials are not configured" in await refused.text()
    unknown = await console.client.post("/ui/sync/pigeon/run", data={"csrf": csrf})
    assert unknown.status == 404


async def test_status_and_browse_pages(console: Console) -> None:
    await raise_ticket(console)
    await console.signin()
    status = await (await console.client.get("/ui/status")).text()
    assert "Channels" in status and "127.0.0.1:2525" in status and "Backlogs" in status
    await console.services.db.write(lambda s: s.add(Customer(
        name="Acme <Dental>", active=True, updated_at=datetime.now(UTC))))
    for entity in ("customers", "sites", "assets", "end-users"):
        page = await console.client.get(f"/ui/browse/{entity}?q=acme")
        assert page.status == 200, entity
    customers = await (await console.client.get("/ui/browse/customers?q=dental")).text()
    assert "Acme &lt;Dental&gt;" in customers
    bad = await console.client.get("/ui/browse/assets?customer_id=abc")
    assert bad.status == 400
    home = await console.client.get("/ui/browse", allow_redirects=False)
    assert home.headers["Location"] == "/ui/browse/customers"


async def test_lists_page_through_with_their_filters(console: Console) -> None:
    for n in range(55):
        response = await console.client.post("/api/alerts", headers=AUTH, json={
            "source": "syncro", "uid": str(9000 + n), "action": "raise",
            "message": f"disk {n}"})
        assert response.status == 201
    await console.signin()
    first = await (await console.client.get("/ui/tickets?status=open")).text()
    assert len(re.findall(r'<td><a href="/ui/tickets/\d+">', first)) == 50
    older = re.search(r'href="(/ui/tickets\?before_id=6&amp;status=open)">Older tickets', first)
    assert older, "no link to the older tickets"
    rest = await (await console.client.get(older.group(1).replace("&amp;", "&"))).text()
    assert re.findall(r'<td><a href="/ui/tickets/(\d+)">', rest) == ["5", "4", "3", "2", "1"]
    assert "Older tickets" not in rest
    bad = await console.client.get("/ui/tickets?before_id=x%27")
    assert bad.status == 400
