"""What happened to one ticket's alerts, in order: every delivery that touched them, the
resolves alertd owes upstream (the console's ticket page), and the alerts' trail: every
decision alertd took about them, with its reason (the API, the CLI, the ticket page)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.core.clock import utc_iso
from daemon.store.database import Database
from daemon.store.models import Alert, AlertTrail, Delivery, OutboxAction

MAX_ENTRIES = 200  # a flapping alert can have thousands of twins: the newest are shown
MAX_TRAIL = 1000  # the newest decisions of an alert in one answer


async def alert_timeline(db: Database, alert_ids: Sequence[int]) -> dict[str, Any]:
    """The `trail` of a ticket's alerts (their newest decisions, oldest first), their
    `deliveries` (oldest first: channel, time, status, outcome) and `outbox` rows."""
    def run(session: Session) -> dict[str, Any]:
        deliveries = session.execute(
            select(Delivery.id, Delivery.channel, Delivery.source, Delivery.received_at,
                   Delivery.status, Delivery.outcome, Delivery.error)
            .where(Delivery.alert_id.in_(alert_ids))
            .order_by(Delivery.id.desc()).limit(MAX_ENTRIES)).all()
        outbox = session.execute(
            select(OutboxAction.id, OutboxAction.action, OutboxAction.status,
                   OutboxAction.attempts, OutboxAction.last_error, OutboxAction.created_at,
                   OutboxAction.done_at, OutboxAction.target)
            .where(OutboxAction.alert_id.in_(alert_ids)).order_by(OutboxAction.id)).all()
        trail = session.execute(
            select(AlertTrail.id, AlertTrail.alert_id, AlertTrail.at, AlertTrail.decision,
                   AlertTrail.channel, AlertTrail.actor, AlertTrail.reason)
            .where(AlertTrail.alert_id.in_(alert_ids))
            .order_by(AlertTrail.id.desc()).limit(MAX_ENTRIES)).all()
        return {
            "trail": [{"id": r.id, "alert_id": r.alert_id, "at": utc_iso(r.at),
                       "decision": r.decision, "channel": r.channel, "actor": r.actor,
                       "reason": r.reason} for r in reversed(trail)],
            "deliveries": [{"id": d.id, "channel": d.channel, "source": d.source,
                            "received_at": utc_iso(d.received_at), "status": d.status,
                            "outcome": d.outcome, "error": d.error}
                           for d in reversed(deliveries)],
            "outbox": [{"id": o.id, "action": o.action, "status": o.status,
                        "attempts": o.attempts, "last_error": o.last_error,
                        "target": o.target,
                        "created_at": utc_iso(o.created_at), "done_at": utc_iso(o.done_at)}
                       for o in outbox],
        }
    return await db.read(run)


def trail_entries(session: Session, alert_id: int, limit: int = MAX_TRAIL
                  ) -> list[dict[str, Any]]:
    """The alert's newest `limit` decisions, oldest first (the (alert_id, id) index)."""
    rows = session.execute(
        select(AlertTrail.id, AlertTrail.at, AlertTrail.decision, AlertTrail.channel,
               AlertTrail.actor, AlertTrail.reason)
        .where(AlertTrail.alert_id == alert_id)
        .order_by(AlertTrail.id.desc()).limit(limit)).all()
    return [{"id": r.id, "at": utc_iso(r.at), "decision": r.decision, "channel": r.channel,
             "actor": r.actor, "reason": r.reason} for r in reversed(rows)]


async def alert_trail(db: Database, alert_id: int) -> dict[str, Any] | None:
    """The alert (its id, source and upstream id) and its trail; None when there is no such
    alert. `truncated`: older decisions were left out (more than `MAX_TRAIL`)."""
    def run(session: Session) -> dict[str, Any] | None:
        alert = session.execute(select(Alert.id, Alert.source, Alert.uid, Alert.state)
                                .where(Alert.id == alert_id)).first()
        if alert is None:
            return None
        items = trail_entries(session, alert_id, MAX_TRAIL + 1)
        return {"alert": {"id": alert.id, "source": alert.source, "uid": alert.uid,
                          "state": alert.state},
                "items": items[-MAX_TRAIL:], "truncated": len(items) > MAX_TRAIL}
    return await db.read(run)
