"""Issue 16, rule 1: human work is never closed under someone's feet (`[lifecycle]
auto_close`), through the real app - Datto webhooks, alert mail, the API's notes and close -
on each backend. Answers are validated against the OpenAPI document (tests.api_client)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from daemon.config import Config
from daemon.http.app import create_app
from daemon.service.wiring import ROUTES, build_services
from daemon.store.database import Database
from daemon.store.models import OutboxAction
from tests.api_client import Api
from tests.component.test_webhooks import datto_body, mail, post_datto
from tests.webhook_samples import CONFIG, UID

LEFT_OPEN_NOTE = "ticket left open because it is being worked."


def app_with(auto_close: str | None) -> Callable[..., Any]:
    async def make(aiohttp_client: Callable[..., Any], make_config: Callable[..., Config],
                   db: Database, db_url: str) -> Api:
        lifecycle = f'[lifecycle]\nauto_close = "{auto_close}"\n' if auto_close else ""
        config = make_config(CONFIG + lifecycle, db_url=db_url)
        ctx = build_services(config, db)
        return Api(await aiohttp_client(create_app(ctx.http, ROUTES)), ctx)
    return make


default_app = pytest.fixture(app_with(None))
never_app = pytest.fixture(app_with("never"))
always_app = pytest.fixture(app_with("always"))


async def raised_ticket(app: Api, by: str) -> int:
    """Raise the sample alert by webhook or by mail; its ticket's id."""
    if by == "webhook":
        status, answer = await post_datto(app, datto_body())
        assert status == 201, answer
    else:
        assert await mail(app, UID.upper()) == "opened"  # the subject spells it upper-case
    status, listing = await app.call("GET", "/api/tickets", params={"alert_uid": UID})
    assert status == 200 and len(listing["items"]) == 1
    return int(listing["items"][0]["id"])


async def resolve(app: Api, by: str) -> str:
    """Resolve the sample alert by webhook or by mail; the event's outcome."""
    if by == "webhook":
        status, answer = await post_datto(app, datto_body(resolved=True))
        assert status == 201, answer
        return str(answer["events"][0]["outcome"])
    return await mail(app, UID.upper(), resolved=True)


async def ticket(app: Api, ticket_id: int) -> dict[str, Any]:
    status, answer = await app.call("GET", f"/api/tickets/{ticket_id}")
    assert status == 200
    return dict(answer)


async def outbox_rows(db: Database) -> int:
    return int(await db.read(lambda s: s.scalar(select(func.count()).select_from(
        OutboxAction))))


@pytest.mark.parametrize(("raise_by", "resolve_by"), [("webhook", "webhook"),
                                                      ("mail", "mail"), ("webhook", "mail")])
async def test_a_resolve_leaves_a_worked_ticket_open_and_says_so(
        default_app: Api, raise_by: str, resolve_by: str) -> None:
    ticket_id = await raised_ticket(default_app, raise_by)
    assert (await ticket(default_app, ticket_id))["touched"] is False
    status, _ = await default_app.call("POST", f"/api/tickets/{ticket_id}/notes",
                                       body={"body": "on the phone with the customer"})
    assert status == 201

    assert await resolve(default_app, resolve_by) == "resolved_left_open"

    worked = await ticket(default_app, ticket_id)
    assert worked["status"] == "open" and worked["closed_at"] is None
    assert worked["touched"] is True and worked["touched_at"] is not None
    assert worked["upstream_resolved"] is True and worked["upstream_resolved_at"] is not None
    assert worked["alert"]["state"] == "resolved"
    channel = "webhook" if resolve_by == "webhook" else "smtp"
    note = worked["notes"][-1]
    assert note["author"] == "alertd"
    assert note["body"].startswith("Alert resolved in Datto RMM at ")
    assert note["body"].endswith(f" UTC (reported by {channel}); {LEFT_OPEN_NOTE}")
    # The technician closes it when done: the alert is resolved upstream already, so
    # nothing is sent to the RMM.
    status, closed = await default_app.call("POST", f"/api/tickets/{ticket_id}/close",
                                            body={"note": "fixed"})
    assert status == 200 and closed["status"] == "closed"
    assert await outbox_rows(default_app.ctx.db) == 0


@pytest.mark.parametrize("by", ["webhook", "mail"])
async def test_an_untouched_ticket_closes_as_before(default_app: Api, by: str) -> None:
    ticket_id = await raised_ticket(default_app, by)
    assert await resolve(default_app, by) == "resolved"
    closed = await ticket(default_app, ticket_id)
    assert (closed["status"], closed["closed_by"]) == ("closed", "upstream:datto")
    assert closed["touched"] is False and closed["upstream_resolved"] is False


async def test_auto_close_never_leaves_every_ticket_open(never_app: Api) -> None:
    ticket_id = await raised_ticket(never_app, "webhook")
    assert await resolve(never_app, "webhook") == "resolved_left_open"
    left = await ticket(never_app, ticket_id)
    assert left["status"] == "open" and left["upstream_resolved"] is True
    assert left["touched"] is False
    assert left["notes"][-1]["body"].endswith('ticket left open because auto_close is "never".')


@pytest.mark.parametrize("order", [("raise", "resolve"), ("resolve", "raise")])
async def test_under_never_either_order_leaves_the_ticket_open(
        never_app: Api, order: tuple[str, str]) -> None:
    """The same end state whatever the order: a resolve that arrives first (a tombstone)
    and its late raise leave the ticket open and marked, as raise-then-resolve does."""
    for step in order:
        status, answer = await post_datto(never_app, datto_body(resolved=step == "resolve"))
        assert status == 201, answer
    status, listing = await never_app.call("GET", "/api/tickets", params={"alert_uid": UID})
    [left] = listing["items"]
    shown = await ticket(never_app, left["id"])
    assert (shown["status"], shown["upstream_resolved"]) == ("open", True)
    assert shown["alert"]["state"] == "resolved"
    assert shown["notes"][-1]["body"].endswith('ticket left open because auto_close is "never".')


async def test_auto_close_always_closes_worked_tickets_too(always_app: Api) -> None:
    ticket_id = await raised_ticket(always_app, "webhook")
    status, _ = await always_app.call("POST", f"/api/tickets/{ticket_id}/notes",
                                      body={"body": "looking"})
    assert status == 201
    assert await resolve(always_app, "mail") == "resolved"
    closed = await ticket(always_app, ticket_id)
    assert closed["status"] == "closed" and closed["touched"] is True
    assert closed["upstream_resolved"] is False
