"""Every lifecycle transition through the real pipeline and database, on SQLite and PostgreSQL.

Each row plays a sequence of steps for one alert id and checks what is stored afterwards.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daemon.core.events import Channel
from daemon.core.lifecycle import TicketAlreadyClosed
from daemon.intake.inbound import Inbound
from daemon.intake.pipeline import Pipeline
from daemon.store.database import Database
from daemon.store.models import Alert, OutboxAction, Ticket, TicketNote
from daemon.tickets.agent import AgentActions
from tests.helpers import deliver

E, W, P = Channel.SMTP, Channel.WEBHOOK, Channel.POLL


@dataclass(frozen=True)
class Expect:
    outcomes: list[str]
    state: str
    resolved_by: str | None
    tickets: int
    ticket_status: str | None
    outbox: int
    channels: list[str]
    occurrences: int
    closed_by: str | None = None


STEPS = [
    ("raise, no alert yet -> alert open + one ticket",
     [("raise", E)],
     Expect(["opened"], "open", None, 1, "open", 0, ["smtp"], 1)),
    ("raise while open -> twin: no new ticket, channel recorded",
     [("raise", E), ("raise", W)],
     Expect(["opened", "twin"], "open", None, 1, "open", 0, ["smtp", "webhook"], 2)),
    ("resolve while open -> resolved upstream, ticket closed with a note",
     [("raise", W), ("resolve", E)],
     Expect(["opened", "resolved"], "resolved", "upstream", 1, "closed", 0,
            ["webhook", "smtp"], 2, closed_by="upstream:datto")),
    ("resolve with no alert yet -> tombstone, no ticket",
     [("resolve", E)],
     Expect(["tombstone"], "resolved", "upstream", 0, None, 0, ["smtp"], 1)),
    ("late raise after a tombstone -> the same end state as in order: one closed ticket",
     [("resolve", W), ("raise", E)],
     Expect(["tombstone", "late_raise"], "resolved", "upstream", 1, "closed", 0,
            ["webhook", "smtp"], 2, closed_by="upstream:datto")),
    ("a third copy after the late raise is a late twin",
     [("resolve", W), ("raise", E), ("raise", W)],
     Expect(["tombstone", "late_raise", "late_twin"], "resolved", "upstream", 1, "closed", 0,
            ["webhook", "smtp"], 3, closed_by="upstream:datto")),
    ("raise after resolve (late twin) -> recorded, no new ticket",
     [("raise", E), ("resolve", E), ("raise", W)],
     Expect(["opened", "resolved", "late_twin"], "resolved", "upstream", 1, "closed", 0,
            ["smtp", "webhook"], 3, closed_by="upstream:datto")),
    ("agent closes ticket -> resolved by ticket + one outbox row",
     [("raise", E), ("close", None)],
     Expect(["opened"], "resolved", "ticket", 1, "closed", 1, ["smtp"], 1,
            closed_by="agent:tester")),
    ("upstream resolve after agent close -> no-op, no echo, no second outbox row",
     [("raise", E), ("close", None), ("resolve", W), ("resolve", P)],
     Expect(["opened", "already_resolved", "already_resolved"], "resolved", "ticket", 1,
            "closed", 1, ["smtp", "webhook", "poll"], 3, closed_by="agent:tester")),
]


@pytest.mark.parametrize(("steps", "expect"), [row[1:] for row in STEPS],
                         ids=[row[0] for row in STEPS])
async def test_transition(db: Database, pipeline: Pipeline, agent: AgentActions,
                          steps: list[tuple[str, Channel | None]], expect: Expect) -> None:
    uid = "7d3c3b0e-1111-4c8e-9a55-0123456789ab"
    outcomes = []
    for action, channel in steps:
        if action == "close":
            ticket_id = await db.read(lambda s: s.scalar(select(Ticket.id)))
            assert ticket_id is not None
            await agent.close(ticket_id, "agent:tester", "fixed the disk")
        else:
            assert channel is not None
            result = await deliver(pipeline, uid, action, channel, device="FS-01")
            assert result.status.value == "processed"
            outcomes += [e.outcome for e in result.events]
    assert outcomes == expect.outcomes

    def check(session: Session) -> None:
        alerts = session.scalars(select(Alert)).all()
        assert len(alerts) == 1
        alert = alerts[0]
        assert (alert.source, alert.uid) == ("datto", uid)
        assert alert.state == expect.state
        assert alert.resolved_by == expect.resolved_by
        assert (alert.resolved_at is not None) == (expect.state == "resolved")
        assert alert.channels == expect.channels
        assert alert.occurrences == expect.occurrences
        all_tickets = session.scalars(select(Ticket)).all()
        assert len(all_tickets) == expect.tickets
        if expect.ticket_status:
            ticket = all_tickets[0]
            assert ticket.alert_id == alert.id
            assert ticket.status == expect.ticket_status
            assert ticket.closed_by == expect.closed_by
            assert (ticket.closed_at is not None) == (expect.ticket_status == "closed")
            notes = session.scalars(select(TicketNote.body)).all()
            if expect.closed_by == "upstream:datto":
                assert any("resolved in datto" in n for n in notes)
            if expect.closed_by == "agent:tester":
                assert notes == ["fixed the disk"]
        outbox = session.scalars(select(OutboxAction)).all()
        assert len(outbox) == expect.outbox
        for row in outbox:
            assert (row.action, row.source, row.target, row.status) == (
                "resolve_alert", "datto", uid, "pending")

    await db.read(check)


async def test_closing_twice_is_refused_and_queues_nothing(
        db: Database, pipeline: Pipeline, agent: AgentActions) -> None:
    result = await deliver(pipeline, "u-1")
    ticket_id = result.events[0].ticket_id
    assert ticket_id is not None
    await agent.close(ticket_id, "agent:a")
    with pytest.raises(TicketAlreadyClosed):
        await agent.close(ticket_id, "agent:b")
    assert await db.read(lambda s: s.scalar(select(func.count()).select_from(OutboxAction))) == 1
    closed_by = await db.read(lambda s: s.scalar(select(Ticket.closed_by)))
    assert closed_by == "agent:a"


async def test_custom_source_closes_without_upstream_action(
        db: Database, pipeline: Pipeline, agent: AgentActions) -> None:
    result = await deliver(pipeline, "backup-42", source="veeam")
    ticket_id = result.events[0].ticket_id
    assert ticket_id is not None
    closed = await agent.close(ticket_id, "agent:a")
    assert closed.alert_resolved and closed.outbox_id is None
    assert await db.read(lambda s: s.scalar(select(func.count()).select_from(OutboxAction))) == 0


async def test_same_uid_different_sources_are_different_alerts(
        db: Database, pipeline: Pipeline) -> None:
    first = await deliver(pipeline, "1001", source="datto")
    second = await deliver(pipeline, "1001", source="syncro")
    assert [first.events[0].outcome, second.events[0].outcome] == ["opened", "opened"]
    assert first.events[0].alert_id != second.events[0].alert_id


async def test_twin_fills_fields_the_first_copy_lacked(db: Database, pipeline: Pipeline) -> None:
    await deliver(pipeline, "u-2", channel=E)
    await deliver(pipeline, "u-2", channel=W, device="PC-9", site="HQ", priority="High")
    row = await db.read(lambda s: s.execute(
        select(Alert.device, Alert.site, Alert.priority)).one())
    assert tuple(row) == ("PC-9", "HQ", "High")


async def test_agent_close_and_upstream_resolve_at_once_have_one_winner(
        db: Database, pipeline: Pipeline, agent: AgentActions) -> None:
    """On SQLite both land in one group-commit batch; on PostgreSQL they race on row locks.
    Either way exactly one of them closes the ticket."""
    for n in range(10):
        uid = f"race-{n}"
        opened = await deliver(pipeline, uid, source="veeam")
        ticket_id = opened.events[0].ticket_id
        assert ticket_id is not None
        accepted = await pipeline.submit(Inbound(
            channel=Channel.API, dedupe_key=f"resolve-{n}", content_type="application/json",
            payload=json.dumps({"source": "veeam", "uid": uid, "action": "resolve"}).encode()))
        # A slow write first, so on SQLite the close and the resolve queue up behind it and
        # are committed in one batch (the case where units share a transaction).
        slow = asyncio.create_task(db.write(lambda _s: time.sleep(0.3)))
        await asyncio.sleep(0.05)  # the writer is now busy with it
        closed, resolved = await asyncio.gather(
            agent.close(ticket_id, "agent:bob"),
            pipeline.process(accepted.delivery_id), return_exceptions=True)
        await slow
        assert resolved is not None and not isinstance(resolved, BaseException)
        outcome = resolved.events[0].outcome
        if isinstance(closed, TicketAlreadyClosed):
            assert outcome == "resolved"
        else:
            assert not isinstance(closed, BaseException)
            assert outcome == "already_resolved", (n, outcome)
        row = await db.read(lambda s, t=ticket_id: s.get(Ticket, t))
        assert row is not None and row.status == "closed"
