"""The tables and the prepared statements the lifecycle writes with (`transitions`, `expiry`,
`maintenance`): built once per process, shared by the modules that apply decisions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, insert, select, update

from daemon.core.lifecycle import AlertSnapshot, AlertState, ResolvedBy
from daemon.store.models import Alert, AlertTrail, OutboxAction, Ticket, TicketNote
from daemon.store.prepared import NumberedInsert, Prepared, json_array, json_values

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
# SQLite: which of a source's uids are stored, in one statement.
STORED_UIDS = Prepared(select(ALERTS.c.uid).where(ALERTS.c.source == bindparam("source"),
                                                  ALERTS.c.uid.in_(json_values("uids"))))
LOCK_ALERT_BY_ID = Prepared(select(ALERTS).where(ALERTS.c.id == bindparam("id"))
                             .with_for_update())
UPDATE_ALERT = Prepared(update(ALERTS).where(ALERTS.c.id == bindparam("row_id")))
# An alert's ticket, as the lifecycle decides from it (the alert row names it).
LOCK_TICKET_OF_ALERT = Prepared(
    select(TICKETS.c.id, TICKETS.c.status, TICKETS.c.touched_at)
    .where(TICKETS.c.id == bindparam("ticket_id")).with_for_update())
# Whether a ticket has an open alert besides the one being decided (rule 2).
OTHER_OPEN_ALERT = Prepared(
    select(ALERTS.c.id).where(ALERTS.c.ticket_id == bindparam("ticket_id"),
                              ALERTS.c.state == AlertState.OPEN.value,
                              ALERTS.c.id != bindparam("alert_id")).limit(1))
# The open alerts of a ticket, locked in id order (an agent's close resolves them all).
LOCK_OPEN_ALERTS_OF_TICKET = Prepared(
    select(ALERTS).where(ALERTS.c.ticket_id == bindparam("ticket_id"),
                         ALERTS.c.state == AlertState.OPEN.value)
    .order_by(ALERTS.c.id).with_for_update())
TICKET_CONDITION = Prepared(select(TICKETS.c.condition, TICKETS.c.alert_id)
                            .where(TICKETS.c.id == bindparam("id")))
# The newest ticket of a condition (the (condition, id) index), locked.
LOCK_NEWEST_OF_CONDITION = Prepared(
    select(TICKETS.c.id, TICKETS.c.status, TICKETS.c.closed_at, TICKETS.c.occurrences,
           TICKETS.c.last_raised_at)
    .where(TICKETS.c.condition == bindparam("condition"))
    .order_by(TICKETS.c.id.desc()).limit(1).with_for_update())
# SQLite: the newest ticket of each of a group's conditions (those with one), in one statement.
_CONDITIONS = json_array("conditions")
_OLDER = TICKETS.alias("older")
NEWEST_OF_CONDITIONS = Prepared(
    select(_CONDITIONS.c.value.label("condition"), TICKETS.c.status, TICKETS.c.closed_at)
    .select_from(_CONDITIONS)
    .join(TICKETS, TICKETS.c.id == select(func.max(_OLDER.c.id))
          .where(_OLDER.c.condition == _CONDITIONS.c.value).scalar_subquery()))
# PostgreSQL: one transaction at a time decides a condition's ticket (released at commit), so
# two processes never open two tickets for one condition. SQLite has one writer.
LOCK_CONDITION = Prepared(select(func.pg_advisory_xact_lock(
    func.hashtextextended(bindparam("condition"), 0))))
LOCK_TICKET = Prepared(select(TICKETS.c.id, TICKETS.c.status)
                        .where(TICKETS.c.id == bindparam("id")).with_for_update())
LOCK_CLEARING_TICKET = Prepared(
    select(TICKETS.c.id, TICKETS.c.status, TICKETS.c.touched_at, TICKETS.c.close_due_at,
           TICKETS.c.alert_id).where(TICKETS.c.id == bindparam("id")).with_for_update())
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
    """Close a ticket (whoever closes it: a close waiting for `close_after_clear` is done)."""
    UPDATE_TICKET.run(conn, {"row_id": ticket_id, "status": "closed", "closed_at": now,
                             "closed_by": closed_by, "close_due_at": None})


def insert_note(conn: Connection, ticket_id: int, author: str, body: str, now: datetime
                ) -> int:
    return int(INSERT_NOTE.scalar(conn, {"ticket_id": ticket_id, "created_at": now,
                                         "author": author, "body": body[:MAX_NOTE_CHARS]}))


def snapshot(alert: Mapping[str, Any], ticket: Mapping[str, Any] | None,
             others_open: bool = False) -> AlertSnapshot:
    """What the core decides from: a locked alert row and its locked ticket row (or None)."""
    return AlertSnapshot(AlertState(alert["state"]),
                         ResolvedBy(alert["resolved_by"]) if alert["resolved_by"] else None,
                         has_ticket=ticket is not None,
                         ticket_touched=ticket is not None and ticket["touched_at"] is not None,
                         others_open=others_open)


def lock_ticket_of(conn: Connection, alert: Mapping[str, Any], deciding_resolve: bool
                   ) -> tuple[dict[str, Any] | None, bool]:
    """The locked ticket of a locked alert (or None), and whether other alerts of that
    ticket are open: asked only when it matters (`deciding_resolve`: the alert is open and
    a resolve, an expiry, may close its ticket)."""
    if alert["ticket_id"] is None:
        return None, False
    ticket = LOCK_TICKET_OF_ALERT.first(conn, {"ticket_id": alert["ticket_id"]})
    others_open = deciding_resolve and ticket is not None and OTHER_OPEN_ALERT.first(
        conn, {"ticket_id": alert["ticket_id"], "alert_id": alert["id"]}) is not None
    return ticket, others_open


def resolved(resolved_by: ResolvedBy, now: datetime) -> dict[str, Any]:
    """The alert columns a resolve sets, whoever resolves (expiry is for open alerts)."""
    return {"state": AlertState.RESOLVED.value, "resolved_by": resolved_by.value,
            "resolved_at": now, "expire_after_s": None, "held": None, "held_since": None}
