"""The polling channel against the fake RMMs: alerts that came by neither email nor webhook
become tickets; alerts resolved upstream close their tickets; a failed listing changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daemon.intake.pipeline import Pipeline
from daemon.rmm.datto import DattoClient, DattoLimits
from daemon.rmm.poll import datto_poller, syncro_poller
from daemon.rmm.syncro import SyncroClient
from daemon.store.database import Database
from daemon.store.models import Alert, AlertTrail, Delivery, OutboxAction, Ticket
from daemon.store.queries import Queries
from daemon.tickets.stale import StaleMarks
from tests.fakes.datto import DattoFake
from tests.fakes.syncro import SyncroFake
from tests.helpers import deliver


def alert_rows(session: Session, source: str) -> dict[str, tuple[str, str | None, str | None]]:
    """uid -> (alert state, ticket status, channels joined) for one source."""
    rows = session.execute(
        select(Alert.uid, Alert.state, Ticket.status, Alert.channels)
        .outerjoin(Ticket, Ticket.alert_id == Alert.id).where(Alert.source == source)).all()
    return {uid: (state, status, ",".join(channels)) for uid, state, status, channels in rows}


def count(session: Session, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


async def test_datto_poll_raises_unseen_alerts_and_closes_those_resolved_upstream(
        aiohttp_server: Callable[..., Any], db: Database, pipeline: Pipeline) -> None:
    fake = DattoFake(api_key="k", api_secret="s", page_max=2)  # several pages of open alerts
    missed = [fake.add_alert()["alertUid"] for _ in range(3)]  # came by no other channel
    by_mail = fake.add_alert()["alertUid"]  # seen by email, still open upstream
    resolved_upstream = fake.add_alert()["alertUid"]  # seen by email, then resolved in Datto
    unknown_upstream = str(uuid.uuid4())  # alertd has it; Datto answers 404
    for uid in (by_mail, resolved_upstream, unknown_upstream):
        await deliver(pipeline, uid)
    fake.alerts[resolved_upstream]["resolved"] = True
    server = await aiohttp_server(fake.app)
    async with aiohttp.ClientSession() as session:
        client = DattoClient(session, str(server.make_url("")), "k", "s")
        # Within the grace period, alertd's open alerts are not judged by the listing.
        fresh = await datto_poller(client, pipeline, Queries(db), grace_s=300).poll()
        assert sorted(fresh.raised) == sorted(missed) and fresh.resolved == []
        poller = datto_poller(client, pipeline, Queries(db), grace_s=0,
                              on_unknown=StaleMarks(db))
        first = await poller.poll()
        second = await poller.poll()

    assert first.open_upstream == 4 and first.raised == [] and first.error is None
    assert first.resolved == [resolved_upstream]
    assert first.unknown_upstream == [unknown_upstream]
    assert (second.raised, second.resolved) == ([], [])  # nothing new upstream: nothing done
    rows = await db.read(lambda s: alert_rows(s, "datto"))
    for uid in missed:
        assert rows[uid] == ("open", "open", "poll")
    assert rows[by_mail] == ("open", "open", "api")
    assert rows[resolved_upstream] == ("resolved", "closed", "api,poll")
    assert rows[unknown_upstream] == ("open", "open", "api")  # alertd cannot tell why: kept
    # ... and says so in its trail, once however often polling looks it up.
    trail = await db.read(lambda s: list(s.execute(
        select(AlertTrail.decision, AlertTrail.channel, AlertTrail.reason).join(
            Alert, Alert.id == AlertTrail.alert_id).where(Alert.uid == unknown_upstream)
        .order_by(AlertTrail.id))))
    assert [(d, c) for d, c, _ in trail] == [("opened", "api"), ("stale", "poll:datto")]
    assert trail[-1][2] == ("Datto RMM no longer knows this alert (polling looked it up: not "
                            "found); left open here")
    # Resolved upstream: nothing is owed back to Datto.
    assert await db.read(lambda s: count(s, OutboxAction)) == 0
    poll_deliveries = await db.read(lambda s: s.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.channel == "poll")))
    assert poll_deliveries == len(missed) + 1


async def test_syncro_poll_raises_and_reconciles(
        aiohttp_server: Callable[..., Any], db: Database, pipeline: Pipeline) -> None:
    fake = SyncroFake(api_key="t", alerts_per_page=2)
    missed = [str(fake.add_alert()["id"]) for _ in range(3)]
    cleared = fake.add_alert()
    await deliver(pipeline, str(cleared["id"]), source="syncro")
    cleared["resolved"] = True
    server = await aiohttp_server(fake.app)
    async with aiohttp.ClientSession() as session:
        client = SyncroClient(session, str(server.make_url("/api/v1")), "t")
        result = await syncro_poller(client, pipeline, Queries(db), grace_s=0).poll()
    assert sorted(result.raised) == sorted(missed)
    assert result.resolved == [str(cleared["id"])]
    rows = await db.read(lambda s: alert_rows(s, "syncro"))
    assert {uid: rows[uid] for uid in missed} == {uid: ("open", "open", "poll") for uid in missed}
    assert rows[str(cleared["id"])] == ("resolved", "closed", "api,poll")
    assert fake.calls_to("GET", "/api/v1/rmm_alerts")[0].query.get("status") == "active"


async def test_a_failed_listing_raises_and_resolves_nothing(
        aiohttp_server: Callable[..., Any], db: Database, pipeline: Pipeline) -> None:
    fake = DattoFake(api_key="k", api_secret="s", page_max=1)
    fake.add_alert()
    fake.add_alert()
    open_in_alertd = fake.add_alert()["alertUid"]
    await deliver(pipeline, open_in_alertd)
    fake.alerts[open_in_alertd]["resolved"] = True
    fake.fail_path("GET", r"/alerts/open$", 500)
    server = await aiohttp_server(fake.app)
    async with aiohttp.ClientSession() as session:
        client = DattoClient(session, str(server.make_url("")), "k", "s",
                             limits=DattoLimits(backoff_base_s=0.01, retries=1))
        result = await datto_poller(client, pipeline, Queries(db), grace_s=0).poll()
    assert result.error is not None and "nothing reconciled" in result.error
    assert (result.raised, result.resolved) == ([], [])
    rows = await db.read(lambda s: alert_rows(s, "datto"))
    assert rows == {open_in_alertd: ("open", "open", "api")}
