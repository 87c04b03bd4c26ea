"""The rows the lifecycle writes, built from what it decided (pure): a new alert, a new ticket,
a line of an alert's trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from daemon.core.events import AlertEvent, default_summary
from daemon.core.lifecycle import AlertState, EventDecision
from daemon.tickets.placement import Placement

# An event's values kept on its alert (a twin fills in those still empty).
ALERT_FIELDS = ("device", "site", "customer", "priority", "message", "device_ref")


def new_alert_row(channel: str, event: AlertEvent, decision: EventDecision, now: datetime,
                  condition: str | None) -> dict[str, Any]:
    """The row of an alert first seen in `event` (clamped), as `decision` (for no stored
    alert) makes it; its ticket is given after (`ticket_id`)."""
    resolved = decision.new_state is AlertState.RESOLVED
    return {
        "source": event.source, "uid": event.uid, "state": decision.new_state.value,
        "resolved_by": decision.resolved_by.value if decision.resolved_by else None,
        "resolved_at": now if resolved else None, "first_seen_at": now,
        "last_seen_at": now, "channels": [channel], "occurrences": 1,
        **{name: getattr(event, name) for name in ALERT_FIELDS},
        # Only the event that opens the alert sets its expiry: a rule's `expire_after` is
        # for the alerts that rule opened, not those it reports a copy of. It is kept while
        # the alert is open (the expiry job reads only the non-null ones).
        "expire_after_s": None if resolved else event.expire_after_s,
        "condition": condition,
    }


def new_ticket_row(event: AlertEvent, alert_id: int, placement: Placement, now: datetime,
                   condition: str | None) -> dict[str, Any]:
    return {
        "customer_id": placement.customer_id, "site_id": placement.site_id,
        "asset_id": placement.asset_id, "end_user_id": placement.end_user_id,
        "type": event.ticket.type or "alert", "status": "open", "priority": event.priority,
        "summary": (event.ticket.summary or default_summary(event))[:500],
        "details": event.ticket.details or event.message or "",
        "alert_id": alert_id, "opened_at": now, "condition": condition, "occurrences": 1,
    }


def trail_row(alert_id: int, decision: str, now: datetime, channel: str | None = None,
              actor: str | None = None, reason: str | None = None) -> dict[str, Any]:
    """A row of the alert's trail: what alertd decided about it, and why."""
    return {"alert_id": alert_id, "at": now, "decision": decision, "channel": channel,
            "actor": actor, "reason": reason}


def event_reason(event: AlertEvent, decision: EventDecision) -> str:
    """Why an event did what it did, in the trail's words."""
    said = f"{event.action} from {event.source}"
    if event.rule is not None:
        said += f" (rule {event.rule!r})"
    if decision.left_open_because is not None:
        said += f"; ticket left open: {decision.left_open_because}"
    return said
