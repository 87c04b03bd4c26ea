"""Issue 16, rule 5: alerts that never clear expire (`[lifecycle] expire_after` per source,
`expire_after` per email rule), their tickets closed as `auto_close` says, on each backend."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from daemon.config import Config
from daemon.core.clock import utcnow
from daemon.core.events import Channel
from daemon.core.lifecycle import AutoClose
from daemon.intake.inbound import Inbound
from daemon.service.wiring import Services, build_services
from daemon.store.database import Database
from daemon.store.models import Alert, Ticket, TicketNote
from daemon.tickets.expiry import AlertExpiry
from tests.component.test_webhooks import datto_mail
from tests.helpers import deliver

ROOT = Path(__file__).resolve().parents[2]
RULES = (ROOT / "rules.example.toml").read_text().replace(
    'name = "Datto RMM Alerts"\n', 'name = "Datto RMM Alerts"\nexpire_after = "30m"\n')
assert 'expire_after = "30m"' in RULES
MAIL_UID = "5e0c8b1a-7d2f-4c3e-9a6b-1f2e3d4c5b6a"


def services_with(make_config: Callable[..., Config], db: Database, db_url: str,
                  tmp_path: Path, lifecycle: str = "") -> Services:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    return build_services(make_config(f'[rules]\npath = "{rules}"\n[lifecycle]\n{lifecycle}',
                                      db_url=db_url), db)


def expiry_at(services: Services, hours: float, auto_close: AutoClose = AutoClose.UNTOUCHED
              ) -> AlertExpiry:
    """The expiry job of `services`' configuration, its clock `hours` from now."""
    later = utcnow() + timedelta(hours=hours)
    return AlertExpiry(services.db, services.metrics, services.config.lifecycle.expire_after,
                       auto_close, clock=lambda: later)


async def mail_outcome(services: Services) -> str:
    """The Datto alert mail of MAIL_UID, through SMTP's way in; what its event did."""
    accepted = await services.pipeline.submit(Inbound(
        channel=Channel.SMTP, dedupe_key="m1", payload=datto_mail(MAIL_UID.upper()),
        content_type="message/rfc822"))
    result = await services.pipeline.process(accepted.delivery_id)
    assert result is not None and len(result.events) == 1
    return result.events[0].outcome


async def alert_and_ticket(db: Database, uid: str) -> tuple[Alert, Ticket, list[str]]:
    def read(session: Any) -> tuple[Alert, Ticket, list[str]]:
        alert = session.scalars(select(Alert).where(Alert.uid == uid)).one()
        ticket = session.scalars(select(Ticket).where(Ticket.alert_id == alert.id)).one()
        notes = list(session.scalars(select(TicketNote.body).where(
            TicketNote.ticket_id == ticket.id).order_by(TicketNote.id)))
        return alert, ticket, notes
    return await db.read(read)


async def test_a_sources_alerts_expire_after_its_setting(
        make_config: Callable[..., Config], db: Database, db_url: str, tmp_path: Path) -> None:
    services = services_with(make_config, db, db_url, tmp_path,
                             'expire_after = { datto = "1h" }\n')
    await deliver(services.pipeline, "stale", channel=Channel.API)
    await deliver(services.pipeline, "other-source", channel=Channel.API, source="custom")

    assert await expiry_at(services, 0.5).run_once() == 0  # not due yet
    assert await expiry_at(services, 2).run_once() == 1  # only datto's: custom never expires

    alert, ticket, notes = await alert_and_ticket(db, "stale")
    assert (alert.state, alert.resolved_by) == ("resolved", "expiry")
    assert (ticket.status, ticket.closed_by) == ("closed", "alertd:expiry")
    assert notes[-1] == ("Alert expired: open longer than 1h with no resolve from Datto RMM "
                         "(expire_after); alertd stopped waiting for it, and left the alert "
                         "there as it is. Ticket closed by alertd.")
    assert services.metrics.registry.get_sample_value(
        "alertd_tickets_closed_total", {"by": "expiry"}) == 1
    other, _, _ = await alert_and_ticket(db, "other-source")
    assert other.state == "open"
    # Nothing is due twice; a late resolve from the RMM changes nothing.
    assert await expiry_at(services, 3).run_once() == 0
    late = await deliver(services.pipeline, "stale", "resolve", channel=Channel.API)
    assert [e.outcome for e in late.events] == ["already_resolved"]


async def test_a_worked_ticket_stays_open_when_its_alert_expires(
        make_config: Callable[..., Config], db: Database, db_url: str, tmp_path: Path) -> None:
    services = services_with(make_config, db, db_url, tmp_path,
                             'expire_after = { datto = "1h" }\n')
    result = await deliver(services.pipeline, "worked", channel=Channel.API)
    ticket_id = result.events[0].ticket_id
    assert ticket_id is not None
    await services.agent.add_note(ticket_id, "agent:dana", "waiting for a part")

    assert await expiry_at(services, 2).run_once() == 1
    alert, ticket, notes = await alert_and_ticket(db, "worked")
    assert (alert.state, alert.resolved_by, ticket.status) == ("resolved", "expiry", "open")
    assert notes[-1].endswith("Ticket left open because it is being worked.")


async def test_an_email_rules_expire_after_wins_over_its_sources(
        make_config: Callable[..., Config], db: Database, db_url: str, tmp_path: Path) -> None:
    services = services_with(make_config, db, db_url, tmp_path,
                             'expire_after = { datto = "1d" }\n')
    assert await mail_outcome(services) == "opened"
    alert, _, _ = await alert_and_ticket(db, MAIL_UID)
    assert alert.expire_after_s == 1800  # the rule's 30m, kept on the alert

    assert await expiry_at(services, 0.25).run_once() == 0
    assert await expiry_at(services, 0.75).run_once() == 1  # 45 min: the rule's, not 1d
    alert, ticket, notes = await alert_and_ticket(db, MAIL_UID)
    assert (alert.state, ticket.status) == ("resolved", "closed")
    assert "open longer than 30m" in notes[-1]


async def test_a_rules_expire_after_is_for_the_alerts_it_opened_not_their_twins(
        make_config: Callable[..., Config], db: Database, db_url: str, tmp_path: Path) -> None:
    services = services_with(make_config, db, db_url, tmp_path,
                             'expire_after = { datto = "1d" }\n')
    await deliver(services.pipeline, MAIL_UID, channel=Channel.API)  # opened by the API
    assert await mail_outcome(services) == "twin"
    alert, _, _ = await alert_and_ticket(db, MAIL_UID)
    assert alert.expire_after_s is None  # the source's 1d applies, not the twin rule's 30m
    assert await expiry_at(services, 0.75).run_once() == 0


async def test_without_expire_after_nothing_expires(
        make_config: Callable[..., Config], db: Database, db_url: str, tmp_path: Path) -> None:
    services = build_services(make_config(db_url=db_url), db)
    await deliver(services.pipeline, "forever", channel=Channel.API)
    assert await services.expiry.run_once() == 0
    assert await expiry_at(services, 24 * 365).run_once() == 0
