"""The whole daemon as a real process: start, systemd notify, health, tokens, reload, stop,
and a kill -9 in the middle of intake."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import smtplib
import textwrap
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from imapclient import IMAPClient
from sqlalchemy import func, select

from daemon.store.database import Database
from daemon.store.models import Alert, Delivery, Ticket
from tests.daemon_process import Daemon, received_left
from tests.dovecot import running_dovecot

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    instance = Daemon(tmp_path, watchdog_usec=400_000)
    await instance.start()
    yield instance
    instance.close()


def reload_notes(daemon: Daemon) -> tuple[str, str]:
    """The RELOADING=1 and READY=1 of the reload just done (what else came is dropped)."""
    notes = [n for n in daemon.notifications() if n != "WATCHDOG=1"]
    assert len(notes) == 2, notes
    return notes[0], notes[1]


async def test_start_serve_reload_and_stop(daemon: Daemon) -> None:
    notes = daemon.notifications()
    assert any(n.startswith("READY=1") for n in notes)
    token = daemon.generated_token()
    assert oct((daemon.state_dir / "api-token").stat().st_mode & 0o777) == "0o600"
    assert not any(token in line for line in daemon.log), "the token value must never be logged"
    assert any(str(daemon.state_dir / "api-token") in line for line in daemon.log)

    async with aiohttp.ClientSession() as http:
        async with http.get(daemon.url("/healthz")) as response:
            assert response.status == 200
        async with http.get(daemon.url("/readyz")) as response:
            assert response.status == 200
        async with http.get(daemon.url("/api/tickets")) as response:
            assert response.status == 401
        auth = {"Authorization": f"Bearer {token}"}
        async with http.get(daemon.url("/api/tickets"), headers=auth) as response:
            assert response.status == 200

        # SIGHUP applies new tokens from the config file...
        daemon.write_config('[api]\ntokens = ["rotated-token-0001"]\n')
        daemon.notifications()  # what start-up said: read and put aside
        daemon.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        await daemon.wait_log("reload done: 1 API token")
        # systemd hears the reload begin (with its monotonic time) and end, with the outcome.
        reloading, ready = reload_notes(daemon)
        assert re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", reloading)
        assert ready.startswith("READY=1\nSTATUS=accepting alerts; reloaded: 1 API token(s)")
        rotated = {"Authorization": "Bearer rotated-token-0001"}
        async with http.get(daemon.url("/api/tickets"), headers=rotated) as response:
            assert response.status == 200
        async with http.get(daemon.url("/api/tickets"), headers=auth) as response:
            assert response.status == 401
        # ...and an invalid file changes nothing, with the reason in the log.
        daemon.write_config('[api]\ntokens = ["x"]\nbogus = 1\n')
        daemon.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        await daemon.wait_log("reload refused")
        await daemon.wait_log(r"api\.bogus: unknown key")
        _, ready = reload_notes(daemon)
        assert ready.startswith("READY=1\nSTATUS=accepting alerts; reload refused: ")
        assert "\n" not in ready.split("STATUS=", 1)[1]
        async with http.get(daemon.url("/api/tickets"), headers=rotated) as response:
            assert response.status == 200

        # Rules: an invalid file never replaces the running rules; a valid one does.
        rules = daemon.tmp_path / "rules.toml"
        rules.write_text('[[rule]]\nname = "broken"\nsubject = { regex = "(" }\n')
        daemon.write_config(f'[api]\ntokens = ["rotated-token-0001"]\n'
                            f'[rules]\npath = "{rules}"\n')
        daemon.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        await daemon.wait_log(r"rules\.toml:3: rule 'broken': subject\.regex: invalid")
        rules.write_text('[[rule]]\nname = "only"\naction = "ignore"\n'
                         'subject = { contains = "x" }\n')
        daemon.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        await daemon.wait_log(r"reload done: 1 API token\(s\), 1 rule\(s\)")

    await asyncio.sleep(0.5)  # two watchdog intervals of 0.2 s
    assert "WATCHDOG=1" in daemon.notifications()
    assert await daemon.stop() == 0
    assert "STOPPING=1" in daemon.notifications()
    assert any("alertd stopped" in line for line in daemon.log)


async def test_kill_9_during_intake_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Every event answered 2xx before a kill -9 is stored exactly once and, after restart,
    applied exactly once."""
    daemon = Daemon(tmp_path)
    await daemon.start()
    token = daemon.generated_token()
    acknowledged: set[str] = set()
    auth = {"Authorization": f"Bearer {token}"}

    async def send(http: aiohttp.ClientSession, uid: str) -> None:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.post(daemon.url("/api/alerts"), headers=auth, json={
                    "source": "datto", "uid": uid, "action": "raise"}) as response:
                if response.status in (200, 201, 202):
                    acknowledged.add(uid)

    async def flood() -> None:
        async with aiohttp.ClientSession() as http:
            for batch in range(100):
                await asyncio.gather(*(send(http, f"uid-{batch}-{n}") for n in range(10)))

    flooding = asyncio.create_task(flood())
    while len(acknowledged) < 150:
        await asyncio.sleep(0.01)
    assert daemon.process
    daemon.process.kill()  # SIGKILL: no cleanup at all
    await daemon.process.wait()
    await flooding
    daemon.close()
    assert 150 <= len(acknowledged) < 1000

    restarted = Daemon(tmp_path / "again", state_dir=daemon.state_dir)
    await restarted.start()  # startup recovery sweeps unfinished deliveries
    db = Database(f"sqlite:///{daemon.state_dir / 'alertd.db'}")
    try:
        await received_left(db, wait_s=10)
        uids = await db.read(lambda s: list(s.scalars(select(Alert.uid))))
        tickets = await db.read(lambda s: s.scalar(select(func.count()).select_from(Ticket)))
        statuses = await db.read(lambda s: set(s.scalars(select(Delivery.status))))
    finally:
        await db.dispose()
        assert await restarted.stop() == 0
        restarted.close()
    assert statuses == {"processed"}
    assert len(uids) == len(set(uids)), "an alert was duplicated"
    assert acknowledged <= set(uids), "an acknowledged event was lost"
    assert tickets == len(uids)


async def test_kill_9_during_smtp_intake_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Every message answered 250 before a kill -9 is a delivery exactly once after restart."""
    daemon = Daemon(tmp_path)
    await daemon.start()
    acknowledged: set[str] = set()
    stop = threading.Event()

    def sender(worker: int) -> None:
        n = 0
        while not stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=5) as client:
                    while not stop.is_set():
                        message_id = f"<{worker}-{n}@crash.example>"
                        n += 1
                        client.sendmail("rmm@example.com", ["alerts@example.com"], (
                            f"From: rmm@example.com\r\nMessage-ID: {message_id}\r\n"
                            f"Subject: Alert - Alert{{{uuid.uuid4()}}}\r\n\r\nbody\r\n"
                        ).encode())
                        acknowledged.add(message_id)  # only after the 250
            except (OSError, smtplib.SMTPException):
                return  # the daemon died under us: that message was never acknowledged

    threads = [threading.Thread(target=sender, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    while len(acknowledged) < 200:
        await asyncio.sleep(0.01)
    assert daemon.process
    daemon.process.kill()
    await daemon.process.wait()
    stop.set()
    for thread in threads:
        await asyncio.to_thread(thread.join, 10)
    daemon.close()

    restarted = Daemon(tmp_path / "again", state_dir=daemon.state_dir)
    await restarted.start()
    db = Database(f"sqlite:///{daemon.state_dir / 'alertd.db'}")
    try:
        keys = await db.read(lambda s: list(s.scalars(
            select(Delivery.dedupe_key).where(Delivery.channel == "smtp"))))
        pending = await received_left(db, wait_s=20)
    finally:
        await db.dispose()
        assert await restarted.stop() == 0
        restarted.close()
    stored = [k.removeprefix("mid:") for k in keys]
    assert len(stored) == len(set(stored))
    assert acknowledged <= set(stored), f"{len(acknowledged - set(stored))} acknowledged lost"
    assert pending == 0, "startup recovery must process what the crash left received"


async def test_kill_9_while_imap_drains_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Every message in the mailbox is a delivery exactly once after a kill -9 mid-drain."""
    with running_dovecot(tmp_path / "imap") as server:
        total = 1500
        for n in range(total):
            server.deliver((f"From: rmm@example.com\r\nMessage-ID: <drain-{n}@x>\r\n"
                            f"Subject: Alert - Alert{{{uuid.uuid4()}}}\r\n\r\nbody {n}\r\n"
                            ).encode())
        imap = textwrap.dedent(f"""
            [[imap.accounts]]
            name = "crash"
            host = "127.0.0.1"
            port = {server.port}
            tls = "none"
            username = "{server.username}"
            password = "{server.password}"
            batch_size = 100
            """)
        daemon = Daemon(tmp_path / "first", imap)
        await daemon.start()
        db = Database(f"sqlite:///{daemon.state_dir / 'alertd.db'}")
        count = select(func.count()).select_from(Delivery)
        try:
            while await db.read(lambda s: s.scalar(count)) < 300:
                await asyncio.sleep(0.05)
            assert daemon.process
            daemon.process.kill()
            await daemon.process.wait()
            daemon.close()
            before = await db.read(lambda s: s.scalar(count))
            assert before < total, "the kill came too late to interrupt the drain"

            restarted = Daemon(tmp_path / "second", imap, state_dir=daemon.state_dir)
            await restarted.start()
            try:
                for _ in range(600):
                    if await db.read(lambda s: s.scalar(count)) >= total:
                        break
                    await asyncio.sleep(0.1)
                await restarted.wait_log(r"imap crash: \d+ message\(s\) stored", timeout=30)
            finally:
                assert await restarted.stop() == 0
                restarted.close()
            keys = await db.read(lambda s: list(s.scalars(select(Delivery.dedupe_key))))
        finally:
            await db.dispose()
        with IMAPClient(server.host, port=server.port, ssl=False, timeout=10) as client:
            client.login(server.username, server.password)
            client.select_folder("INBOX", readonly=True)
            unseen = client.search(["UNSEEN"])
    assert len(keys) == total and len(set(keys)) == total
    assert unseen == [], "every stored message is flagged"
