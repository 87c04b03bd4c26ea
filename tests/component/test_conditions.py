"""Issue 16, rules 2 and 3: one open ticket per condition, flapping conditions reopen their
ticket, a close held back until the condition stayed clear. Through the real app - Datto and
Syncro webhooks, alert mail, the API - on each backend; answers are validated against the
OpenAPI document (tests.api_client)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from daemon.core.clock import utcnow
from daemon.core.events import Channel
from daemon.intake.inbound import Inbound
from daemon.store.models import Alert, OutboxAction, Ticket
from daemon.tickets.clearing import ClearedTickets
from tests.api_client import Api
from tests.component.test_webhooks import datto_body, post_datto, post_syncro
from tests.lifecycle_app import MakeApp, uid
from tests.webhook_samples import syncro_body

DEVICE = "0b1c2d3e-aaaa-bbbb-cccc-0123456789ab"  # datto_body's device_uid
CONDITION = f"datto | {DEVICE} | Disk Usage"
async def datto(app: Api, n: int, resolved: bool = False, **extra: Any) -> dict[str, Any]:
    """A Datto webhook for alert `n`; its event (outcome, ticket_id)."""
    status, answer = await post_datto(app, datto_body(resolved=resolved, uid=uid(n), **extra))
    assert status == 201, answer
    event = answer["events"][0]
    assert isinstance(event, dict)
    return event


async def ticket(app: Api, ticket_id: int) -> dict[str, Any]:
    status, body = await app.call("GET", f"/api/tickets/{ticket_id}")
    assert status == 200, body
    assert isinstance(body, dict)
    return body


def alertd_notes(view: dict[str, Any]) -> list[str]:
    return [note["body"] for note in view["notes"] if note["author"] == "alertd"]


async def test_raises_of_one_condition_share_its_open_ticket(app: Api) -> None:
    first = await datto(app, 1)
    assert first["outcome"] == "opened"
    joined = [await datto(app, n) for n in (2, 3)]
    assert [e["outcome"] for e in joined] == ["joined", "joined"]
    assert {e["ticket_id"] for e in joined} == {first["ticket_id"]}

    view = await ticket(app, first["ticket_id"])
    assert (view["status"], view["occurrences"], view["condition"]) == ("open", 3, CONDITION)
    assert [a["uid"] for a in view["alerts"]] == [uid(1), uid(2), uid(3)]
    # One note for the burst, not one per raise.
    notes = alertd_notes(view)
    assert len(notes) == 1 and f"alert {uid(2)} (by webhook); 2 raises" in notes[0], notes

    # Another kind of check, or another device: a condition of its own.
    other_kind = await datto(app, 4, alert_category="CPU Usage")
    other_device = await datto(app, 5, device_uid="0b1c2d3e-aaaa-bbbb-cccc-ffffffffffff")
    assert [other_kind["outcome"], other_device["outcome"]] == ["opened", "opened"]
    assert len({first["ticket_id"], other_kind["ticket_id"], other_device["ticket_id"]}) == 3

    status, alert = await app.call("GET", "/api/alerts", params={"uid": uid(2)})
    assert status == 200 and alert["items"][0]["ticket_id"] == first["ticket_id"]
    assert alert["items"][0]["condition"] == CONDITION
    status, trail = await app.call("GET", f"/api/alerts/{alert['items'][0]['id']}/trail")
    assert status == 200 and trail["items"][0]["decision"] == "joined"
    assert f"joined open ticket {first['ticket_id']} of its condition" in \
        trail["items"][0]["reason"]


async def test_the_ticket_closes_when_all_its_alerts_are_resolved(app: Api) -> None:
    ticket_id = (await datto(app, 1))["ticket_id"]
    await datto(app, 2)
    assert (await datto(app, 1, resolved=True))["outcome"] == "resolved_others_open"
    assert (await ticket(app, ticket_id))["status"] == "open"
    assert (await datto(app, 2, resolved=True))["outcome"] == "resolved"
    view = await ticket(app, ticket_id)
    assert (view["status"], view["closed_by"]) == ("closed", "upstream:datto")
    assert [a["state"] for a in view["alerts"]] == ["resolved", "resolved"]


async def test_without_grouping_or_reopening_each_alert_has_its_own_ticket(
        make_app: MakeApp) -> None:
    app = await make_app('group_by_condition = false\nreopen_window = "0s"\n')
    first, second = await datto(app, 1), await datto(app, 2)
    assert [first["outcome"], second["outcome"]] == ["opened", "opened"]
    await datto(app, 1, resolved=True)
    assert (await datto(app, 3))["outcome"] == "opened"


async def test_a_raise_shortly_after_the_close_reopens_the_ticket(app: Api) -> None:
    ticket_id = (await datto(app, 1))["ticket_id"]
    assert (await datto(app, 1, resolved=True))["outcome"] == "resolved"
    reopened = await datto(app, 2)
    assert (reopened["outcome"], reopened["ticket_id"]) == ("reopened", ticket_id)
    view = await ticket(app, ticket_id)
    assert (view["status"], view["closed_at"], view["occurrences"]) == ("open", None, 2)
    assert any(n.startswith("Ticket reopened: Datto RMM raised its condition again")
               for n in alertd_notes(view))
    # Resolved again; its raise once the window has passed opens a ticket of its own.
    await datto(app, 2, resolved=True)
    await app.ctx.db.write(lambda s: s.execute(update(Ticket).values(
        closed_at=utcnow() - timedelta(hours=2))))
    later = await datto(app, 3)
    assert later["outcome"] == "opened" and later["ticket_id"] != ticket_id


async def test_reopen_window_sets_how_long_a_closed_ticket_reopens(make_app: MakeApp) -> None:
    app = await make_app('reopen_window = "10m"\n')
    ticket_id = (await datto(app, 1))["ticket_id"]
    await datto(app, 1, resolved=True)
    await app.ctx.db.write(lambda s: s.execute(update(Ticket).values(
        closed_at=utcnow() - timedelta(minutes=11))))
    assert (await datto(app, 2))["ticket_id"] != ticket_id


async def test_an_agents_close_resolves_every_alert_of_the_ticket(app: Api) -> None:
    ticket_id = (await datto(app, 1))["ticket_id"]
    await datto(app, 2)
    status, body = await app.call("POST", f"/api/tickets/{ticket_id}/close",
                                  body={"note": "fixed the disk"})
    assert status == 200, body
    view = await ticket(app, ticket_id)
    assert [a["state"] for a in view["alerts"]] == ["resolved", "resolved"]
    outbox = await app.ctx.db.read(lambda s: sorted(s.scalars(select(OutboxAction.target))))
    assert outbox == [uid(1), uid(2)]  # each resolved in Datto RMM
    # Datto's echo of each resolve changes nothing.
    assert (await datto(app, 2, resolved=True))["outcome"] == "already_resolved"


async def test_a_late_raise_joins_its_conditions_open_ticket_resolved(app: Api) -> None:
    ticket_id = (await datto(app, 1))["ticket_id"]
    assert (await datto(app, 2, resolved=True))["outcome"] == "tombstone"
    late = await datto(app, 2)
    assert (late["outcome"], late["ticket_id"]) == ("late_raise", ticket_id)
    view = await ticket(app, ticket_id)
    assert (view["status"], view["occurrences"]) == ("open", 2)
    assert [a["state"] for a in view["alerts"]] == ["open", "resolved"]


async def test_close_after_clear_closes_once_the_condition_stayed_clear(
        make_app: MakeApp) -> None:
    app = await make_app('close_after_clear = "10m"\n')
    ctx = app.ctx
    ticket_id = (await datto(app, 1))["ticket_id"]
    assert (await datto(app, 1, resolved=True))["outcome"] == "resolved_clearing"
    view = await ticket(app, ticket_id)
    assert view["status"] == "open" and view["close_due_at"] is not None

    def job(minutes: int) -> ClearedTickets:
        later = utcnow() + timedelta(minutes=minutes)
        return ClearedTickets(ctx.db, ctx.metrics, clock=lambda: later)

    assert await job(5).run_once() == 0  # not clear long enough yet
    assert await job(11).run_once() == 1
    view = await ticket(app, ticket_id)
    assert (view["status"], view["closed_by"], view["close_due_at"]) == (
        "closed", "alertd:cleared", None)

    # It flaps: reopened, resolved, and raised again before it stayed clear: stays open.
    assert (await datto(app, 2))["outcome"] == "reopened"
    assert (await datto(app, 2, resolved=True))["outcome"] == "resolved_clearing"
    assert (await datto(app, 3))["outcome"] == "joined"
    assert (await ticket(app, ticket_id))["close_due_at"] is None
    assert await job(11).run_once() == 0
    assert (await ticket(app, ticket_id))["status"] == "open"


async def test_close_after_clear_leaves_a_ticket_worked_on_meanwhile_open(
        make_app: MakeApp) -> None:
    app = await make_app('close_after_clear = "10m"\n')
    ticket_id = (await datto(app, 1))["ticket_id"]
    await datto(app, 1, resolved=True)
    status, _ = await app.call("POST", f"/api/tickets/{ticket_id}/notes",
                               body={"body": "looking at it"})
    assert status == 201
    later = utcnow() + timedelta(minutes=11)
    job = ClearedTickets(app.ctx.db, app.ctx.metrics, clock=lambda: later)
    assert await job.run_once() == 0
    view = await ticket(app, ticket_id)
    assert (view["status"], view["upstream_resolved"], view["close_due_at"]) == (
        "open", True, None)
    assert "ticket left open because it is being worked" in alertd_notes(view)[-1]


async def test_syncro_alerts_of_one_asset_and_trigger_share_a_ticket(app: Api) -> None:
    outcomes = []
    for alert_id in (501234567, 501234568):
        status, body = await post_syncro(app, syncro_body(resolved=False, id=alert_id))
        assert status == 201, body
        outcomes.append(body["events"][0]["outcome"])
    assert outcomes == ["opened", "joined"]


async def test_mail_rules_give_the_condition(app: Api) -> None:
    outcomes = []
    for n in (1, 2):
        accepted = await app.ctx.pipeline.submit(Inbound(
            channel=Channel.SMTP, dedupe_key=f"mail-{n}", content_type="message/rfc822",
            payload=(f"From: rmm@example-msp.com\r\nTo: alerts@example-msp.com\r\n"
                     f"Subject: Alert on device: FS-ACME-01, reason Disk usage - "
                     f"Alert{{{uid(n)}}}\r\nMessage-ID: <m{n}@x>\r\n\r\nbody\r\n").encode()))
        result = await app.ctx.pipeline.process(accepted.delivery_id)
        assert result is not None
        outcomes.append(result.events[0].outcome)
    assert outcomes == ["opened", "joined"]


async def test_api_events_group_by_the_condition_they_name(app: Api) -> None:
    async def post(n: int, **fields: str) -> str:
        status, body = await app.call("POST", "/api/alerts", body={
            "source": "backup", "uid": f"job-{n}", "action": "raise", "device": "NAS-1",
            **fields})
        assert status == 201, body
        return str(body["events"][0]["outcome"])
    assert [await post(1, condition="nightly job"), await post(2, condition="nightly job"),
            await post(3)] == ["opened", "joined", "opened"]


ORDERS = list(itertools.permutations(["raise 1", "raise 2", "resolve 1", "resolve 2"]))


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o).replace(" ", "") for o in ORDERS])
async def test_every_order_of_two_alerts_of_one_condition_ends_on_one_closed_ticket(
        app: Api, order: tuple[str, ...]) -> None:
    for step in order:
        action, n = step.split()
        await datto(app, int(n), resolved=action == "resolve")

    def read(session: Any) -> tuple[list[Any], list[Any]]:
        return (list(session.execute(select(Ticket.status, Ticket.occurrences))),
                list(session.execute(select(Alert.state, Alert.ticket_id))))
    tickets, alerts = await app.ctx.db.read(read)
    assert [tuple(t) for t in tickets] == [("closed", 2)], order
    assert {state for state, _ in alerts} == {"resolved"}
    assert len({ticket_id for _, ticket_id in alerts}) == 1


async def test_the_trail_and_counts_say_what_each_raise_did(app: Api) -> None:
    await datto(app, 1)
    await datto(app, 2)
    await datto(app, 1, resolved=True)
    await datto(app, 2, resolved=True)
    await datto(app, 3)
    metrics = app.ctx.metrics.registry
    outcomes = {outcome: metrics.get_sample_value(
        "alertd_lifecycle_events_total", {"source": "datto", "outcome": outcome})
        for outcome in ("opened", "joined", "resolved_others_open", "resolved", "reopened")}
    assert outcomes == dict.fromkeys(outcomes, 1.0)
    count = await app.ctx.db.read(lambda s: s.scalar(select(func.count()).select_from(Ticket)))
    assert count == 1


async def test_a_raise_joining_a_ticket_left_open_makes_it_current_again(app: Api) -> None:
    """Rule 1 left the worked ticket open after its alert resolved upstream; the condition is
    raised again: the ticket is no longer 'resolved upstream'."""
    ticket_id = (await datto(app, 1))["ticket_id"]
    status, _ = await app.call("POST", f"/api/tickets/{ticket_id}/notes", body={"body": "on it"})
    assert status == 201
    assert (await datto(app, 1, resolved=True))["outcome"] == "resolved_left_open"
    assert (await ticket(app, ticket_id))["upstream_resolved"] is True
    assert (await datto(app, 2))["outcome"] == "joined"
    view = await ticket(app, ticket_id)
    assert (view["status"], view["upstream_resolved"], view["occurrences"]) == ("open", False, 2)


async def test_a_late_raise_does_not_hold_a_clearing_close_back(make_app: MakeApp) -> None:
    """The mail copy of an alert, resolved already, arrives after its ticket started waiting
    for the condition to stay clear: counted, but the close still comes."""
    app = await make_app('close_after_clear = "10m"\n')
    ticket_id = (await datto(app, 1))["ticket_id"]
    assert (await datto(app, 2, resolved=True))["outcome"] == "tombstone"
    assert (await datto(app, 1, resolved=True))["outcome"] == "resolved_clearing"
    late = await datto(app, 2)
    assert (late["outcome"], late["ticket_id"]) == ("late_raise", ticket_id)
    view = await ticket(app, ticket_id)
    assert view["close_due_at"] is not None and view["occurrences"] == 2
    later = utcnow() + timedelta(minutes=11)
    assert await ClearedTickets(app.ctx.db, app.ctx.metrics, clock=lambda: later).run_once() == 1


async def test_a_late_raise_brings_the_condition_its_resolve_lacked(app: Api) -> None:
    """The resolve came by API without a condition, the raise by webhook with one: the late
    raise joins its condition's open ticket."""
    ticket_id = (await datto(app, 1))["ticket_id"]
    status, body = await app.call("POST", "/api/alerts", body={
        "source": "datto", "uid": uid(2), "action": "resolve"})
    assert status == 201 and body["events"][0]["outcome"] == "tombstone"
    late = await datto(app, 2)
    assert (late["outcome"], late["ticket_id"]) == ("late_raise", ticket_id)
