"""IMAP intake against hostile or broken mail, on a real Dovecot (tests/dovecot.py): a message
over the size limit is not fetched but recorded and set aside; one message whose parse
breaks does not fail its batch."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from daemon.config.mail_sections import ImapAccount
from daemon.mail.parse import ParsedMessage, parse_message
from daemon.store.models import Alert, Delivery
from tests.component import test_imap
from tests.component.test_imap import Intake, alert, wait_for
from tests.dovecot import Dovecot, dovecot  # noqa: F401 - the fixture

intake = test_imap.intake  # the same fixture: alertd's services over the test's Dovecot

LIMIT_BYTES = 2048


def big_mail() -> bytes:
    return (b"From: Datto RMM <rmm-alerts@example-msp.com>\r\nMessage-ID: <big@rmm.example>\r\n"
            b"Subject: huge\r\n\r\n" + b"x" * 70 + b"\r\n") * 60


async def deliveries(intake: Intake) -> list[tuple[int, str, str | None, bytes]]:
    return await intake.ctx.db.read(lambda s: [
        (d.meta["uid"], d.status, d.error, d.payload)
        for d in s.scalars(select(Delivery).order_by(Delivery.meta["uid"].as_integer()))])


async def test_a_message_over_the_size_limit_is_recorded_not_fetched(intake: Intake) -> None:
    big = big_mail()
    intake.server.deliver(alert(1))
    intake.server.deliver(big)
    intake.server.deliver(alert(2))
    intake.start(intake.account(idle=False, processed_folder="Processed",
                                failed_folder="Failed", max_message_bytes=LIMIT_BYTES))
    await wait_for(lambda: not intake.mailbox("INBOX"))
    assert len(intake.mailbox("Processed")) == 2
    assert len(intake.mailbox("Failed")) == 1
    assert [row[:3] for row in await deliveries(intake)] == [
        (1, "processed", None),
        (2, "rejected", f"message of {len(big)} bytes is over max_message_bytes "
                        f"({LIMIT_BYTES}); not fetched"),
        (3, "processed", None)]
    assert (await deliveries(intake))[1][3] == b"", "its body was never fetched"
    assert await intake.ctx.db.read(lambda s: len(s.scalars(select(Alert)).all())) == 2


async def test_the_size_limit_defaults_to_the_smtp_one() -> None:
    account = ImapAccount(name="a", host="imap.example", username="u", password="p")
    assert account.max_message_bytes == 26_214_400


async def test_one_poison_message_does_not_fail_its_batch(
        intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    def parse_or_break(raw: bytes) -> ParsedMessage:
        if b"poison" in raw:
            raise RuntimeError("the parser broke")  # a bug, not Unprocessable input
        return parse_message(raw)

    monkeypatch.setattr("daemon.rules.email_interpreter.parse_message", parse_or_break)
    intake.server.deliver(alert(1))
    intake.server.deliver(b"From: a@example.com\r\nSubject: poison\r\n\r\nx\r\n")
    intake.server.deliver(alert(2))
    intake.start(intake.account(idle=False))
    await wait_for(lambda: len(intake.mailbox()) == 3 and all(
        b"\\Seen" in flags for flags in intake.mailbox().values()))
    rows = await deliveries(intake)
    # The poison one keeps its error and is retried by the worker with backoff.
    assert [row[:3] for row in rows] == [
        (1, "processed", None), (2, "received", "RuntimeError: the parser broke"),
        (3, "processed", None)]
    assert await intake.ctx.db.read(lambda s: len(s.scalars(select(Alert)).all())) == 2
