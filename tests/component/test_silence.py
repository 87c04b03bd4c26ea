"""`[watch]` (issue 18, item 4) and the `channel.silent` notification (issue 17): a channel past
its silence raises one alertd alert and ticket, tells the targets, and resolves when input
resumes. Through the real app, on each backend."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.core.clock import utcnow
from daemon.store.models import Alert, Delivery, OutboxAction
from daemon.tickets.silence import SilenceWatch
from tests.api_client import Api
from tests.component.test_webhooks import datto_body, post_datto
from tests.lifecycle_app import MakeApp, uid

WATCH = ('\n[watch]\n"webhook:datto" = "1h"\n"smtp" = "6h"\n'
         '[[notify]]\nname = "noc"\nkind = "webhook"\nurl = "http://127.0.0.1:9/hook"\n'
         'secret = "silence-test-secret-0123"\n'
         'events = ["channel.silent", "ticket.upstream_resolved"]\n')


def watch_at(app: Api, started_at: datetime) -> SilenceWatch:
    ctx = app.ctx
    return SilenceWatch(ctx.db, ctx.pipeline.transitions, ctx.config.watch, ctx.metrics,
                        started_at=started_at)


async def alertd_alerts(app: Api) -> list[Any]:
    query = select(Alert).where(Alert.source == "alertd").order_by(Alert.id)
    return list(await app.ctx.db.read(lambda s: list(s.scalars(query))))


async def notices(app: Api) -> list[tuple[str, dict[str, Any]]]:
    query = select(OutboxAction).where(OutboxAction.action == "notify").order_by(OutboxAction.id)
    rows = await app.ctx.db.read(lambda s: list(s.scalars(query)))
    return [(row.target, row.payload or {}) for row in rows]


def silent_gauge(app: Api, channel: str) -> float | None:
    return app.ctx.metrics.registry.get_sample_value("alertd_channel_silent",
                                                     {"channel": channel})


async def age_inputs(app: Api, by: timedelta) -> None:
    """Make every stored delivery `by` older (as if it had come then)."""
    def older(session: Session) -> None:
        for delivery in session.scalars(select(Delivery)):
            delivery.received_at -= by
    await app.ctx.db.write(older)


async def test_a_silent_channel_raises_one_ticket_and_resolves_when_input_resumes(
        make_app: MakeApp) -> None:
    app = await make_app(WATCH)
    started = utcnow() - timedelta(hours=3)
    assert (await post_datto(app, datto_body(uid=uid(1))))[0] == 201
    watch = watch_at(app, started)
    assert await watch.run_once() == []  # input a moment ago
    assert silent_gauge(app, "webhook:datto") == 0

    await age_inputs(app, timedelta(hours=2))  # the last input two hours ago: silent
    assert await watch.run_once() == ["silent webhook:datto"]
    assert silent_gauge(app, "webhook:datto") == 1
    (alert,) = await alertd_alerts(app)
    assert (alert.state, alert.device, alert.channels) == ("open", "webhook:datto", ["watch"])
    status, ticket = await app.call("GET", f"/api/tickets/{alert.ticket_id}")
    assert status == 200 and ticket["summary"] == "alertd: webhook:datto is silent"
    ((event, payload),) = await notices(app)
    assert event == "channel.silent" and payload["channel"] == "webhook:datto"
    assert payload["last_input_at"] is not None

    assert await watch.run_once() == []  # one alert per silence
    # A restart (a process that started just now) neither resolves nor raises it again.
    assert await watch_at(app, utcnow()).run_once() == []
    assert silent_gauge(app, "webhook:datto") == 1
    assert [a.state for a in await alertd_alerts(app)] == ["open"]

    # Input again: the alert resolves, its ticket closes, the targets hear of it.
    assert (await post_datto(app, datto_body(uid=uid(2))))[0] == 201
    assert await watch.run_once() == ["resumed webhook:datto"]
    assert silent_gauge(app, "webhook:datto") == 0
    (alert,) = await alertd_alerts(app)
    assert alert.state == "resolved"
    status, ticket = await app.call("GET", f"/api/tickets/{alert.ticket_id}")
    assert ticket["status"] == "closed"
    assert [event for event, _ in await notices(app)] == [
        "channel.silent", "ticket.upstream_resolved"]


async def test_a_ticket_closed_by_an_agent_is_not_raised_again_in_the_same_silence(
        make_app: MakeApp) -> None:
    app = await make_app(WATCH)
    watch = watch_at(app, utcnow() - timedelta(hours=7))  # nothing came since: both silent
    assert sorted(await watch.run_once()) == ["silent smtp", "silent webhook:datto"]
    for alert in await alertd_alerts(app):
        status, _ = await app.call("POST", f"/api/tickets/{alert.ticket_id}/close", body={})
        assert status == 200
    assert await watch.run_once() == []
    assert len(await alertd_alerts(app)) == 2


async def test_silence_counts_from_alertds_start_not_from_older_input(
        make_app: MakeApp) -> None:
    app = await make_app(WATCH)
    assert (await post_datto(app, datto_body(uid=uid(1))))[0] == 201
    await age_inputs(app, timedelta(days=2))  # alertd was stopped for two days since
    assert await watch_at(app, utcnow() - timedelta(minutes=30)).run_once() == []
