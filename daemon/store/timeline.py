"""What happened to one ticket's alert, in order: every delivery that touched it and the
resolve alertd owes upstream (the console's ticket page)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.core.clock import utc_iso
from daemon.store.database import Database
from daemon.store.models import Delivery, OutboxAction

MAX_ENTRIES = 200  # a flapping alert can have thousands of twins: the newest are shown


async def alert_timeline(db: Database, alert_id: int) -> dict[str, Any]:
    """`deliveries` (oldest first: channel, time, status, outcome) and `outbox` rows of an
    alert."""
    def run(session: Session) -> dict[str, Any]:
        deliveries = session.execute(
            select(Delivery.id, Delivery.channel, Delivery.source, Delivery.received_at,
                   Delivery.status, Delivery.outcome, Delivery.error)
            .where(Delivery.alert_id == alert_id)
            .order_by(Delivery.id.desc()).limit(MAX_ENTRIES)).all()
        outbox = session.execute(
            select(OutboxAction.id, OutboxAction.action, OutboxAction.status,
                   OutboxAction.attempts, OutboxAction.last_error, OutboxAction.created_at,
                   OutboxAction.done_at)
            .where(OutboxAction.alert_id == alert_id).order_by(OutboxAction.id)).all()
        return {
            "deliveries": [{"id": d.id, "channel": d.channel, "source": d.source,
                            "received_at": utc_iso(d.received_at), "status": d.status,
                            "outcome": d.outcome, "error": d.error}
                           for d in reversed(deliveries)],
            "outbox": [{"id": o.id, "action": o.action, "status": o.status,
                        "attempts": o.attempts, "last_error": o.last_error,
                        "created_at": utc_iso(o.created_at), "done_at": utc_iso(o.done_at)}
                       for o in outbox],
        }
    return await db.read(run)
