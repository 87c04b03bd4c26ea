"""Email and webhook copies of the same Datto alerts, racing into two real `alertd run`
processes that share one PostgreSQL database: one alert and one ticket per alert id, and a
resolve from either channel closes it."""

from __future__ import annotations

import asyncio
import contextlib
import random
import smtplib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select

from daemon.store.database import Database
from daemon.store.models import Alert, Ticket
from tests.conftest import PG_URL, database_toml, pg_database, require_postgres, reset_postgres
from tests.daemon_process import Daemon, received_left

pytestmark = pytest.mark.postgres

SECRET = "twin-test-secret-51c0a9d2"
ALERTS = 200


def send_mail(port: int, uid: str, resolved: bool) -> None:
    subject = (f"Resolved: Disk usage on PC-{uid[:4]} - Alert{{{uid.upper()}}}" if resolved
               else f"Alert on device: PC-{uid[:4]}, reason Disk usage - Alert{{{uid.upper()}}}")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("rmm@example-msp.com", ["alerts@example-msp.com"], (
            f"From: rmm@example-msp.com\r\nTo: alerts@example-msp.com\r\n"
            f"Message-ID: <{uid}-{resolved}@twins>\r\nSubject: {subject}\r\n\r\nbody\r\n"
        ).encode())


async def post_hook(http: aiohttp.ClientSession, port: int, uid: str, resolved: bool) -> None:
    body = {"alert_uid": uid, "alert_resolved": "true" if resolved else "false",
            "state": SECRET, "device_hostname": f"PC-{uid[:4]}", "alert_message": "Disk usage"}
    async with http.post(f"http://127.0.0.1:{port}/api/notify/datto", json=body) as response:
        assert response.status == 201, await response.text()


async def race(daemons: list[Daemon], sends: list[tuple[str, str, bool]]) -> list[int]:
    """Send every (channel, uid, resolved) in the given order through 16 concurrent senders,
    each to a randomly chosen daemon; return how many sends each daemon got."""
    queue: asyncio.Queue[tuple[str, str, bool]] = asyncio.Queue()
    for item in sends:
        queue.put_nowait(item)
    per_daemon = [0] * len(daemons)

    async def sender(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            channel, uid, resolved = queue.get_nowait()
            index = random.randrange(len(daemons))
            per_daemon[index] += 1
            if channel == "mail":
                await asyncio.to_thread(send_mail, daemons[index].smtp_port, uid, resolved)
            else:
                await post_hook(http, daemons[index].port, uid, resolved)

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(sender(http) for _ in range(16)))
    return per_daemon


@contextlib.asynccontextmanager
async def two_daemons(tmp_path: Path) -> AsyncIterator[tuple[list[Daemon], Database]]:
    """Two `alertd run` processes on one fresh PostgreSQL database, and that database."""
    await reset_postgres()
    config = database_toml(PG_URL) + f'[datto]\nwebhook_secret = "{SECRET}"\n'
    daemons = [Daemon(tmp_path / name, config) for name in ("a", "b")]
    db = pg_database()
    try:
        for daemon in daemons:
            await daemon.start()
        yield daemons, db
    finally:
        await db.dispose()
        for daemon in daemons:
            if daemon.process is not None:
                assert await daemon.stop() == 0, "\n".join(daemon.log[-30:])
            daemon.close()


def test_email_and_webhook_twins_across_two_daemons(tmp_path: Path) -> None:
    require_postgres()  # synchronous: it runs its own event loop to probe the server
    asyncio.run(twins_across_two_daemons(tmp_path))


async def twins_across_two_daemons(tmp_path: Path) -> None:
    async with two_daemons(tmp_path) as (daemons, db):
        uids = [str(uuid.uuid4()) for _ in range(ALERTS)]
        raises = [(channel, uid, False) for uid in uids for channel in ("mail", "hook")]
        random.shuffle(raises)
        per_daemon = await race(daemons, raises)
        assert all(n > 0 for n in per_daemon), per_daemon
        assert await received_left(db, wait_s=60) == 0

        alerts = await db.read(lambda s: s.scalars(select(Alert)).all())
        assert len(alerts) == ALERTS and {a.uid for a in alerts} == set(uids)
        assert all(sorted(a.channels) == ["smtp", "webhook"] and a.occurrences == 2
                   for a in alerts), [(a.uid, a.channels) for a in alerts if a.occurrences != 2]
        tickets = await db.read(lambda s: s.scalars(select(Ticket)).all())
        assert len(tickets) == ALERTS and {t.status for t in tickets} == {"open"}
        assert len({t.alert_id for t in tickets}) == ALERTS

        # Resolve half of them: 50 by email, 50 by webhook, interleaved, to either daemon.
        resolves = ([("mail", uid, True) for uid in uids[:50]]
                    + [("hook", uid, True) for uid in uids[50:100]])
        random.shuffle(resolves)
        await race(daemons, resolves)
        assert await received_left(db, wait_s=60) == 0

        status_count = select(Ticket.status, func.count()).group_by(Ticket.status)
        counts = {status: n for status, n in await db.read(lambda s: s.execute(status_count).all())}
        assert counts == {"open": ALERTS - 100, "closed": 100}
        closed_uids = await db.read(lambda s: set(s.scalars(
            select(Alert.uid).join(Ticket, Ticket.alert_id == Alert.id)
            .where(Ticket.status == "closed"))))
        assert closed_uids == set(uids[:100])


CONDITIONS = 20
ALERTS_PER_CONDITION = 8


async def post_condition_hook(http: aiohttp.ClientSession, port: int, uid: str,
                              device: int, resolved: bool) -> None:
    body = {"alert_uid": uid, "alert_resolved": "true" if resolved else "false",
            "state": SECRET, "device_hostname": f"PC-{device}", "alert_category": "Disk Usage",
            "device_uid": f"00000000-0000-4000-8000-{device:012d}", "alert_message": "Disk"}
    async with http.post(f"http://127.0.0.1:{port}/api/notify/datto", json=body) as response:
        assert response.status == 201, await response.text()


def test_raises_of_one_condition_across_two_daemons_share_one_ticket(tmp_path: Path) -> None:
    require_postgres()
    asyncio.run(conditions_across_two_daemons(tmp_path))


async def conditions_across_two_daemons(tmp_path: Path) -> None:
    """Issue 16, rule 2: new alerts of one condition racing into two processes (each
    condition's raises sent at once, half to each daemon) make one ticket per condition: the
    condition's advisory lock lets one transaction at a time choose its ticket."""
    async with two_daemons(tmp_path) as (daemons, db):
        alerts = [(str(uuid.uuid4()), device) for device in range(CONDITIONS)
                  for _ in range(ALERTS_PER_CONDITION)]
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(
                post_condition_hook(http, daemons[n % 2].port, uid, device, False)
                for n, (uid, device) in enumerate(alerts)))
        tickets = await db.read(lambda s: s.execute(
            select(Ticket.condition, Ticket.occurrences, Ticket.status)).all())
        assert sorted(occurrences for _, occurrences, _ in tickets) == \
            [ALERTS_PER_CONDITION] * CONDITIONS, tickets
        assert {status for _, _, status in tickets} == {"open"}
        per_ticket = await db.read(lambda s: s.execute(
            select(Alert.ticket_id, func.count()).group_by(Alert.ticket_id)).all())
        assert sorted(n for _, n in per_ticket) == [ALERTS_PER_CONDITION] * CONDITIONS

        # Every alert resolved, racing the same way: each ticket closes with its last alert.
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(
                post_condition_hook(http, daemons[(n + 1) % 2].port, uid, device, True)
                for n, (uid, device) in enumerate(alerts)))
        statuses = await db.read(lambda s: s.scalars(select(Ticket.status)).all())
        assert statuses == ["closed"] * CONDITIONS
