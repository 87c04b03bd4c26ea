"""Closing a ticket resolves its alert upstream exactly once, through the outbox worker and the
real API clients, against the in-repo fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from sqlalchemy import func, select

from daemon.intake.pipeline import Pipeline
from daemon.metrics import Metrics
from daemon.rmm.datto import DattoClient, DattoLimits
from daemon.rmm.outbox import OutboxPolicy, OutboxWorker
from daemon.rmm.syncro import SyncroClient
from daemon.store.database import Database
from daemon.store.models import OutboxAction
from daemon.tickets.agent import AgentActions
from tests.fakes.datto import DattoFake
from tests.fakes.syncro import SyncroFake
from tests.helpers import deliver


async def test_closing_tickets_sends_one_resolve_each(
        aiohttp_server: Callable[..., Any], db: Database, pipeline: Pipeline,
        metrics: Metrics) -> None:
    datto_fake, syncro_fake = DattoFake(api_key="k", api_secret="s"), SyncroFake(api_key="t")
    uid = datto_fake.add_alert()["alertUid"]
    syncro_id = str(syncro_fake.add_alert()["id"])
    datto_server = await aiohttp_server(datto_fake.app)
    syncro_server = await aiohttp_server(syncro_fake.app)
    async with aiohttp.ClientSession() as session:
        resolvers = {
            "datto": DattoClient(session, str(datto_server.make_url("")), "k", "s",
                                 limits=DattoLimits(backoff_base_s=0.01)),
            "syncro": SyncroClient(session, str(syncro_server.make_url("/api/v1")), "t"),
        }
        worker = OutboxWorker(db, resolvers, metrics, OutboxPolicy(retry_base_s=0.01))
        tickets = AgentActions(db, metrics)
        for source, alert_uid in (("datto", uid), ("syncro", syncro_id)):
            result = await deliver(pipeline, alert_uid, source=source)
            ticket_id = result.events[0].ticket_id
            assert ticket_id is not None
            await tickets.close(ticket_id, "agent:tester")
        assert await worker.run_due() == 2
        assert await worker.run_due() == 0  # done rows are never sent again
    resolves = datto_fake.calls_to("POST", f"/api/v2/alert/{uid}/resolve")
    assert [c.status for c in resolves] == [200]
    deletes = syncro_fake.calls_to("DELETE", f"/api/v1/rmm_alerts/{syncro_id}")
    assert [c.status for c in deletes] == [200]


async def test_a_server_error_is_retried_and_the_resolve_arrives_once(
        aiohttp_server: Callable[..., Any], db: Database, pipeline: Pipeline,
        metrics: Metrics) -> None:
    fake = DattoFake(api_key="k", api_secret="s")
    uid = fake.add_alert()["alertUid"]
    server = await aiohttp_server(fake.app)
    async with aiohttp.ClientSession() as session:
        client = DattoClient(session, str(server.make_url("")), "k", "s",
                             limits=DattoLimits(backoff_base_s=0.01, retries=1))
        worker = OutboxWorker(db, {"datto": client}, metrics,
                              OutboxPolicy(retry_base_s=0.0001, retry_max_s=0.0001))
        result = await deliver(pipeline, uid)
        assert result.events[0].ticket_id is not None
        await AgentActions(db, metrics).close(result.events[0].ticket_id, "agent:tester")
        fake.down = True
        assert await worker.run_due() == 1  # failed: back to pending with backoff
        fake.down = False
        await asyncio.sleep(0.01)
        assert await worker.run_due() == 1
    assert [c.status for c in fake.calls_to("POST", f"/api/v2/alert/{uid}/resolve")
            ].count(200) == 1
    assert fake.alerts[uid]["resolved"] is True


async def test_an_expired_token_is_renewed_transparently(
        aiohttp_server: Callable[..., Any]) -> None:
    fake = DattoFake(api_key="k", api_secret="s")
    uid = fake.add_alert()["alertUid"]
    server = await aiohttp_server(fake.app)
    async with aiohttp.ClientSession() as session:
        client = DattoClient(session, str(server.make_url("")), "k", "s")
        assert await client.alert(uid) is not None
        fake.expire_tokens()
        assert await client.resolve_alert(uid) is True
    assert len(fake.calls_to("POST", "/auth/oauth/token")) == 2


async def test_a_thousand_tickets_closed_at_once_resolve_under_the_limit(
        aiohttp_server: Callable[..., Any], db: Database, pipeline: Pipeline,
        metrics: Metrics) -> None:
    # Datto allows 100 resolves per 60 s; both sides run on a 0.5 s window so the test is
    # quick, with the client's default margin (95 per window) kept.
    window_s, count = 0.5, 1000
    fake = DattoFake(api_key="k", api_secret="s", window_s=window_s, block_s=60)
    uids = [fake.add_alert()["alertUid"] for _ in range(count)]
    raised = await asyncio.gather(*(deliver(pipeline, uid) for uid in uids))
    ticket_ids = [result.events[0].ticket_id for result in raised]
    assert None not in ticket_ids
    server = await aiohttp_server(fake.app)
    async with aiohttp.ClientSession() as session:
        client = DattoClient(session, str(server.make_url("")), "k", "s",
                             limits=DattoLimits(window_s=window_s, backoff_base_s=0.01))
        worker = OutboxWorker(db, {"datto": client}, metrics,
                              OutboxPolicy(retry_base_s=0.05, retry_max_s=0.2))
        tickets = AgentActions(db, metrics, on_enqueued=worker.kick)
        worker.start()
        try:
            await asyncio.gather(*(tickets.close(t, "agent:tester") for t in ticket_ids))
            async with asyncio.timeout(60):
                # Until every row is recorded done, not only resolved upstream: stopping in
                # between cancels the last `done` write (that row would be sent again once
                # its lease ran out, the window the outbox docstring names).
                while await _done_rows(db) < count:
                    await asyncio.sleep(0.1)
        finally:
            await worker.stop()
    statuses = [c.status for c in fake.calls if c.path.endswith("/resolve")]
    assert statuses == [200] * count  # no 429, no 403 block, no second send
    assert sorted(c.path for c in fake.calls if c.path.endswith("/resolve")) == sorted(
        f"/api/v2/alert/{uid}/resolve" for uid in uids)
    assert fake.max_rate_in_window("alert-resolve") <= 100
    rows = await db.read(lambda s: s.execute(select(OutboxAction.status, OutboxAction.attempts)
                                             ).all())
    assert sorted(set(rows)) == [("done", 1)] and len(rows) == count


async def test_a_refusal_retrying_cannot_fix_is_dead_at_once_with_its_reason(
        aiohttp_server: Callable[..., Any], db: Database, pipeline: Pipeline,
        metrics: Metrics) -> None:
    fake = SyncroFake(api_key="t")
    refused, denied = str(fake.add_alert()["id"]), str(fake.add_alert()["id"])
    fake.fail_path("DELETE", rf"/rmm_alerts/{refused}$", 422)
    fake.deny(f"/api/v1/rmm_alerts/{denied}")
    server = await aiohttp_server(fake.app)
    tickets = AgentActions(db, metrics)
    for alert_id in (refused, denied):
        result = await deliver(pipeline, alert_id, source="syncro")
        assert result.events[0].ticket_id is not None
        await tickets.close(result.events[0].ticket_id, "agent:tester")
    async with aiohttp.ClientSession() as session:
        client = SyncroClient(session, str(server.make_url("/api/v1")), "t")
        worker = OutboxWorker(db, {"syncro": client}, metrics, OutboxPolicy(retry_base_s=0.01))
        assert await worker.run_due() == 2
        assert await worker.run_due() == 0
    rows = await db.read(lambda s: {r.target: (r.status, r.attempts, r.last_error)
                                    for r in s.scalars(select(OutboxAction))})
    assert rows[refused][:2] == ("dead", 1) and "HTTP 422" in rows[refused][2]
    assert rows[denied][:2] == ("dead", 1) and "lacks the permission" in rows[denied][2]


async def _done_rows(db: Database) -> int:
    return await db.read(lambda s: s.scalar(
        select(func.count()).select_from(OutboxAction).where(OutboxAction.status == "done")))
