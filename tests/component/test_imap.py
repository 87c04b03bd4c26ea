"""IMAP intake against a real Dovecot (tests/dovecot.py): drain, flag or move, checkpoint,
IDLE, TLS modes, reconnect after a server restart, a refused login."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from imapclient import IMAPClient
from sqlalchemy import func, select

from daemon.config import Config
from daemon.config.base import decode_value
from daemon.config.mail_sections import ImapAccount
from daemon.mail.imap import AccountReader, make_sink
from daemon.service.wiring import Services, build_services
from daemon.store.database import Database
from daemon.store.models import Alert, Delivery, ImapCheckpoint
from tests.dovecot import Dovecot, dovecot  # noqa: F401 - the fixture

UID = "5b6c7d8e-9f01-4a2b-8c3d-4e5f6a7b8c9d"


def alert(n: int, uid: str | None = None) -> bytes:
    uid = uid or f"5b6c7d8e-9f01-4a2b-8c3d-{n:012x}"
    return (f"From: Datto RMM <rmm-alerts@example-msp.com>\r\nTo: alerts@example-msp.com\r\n"
            f"Message-ID: <imap-{n}@rmm.example>\r\nSubject: Alert on device: 192.0.2.{n % 250}"
            f" - Alert{{{uid}}}\r\n\r\nDisk usage high.\r\n").encode()


async def wait_for(check: Callable[[], Any], timeout_s: float = 20.0) -> None:
    """Wait until `check()` (sync or async) is true: the reader works in its own thread."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.05)


@dataclass
class Intake:
    ctx: Services
    server: Dovecot
    readers: list[AccountReader]
    errors: list[str]

    def account(self, **overrides: Any) -> ImapAccount:
        values: dict[str, Any] = dict(
            name="main", host="127.0.0.1", port=self.server.port, tls="none",
            username=self.server.username, password=self.server.password,
            poll_interval_s=0.2, timeout_s=5)
        values.update(overrides)
        return msgspec.convert(values, ImapAccount, dec_hook=decode_value)

    def start(self, account: ImapAccount) -> AccountReader:
        reader = AccountReader(account, make_sink(self.ctx.pipeline, self.ctx.checkpoints,
                                                  self.ctx.metrics),
                               asyncio.get_running_loop(), self.errors.append)
        reader.start()
        self.readers.append(reader)
        return reader

    async def stop(self, reader: AccountReader) -> None:
        reader.request_stop()
        await asyncio.to_thread(reader.join, 10)
        self.readers.remove(reader)

    async def deliveries(self) -> int:
        return await self.ctx.db.read(lambda s: s.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.channel == "imap")) or 0)

    def mailbox(self, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        """uid -> flags, read with a separate client (what an admin would see)."""
        with IMAPClient(self.server.host, port=self.server.port, ssl=False, timeout=5) as c:
            c.login(self.server.username, self.server.password)
            if not c.folder_exists(folder):
                return {}
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            if not uids:
                return {}
            return {uid: data[b"FLAGS"] for uid, data in c.fetch(uids, ["FLAGS"]).items()}


@pytest.fixture
async def intake(dovecot: Dovecot, make_config: Callable[..., Config],  # noqa: F811
                 db: Database, db_url: str) -> AsyncIterator[Intake]:
    config = make_config('[api]\ntokens = ["test-token-0123456789"]\n', db_url=db_url)
    state = Intake(build_services(config, db), dovecot, [], [])
    yield state
    for reader in list(state.readers):
        await state.stop(reader)


async def test_drains_flags_seen_and_applies(intake: Intake) -> None:
    for n in range(3):
        intake.server.deliver(alert(n))
    intake.server.deliver(b"From: news@example.com\r\nSubject: Newsletter\r\n\r\nhi\r\n")
    reader = intake.start(intake.account(idle=False))
    await wait_for(lambda: _count_is(intake, 4))
    await wait_for(lambda: all(b"\\Seen" in f for f in intake.mailbox().values()))
    assert await intake.deliveries() == 4
    assert await intake.ctx.db.read(lambda s: s.scalar(
        select(func.count()).select_from(Alert))) == 3
    statuses = await intake.ctx.db.read(lambda s: sorted(s.scalars(select(Delivery.status))))
    assert statuses == ["ignored", "processed", "processed", "processed"]
    # The checkpoint is saved just after the flags are stored: wait for it too.
    await wait_for(lambda: intake.ctx.checkpoints.get("main", "INBOX"))
    checkpoint = await intake.ctx.db.read(lambda s: s.get(ImapCheckpoint, ("main", "INBOX")))
    assert checkpoint is not None and checkpoint.last_uid == 4
    assert reader.connected.is_set()


async def test_moves_processed_and_failed_mail(intake: Intake) -> None:
    intake.server.deliver(alert(1))
    intake.server.deliver(b"\r\n\r\n   \r\n")  # nothing usable: a failed delivery
    intake.start(intake.account(idle=False, processed_folder="Processed",
                                failed_folder="Failed"))
    await wait_for(lambda: not intake.mailbox("INBOX"))
    assert len(intake.mailbox("Processed")) == 1
    assert len(intake.mailbox("Failed")) == 1
    statuses = await intake.ctx.db.read(lambda s: sorted(s.scalars(select(Delivery.status))))
    assert statuses == ["failed", "processed"]


async def test_failed_mail_stays_unread_without_a_failed_folder(intake: Intake) -> None:
    intake.server.deliver(alert(1))
    intake.server.deliver(b"\r\n\r\n   \r\n")
    intake.start(intake.account(idle=False))
    await wait_for(lambda: _count_is(intake, 2))
    await wait_for(lambda: sum(b"\\Seen" in f for f in intake.mailbox().values()) == 1)
    flags = sorted(b"\\Seen" in f for f in intake.mailbox().values())
    assert flags == [False, True]


async def test_move_without_the_move_extension(intake: Intake,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    original = IMAPClient.has_capability
    monkeypatch.setattr(IMAPClient, "has_capability",
                        lambda self, name: name != "MOVE" and original(self, name))
    intake.server.deliver(alert(1))
    intake.start(intake.account(idle=False, processed_folder="Done"))
    await wait_for(lambda: len(intake.mailbox("Done")) == 1)
    assert intake.mailbox("INBOX") == {}


async def test_checkpoint_survives_restart_and_reads_mail_an_admin_opened(
        intake: Intake) -> None:
    intake.server.deliver(alert(1))
    reader = intake.start(intake.account(idle=False))
    await wait_for(lambda: all(b"\\Seen" in f for f in intake.mailbox().values())
                   and intake.mailbox())
    await intake.stop(reader)
    # Someone opens new mail in their mail client before alertd sees it: it is \Seen,
    # but newer than the checkpoint, so it is still read.
    intake.server.deliver(alert(2), seen=True)
    intake.start(intake.account(idle=False))
    await wait_for(lambda: _count_is(intake, 2))
    await asyncio.sleep(0.5)  # a few polls more: nothing is read twice
    assert await intake.deliveries() == 2


async def _count_is(intake: Intake, expected: int) -> bool:
    return await intake.deliveries() == expected


async def test_idle_picks_up_new_mail(intake: Intake) -> None:
    reader = intake.start(intake.account(idle=True, poll_interval_s=3600))
    await wait_for(reader.connected.is_set)
    await asyncio.sleep(0.3)  # let it enter IDLE
    intake.server.deliver(alert(7))
    # With a one-hour poll interval only IDLE can bring it in this fast...
    await wait_for(lambda: _count_is(intake, 1), timeout_s=10)
    # ...and not a reconnect after an error (which would also drain the folder).
    assert intake.errors == []


async def test_reconnects_after_a_server_restart(intake: Intake) -> None:
    reader = intake.start(intake.account(idle=True))
    await wait_for(reader.connected.is_set)
    await asyncio.to_thread(intake.server.restart)
    intake.server.deliver(alert(3))
    await wait_for(lambda: _count_is(intake, 1), timeout_s=30)
    assert intake.errors, "the lost connection was counted"


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_tls_modes(intake: Intake, tls: str) -> None:
    intake.server.deliver(alert(4))
    port = intake.server.tls_port if tls == "implicit" else intake.server.port
    intake.start(intake.account(tls=tls, port=port, verify_tls=False, idle=False))
    await wait_for(lambda: _count_is(intake, 1))


async def test_wrong_password_is_logged_once(intake: Intake,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="daemon.mail.imap")
    reader = intake.start(intake.account(password="wrong-password"))
    await wait_for(lambda: intake.errors)
    assert intake.errors == ["login"]
    refused = [r for r in caplog.records if "login refused" in r.getMessage()]
    assert len(refused) == 1
    assert "wrong-password" not in caplog.text
    assert not reader.connected.is_set()
