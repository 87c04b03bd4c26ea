"""kill -9 under mixed load (SMTP, Datto webhooks and POST /api/alerts at once, with the same
alerts arriving on several channels), on SQLite and on PostgreSQL: every input acknowledged
before the kill is stored exactly once, and after the restart each alert has one record and
one ticket, whatever channel and order its copies came in."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import threading
import uuid
from pathlib import Path

import aiohttp
from sqlalchemy import func, select

from daemon.store.database import Database
from daemon.store.models import Alert, Delivery, Ticket
from tests.conftest import database_toml
from tests.daemon_process import Daemon, received_left

SECRET = "kill-test-webhook-secret-0123"
ACKNOWLEDGED_BEFORE_KILL = 300


def alert_uid(n: int) -> str:
    """The same 120 alerts over and over: most inputs are twins of an earlier one."""
    return str(uuid.UUID(int=n % 120))


async def test_kill_9_under_mixed_load_loses_and_duplicates_nothing(
        tmp_path: Path, db_url: str, db: Database) -> None:
    config = f'[datto]\nwebhook_secret = "{SECRET}"\n' + database_toml(db_url)
    daemon = Daemon(tmp_path, config)
    await daemon.start()
    token = daemon.generated_token()
    # (channel, dedupe handle) of every input answered 2xx/250, and the uids they carried.
    acknowledged: set[tuple[str, str]] = set()
    uids: set[str] = set()
    stop = threading.Event()

    def mail_sender(worker: int) -> None:
        n = 0
        with contextlib.suppress(OSError, smtplib.SMTPException):
            with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=5) as client:
                while not stop.is_set():
                    uid, message_id = alert_uid(n * 7 + worker), f"<{worker}-{n}@kill.example>"
                    n += 1
                    client.sendmail("rmm@example.com", ["alerts@example.com"], (
                        f"From: rmm@example.com\r\nMessage-ID: {message_id}\r\n"
                        f"Subject: Disk usage - Alert{{{uid}}}\r\n\r\nbody\r\n").encode())
                    acknowledged.add(("smtp", f"mid:{message_id}"))  # only after the 250
                    uids.add(uid)

    async def http_sender(http: aiohttp.ClientSession, worker: int) -> None:
        for n in range(10_000):
            uid = alert_uid(n * 5 + worker)
            if n % 2:
                url, body, headers = daemon.url("/api/notify/datto"), {
                    "alert_uid": uid, "alert_resolved": "false", "state": SECRET,
                    "alert_message": f"webhook {worker}-{n}"}, {}
            else:
                url, body = daemon.url("/api/alerts"), {
                    "source": "datto", "uid": uid, "action": "raise",
                    "message": f"api {worker}-{n}"}
                headers = {"Authorization": f"Bearer {token}"}
            try:
                async with http.post(url, json=body, headers=headers) as response:
                    if response.status // 100 == 2:
                        acknowledged.add(("http", f"{worker}-{n}"))
                        uids.add(uid)
            except aiohttp.ClientError:
                return  # the daemon died under us: that one was never acknowledged

    threads = [threading.Thread(target=mail_sender, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    async with aiohttp.ClientSession() as http:
        senders = [asyncio.create_task(http_sender(http, w)) for w in range(4)]
        while len(acknowledged) < ACKNOWLEDGED_BEFORE_KILL:
            await asyncio.sleep(0.01)
        assert daemon.process
        daemon.process.kill()  # SIGKILL: no cleanup at all
        await daemon.process.wait()
        stop.set()
        await asyncio.gather(*senders)
    for thread in threads:
        await asyncio.to_thread(thread.join, 10)
    daemon.close()

    restarted = Daemon(tmp_path / "again", config, state_dir=daemon.state_dir)
    await restarted.start()
    try:
        left = await received_left(db, wait_s=30)
        mail_keys = await db.read(lambda s: list(s.scalars(
            select(Delivery.dedupe_key).where(Delivery.channel == "smtp"))))
        http_rows = await db.read(lambda s: s.scalar(select(func.count()).select_from(
            Delivery).where(Delivery.channel.in_(("api", "webhook")))))
        alert_uids = await db.read(lambda s: list(s.scalars(select(Alert.uid))))
        tickets = await db.read(lambda s: s.scalar(select(func.count()).select_from(Ticket)))
        statuses = await db.read(lambda s: set(s.scalars(select(Delivery.status))))
    finally:
        assert await restarted.stop() == 0
        restarted.close()
    assert left == 0, "startup recovery processes what the crash left received"
    assert statuses == {"processed"}
    assert len(mail_keys) == len(set(mail_keys))
    mail_acknowledged = {key for channel, key in acknowledged if channel == "smtp"}
    assert mail_acknowledged <= set(mail_keys), "an acknowledged mail was lost"
    http_acknowledged = sum(1 for channel, _ in acknowledged if channel == "http")
    # Identical bodies are one delivery; every body here is different, so each answer 2xx
    # is one row (a request cut by the kill may have been stored unanswered: at most one
    # per sender).
    assert http_acknowledged <= http_rows <= http_acknowledged + 4
    assert len(alert_uids) == len(set(alert_uids)), "one alert per upstream id"
    assert uids <= set(alert_uids)
    assert tickets == len(alert_uids), "one ticket per alert"
