"""Issue 16, rule 7: the trail - every decision alertd takes about an alert, with its reason,
through the real app (webhook, mail, API, an agent, expiry) on each backend; the API, the CLI's
reader and the migration's backfill of alerts stored before."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from daemon.cli.backend import Local
from daemon.cli.cmd_alerts import _trail
from daemon.core.clock import utcnow
from daemon.store.database import _alembic_config
from daemon.tickets.expiry import AlertExpiry
from tests.api_client import Api
from tests.component.test_human_work import app_with
from tests.component.test_webhooks import datto_body, mail, post_datto
from tests.webhook_samples import UID

app = pytest.fixture(app_with(None))


async def trail_of(app: Api, alert_id: int) -> list[tuple[str, str | None, str | None]]:
    status, answer = await app.call("GET", f"/api/alerts/{alert_id}/trail")
    assert status == 200 and answer["truncated"] is False
    return [(t["decision"], t["channel"] or t["actor"], t["reason"]) for t in answer["items"]]


async def test_every_decision_about_an_alert_is_kept_with_its_reason(app: Api) -> None:
    status, raised = await post_datto(app, datto_body())
    assert status == 201
    alert_id, ticket_id = raised["events"][0]["alert_id"], raised["events"][0]["ticket_id"]
    assert await mail(app, UID.upper()) == "twin"
    status, _ = await app.call("POST", f"/api/tickets/{ticket_id}/notes",
                               body={"body": "on it"})
    status, resolved = await post_datto(app, datto_body(resolved=True))
    assert resolved["events"][0]["outcome"] == "resolved_left_open"
    assert await mail(app, UID.upper(), resolved=True) == "already_resolved"
    status, _ = await app.call("POST", f"/api/tickets/{ticket_id}/close",
                               body={"actor": "dana"})
    assert status == 200

    assert await trail_of(app, alert_id) == [
        ("opened", "webhook", "raise from datto"),
        ("twin", "smtp", "raise from datto (rule 'Datto RMM Alerts')"),
        ("resolved_left_open", "webhook",
         "resolve from datto; ticket left open: it is being worked"),
        ("already_resolved", "smtp", "resolve from datto (rule 'Datto RMM Alert resolved')"),
        ("ticket_closed", "agent:dana", "the alert was resolved already"),
    ]
    status, answer = await app.call("GET", f"/api/alerts/{alert_id}/trail")
    assert answer["alert"] == {"id": alert_id, "source": "datto", "uid": UID,
                               "state": "resolved"}
    status, _ = await app.call("GET", "/api/alerts/999999/trail")
    assert status == 404


async def test_alerts_opened_together_each_get_their_line(app: Api) -> None:
    """HTTP intake in groups writes the trail of a group's new alerts in one statement."""
    answers = await asyncio.gather(*(app.call("POST", "/api/alerts", body={
        "source": "datto", "uid": f"group-{n}", "action": "raise"}) for n in range(40)))
    for status, body in answers:
        assert status == 201
        alert_id = body["events"][0]["alert_id"]
        assert await trail_of(app, alert_id) == [("opened", "api", "raise from datto")]


async def test_an_agent_close_and_an_expiry_are_in_the_trail(app: Api) -> None:
    closed = [(await app.call("POST", "/api/alerts", body={
        "source": "datto", "uid": uid, "action": "raise"}))[1]["events"][0]
        for uid in ("closed-by-agent", "expires")]
    status, _ = await app.call("POST", f"/api/tickets/{closed[0]['ticket_id']}/close",
                               body={"actor": "eve"})
    assert status == 200
    assert (await trail_of(app, closed[0]["alert_id"]))[-1] == (
        "ticket_closed", "agent:eve", "the alert resolved by its ticket; resolve queued upstream")

    later = utcnow() + timedelta(hours=2)
    expiry = AlertExpiry(app.ctx.db, app.ctx.metrics, {"datto": 3600}, clock=lambda: later)
    assert await expiry.run_once() == 1
    assert (await trail_of(app, closed[1]["alert_id"]))[-1] == (
        "expired", None, "open longer than its expire_after (1h)")


async def test_the_cli_prints_the_trail_by_upstream_id(
        app: Api, capsys: pytest.CaptureFixture[str]) -> None:
    await post_datto(app, datto_body())
    assert await _trail(Local(app.ctx.db, app.ctx.config), UID, None, False) == 0
    out = capsys.readouterr().out
    assert f"/{UID} (open)" in out and "opened" in out and "raise from datto" in out


def test_the_migration_starts_the_trail_of_alerts_stored_before(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0008")
        at = datetime(2026, 11, 1, 8, 0, tzinfo=UTC).replace(tzinfo=None)
        conn.execute(text(
            "INSERT INTO alerts (id, source, uid, state, first_seen_at, last_seen_at, "
            "channels, occurrences) VALUES (1, 'datto', 'old', 'open', :at, :at, '[]', 1)"),
            {"at": at})
        for n, outcome in ((1, "opened"), (2, "twin"), (3, None)):
            conn.execute(text(
                "INSERT INTO deliveries (id, channel, source, dedupe_key, received_at, status, "
                "attempts, content_type, meta, payload, processed_at, alert_id, outcome) "
                "VALUES (:n, 'api', 'datto', :key, :at, 'processed', 1, 'application/json', "
                "'{}', x'7b7d', :at, 1, :outcome)"),
                {"n": n, "key": f"k{n}", "at": at, "outcome": outcome})
        command.upgrade(_alembic_config(conn), "head")
        rows = conn.execute(text(
            "SELECT alert_id, decision, channel FROM alert_trail ORDER BY id")).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [(1, "opened", "api"), (1, "twin", "api")]
