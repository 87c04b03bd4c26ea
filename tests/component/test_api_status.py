"""GET /api/status on both backends: each channel's last input (from the deliveries, the IMAP
checkpoints) and last error (recorded by the adapters: IMAP reader, SMTP handler, poller,
webhook routes), the backlogs with their ages, version, database and uptime."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.smtp import Envelope, Session

from daemon import __version__
from daemon.config import Config
from daemon.core.clock import utc_iso, utcnow
from daemon.http.app import create_app
from daemon.mail.imap import AccountReader, make_sink
from daemon.mail.smtp import SmtpHandler
from daemon.rmm.errors import Unreachable
from daemon.rmm.poll import Poller, Upstream
from daemon.service.wiring import ROUTES, build_services
from daemon.store.database import Database
from daemon.store.models import Delivery, ImapCheckpoint, OutboxAction
from tests.api_client import TOKEN, Api

DATTO_SECRET = "datto-status-secret-0123456789"
IMAP_PASSWORD = "imap-password-0123456789"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def api(aiohttp_client: Callable[..., Any], make_config: Callable[..., Config],
              db: Database, db_url: str) -> Api:
    config = make_config(f"""
        [api]
        tokens = ["{TOKEN}"]
        [smtp]
        listen = "127.0.0.1:2626"
        [datto]
        webhook_secret = "{DATTO_SECRET}"
        [[imap.accounts]]
        name = "main"
        host = "127.0.0.1"
        port = {closed_port()}
        tls = "none"
        username = "alerts"
        password = "{IMAP_PASSWORD}"
        timeout_s = 2
        """, db_url=db_url)
    ctx = build_services(config, db)
    return Api(await aiohttp_client(create_app(ctx.http, ROUTES)), ctx)


async def status_of(api: Api) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(the answer, its channels by "<channel>:<name>")."""
    status, body = await api.call("GET", "/api/status")
    assert status == 200, body
    return body, {f"{c['channel']}:{c['name']}": c for c in body["channels"]}


async def test_a_fresh_install(api: Api) -> None:
    body, channels = await status_of(api)
    assert body["version"] == __version__ and body["uptime_s"] >= 0
    assert body["database"] == api.ctx.db.display_url
    assert list(channels) == ["smtp:smtp", "imap:main", "webhook:datto", "webhook:syncro",
                              "poll:datto", "poll:syncro", "api:api"]
    assert channels["smtp:smtp"]["enabled"] and channels["smtp:smtp"]["address"] == \
        "127.0.0.1:2626"
    assert channels["imap:main"]["address"].startswith("127.0.0.1:")
    assert channels["webhook:datto"]["enabled"] and not channels["webhook:syncro"]["enabled"]
    assert not channels["poll:datto"]["enabled"] and not channels["poll:syncro"]["enabled"]
    assert all(c["last_input_at"] is None and c["last_error"] is None
               for c in channels.values())
    waiting = {"count": 0, "oldest_age_s": None}
    assert body["backlog"] == {"deliveries": {"received": waiting, "failed": waiting},
                               "outbox": {"pending": waiting, "dead": waiting}}


async def test_last_inputs_and_backlogs(api: Api) -> None:
    now = utcnow()
    status, raised = await api.call("POST", "/api/alerts", body={
        "source": "datto", "uid": "status-1", "action": "raise"})
    assert status == 201

    def add(session: Any) -> None:
        def delivery(channel: str, key: str, status: str, age_s: float,
                     source: str | None = None) -> None:
            session.add(Delivery(channel=channel, source=source, dedupe_key=key,
                                 received_at=now - timedelta(seconds=age_s), status=status,
                                 content_type="message/rfc822", meta={}, payload=b"x"))
        delivery("smtp", "mid:1", "received", 120)
        delivery("smtp", "mid:2", "failed", 3600, source="datto")
        delivery("poll", "datto:7:raise", "processed", 10, source="datto")
        for n, (status, age_s) in enumerate((("pending", 30), ("dead", 7200), ("done", 9999))):
            session.add(OutboxAction(action=f"resolve_{n}", source="datto", target=str(n),
                                     status=status, created_at=now - timedelta(seconds=age_s)))
        session.add(ImapCheckpoint(account="main", folder="INBOX", uidvalidity=1, last_uid=9,
                                   updated_at=now))
    await api.ctx.db.write(add)
    body, channels = await status_of(api)
    assert channels["api:api"]["last_delivery_id"] == raised["delivery_id"]
    smtp = channels["smtp:smtp"]
    assert smtp["last_input_at"] is not None and smtp["last_delivery_id"] > \
        raised["delivery_id"]  # the newest of the channel, whatever its source
    assert channels["poll:datto"]["last_input_at"] == utc_iso(now - timedelta(seconds=10))
    assert channels["poll:syncro"]["last_input_at"] is None
    assert channels["imap:main"]["last_input_at"] == utc_iso(now)
    assert channels["webhook:datto"]["last_input_at"] is None
    backlog = body["backlog"]
    assert backlog["deliveries"]["received"]["count"] == 1
    assert 120 <= backlog["deliveries"]["received"]["oldest_age_s"] < 180
    assert backlog["deliveries"]["failed"]["count"] == 1
    assert 3600 <= backlog["deliveries"]["failed"]["oldest_age_s"] < 3660
    assert backlog["outbox"]["pending"]["count"] == 1
    assert backlog["outbox"]["dead"]["count"] == 1
    assert 7200 <= backlog["outbox"]["dead"]["oldest_age_s"] < 7260


async def test_last_errors_recorded_by_each_adapter(api: Api,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = api.ctx
    # Webhook: a wrong secret, the usual set-up mistake.
    status, _ = await api.call("POST", "/api/notify/datto", auth=False, body={
        "alert_uid": "x", "alert_resolved": "false", "state": "not-the-secret"})
    assert status == 401
    # IMAP: the reader of an account whose server refuses the connection.
    account = ctx.config.imap.accounts[0]
    errors: list[str] = []
    reader = AccountReader(account, make_sink(ctx.pipeline, ctx.checkpoints, ctx.metrics),
                           asyncio.get_running_loop(), errors.append, ctx.health)
    reader.start()
    deadline = time.monotonic() + 10
    while ctx.health.last_error("imap:main") is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    reader.request_stop()
    await asyncio.to_thread(reader.join, 10)
    assert errors == ["ConnectionRefusedError"]
    # SMTP: the commit fails, the sender is told 451.

    async def broken(*args: Any) -> Any:
        raise OSError("disk full")
    monkeypatch.setattr(ctx.pipeline, "submit", broken)
    handler = SmtpHandler(ctx.pipeline, ctx.config.smtp, ctx.metrics, ctx.health)
    envelope = Envelope()
    envelope.content = envelope.original_content = b"Subject: x\r\n\r\nbody\r\n"
    answer = await handler.handle_DATA(None, Session(asyncio.get_running_loop()),  # type: ignore[arg-type]
                                       envelope)
    assert answer.startswith("451")
    # Polling: the RMM does not answer.

    async def unreachable() -> Any:
        raise Unreachable("datto", "connection refused")
        yield Upstream  # an async generator that fails at once

    async def lookup(uid: str) -> None:
        return None
    poller = Poller("datto", ctx.pipeline, ctx.queries, unreachable, lookup, health=ctx.health)
    assert (await poller.poll()).error is not None

    body, channels = await status_of(api)
    last_errors = {key: (c["last_error"] or {}).get("message") for key, c in channels.items()}
    assert last_errors["webhook:datto"] == "refused (401): wrong secret in the 'state' field"
    assert last_errors["imap:main"].startswith("ConnectionRefusedError")
    assert last_errors["smtp:smtp"] == "could not store a message (answered 451): OSError"
    assert last_errors["poll:datto"] == ("listing open alerts failed; nothing reconciled: "
                                         "datto: connection refused")
    assert last_errors["api:api"] is None and last_errors["webhook:syncro"] is None
    text = str(body)
    assert DATTO_SECRET not in text and IMAP_PASSWORD not in text


async def test_the_pollers_record_into_the_shared_health(make_config: Callable[..., Config],
                                                         db: Database, db_url: str) -> None:
    config = make_config('[datto]\napi_url = "https://127.0.0.1:9"\napi_key = "k"\n'
                         'api_secret = "s"\npoll_interval_s = 60\n', db_url=db_url)
    ctx = build_services(config, db)
    try:
        [(poller, interval_s)] = ctx.pollers()
        assert interval_s == 60 and poller._health is ctx.health
    finally:
        await ctx.rmm.close()


async def test_the_database_url_is_shown_without_its_password() -> None:
    db = Database("postgresql://alertd:pg-secret-pw@db.example:5432/alertd")  # not connected
    try:
        assert "pg-secret-pw" not in db.display_url and "db.example" in db.display_url
    finally:
        await db.dispose()
