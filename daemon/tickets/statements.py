"""The tables and the prepared statements the lifecycle writes with (`transitions`, `expiry`,
`maintenance`): built once per process, shared by the modules that apply decisions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, insert, select, update

from daemon.core.lifecycle import AlertSnapshot, AlertState, ResolvedBy
from daemon.store.models import Alert, AlertTrail, OutboxAction, Ticket, TicketNote
from daemon.store.prepared import NumberedInsert, Prepared

MAX_NOTE_CHARS = 100_000
ALERTS: Table = Alert.__table__  # type: ignore[assignment]
TICKETS: Table = Ticket.__table__  # type: ignore[assignment]
NOTES: Table = TicketNote.__table__  # type: ignore[assignment]
OUTBOX: Table = OutboxAction.__table__  # type: ignore[assignment]
TRAIL: Table = AlertTrail.__table__  # type: ignore[assignment]
INSERT_TRAIL = Prepared(insert(TRAIL))

# UPDATEs name the row by `row_id`; the other parameters given become the SET clause.
LOCK_ALERT = Prepared(
    select(ALERTS)
    .where(ALERTS.c.source == bindparam("source"), ALERTS.c.uid == bindparam("uid"))
    .with_for_update())
ALERT_ID = Prepared(select(ALERTS.c.id).where(ALERTS.c.source == bindparam("source"),
                                                ALERTS.c.uid == bindparam("uid")))
LOCK_ALERT_BY_ID = Prepared(select(ALERTS).where(ALERTS.c.id == bindparam("id"))
                             .with_for_update())
UPDATE_ALERT = Prepared(update(ALERTS).where(ALERTS.c.id == bindparam("row_id")))
TICKET_ALERT = Prepared(select(TICKETS.c.alert_id).where(TICKETS.c.id == bindparam("id")))
LOCK_TICKET_OF_ALERT = Prepared(
    select(TICKETS.c.id, TICKETS.c.status, TICKETS.c.touched_at)
    .where(TICKETS.c.alert_id == bindparam("alert_id")).with_for_update())
LOCK_TICKET = Prepared(select(TICKETS.c.id, TICKETS.c.status)
                        .where(TICKETS.c.id == bindparam("id")).with_for_update())
TICKET_EXISTS = Prepared(select(TICKETS.c.id).where(TICKETS.c.id == bindparam("id")))
INSERT_TICKET = Prepared(insert(TICKETS).returning(TICKETS.c.id))
UPDATE_TICKET = Prepared(update(TICKETS).where(TICKETS.c.id == bindparam("row_id")))
TOUCH_TICKET = Prepared(update(TICKETS).where(TICKETS.c.id == bindparam("row_id"),
                                                TICKETS.c.touched_at.is_(None)))
INSERT_NOTE = Prepared(insert(NOTES).returning(NOTES.c.id))
INSERT_TICKETS = insert(TICKETS).returning(TICKETS.c.id, TICKETS.c.alert_id)
NUMBERED_ALERTS = NumberedInsert(ALERTS)
NUMBERED_TICKETS = NumberedInsert(TICKETS)


def close_ticket(conn: Connection, ticket_id: int, closed_by: str, now: datetime) -> None:
    UPDATE_TICKET.run(conn, {"row_id": ticket_id, "status": "closed", "closed_at": now,
                             "closed_by": closed_by})


def insert_note(conn: Connection, ticket_id: int, author: str, body: str, now: datetime
                ) -> int:
    return int(INSERT_NOTE.scalar(conn, {"ticket_id": ticket_id, "created_at": now,
                                         "author": author, "body": body[:MAX_NOTE_CHARS]}))


def snapshot(alert: Mapping[str, Any], ticket: Mapping[str, Any] | None) -> AlertSnapshot:
    """What the core decides from: a locked alert row and its locked ticket row (or None)."""
    return AlertSnapshot(AlertState(alert["state"]),
                         ResolvedBy(alert["resolved_by"]) if alert["resolved_by"] else None,
                         has_ticket=ticket is not None,
                         ticket_touched=ticket is not None and ticket["touched_at"] is not None)


def resolved(resolved_by: ResolvedBy, now: datetime) -> dict[str, Any]:
    """The alert columns a resolve sets, whoever resolves (expiry is for open alerts)."""
    return {"state": AlertState.RESOLVED.value, "resolved_by": resolved_by.value,
            "resolved_at": now, "expire_after_s": None}
