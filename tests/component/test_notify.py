"""Issue 17, items 1-4: notifications through the outbox. A local receiver verifies each
webhook's signature; a local SMTP server (aiosmtpd) receives the mail; Slack and Teams bodies
are read as their incoming webhooks read them. Through the real app, on each backend."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope
from sqlalchemy import select

from daemon.core.clock import utcnow
from daemon.rmm.outbox import OutboxWorker
from daemon.store.models import OutboxAction
from daemon.tickets.clearing import ClearedTickets
from tests.api_client import Api
from tests.component.test_webhooks import datto_body, post_datto, post_syncro
from tests.lifecycle_app import MakeApp, uid
from tests.webhook_samples import syncro_body

SECRET = "receiver-secret-0123456789"


@dataclass
class Receiver:
    """An HTTP endpoint that records what it is sent and answers `statuses` in turn (then
    204)."""

    statuses: list[int] = field(default_factory=list)
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        status = self.statuses.pop(0) if self.statuses else 204
        return web.Response(status=status, text="nope" if status >= 300 else "")

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.got]


def verify(headers: dict[str, str], body: bytes, secret: str = SECRET) -> dict[str, Any]:
    """What docs/notifications.md tells a receiver to do: check the HMAC of the raw body in
    constant time, then the signed timestamp's age."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Alertd-Signature"], expected)
    document: dict[str, Any] = json.loads(body)
    assert str(document["sent_at"]) == headers["X-Alertd-Timestamp"]
    assert abs(time.time() - document["sent_at"]) < 300
    return document


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Any]) -> tuple[Receiver, str]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    server = await aiohttp_server(app)
    return found, str(server.make_url("/hook"))


def target(name: str, url: str, events: str = '["ticket.opened", "ticket.closed"]',
           kind: str = "webhook", **extra: str) -> str:
    lines = [f'[[notify]]\nname = "{name}"\nkind = "{kind}"\nurl = "{url}"\nevents = {events}']
    if kind == "webhook":
        lines.append(f'secret = "{SECRET}"')
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


async def outbox_rows(app: Api) -> list[OutboxAction]:
    query = select(OutboxAction).where(OutboxAction.action == "notify").order_by(OutboxAction.id)
    return list(await app.ctx.db.read(lambda s: list(s.scalars(query))))


async def test_a_signed_webhook_tells_of_the_ticket_opened_and_closed(
        make_app: MakeApp, receiver: tuple[Receiver, str]) -> None:
    got, url = receiver
    app = await make_app(target("ops", url))
    status, answer = await post_datto(app, datto_body(uid=uid(1), fields={"Client": "Acme Dental"}))
    assert status == 201, answer
    ticket_id = answer["events"][0]["ticket_id"]
    assert await app.ctx.outbox.run_due() == 1
    status, _ = await app.call("POST", f"/api/tickets/{ticket_id}/close",
                               body={"note": "disk cleaned"})
    assert status == 200
    assert await app.ctx.outbox.run_due() == 1  # the notification; the resolve waits (no API)
    assert await app.ctx.outbox.run_due() == 0  # done rows are never sent again

    opened, closed = (verify(headers, body) for headers, body in got.got)
    assert opened["event"] == "ticket.opened"
    assert opened["ticket"]["id"] == ticket_id
    assert opened["ticket"]["title"].startswith("FS-ACME-01")
    assert opened["ticket"]["priority"] == "High"
    assert opened["ticket"]["device"] == "FS-ACME-01"
    assert opened["ticket"]["url"].endswith(f"/ui/tickets/{ticket_id}")
    assert opened["alert"]["uid"] == uid(1) and opened["alert"]["source"] == "datto"
    assert f"Ticket #{ticket_id} opened" in opened["text"]
    assert closed["event"] == "ticket.closed"
    assert closed["details"]["closed_by"].startswith("agent:")
    assert closed["details"]["note"] == "disk cleaned"
    assert closed["ticket"]["state"] == "closed"
    assert [h["X-Alertd-Delivery"] for h, _ in got.got] == [str(opened["id"]),
                                                           str(closed["id"])]
    rows = await outbox_rows(app)
    assert [(r.source, r.target, r.status, r.ticket_id) for r in rows] == [
        ("ops", "ticket.opened", "done", ticket_id), ("ops", "ticket.closed", "done", ticket_id)]


async def test_a_forged_or_altered_body_fails_the_documented_check(
        make_app: MakeApp, receiver: tuple[Receiver, str]) -> None:
    got, url = receiver
    app = await make_app(target("ops", url))
    await post_datto(app, datto_body(uid=uid(1)))
    await app.ctx.outbox.run_due()
    headers, body = got.got[0]
    verify(headers, body)
    with pytest.raises(AssertionError):
        verify(headers, body.replace(b"FS-ACME-01", b"FS-ACME-02"))
    with pytest.raises(AssertionError):
        verify(headers, body, secret="another-secret-0123456789")


async def test_events_and_filters_choose_the_targets(
        make_app: MakeApp, receiver: tuple[Receiver, str]) -> None:
    got, url = receiver
    app = await make_app(
        target("syncro-only", url, sources='["syncro"]')
        + target("acme-high", url, customers='["acme dental"]', priorities='["high"]')
        + target("upstream", url, events='["ticket.upstream_resolved"]'))
    # Three devices: three conditions, three tickets.
    await post_datto(app, datto_body(uid=uid(1), fields={"Client": "Acme Dental"}))  # acme-high
    await post_datto(app, datto_body(uid=uid(2), fields={"Client": "Other Corp"},
                                     device_uid="device-2"))  # none
    await post_datto(app, datto_body(uid=uid(3), fields={"Client": "Acme Dental"},
                                     alert_priority="Low", device_uid="device-3"))  # none
    status, _ = await post_syncro(app, syncro_body())  # syncro-only
    assert status == 201
    await post_datto(app, datto_body(uid=uid(1), resolved=True))  # upstream
    while await app.ctx.outbox.run_due():
        pass
    rows = await outbox_rows(app)
    assert sorted((r.source, r.target) for r in rows) == [
        ("acme-high", "ticket.opened"), ("syncro-only", "ticket.opened"),
        ("upstream", "ticket.upstream_resolved")]
    events = {doc["event"]: doc for doc in got.bodies()}
    assert events["ticket.upstream_resolved"]["details"]["closed_by"] == "upstream:datto"
    assert events["ticket.upstream_resolved"]["ticket"]["state"] == "closed"


async def test_5xx_is_retried_4xx_is_dead_and_both_are_visible(
        make_app: MakeApp, receiver: tuple[Receiver, str]) -> None:
    got, url = receiver
    app = await make_app("[outbox]\nretry_base_s = 0.001\nretry_max_s = 0.001\n"
                         + target("ops", url, events='["ticket.opened"]'))
    got.statuses = [503, 429, 401]
    await post_datto(app, datto_body(uid=uid(1)))
    for expected_status in ("pending", "pending", "dead"):
        assert await app.ctx.outbox.run_due() == 1
        (row,) = await outbox_rows(app)
        assert row.status == expected_status
        await asyncio.sleep(0.002)  # past the (tiny) backoff
    assert row.attempts == 3
    assert row.last_error is not None and "answered HTTP 401: nope" in row.last_error
    status, listing = await app.call("GET", "/api/outbox", params={"status": "dead"})
    assert status == 200
    assert [(r["action"], r["source"], r["target"]) for r in listing["items"]] == [
        ("notify", "ops", "ticket.opened")]
    status, _ = await app.call("POST", f"/api/outbox/{row.id}/retry")
    assert status == 200
    assert await app.ctx.outbox.run_due() == 1
    (row,) = await outbox_rows(app)
    assert row.status == "done"
    assert len(got.got) == 4  # 503, 429, 401, then 204: nothing after it was acknowledged


async def test_rows_of_an_unconfigured_target_wait_and_are_sent_after_a_restart(
        make_app: MakeApp, receiver: tuple[Receiver, str]) -> None:
    got, url = receiver
    # The target points nowhere first (the receiver "down"): the row stays pending.
    first = await make_app("[outbox]\nretry_base_s = 0.001\nretry_max_s = 0.001\n"
                           + target("ops", "http://127.0.0.1:9/hook", events='["ticket.opened"]'))
    await post_datto(first, datto_body(uid=uid(1)))
    assert await first.ctx.outbox.run_due() == 1
    (row,) = await outbox_rows(first)
    assert row.status == "pending" and "ClientConnectorError" in (row.last_error or "")
    await first.ctx.notifiers.close()
    # "Restarted" with the target fixed: the same row is sent, once.
    second = await make_app(target("ops", url, events='["ticket.opened"]'))
    await asyncio.sleep(0.002)
    assert await second.ctx.outbox.run_due() == 1
    assert await second.ctx.outbox.run_due() == 0
    assert [doc["event"] for doc in got.bodies()] == ["ticket.opened"]


async def test_a_storm_becomes_one_digest(
        make_app: MakeApp, receiver: tuple[Receiver, str]) -> None:
    got, url = receiver
    app = await make_app(target("ops", url, events='["ticket.opened"]',
                                storm_limit_per_minute="3"))
    now = [utcnow() + timedelta(seconds=30)]  # the rows below are due then
    elapsed_s = [0.0]  # the storm's own (monotonic) clock
    worker = OutboxWorker(app.ctx.db, {}, app.ctx.metrics, clock=lambda: now[0],
                          notifiers=app.ctx.notifiers.by_name, monotonic=lambda: elapsed_s[0])

    async def raise_alerts(numbers: range) -> None:
        for n in numbers:  # a device each: a ticket each
            await post_datto(app, datto_body(uid=uid(n), device_uid=f"device-{n}"))

    await raise_alerts(range(2))
    assert await worker.run_due() == 2  # under the limit: one message each
    await raise_alerts(range(2, 12))
    assert await worker.run_due() == 10  # one left this minute: all ten in one digest
    assert [doc["event"] for doc in got.bodies()] == ["ticket.opened"] * 2 + ["digest"]
    digest = got.bodies()[-1]
    verify(*got.got[-1])
    ids = ",".join(str(doc["id"]) for doc in digest["notifications"])
    assert digest["id"] == got.got[-1][0]["X-Alertd-Delivery"] == (
        "digest-" + hashlib.sha256(ids.encode()).hexdigest()[:16])
    assert digest["count"] == 10 and len(digest["notifications"]) == 10
    assert "10 notifications" in digest["subject"]
    await raise_alerts(range(12, 17))
    assert await worker.run_due() == 0  # none left this minute: the target is not even read
    assert len(got.got) == 3
    waiting = [r for r in await outbox_rows(app) if r.status == "pending"]
    assert len(waiting) == 5 and all(r.attempts == 0 for r in waiting)
    now[0] += timedelta(seconds=61)  # a minute later, the storm still on: one digest
    elapsed_s[0] += 61
    assert await worker.run_due() == 5
    assert got.bodies()[-1]["event"] == "digest" and got.bodies()[-1]["count"] == 5
    rows = await outbox_rows(app)
    assert {r.status for r in rows} == {"done"}
    assert sum(1 for r in rows if r.last_error == "sent in a digest of 10") == 10


async def test_slack_escapes_alert_text_and_teams_gets_an_adaptive_card(
        make_app: MakeApp, receiver: tuple[Receiver, str]) -> None:
    got, url = receiver
    app = await make_app(target("chat-slack", url, kind="slack", events='["ticket.opened"]')
                         + target("chat-teams", url, kind="teams", events='["ticket.opened"]'))
    await post_datto(app, datto_body(uid=uid(1), alert_message="<!channel> disk & <b>full</b>"))
    while await app.ctx.outbox.run_due():
        pass
    bodies = {("attachments" in body): body for body in got.bodies()}
    slack, teams = bodies[False], bodies[True]
    assert "&lt;!channel&gt; disk &amp; &lt;b&gt;full&lt;/b&gt;" in slack["text"]
    assert "<!channel>" not in slack["text"]
    card = teams["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    texts = [block["inlines"][0]["text"] for block in card["content"]["body"]]
    assert any("<!channel> disk & <b>full</b>" in text for text in texts)
    assert card["content"]["actions"][0]["url"].endswith("/ui/tickets/1")


class Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any
                 ) -> AuthResult:
    good = auth.login == b"alertd" and auth.password == b"relay-password"
    return AuthResult(success=good, handled=False)


@pytest.fixture
def smtp_relay() -> Any:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port,
                            authenticator=authenticate, auth_require_tls=False)
    controller.start()
    yield inbox, port
    controller.stop()


def email_target(port: int, password: str = "relay-password") -> str:  # noqa: S107
    return (f'[[notify]]\nname = "mail"\nkind = "email"\nsmtp_host = "127.0.0.1"\n'
            f'smtp_port = {port}\nsecurity = "none"\nusername = "alertd"\n'
            f'password = "{password}"\nfrom = "alertd@msp.example"\n'
            f'to = ["noc@msp.example", "oncall@msp.example"]\nevents = ["ticket.opened"]\n'
            'subject = "[{{ ticket.priority }}] {{ ticket.title }}"\n')


async def test_mail_goes_through_the_relay_with_login(make_app: MakeApp, smtp_relay: Any
                                                      ) -> None:
    inbox, port = smtp_relay
    app = await make_app(email_target(port))
    await post_datto(app, datto_body(uid=uid(1), alert_message="Disk C: 97% used\r\nBcc: x@y"))
    assert await app.ctx.outbox.run_due() == 1
    (envelope,) = inbox.envelopes
    assert envelope.mail_from == "alertd@msp.example"
    assert envelope.rcpt_tos == ["noc@msp.example", "oncall@msp.example"]
    text = envelope.content.decode()
    headers = text.split("\r\n\r\n", 1)[0].split("\r\n")
    assert "Subject: [High] FS-ACME-01 - Disk C: 97% used" in headers
    assert not any(line.startswith("Bcc") for line in headers)  # no header smuggled in
    assert "Ticket #1 opened" in text
    assert "Auto-Submitted: auto-generated" in text
    (row,) = await outbox_rows(app)
    assert row.status == "done"


async def test_a_refused_login_is_dead_at_once_with_the_relays_answer(
        make_app: MakeApp, smtp_relay: Any) -> None:
    inbox, port = smtp_relay
    app = await make_app(email_target(port, password="wrong-password"))
    await post_datto(app, datto_body(uid=uid(1)))
    assert await app.ctx.outbox.run_due() == 1
    (row,) = await outbox_rows(app)
    assert row.status == "dead" and row.attempts == 1
    assert row.last_error is not None and "login refused: 535" in row.last_error
    assert "wrong-password" not in row.last_error
    assert inbox.envelopes == []


async def test_no_target_no_rows(make_app: MakeApp) -> None:
    app = await make_app("")
    await post_datto(app, datto_body(uid=uid(1)))
    assert await outbox_rows(app) == []



async def test_the_close_after_clear_tells_of_the_upstream_resolve_closed_or_left_open(
        make_app: MakeApp, receiver: tuple[Receiver, str]) -> None:
    got, url = receiver
    app = await make_app('close_after_clear = "10m"\n'
                         + target("ops", url, events='["ticket.upstream_resolved"]'))
    opened = []
    for n in (1, 2):  # two devices: two tickets
        status, answer = await post_datto(app, datto_body(uid=uid(n), device_uid=f"dev-{n}"))
        assert status == 201
        opened.append(answer["events"][0]["ticket_id"])
        await post_datto(app, datto_body(uid=uid(n), device_uid=f"dev-{n}", resolved=True))
    assert await outbox_rows(app) == []  # waiting to stay clear: nothing to tell yet
    status, _ = await app.call("POST", f"/api/tickets/{opened[1]}/notes",
                               body={"body": "looking at it"})
    assert status == 201
    later = utcnow() + timedelta(minutes=11)
    assert await ClearedTickets(app.ctx.db, app.ctx.metrics, clock=lambda: later,
                                notices=app.ctx.pipeline.transitions.notices).run_once() == 1
    worker = OutboxWorker(app.ctx.db, {}, app.ctx.metrics, clock=lambda: later,
                          notifiers=app.ctx.notifiers.by_name)
    assert await worker.run_due() == 2
    told = {doc["ticket"]["id"]: doc for doc in got.bodies()}
    assert told[opened[0]]["details"]["closed_by"] == "alertd:cleared"
    assert told[opened[0]]["ticket"]["state"] == "closed"
    assert told[opened[1]]["details"]["left_open_because"] is not None
    assert told[opened[1]]["ticket"]["state"] == "open"


async def test_a_suppressed_alert_is_told_to_a_target_filtering_on_its_customer(
        make_app: MakeApp, receiver: tuple[Receiver, str]) -> None:
    got, url = receiver
    app = await make_app(target("acme", url, events='["alert.suppressed"]',
                                customers='["acme dental"]'))
    status, window = await app.call("POST", "/api/maintenance", body={
        "scope": "device", "value": "FS-ACME-01", "reason": "disk swap",
        "starts_at": (utcnow() - timedelta(minutes=1)).isoformat(),
        "ends_at": (utcnow() + timedelta(hours=1)).isoformat()})
    assert status == 201, window
    status, answer = await post_datto(app, datto_body(uid=uid(1),
                                                      fields={"Client": "Acme Dental"}))
    assert answer["events"][0]["outcome"] == "suppressed"
    assert await app.ctx.outbox.run_due() == 1
    (doc,) = got.bodies()
    assert doc["event"] == "alert.suppressed" and doc["ticket"] is None
    assert doc["alert"]["customer"] == "Acme Dental"
    assert doc["details"]["window"] == f"window {window['id']}"
    assert "suppressed by maintenance" in doc["subject"]


async def test_a_digest_carries_every_row_due_beyond_one_batch(
        make_app: MakeApp, receiver: tuple[Receiver, str]) -> None:
    got, url = receiver
    app = await make_app(target("ops", url, events='["ticket.opened"]',
                                storm_limit_per_minute="1"))
    for n in range(60):  # more than a claim's batch (50)
        await post_datto(app, datto_body(uid=uid(n), device_uid=f"device-{n}"))
    assert await app.ctx.outbox.run_due() == 50  # one batch claimed; its digest took the rest
    (digest,) = got.bodies()
    assert digest["event"] == "digest" and digest["count"] == 60
    assert digest["text"].count("\n- ") == 60  # short lines: every one listed
    assert digest["text"].endswith("/ui/tickets")
    assert {r.status for r in await outbox_rows(app)} == {"done"}


@pytest.fixture
def tls_relay(tmp_path: Path) -> Any:
    """A relay that takes mail only after STARTTLS and login (EC P-256 certificate for
    127.0.0.1, made by openssl)."""
    cert, key = tmp_path / "relay-cert.pem", tmp_path / "relay-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, authenticator=authenticate,
                            auth_require_tls=True)
    controller.start()
    yield inbox, port, cert
    controller.stop()


async def test_mail_goes_over_starttls_and_an_unknown_ca_is_refused(
        make_app: MakeApp, tls_relay: Any) -> None:
    inbox, port, cert = tls_relay
    starttls = email_target(port).replace('security = "none"', 'security = "starttls"')
    app = await make_app(starttls.replace('name = "mail"', 'name = "trusted"')
                         + f'ca_file = "{cert}"\n'
                         + starttls.replace('name = "mail"', 'name = "untrusted"'))
    await post_datto(app, datto_body(uid=uid(1)))
    while await app.ctx.outbox.run_due():
        pass
    (envelope,) = inbox.envelopes
    assert envelope.rcpt_tos == ["noc@msp.example", "oncall@msp.example"]
    rows = {row.source: row for row in await outbox_rows(app)}
    assert rows["trusted"].status == "done"
    assert rows["untrusted"].status == "dead"
    assert "certificate does not verify" in (rows["untrusted"].last_error or "")
