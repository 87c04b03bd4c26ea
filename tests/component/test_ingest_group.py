"""HTTP intake in groups (daemon.intake.ingest_group): requests that arrive together are
applied in one unit, and end exactly as they would have one by one, on each backend."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from daemon.core.events import Channel, DeliveryStatus
from daemon.intake.inbound import Inbound, Ingested
from daemon.intake.pipeline import Pipeline
from daemon.store.database import Database
from daemon.store.models import Alert, Delivery, Ticket
from tests.helpers import event_body


def api_inbound(uid: str, action: str = "raise", key: str | None = None,
                **extra: Any) -> Inbound:
    body = event_body(uid, action, "datto", **extra)
    payload = json.dumps(body).encode()
    return Inbound(channel=Channel.API, dedupe_key=key or f"{uid}:{action}", payload=payload,
                   content_type="application/json", source="datto",
                   meta={"body_sha256": key or uid}, document=body)


async def ingest_together(pipeline: Pipeline, inbounds: list[Inbound]) -> list[Ingested]:
    """Each inbound as its own request, all in flight at once (one group or a few)."""
    answers = await asyncio.gather(*(pipeline.ingest(inbound) for inbound in inbounds))
    return [answer for [answer] in answers]


def state(session: Session) -> dict[str, Any]:
    alerts = {a.uid: (a.state, a.occurrences) for a in session.scalars(select(Alert))}
    tickets = {uid: status for uid, status in session.execute(
        select(Alert.uid, Ticket.status).join(Ticket, Ticket.alert_id == Alert.id))}
    statuses = Counter(d.status for d in session.scalars(select(Delivery)))
    return {"alerts": alerts, "tickets": tickets, "deliveries": statuses}


async def test_new_alerts_arriving_together_each_get_one_ticket(
        db: Database, pipeline: Pipeline) -> None:
    answers = await ingest_together(pipeline, [api_inbound(f"u{n}") for n in range(60)])
    assert {a.status for a in answers} == {DeliveryStatus.PROCESSED}
    assert len({a.delivery_id for a in answers}) == 60
    assert [e.outcome for a in answers for e in a.events] == ["opened"] * 60
    tickets = {e.ticket_id for a in answers for e in a.events}
    assert None not in tickets and len(tickets) == 60
    counts = await db.read(lambda s: (s.scalar(select(func.count()).select_from(Ticket)),
                                      s.scalar(select(func.count()).select_from(Delivery))))
    assert counts == (60, 60)
    # Each delivery points at its own alert, the one its answer names.
    pairs = await db.read(lambda s: {d.id: d.alert_id for d in s.scalars(select(Delivery))})
    assert {a.delivery_id: a.events[0].alert_id for a in answers} == pairs


async def test_a_mixed_group_ends_as_the_requests_would_one_by_one(
        db: Database, pipeline: Pipeline) -> None:
    # Known before the group: an open alert (to resolve) and one to raise again (a twin).
    for uid in ("known-open", "known-twin"):
        await pipeline.ingest(api_inbound(uid))
    group = [
        api_inbound("new-1"),
        api_inbound("new-2"),
        api_inbound("new-2", key="retry-of-new-2"),  # the same alert twice in the group
        api_inbound("known-open", "resolve"),
        api_inbound("known-twin", key="twin-copy"),
        api_inbound("tomb", "resolve"),  # a resolve before any raise: no ticket
        api_inbound("new-1", key="new-1:raise"),  # the same delivery as the first one
        Inbound(channel=Channel.API, dedupe_key="bad", payload=b"{}",
                content_type="application/json", source="datto",
                meta={"body_sha256": "bad"}, rejected_reason="missing uid"),
    ]
    answers = await ingest_together(pipeline, group)
    outcomes = [(a.duplicate, a.status, [e.outcome for e in a.events]) for a in answers]
    assert outcomes == [
        (False, DeliveryStatus.PROCESSED, ["opened"]),
        (False, DeliveryStatus.PROCESSED, ["opened"]),
        (False, DeliveryStatus.PROCESSED, ["twin"]),
        (False, DeliveryStatus.PROCESSED, ["resolved"]),
        (False, DeliveryStatus.PROCESSED, ["twin"]),
        (False, DeliveryStatus.PROCESSED, ["tombstone"]),
        (True, DeliveryStatus.PROCESSED, []),
        (False, DeliveryStatus.REJECTED, []),
    ]
    assert answers[6].delivery_id == answers[0].delivery_id
    assert await db.read(state) == {
        "alerts": {"known-open": ("resolved", 2), "known-twin": ("open", 2),
                   "new-1": ("open", 1), "new-2": ("open", 2), "tomb": ("resolved", 1)},
        "tickets": {"known-open": "closed", "known-twin": "open", "new-1": "open",
                    "new-2": "open"},
        "deliveries": Counter({"processed": 8, "rejected": 1}),
    }


async def test_a_failing_item_fails_alone(db: Database, pipeline: Pipeline,
                                          monkeypatch: Any) -> None:
    """A unit that raises sends each item of its group through a unit of its own."""
    transitions = pipeline._transitions
    original = transitions.open_new_alerts

    groups: list[list[str]] = []

    def open_unless_poisoned(conn: Any, arrivals: Any, now: Any) -> Any:
        groups.append([event.uid for _, event in arrivals])
        if any(event.uid == "poison" for _, event in arrivals):
            raise RuntimeError("simulated bug")
        return original(conn, arrivals, now)

    monkeypatch.setattr(transitions, "open_new_alerts", open_unless_poisoned)
    answers = await ingest_together(pipeline, [api_inbound("fine-1"), api_inbound("poison"),
                                               api_inbound("fine-2")])
    # Alone, every item takes the one-by-one path, which the poison does not reach.
    assert groups[0] == ["fine-1", "poison", "fine-2"]
    assert [a.status for a in answers] == [DeliveryStatus.PROCESSED] * 3
    assert await db.read(lambda s: s.scalar(select(func.count()).select_from(Ticket))) == 3


async def test_ids_that_are_stored_alike_name_one_alert_in_a_group(
        db: Database, pipeline: Pipeline) -> None:
    """U+0000 is dropped from a stored uid: "du<NUL>p" and "dup" are one alert, raised twice."""
    answers = await ingest_together(pipeline, [api_inbound("du\x00p", key="first"),
                                               api_inbound("dup", key="second")])
    assert [[e.outcome for e in a.events] for a in answers] == [["opened"], ["twin"]]
    assert (await db.read(state))["alerts"] == {"dup": ("open", 2)}


async def test_conditions_in_a_group_end_as_one_by_one(db: Database, pipeline: Pipeline,
                                                       monkeypatch: Any) -> None:
    """Rule 2 in a group: a new alert of a condition with no ticket to join or reopen opens
    its own in bulk; the others join or reopen as they would one by one, in order."""
    def raised(uid: str, device: str, **extra: Any) -> Inbound:
        return api_inbound(uid, device=device, condition="Disk usage", **extra)

    for uid, device in (("open-1", "PC-OPEN"), ("recent-1", "PC-RECENT"),
                        ("old-1", "PC-OLD")):
        await pipeline.ingest(raised(uid, device))
    for uid in ("recent-1", "old-1"):
        await pipeline.ingest(api_inbound(uid, "resolve"))
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    await db.write(lambda s: s.execute(update(Ticket).where(
        Ticket.condition == "datto | pc-old | Disk usage").values(closed_at=two_hours_ago)))
    bulk: list[list[str]] = []
    original = pipeline._transitions.open_new_alerts

    def watched(conn: Any, arrivals: Any, now: Any) -> Any:
        results = original(conn, arrivals, now)
        bulk.append([event.uid for (_, event), result in zip(arrivals, results, strict=True)
                     if result is not None])
        return results

    monkeypatch.setattr(pipeline._transitions, "open_new_alerts", watched)
    answers = await ingest_together(pipeline, [
        raised("new-1", "PC-NEW"),  # no ticket of its condition: its own, in bulk
        raised("open-2", "PC-OPEN"),  # joins the open ticket
        raised("recent-2", "PC-RECENT"),  # reopens the ticket closed a moment ago
        raised("old-2", "PC-OLD"),  # closed two hours ago: a ticket of its own, in bulk
        raised("twice-1", "PC-TWICE"),  # a condition named twice: one by one, in order
        raised("twice-2", "PC-TWICE"),
    ])
    assert [[e.outcome for e in a.events] for a in answers] == [
        ["opened"], ["joined"], ["reopened"], ["opened"], ["opened"], ["joined"]]
    # (PostgreSQL decides each condition's ticket under its lock: one by one.)
    assert sorted(uid for uids in bulk for uid in uids) == (
        ["new-1", "old-2"] if db.serializes_writes else [])
    tickets = await db.read(lambda s: dict(s.execute(
        select(Ticket.condition, func.count()).group_by(Ticket.condition)).all()))
    assert tickets == {"datto | pc-new | Disk usage": 1, "datto | pc-open | Disk usage": 1,
                       "datto | pc-recent | Disk usage": 1, "datto | pc-old | Disk usage": 2,
                       "datto | pc-twice | Disk usage": 1}
    ticket_of = {a.events[0].alert_id: a.events[0].ticket_id for a in answers}
    stored = await db.read(lambda s: dict(s.execute(
        select(Alert.id, Alert.ticket_id).where(Alert.id.in_(ticket_of))).all()))
    assert stored == ticket_of
