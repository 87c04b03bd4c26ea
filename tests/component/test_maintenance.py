"""Issue 16, rule 4: maintenance windows through the real app - the API, Datto webhooks, alert
mail, the release job, weekly windows from the configuration - on each backend. Answers are
validated against the OpenAPI document (tests.api_client)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from daemon.config import Config, ConfigError
from daemon.core.clock import utcnow
from daemon.core.events import Channel
from daemon.intake.inbound import Inbound
from daemon.store.models import Alert, Customer, Ticket
from daemon.tickets import maintenance
from daemon.tickets.maintenance import MaintenanceRelease
from tests.api_client import Api
from tests.component.test_conditions import datto, ticket
from tests.lifecycle_app import MakeApp, uid


def iso(moment: datetime) -> str:
    return moment.isoformat()


async def add_window(app: Api, scope: str = "all", value: str | None = None,
                     minutes: float = 60, **extra: Any) -> dict[str, Any]:
    now = utcnow()
    body = {"scope": scope, "starts_at": iso(now - timedelta(minutes=1)),
            "ends_at": iso(now + timedelta(minutes=minutes)), "reason": "patch night", **extra}
    if value is not None:
        body["value"] = value
    status, window = await app.call("POST", "/api/maintenance", body=body)
    assert status == 201, window
    assert isinstance(window, dict)
    return window


def release_job(app: Api, minutes_later: float = 0) -> MaintenanceRelease:
    """The release job of `app`, its clock `minutes_later` from now."""
    release = app.ctx.release
    later = utcnow() + timedelta(minutes=minutes_later)
    release._clock = lambda: later  # type: ignore[method-assign]
    return release


async def end(app: Api, window_id: int) -> dict[str, Any]:
    status, window = await app.call("DELETE", f"/api/maintenance/{window_id}")
    assert status == 200, window
    assert isinstance(window, dict)
    return window


async def test_a_window_suppresses_raises_in_scope_and_releases_them_when_it_ends(
        app: Api) -> None:
    window = await add_window(app, "device", "fs-acme-01")  # datto_body's device, any case
    assert window["state"] == "active" and window["suppressed"] == 0
    held = await datto(app, 1)
    assert (held["outcome"], held["ticket_id"]) == ("suppressed", None)
    other = await datto(app, 2, device_hostname="WS-OTHER",
                        device_uid="0b1c2d3e-aaaa-bbbb-cccc-ffffffffffff")
    assert other["outcome"] == "opened"  # another device: not in scope
    status, listing = await app.call("GET", "/api/maintenance")
    assert status == 200 and listing["items"][0]["suppressed"] == 1
    status, trail = await app.call("GET", f"/api/alerts/{held['alert_id']}/trail")
    assert trail["items"][-1]["decision"] == "suppressed"
    assert f"suppressed by window {window['id']}" in trail["items"][-1]["reason"]

    assert await release_job(app).run_once() == []  # still inside the window
    ended = await end(app, window["id"])
    assert ended["state"] == "ended" and ended["ended_by"] == "agent:api"
    released = await release_job(app).run_once()
    assert [(r.alert_id, r.outcome) for r in released] == [(held["alert_id"], "released")]
    view = await ticket(app, released[0].ticket_id)
    # The ticket is made of the raise, as it would have been without the window.
    assert view["summary"] == "FS-ACME-01 - Disk C: 97% used" and view["priority"] == "High"
    assert "during maintenance (window" in view["notes"][0]["body"]
    assert await release_job(app).run_once() == []  # once


async def test_a_resolve_during_the_window_resolves_quietly(app: Api) -> None:
    await add_window(app)
    held = await datto(app, 1)
    assert held["outcome"] == "suppressed"
    assert (await datto(app, 1, resolved=True))["outcome"] == "resolved"
    assert await release_job(app, minutes_later=120).run_once() == []
    count = await app.ctx.db.read(lambda s: len(s.scalars(select(Ticket)).all()))
    assert count == 0


async def test_an_existing_ticket_closes_as_usual_inside_a_window(app: Api) -> None:
    opened = await datto(app, 1)
    await add_window(app)
    assert (await datto(app, 1, resolved=True))["outcome"] == "resolved"
    assert (await ticket(app, opened["ticket_id"]))["status"] == "closed"


async def test_released_alerts_of_one_condition_share_one_ticket(app: Api) -> None:
    window = await add_window(app)
    assert [(await datto(app, n))["outcome"] for n in (1, 2, 3)] == ["suppressed"] * 3
    await end(app, window["id"])
    released = await release_job(app).run_once()
    assert [r.outcome for r in released] == ["released"] * 3
    assert len({r.ticket_id for r in released}) == 1
    view = await ticket(app, released[0].ticket_id)
    assert view["occurrences"] == 3 and len(view["alerts"]) == 3


async def test_a_window_over_a_synced_customer_covers_its_devices(app: Api) -> None:
    """The value names the customer; the alert names only its device and site: the sync's
    records place it at that customer."""
    now = utcnow()
    await app.ctx.db.write(lambda s: s.add(Customer(id=7, name="Acme Dental", active=True,
                                                    updated_at=now)))
    window = await add_window(app, "customer", "ACME DENTAL")
    held = await datto(app, 1, site_name="Whatever", fields={"Client": "Acme Dental"})
    assert held["outcome"] == "suppressed"
    by_id = await add_window(app, "customer", "7")
    await end(app, window["id"])
    assert (await datto(app, 2, fields={"Client": "Acme Dental"}))["outcome"] == "suppressed"
    assert by_id["suppressed"] == 0  # counted when read
    status, read = await app.call("GET", f"/api/maintenance/{by_id['id']}")
    assert status == 200 and read["suppressed"] == 1


async def test_the_release_asks_the_rmm_first(app: Api) -> None:
    window = await add_window(app)
    held = [await datto(app, n) for n in (1, 2)]
    await end(app, window["id"])
    release = release_job(app)
    asked = []

    async def resolved_upstream(alert_uid: str) -> bool | None:
        asked.append(alert_uid)
        return alert_uid == uid(1)
    release._checks = {"datto": resolved_upstream}
    released = await release.run_once()
    assert asked == [uid(1), uid(2)]
    assert [(r.alert_id, r.outcome, r.ticket_id is None) for r in released] == [
        (held[0]["alert_id"], "resolved", True), (held[1]["alert_id"], "released", False)]
    state = await app.ctx.db.read(lambda s: s.scalar(
        select(Alert.resolved_by).where(Alert.id == held[0]["alert_id"])))
    assert state == "upstream"


async def test_a_scheduled_window_suppresses_nothing_yet(app: Api) -> None:
    now = utcnow()
    status, window = await app.call("POST", "/api/maintenance", body={
        "scope": "all", "starts_at": iso(now + timedelta(hours=1)),
        "ends_at": iso(now + timedelta(hours=2))})
    assert status == 201 and window["state"] == "scheduled"
    assert (await datto(app, 1))["outcome"] == "opened"
    cancelled = await end(app, window["id"])  # not started: cancelled
    assert cancelled["state"] == "ended"


@pytest.mark.parametrize(("body", "reason"), [
    ({"scope": "all", "starts_at": "2026-12-12T22:00:00Z", "ends_at": "2026-12-12T21:00:00Z"},
     "a window must end after it starts (ends_at after starts_at)"),
    ({"scope": "all", "value": "x", "starts_at": "2026-12-12T22:00:00Z",
      "ends_at": "2026-12-12T23:00:00Z"}, "unknown field(s): value"),
    ({"scope": "site", "starts_at": "2026-12-12T22:00:00Z", "ends_at": "2026-12-12T23:00:00Z"},
     "'value' is required"),
    ({"scope": "device", "value": " ", "starts_at": "2026-12-12T22:00:00Z",
      "ends_at": "2026-12-12T23:00:00Z"}, "'value' must not be empty or contain NUL"),
    ({"scope": "all", "starts_at": "2026-12-12T22:00:00", "ends_at": "2026-12-12T23:00:00Z"},
     "'starts_at' input should have timezone info"),
    ({"scope": "all", "starts_at": "0001-01-01T00:00:00+01:00",
      "ends_at": "2026-12-12T23:00:00Z"}, "'starts_at' is out of range"),
    ({"scope": "everything"}, "'scope' is one of all, customer, site, device"),
    (["all"], "'scope' is one of all, customer, site, device"),
])
async def test_a_window_that_cannot_be_is_refused_with_its_reason(
        app: Api, body: Any, reason: str) -> None:
    status, answer = await app.call("POST", "/api/maintenance", body=body)
    assert status == 422 and reason in answer["detail"], answer
    status, listing = await app.call("GET", "/api/maintenance")
    assert listing["items"] == []


async def test_unknown_windows_are_404(app: Api) -> None:
    for method in ("GET", "DELETE"):
        status, _ = await app.call(method, "/api/maintenance/99")
        assert status == 404


WEEKLY = '''
[[lifecycle.maintenance]]
name = "patch night"
scope = "site"
value = "Acme Dental"
days = ["{day}"]
start = "{start}"
duration = "2h"
time_zone = "Europe/Berlin"
reason = "Windows updates"
'''


async def test_a_weekly_window_from_the_configuration(make_app: MakeApp) -> None:
    now = utcnow().astimezone(ZoneInfo("Europe/Berlin"))
    started = now - timedelta(minutes=30)
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[started.weekday()]
    app = await make_app(WEEKLY.format(day=day, start=started.strftime("%H:%M")))
    assert (await datto(app, 1))["outcome"] == "suppressed"  # datto_body's site
    status, listing = await app.call("GET", "/api/maintenance")
    assert status == 200
    weekly = listing["weekly"][0]
    assert (weekly["name"], weekly["active"], weekly["suppressed"]) == ("patch night", True, 1)
    released = await release_job(app, minutes_later=120).run_once()
    assert [r.outcome for r in released] == ["released"]


@pytest.mark.parametrize(("change", "message"), [
    ('time_zone = "Europe/Berlin"', 'time_zone = "Mars/Olympus_Mons"'),
    ('days = ["mon"]', 'days = ["someday"]'),
    ('start = "22:00"', 'start = "25:00"'),
    ('duration = "2h"', 'duration = "8d"'),
])
def test_a_weekly_window_that_cannot_be_is_a_config_error(
        make_config: Callable[..., Config], change: str, message: str) -> None:
    text = WEEKLY.format(day="mon", start="22:00").replace(change, message)
    with pytest.raises(ConfigError) as err:
        make_config("[lifecycle]\n" + text)
    assert "lifecycle.maintenance" in str(err.value), str(err.value)


def test_an_unknown_time_zone_is_named(make_config: Callable[..., Config]) -> None:
    text = WEEKLY.format(day="mon", start="22:00").replace("Europe/Berlin", "Mars/Base")
    with pytest.raises(ConfigError, match="'Mars/Base' is not a time zone alertd knows"):
        make_config("[lifecycle]\n" + text)



async def test_mail_in_a_window_is_suppressed_too(app: Api) -> None:
    await add_window(app, "device", "FS-ACME-01")
    accepted = await app.ctx.pipeline.submit(Inbound(
        channel=Channel.SMTP, dedupe_key="mail-1", content_type="message/rfc822",
        payload=(f"From: rmm@example-msp.com\r\nTo: alerts@example-msp.com\r\n"
                 f"Subject: Alert on device: FS-ACME-01, reason Disk usage - "
                 f"Alert{{{uid(1)}}}\r\nMessage-ID: <m1@x>\r\n\r\nbody\r\n").encode()))
    result = await app.ctx.pipeline.process(accepted.delivery_id)
    assert result is not None and result.events[0].outcome == "suppressed"


STEPS = ("raise", "resolve", "start", "end")
ORDERS = [order for order in itertools.permutations(STEPS)
          if order.index("start") < order.index("end")]


def expected_tickets(order: tuple[str, ...]) -> int:
    """One closed ticket, unless the raise came inside the window and the alert was resolved
    before the window's end (quietly, no ticket): either while suppressed, or before its
    raise (a late raise inside the window is suppressed too)."""
    inside = order.index("start") < order.index("raise") < order.index("end")
    return 0 if inside and order.index("resolve") < order.index("end") else 1


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
async def test_every_order_of_raise_resolve_and_a_window(app: Api,
                                                         order: tuple[str, ...]) -> None:
    window: dict[str, Any] = {}
    for step in order:
        if step == "start":
            window = await add_window(app)
        elif step == "end":
            await end(app, window["id"])
            await release_job(app).run_once()  # the job's next run
        else:
            await datto(app, 1, resolved=step == "resolve")
    await release_job(app, minutes_later=5).run_once()

    def read(session: Any) -> tuple[list[str], str]:
        return (list(session.scalars(select(Ticket.status))),
                session.scalar(select(Alert.state)))
    statuses, alert_state = await app.ctx.db.read(read)
    assert alert_state == "resolved"
    assert statuses == ["closed"] * expected_tickets(order), order


async def test_a_long_window_never_holds_back_the_alerts_of_one_that_ended(
        app: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maintenance, "MAX_RELEASED_PER_RUN", 2)
    await add_window(app, "device", "FS-LONG", minutes=14 * 24 * 60)  # a two-week site move
    for n in (1, 2, 3):
        held = await datto(app, n, device_hostname="FS-LONG",
                           device_uid=f"0b1c2d3e-aaaa-bbbb-cccc-00000000000{n}")
        assert held["outcome"] == "suppressed"
    short = await add_window(app, "device", "FS-ACME-01")
    assert (await datto(app, 4))["outcome"] == "suppressed"
    await end(app, short["id"])
    released = await release_job(app).run_once()
    assert [(r.uid, r.outcome) for r in released] == [(uid(4), "released")]
