"""The alert lifecycle applied in SQL: the one place that changes alerts, tickets and notes.

`daemon.core.lifecycle` decides; this module reads the state it decides from and writes the
answer, inside the caller's transaction, for both kinds of change:

- an event from the RMM (intake): open, twin, resolve, tombstone, late raise, late twin;
- an agent's action: close (resolving the alert and queueing the upstream resolve), note.

Lock order, everywhere: the alert row, then its ticket row (`SELECT ... FOR UPDATE`; SQLite has
one writer and needs none). Intake and agents take the same order, so they never deadlock and
the second of two racing changes always decides on what the first committed.

Units run on a SQLAlchemy Core `Connection` with statements built once and prepared (the intake
hot path: `daemon.store.prepared`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from daemon.core.events import AlertEvent, clamp_event
from daemon.core.lifecycle import (
    UPSTREAM_RESOLVABLE_SOURCES,
    AutoClose,
    ResolvedBy,
    decide_event,
    decide_ticket_close,
    rmm_name,
)
from daemon.store.database import insert_ignore
from daemon.store.prepared import Prepared
from daemon.tickets import statements as sql
from daemon.tickets.placement import Placement, TicketPlacer
from daemon.tickets.rows import (
    ALERT_FIELDS,
    event_reason,
    new_alert_row,
    new_ticket_row,
    trail_row,
)

RESOLVE_ALERT = "resolve_alert"  # the outbox action an agent's close queues


class TicketNotFound(LookupError):
    pass


@dataclass(frozen=True)
class EventResult:
    """What one raise or resolve did (committed with its delivery)."""

    source: str
    uid: str
    alert_id: int
    outcome: str
    ticket_id: int | None
    ticket_opened: bool = False
    ticket_closed: bool = False


@dataclass(frozen=True)
class CloseResult:
    ticket_id: int
    alert_id: int | None
    alert_resolved: bool
    outbox_id: int | None
    source: str | None  # the alert's source (what the outbox row is for)




class Transitions:
    """Applies lifecycle decisions on one backend; every method runs inside a write unit."""

    def __init__(self, dialect_name: str, placer: TicketPlacer | None = None,
                 auto_close: AutoClose = AutoClose.UNTOUCHED):
        self._placer = placer  # a new ticket's customer, site, asset and end user
        self._auto_close = auto_close  # whether an upstream resolve closes worked tickets
        # SQLite: one writer at a time, so new rows can be numbered here and inserted in one
        # executemany (daemon.store.prepared.NumberedInsert).
        self._numbered = dialect_name == "sqlite"
        self._insert_alert = Prepared(insert_ignore(dialect_name, sql.ALERTS, "source", "uid")
                                      .returning(sql.ALERTS.c.id))
        self._insert_outbox = Prepared(insert_ignore(dialect_name, sql.OUTBOX, "action",
                                                     "alert_id").returning(sql.OUTBOX.c.id))
        # Many rows in one statement (SQLAlchemy's "insertmanyvalues"): a row that meets an
        # existing alert is not inserted and not returned.
        self._insert_alerts = insert_ignore(dialect_name, sql.ALERTS, "source", "uid").returning(
            sql.ALERTS.c.id, sql.ALERTS.c.source, sql.ALERTS.c.uid)

    # --- events from the RMM ----------------------------------------------------------------

    def apply_event(self, conn: Connection, channel: str, event: AlertEvent, now: datetime
                    ) -> EventResult:
        """Record one raise or resolve of `event`'s alert and make its state transition."""
        event = clamp_event(event)  # any channel's values fit their columns on every backend
        key = {"source": event.source, "uid": event.uid}
        # Insert first: most events are a new alert's raise, and this is then its only
        # statement on the alert. A conflict means the alert exists (on PostgreSQL the INSERT
        # waits for a racing transaction that inserted it to commit); lock it and decide.
        decision = decide_event(None, event.action)
        new_id = self._insert_alert.scalar(conn, new_alert_row(channel, event, decision, now))
        if new_id is not None:
            ticket_id = None
            if decision.open_ticket:
                ticket_id = self.insert_ticket(conn, event, new_id, now)
            sql.INSERT_TRAIL.run(conn, trail_row(new_id, decision.outcome.value, now, channel,
                                              reason=event_reason(event, decision)))
            return EventResult(event.source, event.uid, new_id, decision.outcome.value,
                               ticket_id, ticket_opened=ticket_id is not None)
        alert = sql.LOCK_ALERT.first(conn, key)
        assert alert is not None  # alerts are never deleted

        ticket = sql.LOCK_TICKET_OF_ALERT.first(conn, {"alert_id": alert["id"]})
        decision = decide_event(sql.snapshot(alert, ticket), event.action, self._auto_close)
        changes: dict[str, Any] = {
            "row_id": alert["id"], "occurrences": alert["occurrences"] + 1,
            "last_seen_at": now,
            "channels": alert["channels"] if channel in alert["channels"]
            else [*alert["channels"], channel],
            "state": alert["state"], "resolved_by": alert["resolved_by"],
            "resolved_at": alert["resolved_at"],
            # A twin fills in what the first copy lacked (a webhook knows more than a subject).
            **{name: alert[name] if alert[name] is not None else getattr(event, name)
               for name in ALERT_FIELDS},
        }
        if decision.resolved_by is not None:
            changes.update(sql.resolved(decision.resolved_by, now))
        sql.UPDATE_ALERT.run(conn, changes)
        ticket_id = ticket["id"] if ticket is not None else None
        opened = decision.open_ticket  # a late raise: the ticket it would have had
        if opened:
            ticket_id = self.insert_ticket(conn, event, alert["id"], now)
        ticket_open = opened or (ticket is not None and ticket["status"] == "open")
        closing = decision.close_ticket and ticket_open
        if closing:
            assert ticket_id is not None
            note = (f"Alert already resolved in {event.source} when its raise arrived (by "
                    f"{channel}); ticket recorded closed by alertd." if opened else
                    f"Alert resolved in {event.source} (reported by {channel}); ticket "
                    "closed by alertd.")
            sql.close_ticket(conn, ticket_id, f"upstream:{event.source}", now)
            sql.insert_note(conn, ticket_id, "alertd", note, now)
        elif decision.left_open_because is not None and ticket_open:
            assert ticket_id is not None
            # A late raise (the resolve came first) left open says so as the resolve would.
            resolved_at = alert["resolved_at"] if opened else now
            said = (f"Alert already resolved in {rmm_name(event.source)} when its raise "
                    f"arrived (by {channel})" if opened else
                    f"Alert resolved in {rmm_name(event.source)} at "
                    f"{now:%Y-%m-%d %H:%M:%S} UTC (reported by {channel})")
            sql.UPDATE_TICKET.run(conn, {"row_id": ticket_id, "upstream_resolved_at": resolved_at})
            sql.insert_note(conn, ticket_id, "alertd", (
                f"{said}; ticket left open because {decision.left_open_because}."), now)
        sql.INSERT_TRAIL.run(conn, trail_row(alert["id"], decision.outcome.value, now, channel,
                                          reason=event_reason(event, decision)))
        return EventResult(event.source, event.uid, alert["id"], decision.outcome.value,
                           ticket_id, ticket_opened=opened, ticket_closed=closing)

    def insert_ticket(self, conn: Connection, event: AlertEvent, alert_id: int,
                       now: datetime) -> int:
        placement = (self._placer.place(conn, event, now) if self._placer is not None
                     else Placement())
        ticket_id = sql.INSERT_TICKET.scalar(conn, new_ticket_row(event, alert_id, placement, now))
        assert ticket_id is not None
        return int(ticket_id)

    def open_new_alerts(self, conn: Connection, arrivals: Sequence[tuple[str, AlertEvent]],
                        now: datetime) -> list[EventResult | None]:
        """`apply_event` for many events at once, each naming a different alert, when that
        alert is new: a few statements for all of them instead of a few for each.

        `arrivals`: (channel, event) pairs whose (source, uid) are all different. For each,
        the EventResult (opened or tombstone), or None where the alert exists (stored before,
        or inserted meanwhile by another process): apply that one with `apply_event`.
        """
        events = [clamp_event(event) for _, event in arrivals]
        decisions = [decide_event(None, event.action) for event in events]
        rows = [new_alert_row(channel, event, decision, now)
                for (channel, _), event, decision in zip(arrivals, events, decisions,
                                                         strict=True)]
        inserted = self._insert_new_alerts(conn, rows)
        # The events whose alert this inserted, with its id: everything below is theirs.
        new = [(channel, event, decision, alert_id)
               for (channel, _), event, decision in zip(arrivals, events, decisions, strict=True)
               if (alert_id := inserted.get((event.source, event.uid))) is not None]
        opening = [(event, alert_id) for _, event, decision, alert_id in new
                   if decision.open_ticket]
        placements = (self._placer.place_many(conn, [event for event, _ in opening], now)
                      if self._placer is not None else [Placement()] * len(opening))
        ticket_rows = [new_ticket_row(event, alert_id, placement, now)
                       for (event, alert_id), placement in zip(opening, placements,
                                                               strict=True)]
        if self._numbered:
            tickets = dict(zip((row["alert_id"] for row in ticket_rows),
                               sql.NUMBERED_TICKETS.run(conn, ticket_rows), strict=True))
        else:
            tickets = {row.alert_id: row.id for row in conn.execute(
                sql.INSERT_TICKETS, ticket_rows)} if ticket_rows else {}
        sql.INSERT_TRAIL.run_many(conn, [
            trail_row(alert_id, decision.outcome.value, now, channel,
                      reason=event_reason(event, decision))
            for channel, event, decision, alert_id in new])
        results: dict[tuple[str, str], EventResult] = {
            (event.source, event.uid): EventResult(
                event.source, event.uid, alert_id, decision.outcome.value,
                tickets.get(alert_id), ticket_opened=alert_id in tickets)
            for _, event, decision, alert_id in new}
        return [results.get((event.source, event.uid)) for event in events]

    def _insert_new_alerts(self, conn: Connection, rows: list[dict[str, Any]]
                           ) -> dict[tuple[str, str], int]:
        """Insert the alerts among `rows` that are not stored yet; their ids by (source,
        uid)."""
        if not rows:
            return {}
        if not self._numbered:  # the unique index decides between processes
            return {(row.source, row.uid): row.id
                    for row in conn.execute(self._insert_alerts, rows)}
        # Point lookups on the unique index: cheaper than building an IN query per group.
        fresh = [row for row in rows
                 if sql.ALERT_ID.scalar(conn, {"source": row["source"], "uid": row["uid"]})
                 is None]
        return dict(zip(((row["source"], row["uid"]) for row in fresh),
                        sql.NUMBERED_ALERTS.run(conn, fresh), strict=True))

    # --- agents' actions ---------------------------------------------------------------------

    def close_by_agent(self, conn: Connection, ticket_id: int, actor: str, note: str | None,
                       now: datetime) -> CloseResult:
        """Close a ticket as an agent; resolve its open alert and queue the upstream resolve.

        Raises `TicketNotFound`, or `TicketAlreadyClosed` (from the core) if it is closed.
        """
        alert_id = sql.TICKET_ALERT.scalar(conn, {"id": ticket_id})
        alert = (sql.LOCK_ALERT_BY_ID.first(conn, {"id": alert_id})
                 if alert_id is not None else None)
        ticket = sql.LOCK_TICKET.first(conn, {"id": ticket_id})
        if ticket is None:
            raise TicketNotFound(f"ticket {ticket_id} not found")
        decision = decide_ticket_close(
            ticket["status"] == "open",
            sql.snapshot(alert, None) if alert is not None else None,
            upstream_resolvable=alert is not None
            and alert["source"] in UPSTREAM_RESOLVABLE_SOURCES,
        )
        sql.TOUCH_TICKET.run(conn, {"row_id": ticket_id, "touched_at": now})  # an agent's change
        sql.close_ticket(conn, ticket_id, actor, now)
        if note:
            sql.insert_note(conn, ticket_id, actor, note, now)
        outbox_id = None
        if alert is not None and decision.resolve_alert:
            sql.UPDATE_ALERT.run(conn, {"row_id": alert["id"],
                                        **sql.resolved(ResolvedBy.TICKET, now)})
        if alert is not None and decision.resolve_upstream:
            outbox_id = self._insert_outbox.scalar(conn, {
                "action": RESOLVE_ALERT, "source": alert["source"], "target": alert["uid"],
                "alert_id": alert["id"], "status": "pending", "attempts": 0,
                "next_attempt_at": now, "created_at": now})
        if alert is not None:
            sql.INSERT_TRAIL.run(conn, trail_row(
                alert["id"], "ticket_closed", now, actor=actor,
                reason="the alert resolved by its ticket; resolve queued upstream"
                if outbox_id is not None else "the alert resolved by its ticket"
                if decision.resolve_alert else "the alert was resolved already"))
        return CloseResult(ticket_id, alert_id, decision.resolve_alert, outbox_id,
                           alert["source"] if alert is not None else None)

    def add_note(self, conn: Connection, ticket_id: int, author: str, body: str,
                 now: datetime) -> int:
        """Add a note to a ticket (open or closed); raises `TicketNotFound`."""
        if sql.TICKET_EXISTS.first(conn, {"id": ticket_id}) is None:
            raise TicketNotFound(f"ticket {ticket_id} not found")
        # An agent's note marks the ticket as worked on: an upstream resolve no longer closes
        # it under `auto_close = "untouched"`.
        sql.TOUCH_TICKET.run(conn, {"row_id": ticket_id, "touched_at": now})
        return sql.insert_note(conn, ticket_id, author, body, now)
