"""IMAP intake of a backlog larger than one batch, on a real Dovecot (tests/dovecot.py): the
next batch is fetched while one is stored, yet batches are stored, flagged and checkpointed in
UID order, and a connection lost during the fetch ahead stores nothing twice."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from sqlalchemy import select

from daemon.mail.imap import AccountReader, FetchedMessage, make_sink
from daemon.store.models import Delivery, ImapCheckpoint
from tests.component import test_imap
from tests.component.test_imap import Intake, alert, wait_for
from tests.dovecot import Dovecot, dovecot  # noqa: F401 - the fixture

intake = test_imap.intake  # the same fixture: alertd's services over the test's Dovecot


async def stored_rows(intake: Intake) -> list[tuple[int, int, str]]:
    """(delivery id, uid, status) of every delivery, in the order they were stored."""
    return await intake.ctx.db.read(lambda s: [
        (d.id, d.meta["uid"], d.status) for d in s.scalars(select(Delivery).order_by(Delivery.id))])


async def test_a_backlog_goes_in_uid_order_batch_by_batch(
        intake: Intake, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="daemon.mail.imap")
    for n in range(1, 8):
        intake.server.deliver(alert(n) if n != 4 else b"\r\n\r\n   \r\n")  # 4: unusable
    reader = intake.start(intake.account(idle=False, batch_size=2))
    await wait_for(lambda: len(intake.mailbox()) == 7 and sum(
        b"\\Seen" in flags for flags in intake.mailbox().values()) == 6)
    await intake.stop(reader)
    rows = await stored_rows(intake)
    assert [uid for _, uid, _ in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert [status for _, _, status in rows] == ["processed"] * 3 + ["failed"] + [
        "processed"] * 3
    assert [uid for uid, flags in sorted(intake.mailbox().items())
            if b"\\Seen" not in flags] == [4], "failed mail stays unread"
    batches = [r.getMessage() for r in caplog.records if "stored from" in r.getMessage()]
    assert [line.rsplit("uid ", 1)[1] for line in batches] == [
        "1..2)", "3..4)", "5..6)", "7..7)"]
    checkpoint = await intake.ctx.db.read(lambda s: s.get(ImapCheckpoint, ("main", "INBOX")))
    assert checkpoint is not None and checkpoint.last_uid == 7


async def test_a_connection_lost_during_the_fetch_ahead_stores_nothing_twice(
        intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(1, 6):
        intake.server.deliver(alert(n))
    fetches = 0
    original_fetch = AccountReader._fetch

    def fetch_or_drop(self: AccountReader, *args: Any) -> list[FetchedMessage]:
        nonlocal fetches
        fetches += 1
        if fetches == 2:  # the fetch ahead of the first batch's store
            raise ConnectionError("connection reset by peer")
        return original_fetch(self, *args)

    monkeypatch.setattr(AccountReader, "_fetch", fetch_or_drop)
    sink = make_sink(intake.ctx.pipeline, intake.ctx.checkpoints, intake.ctx.metrics)
    store_ends: list[float] = []

    async def slow_store(messages: list[FetchedMessage]) -> list[str]:
        await asyncio.sleep(0.5)  # still storing when the fetch ahead fails
        statuses = await sink.store(messages)
        store_ends.append(loop.time())
        return statuses

    loop = asyncio.get_running_loop()
    error_times: list[float] = []
    reader = AccountReader(intake.account(idle=False, batch_size=2),
                           sink.__class__(slow_store, sink.checkpoint, sink.save_checkpoint),
                           loop, lambda kind: error_times.append(loop.time()))
    reader.start()
    intake.readers.append(reader)
    await wait_for(lambda: len(intake.mailbox()) == 5 and all(
        b"\\Seen" in flags for flags in intake.mailbox().values()))
    assert error_times, "the lost connection was reported"
    assert store_ends[0] <= error_times[0], "the session ended after its store finished"
    rows = await stored_rows(intake)
    assert sorted(uid for _, uid, _ in rows) == [1, 2, 3, 4, 5]
    assert {status for _, _, status in rows} == {"processed"}
