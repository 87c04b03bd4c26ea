"""SMTP intake with a real aiosmtpd server on loopback and smtplib as the sender."""

from __future__ import annotations

import asyncio
import json
import smtplib
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from daemon.config import Config
from daemon.core.events import Channel
from daemon.intake.inbound import Inbound
from daemon.intake.worker import DeliveryWorker
from daemon.mail.smtp import SmtpHandler, start_smtp_server
from daemon.service.wiring import Services, build_services
from daemon.store.database import Database
from daemon.store.models import Alert, Delivery, Ticket
from daemon.store.queries import Page

UID = "7a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


@dataclass
class Smtp:
    ctx: Services
    worker: DeliveryWorker
    port: int

    def send(self, raw: bytes | EmailMessage, rcpt: str = "alerts@example-msp.com",
             sender: str = "rmm-alerts@example-msp.com", **login: str) -> dict[str, Any]:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            if login:
                client.starttls() if login.pop("tls", "") else None
                client.login(login["user"], login["password"])
            if isinstance(raw, EmailMessage):
                return client.send_message(raw, sender, [rcpt])
            return client.sendmail(sender, [rcpt], raw)

    async def asend(self, raw: bytes | EmailMessage, **kwargs: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.send, raw, **kwargs)

    async def count(self, model: Any) -> int:
        return await self.ctx.db.read(
            lambda s: s.scalar(select(func.count()).select_from(model)) or 0)


async def start(config: Config, db: Database) -> tuple[Smtp, asyncio.Server]:
    ctx = build_services(config, db)
    worker = ctx.worker
    worker.start()
    server = await start_smtp_server(
        SmtpHandler(ctx.pipeline, config.smtp, ctx.metrics), config.smtp)
    return Smtp(ctx, worker, server.sockets[0].getsockname()[1]), server


@pytest.fixture
async def smtp(make_config: Callable[..., Config], db: Database, db_url: str
               ) -> AsyncIterator[Smtp]:
    config = make_config("""
        [api]
        tokens = ["test-token-0123456789"]
        [smtp]
        listen = "127.0.0.1:0"
        max_message_bytes = 100000
        accept_recipients = ["alerts@example-msp.com", "rmm.example-msp.com"]
        """, db_url=db_url)
    instance, server = await start(config, db)
    yield instance
    server.close()
    await instance.worker.drain(5)


def alert_mail(subject: str, message_id: str | None = "<a1@rmm.example>",
               body: str = "Disk C: is 97% full.\n") -> bytes:
    head = "From: Datto RMM <rmm-alerts@example-msp.com>\r\nTo: alerts@example-msp.com\r\n"
    if message_id:
        head += f"Message-ID: {message_id}\r\n"
    return (head + f"Subject: {subject}\r\n\r\n{body}").encode()


async def test_alert_mail_is_stored_then_becomes_alert_and_ticket(smtp: Smtp) -> None:
    refused = await smtp.asend(alert_mail(f"Alert on device: 192.0.2.7 - Alert{{{UID}}}"))
    assert refused == {}
    # 250 came after the commit: the delivery is there without waiting for anything.
    assert await smtp.count(Delivery) == 1
    await smtp.worker.run_until_idle()
    alert = await smtp.ctx.db.read(lambda s: s.scalar(select(Alert)))
    assert alert is not None
    assert (alert.source, alert.uid, alert.state, alert.channels) == ("datto", UID, "open",
                                                                      ["smtp"])
    assert await smtp.count(Ticket) == 1
    delivery = await smtp.ctx.queries.delivery(1)
    assert delivery is not None and delivery["status"] == "processed"
    assert delivery["source"] == "datto", "the rule names the source of an email delivery"
    assert delivery["trace"]["decided_by"] == "Datto RMM Alerts"
    assert delivery["meta"]["rcpt_to"] == ["alerts@example-msp.com"]


async def test_resend_of_the_same_message_is_stored_once(smtp: Smtp) -> None:
    mail = alert_mail(f"Alert - Alert{{{UID}}}", message_id="<retry@rmm.example>")
    await smtp.asend(mail)
    await smtp.asend(mail)
    no_id = alert_mail("No id here", message_id=None)
    await smtp.asend(no_id)
    await smtp.asend(no_id)
    await smtp.asend(alert_mail("No id, other text", message_id=None))
    assert await smtp.count(Delivery) == 3


async def test_resolve_by_mail_closes_the_ticket(smtp: Smtp) -> None:
    await smtp.asend(alert_mail(f"Alert - Alert{{{UID}}}", "<r1@x>"))
    await smtp.asend(alert_mail(f"Resolved: Alert - Alert{{{UID}}}", "<r2@x>"))
    await smtp.worker.run_until_idle()
    ticket = await smtp.ctx.db.read(lambda s: s.scalar(select(Ticket)))
    assert ticket is not None and ticket.status == "closed"
    assert ticket.closed_by == "upstream:datto"


async def test_unmatched_mail_is_kept_as_ignored_with_its_trace(smtp: Smtp) -> None:
    await smtp.asend(alert_mail("Monthly newsletter", "<n@x>"))
    await smtp.worker.run_until_idle()
    listing = await smtp.ctx.queries.deliveries(Page(), status="ignored")
    [delivery] = listing["items"]
    assert delivery["error"] == "no rule matched"
    assert await smtp.count(Alert) == 0


async def test_recipients_outside_the_list_get_550(smtp: Smtp) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await smtp.asend(alert_mail("x"), rcpt="someone@elsewhere.example")
    [(code, text)] = refused.value.recipients.values()
    assert code == 550 and b"not a relay" in text
    assert await smtp.asend(alert_mail("y", "<y@x>"), rcpt="ops@rmm.example-msp.com") == {}
    assert await smtp.count(Delivery) == 1


@pytest.mark.parametrize("declare_size", [True, False])
async def test_oversized_message_gets_552_and_is_not_stored(smtp: Smtp,
                                                           declare_size: bool) -> None:
    def send() -> None:
        with smtplib.SMTP("127.0.0.1", smtp.port, timeout=10) as client:
            client.ehlo()
            if not declare_size:  # a sender that skips SIZE is refused after DATA instead
                client.esmtp_features.pop("size", None)
            client.sendmail("a@example.com", ["alerts@example-msp.com"],
                            alert_mail("big", body="x" * 200_000))

    with pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as refused:
        await asyncio.to_thread(send)
    assert refused.value.smtp_code == 552
    assert await smtp.count(Delivery) == 0


async def test_storage_failure_gets_451(smtp: Smtp, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(_inbound: Any) -> Any:
        raise OSError("disk full")
    monkeypatch.setattr(smtp.ctx.pipeline, "submit", broken)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await smtp.asend(alert_mail("x"))
    assert refused.value.smtp_code == 451


async def test_unparseable_mail_is_a_failed_replayable_delivery(smtp: Smtp) -> None:
    await smtp.asend(b"\r\n\r\n   \r\n")
    await smtp.worker.run_until_idle()
    listing = await smtp.ctx.queries.deliveries(Page(), status="failed")
    [delivery] = listing["items"]
    assert delivery["error"] in ("no headers: this is not an email message", "empty message")
    result = await smtp.ctx.pipeline.replay(delivery["id"])
    assert result is not None and result.status.value == "failed"


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


async def test_starttls_and_auth(tmp_path: Path, make_config: Callable[..., Config],
                                 db: Database, db_url: str) -> None:
    cert, key = _self_signed(tmp_path)
    config = make_config(f"""
        [api]
        tokens = ["test-token-0123456789"]
        [smtp]
        listen = "127.0.0.1:0"
        tls_cert_file = "{cert}"
        tls_key_file = "{key}"
        require_tls = true
        [[smtp.users]]
        username = "datto"
        password = "pw-0123456789"
        """, db_url=db_url)
    instance, server = await start(config, db)
    try:
        with pytest.raises(smtplib.SMTPException):  # no STARTTLS: refused
            await instance.asend(alert_mail("plain", "<p@x>"))
        with pytest.raises(smtplib.SMTPAuthenticationError):
            await instance.asend(alert_mail("bad pw", "<b@x>"), tls="1", user="datto",
                                 password="wrong")
        assert await instance.asend(alert_mail("good", "<g@x>"), tls="1", user="datto",
                                    password="pw-0123456789") == {}
        assert await instance.count(Delivery) == 1
    finally:
        server.close()
        await instance.worker.drain(5)


async def test_email_and_api_copies_of_one_alert_make_one_ticket(smtp: Smtp) -> None:
    """The Datto uid from a subject and from another channel is one key, in any order."""
    upper = UID.upper()  # the subject spells the GUID in capitals; the other copy does not
    api_copy = Inbound(channel=Channel.API, dedupe_key="api-copy",
                               payload=json.dumps({"source": "datto", "uid": UID,
                                                   "action": "raise"}).encode(),
                               content_type="application/json")
    accepted = await smtp.ctx.pipeline.submit(api_copy)
    await smtp.ctx.pipeline.process(accepted.delivery_id)
    await smtp.asend(alert_mail(f"Alert on device: 192.0.2.7 - Alert{{{upper}}}", "<twin@x>"))
    await smtp.worker.run_until_idle()
    alerts = await smtp.ctx.db.read(lambda s: list(s.scalars(select(Alert))))
    assert [(a.uid, sorted(a.channels), a.occurrences) for a in alerts] == [
        (UID, ["api", "smtp"], 2)]
    assert await smtp.count(Ticket) == 1
