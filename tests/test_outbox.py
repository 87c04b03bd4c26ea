"""Closing a ticket resolves its alert upstream exactly once, through the outbox worker and the
real API clients, against the in-repo fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from daemon.metrics import Metrics
from daemon.outbox import OutboxPolicy, OutboxWorker
from daemon.pipeline import Pipeline
from daemon.rmm.datto import DattoClient, DattoLimits
from daemon.rmm.syncro import SyncroClient
from daemon.store.database import Database
from daemon.tickets import TicketService
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
        tickets = TicketService(db, metrics)
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
        await TicketService(db, metrics).close(result.events[0].ticket_id, "agent:tester")
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
