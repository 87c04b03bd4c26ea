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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from daemon.core.conditions import (
    DEFAULT_POLICY,
    ConditionPolicy,
    TicketChoice,
    condition_key,
)
from daemon.core.events import AlertEvent, clamp_event
from daemon.core.lifecycle import (
    UPSTREAM_RESOLVABLE_SOURCES,
    AlertAction,
    AutoClose,
    EventDecision,
    Outcome,
    ResolvedBy,
    decide_event,
    decide_ticket_close,
    rmm_name,
)
from daemon.store.database import insert_ignore
from daemon.store.prepared import Prepared
from daemon.tickets import statements as sql
from daemon.tickets.conditions import OUTCOME_OF_CHOICE, ConditionTickets, TicketOfAlert
from daemon.tickets.maintenance import MaintenanceSchedule, held
from daemon.tickets.notices import (
    ALERT_SUPPRESSED,
    NO_NOTICES,
    TICKET_CLOSED,
    TICKET_OPENED,
    TICKET_REOPENED,
    TICKET_UPSTREAM_RESOLVED,
    Facts,
    Notices,
)
from daemon.tickets.placement import Placement, TicketPlacer
from daemon.tickets.rows import (
    ALERT_FIELDS,
    event_reason,
    new_alert_row,
    new_ticket_row,
    trail_row,
)

RESOLVE_ALERT = "resolve_alert"  # the outbox action an agent's close queues
# The ticket choices that people hear of (`[[notify]]`).
_TOLD_CHOICES = {TicketChoice.NEW: TICKET_OPENED, TicketChoice.REOPEN: TICKET_REOPENED}


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
    ticket_reopened: bool = False
    rule: str | None = None  # the email rule that decided the event (for the log's fields)


@dataclass(frozen=True)
class CloseResult:
    ticket_id: int
    alert_id: int | None
    alert_resolved: bool
    outbox_id: int | None
    source: str | None  # the alert's source (what the outbox row is for)
    # Every alert of the ticket (its condition's) this close resolved, and their resolves
    # queued upstream; `alert_id`, `alert_resolved`, `outbox_id` are the first of them.
    alerts_resolved: tuple[int, ...] = ()
    outbox_ids: tuple[int, ...] = ()

    def closing(self) -> dict[str, list[int]]:
        """What the close did, as the API's close answer tells it (`closing`)."""
        return {"alerts_resolved": list(self.alerts_resolved),
                "outbox_ids": list(self.outbox_ids)}


@dataclass(frozen=True)
class Suppressed:
    """A new alert's ticket held back by a maintenance window."""

    reason: str


class Transitions:
    """Applies lifecycle decisions on one backend; every method runs inside a write unit."""

    def __init__(self, dialect_name: str, placer: TicketPlacer | None = None,
                 auto_close: AutoClose = AutoClose.UNTOUCHED,
                 conditions: ConditionPolicy = DEFAULT_POLICY,
                 close_after_clear_s: int = 0,
                 maintenance: MaintenanceSchedule | None = None,
                 notices: Notices = NO_NOTICES):
        self.notices = notices  # who is told of a ticket's change (`[[notify]]`)
        self._placer = placer  # a new ticket's customer, site, asset and end user
        self._maintenance = maintenance  # windows that hold new alerts' tickets back
        self._auto_close = auto_close  # whether an upstream resolve closes worked tickets
        self._close_after_clear_s = close_after_clear_s
        self._conditions = ConditionTickets(dialect_name, conditions, self.insert_ticket)
        # SQLite: one writer at a time, so new rows can be numbered here and inserted
        # together (daemon.store.prepared.NumberedInsert).
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
        condition = condition_key(event)
        new_id = self._insert_alert.scalar(conn, new_alert_row(channel, event, decision, now,
                                                               condition))
        if new_id is not None:
            outcome, ticket_id, reason = decision.outcome, None, event_reason(event, decision)
            choice = None
            if decision.open_ticket:
                got = self._ticket_or_window(conn, channel, event, new_id, condition, now)
                if isinstance(got, Suppressed):
                    outcome = Outcome.SUPPRESSED
                else:
                    choice, ticket_id = got.choice, got.ticket_id
                    outcome = OUTCOME_OF_CHOICE[choice]
                    self._tell_choice(conn, choice, now, event.source, ticket_id, new_id)
                reason += f"; {got.reason}" if got.reason else ""
            sql.INSERT_TRAIL.run(conn, trail_row(new_id, outcome.value, now, channel,
                                              reason=reason))
            return EventResult(event.source, event.uid, new_id, outcome.value, ticket_id,
                               ticket_opened=choice is TicketChoice.NEW,
                               ticket_reopened=choice is TicketChoice.REOPEN, rule=event.rule)
        alert = sql.LOCK_ALERT.first(conn, key)
        assert alert is not None  # alerts are never deleted

        ticket, others_open = sql.lock_ticket_of(
            conn, alert, event.action is AlertAction.RESOLVE and alert["state"] == "open")
        decision = decide_event(sql.snapshot(alert, ticket, others_open), event.action,
                                self._auto_close, self._close_after_clear_s)
        changes: dict[str, Any] = {
            "row_id": alert["id"], "occurrences": alert["occurrences"] + 1,
            "last_seen_at": now,
            "channels": alert["channels"] if channel in alert["channels"]
            else [*alert["channels"], channel],
            "state": alert["state"], "resolved_by": alert["resolved_by"],
            "resolved_at": alert["resolved_at"],
            # A twin fills in what the first copy lacked (a webhook knows more than a subject).
            # ("" is a device id asked for and not found: a copy that names one fills it.)
            **{name: alert[name] if alert[name] not in (None, "")
               or getattr(event, name) is None else getattr(event, name)
               for name in ALERT_FIELDS},
        }
        if decision.open_ticket and alert["condition"] is None:
            # A late raise: the resolve that came first may have named no condition (a mail
            # rule without a condition group); the raise may.
            changes["condition"] = condition_key(event)
        if decision.resolved_by is not None:
            changes.update(sql.resolved(decision.resolved_by, now))
        sql.UPDATE_ALERT.run(conn, changes)
        ticket_id = ticket["id"] if ticket is not None else None
        reason = event_reason(event, decision)
        opened = False
        outcome = decision.outcome
        if decision.open_ticket:  # a late raise: the ticket it would have had
            got = self._ticket_or_window(conn, channel, event, alert["id"],
                                         changes.get("condition", alert["condition"]), now,
                                         alert_open=False)
            if isinstance(got, Suppressed):
                outcome = Outcome.SUPPRESSED
            else:
                ticket_id, opened = got.ticket_id, got.choice is TicketChoice.NEW
            reason += f"; {got.reason}" if got.reason else ""
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
            if not opened:  # a ticket recorded closed at once asks nothing of anyone
                self.notices.queue(conn, TICKET_UPSTREAM_RESOLVED, now, source=event.source,
                                   ticket_id=ticket_id, alert_id=alert["id"],
                                   closed_by=f"upstream:{event.source}")
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
            self.notices.queue(conn, TICKET_OPENED if opened else TICKET_UPSTREAM_RESOLVED,
                               now, source=event.source, ticket_id=ticket_id,
                               alert_id=alert["id"],
                               left_open_because=decision.left_open_because)
        elif decision.close_after_s and ticket_open:
            assert ticket_id is not None
            due = now + timedelta(seconds=decision.close_after_s)
            sql.UPDATE_TICKET.run(conn, {"row_id": ticket_id, "close_due_at": due})
            sql.insert_note(conn, ticket_id, "alertd", (
                f"Alert resolved in {rmm_name(event.source)} at {now:%Y-%m-%d %H:%M:%S} UTC "
                f"(reported by {channel}); the ticket closes at {due:%Y-%m-%d %H:%M:%S} UTC "
                "unless its condition is raised again before (close_after_clear)."), now)
            reason += f"; ticket {ticket_id} closes at {due:%Y-%m-%d %H:%M:%S} UTC if clear"
        elif opened and ticket_id is not None:
            self.notices.queue(conn, TICKET_OPENED, now, source=event.source,
                               ticket_id=ticket_id, alert_id=alert["id"])
        sql.INSERT_TRAIL.run(conn, trail_row(alert["id"], outcome.value, now, channel,
                                          reason=reason))
        return EventResult(event.source, event.uid, alert["id"], outcome.value,
                           ticket_id, ticket_opened=opened, ticket_closed=closing,
                           rule=event.rule)

    def _ticket_or_window(self, conn: Connection, channel: str, event: AlertEvent,
                          alert_id: int, condition: str | None, now: datetime,
                          alert_open: bool = True) -> TicketOfAlert | Suppressed:
        """The ticket a new alert gets, or `Suppressed` when an open maintenance window
        covers it (the alert is marked, and keeps what its ticket is to be made of)."""
        placement = None
        if self._maintenance is not None and self._maintenance.any_open(conn, now):
            placement = (self._placer.place(conn, event, now) if self._placer is not None
                         else Placement())
            window = self._maintenance.window_for(conn, event, placement, now)
            if window is not None:
                # An open alert waits for its ticket; a late raise (resolved already) never
                # gets one.
                sql.UPDATE_ALERT.run(conn, {"row_id": alert_id, "suppressed_by": window.label,
                                            **({"held": held(event), "held_since": now}
                                               if alert_open else {})})
                if alert_open:
                    self.notices.queue(
                        conn, ALERT_SUPPRESSED, now, source=event.source, alert_id=alert_id,
                        facts=Facts(self.notices.customer_name(conn, placement.customer_id)
                                    or event.customer, event.priority),
                        window=window.label)
                return Suppressed(f"suppressed by {window.label}")
        return self._conditions.ticket_for(conn, channel, event, alert_id, condition, now,
                                           alert_open, placement)

    def release_ticket(self, conn: Connection, event: AlertEvent, alert: Mapping[str, Any],
                       now: datetime) -> tuple[int, str]:
        """The ticket of a suppressed alert (locked, still open) that no window covers any
        more: its own, or its condition's (`daemon.tickets.maintenance`). (ticket id, how)"""
        got = self._conditions.ticket_for(conn, alert["channels"][0], event, alert["id"],
                                          alert["condition"], now)
        self._tell_choice(conn, got.choice, now, event.source, got.ticket_id, alert["id"],
                          window=alert["suppressed_by"])
        return got.ticket_id, got.reason or f"opened ticket {got.ticket_id}"

    def _tell_choice(self, conn: Connection, choice: TicketChoice, now: datetime, source: str,
                     ticket_id: int, alert_id: int, **details: Any) -> None:
        """`ticket.opened` or `ticket.reopened` for a new alert's ticket (joining one, or a
        ticket recorded, tells nothing)."""
        event = _TOLD_CHOICES.get(choice)
        if event is not None:
            self.notices.queue(conn, event, now, source=source, ticket_id=ticket_id,
                               alert_id=alert_id, **details)

    def insert_ticket(self, conn: Connection, event: AlertEvent, alert_id: int,
                      now: datetime, condition: str | None = None,
                      placement: Placement | None = None) -> int:
        if placement is None:
            placement = (self._placer.place(conn, event, now) if self._placer is not None
                         else Placement())
        ticket_id = sql.INSERT_TICKET.scalar(
            conn, new_ticket_row(event, alert_id, placement, now, condition))
        assert ticket_id is not None
        return int(ticket_id)

    def open_new_alerts(self, conn: Connection, arrivals: Sequence[tuple[str, AlertEvent]],
                        now: datetime) -> list[EventResult | None]:
        """`apply_event` for many events at once, each naming a different alert, when that
        alert is new: a few statements for all of them instead of a few for each.

        `arrivals`: (channel, event) pairs whose (source, uid) are all different, and whose
        conditions no other input applied with them names (`new_alert_candidates`). For each,
        the EventResult (opened or tombstone), or None where this cannot decide it: the
        alert exists (stored before, or inserted meanwhile by another process), or its
        condition has a ticket to join or reopen, or (PostgreSQL) its condition decides its
        ticket under the condition's lock (rule 2). Apply those with `apply_event`.
        """
        events = [clamp_event(event) for _, event in arrivals]
        conditions = [condition_key(event) for event in events]
        decisions = [decide_event(None, event.action) for event in events]
        # While a maintenance window is open, each new alert is checked against it alone.
        held_back = self._maintenance is not None and self._maintenance.any_open(conn, now)
        # A condition with no ticket to join or reopen opens a ticket of its own, as
        # `ticket_for` would. SQLite only: its one writer keeps that true until the commit
        # (PostgreSQL decides it under the condition's lock, one alert at a time).
        opening_new: set[str] = set()
        if self._numbered and not held_back:
            opening_new = self._conditions.opening_new(conn, [
                condition for decision, condition in zip(decisions, conditions, strict=True)
                if decision.open_ticket and condition is not None
                and self._conditions.decides(condition)], now)

        def in_bulk(decision: EventDecision, condition: str | None) -> bool:
            if not decision.open_ticket:
                return True
            if held_back:
                return False
            return not self._conditions.decides(condition) or condition in opening_new

        rows = [new_alert_row(channel, event, decision, now, condition)
                for (channel, _), event, decision, condition
                in zip(arrivals, events, decisions, conditions, strict=True)
                if in_bulk(decision, condition)]
        # SQLite: the alerts are numbered now and inserted with their tickets' ids, below.
        fresh, inserted = self._new_alerts(conn, rows)
        # The events whose alert this inserted, with its id: everything below is theirs.
        new = [(channel, event, decision, alert_id, condition)
               for (channel, _), event, decision, condition
               in zip(arrivals, events, decisions, conditions, strict=True)
               if (alert_id := inserted.get((event.source, event.uid))) is not None]
        opening = [(event, alert_id, condition) for _, event, decision, alert_id, condition in new
                   if decision.open_ticket]
        placements = (self._placer.place_many(conn, [event for event, _, _ in opening], now)
                      if self._placer is not None else [Placement()] * len(opening))
        ticket_rows = [new_ticket_row(event, alert_id, placement, now, condition)
                       for (event, alert_id, condition), placement in zip(opening, placements,
                                                                          strict=True)]
        if self._numbered:
            ticket_ids = sql.NUMBERED_TICKETS.next_ids(conn, len(ticket_rows))
            tickets = dict(zip((row["alert_id"] for row in ticket_rows), ticket_ids,
                               strict=True))
            # Each alert is written once, naming its ticket (alerts before tickets: a
            # ticket's alert_id references its alert).
            sql.NUMBERED_ALERTS.insert(conn, [
                {**row, "id": inserted[row["source"], row["uid"]],
                 "ticket_id": tickets.get(inserted[row["source"], row["uid"]])}
                for row in fresh])
            sql.NUMBERED_TICKETS.insert(conn, [
                {**row, "id": ticket_id} for row, ticket_id in zip(ticket_rows, ticket_ids,
                                                                   strict=True)])
        else:
            tickets = {row.alert_id: row.id for row in conn.execute(
                sql.INSERT_TICKETS, ticket_rows)} if ticket_rows else {}
            sql.UPDATE_ALERT.run_many(conn, [{"row_id": alert_id, "ticket_id": ticket_id}
                                             for alert_id, ticket_id in tickets.items()])
        self.notices.queue_opened(conn, {
            tickets[alert_id]: (event.source, alert_id)
            for event, alert_id, _ in opening if alert_id in tickets}, now)
        sql.INSERT_TRAIL.run_many(conn, [
            trail_row(alert_id, decision.outcome.value, now, channel,
                      reason=event_reason(event, decision))
            for channel, event, decision, alert_id, _ in new])
        results: dict[tuple[str, str], EventResult] = {
            (event.source, event.uid): EventResult(
                event.source, event.uid, alert_id, decision.outcome.value,
                tickets.get(alert_id), ticket_opened=alert_id in tickets, rule=event.rule)
            for _, event, decision, alert_id, _ in new}
        return [results.get((event.source, event.uid)) for event in events]

    def _new_alerts(self, conn: Connection, rows: list[dict[str, Any]]
                    ) -> tuple[list[dict[str, Any]], dict[tuple[str, str], int]]:
        """The alerts among `rows` that are not stored yet, and their ids by (source, uid).
        PostgreSQL: inserted (no rows returned). SQLite: numbered, not inserted yet (the rows
        returned; `NUMBERED_ALERTS.insert` them before anything else inserts an alert)."""
        if not rows:
            return [], {}
        if not self._numbered:  # the unique index decides between processes
            return [], {(row.source, row.uid): row.id
                        for row in conn.execute(self._insert_alerts, rows)}
        uids_by_source: dict[str, list[str]] = {}
        for row in rows:
            uids_by_source.setdefault(row["source"], []).append(row["uid"])
        stored = {(source, found["uid"]) for source, uids in uids_by_source.items()
                  for found in sql.STORED_UIDS.all(conn, {"source": source,
                                                          "uids": uids})}
        fresh = [row for row in rows if (row["source"], row["uid"]) not in stored]
        return fresh, dict(zip(((row["source"], row["uid"]) for row in fresh),
                               sql.NUMBERED_ALERTS.next_ids(conn, len(fresh)), strict=True))

    # --- agents' actions ---------------------------------------------------------------------

    def close_by_agent(self, conn: Connection, ticket_id: int, actor: str, note: str | None,
                       now: datetime) -> CloseResult:
        """Close a ticket as an agent; resolve its open alerts (all of its condition's) and
        queue their upstream resolves.

        Raises `TicketNotFound`, or `TicketAlreadyClosed` (from the core) if it is closed.
        """
        found = sql.TICKET_CONDITION.first(conn, {"id": ticket_id})
        if found is not None and found["condition"] is not None:
            # The condition first: a raise joining this ticket right now (its alert not yet
            # committed, so not among those locked below) then either commits before this
            # close, and is resolved by it, or waits and finds the ticket closed.
            self._conditions.lock(conn, found["condition"])
        alerts = [dict(row) for row in conn.execute(sql.LOCK_OPEN_ALERTS_OF_TICKET.statement,
                                                    {"ticket_id": ticket_id}).mappings()]
        ticket = sql.LOCK_TICKET.first(conn, {"id": ticket_id})
        if ticket is None or found is None:
            raise TicketNotFound(f"ticket {ticket_id} not found")
        decide_ticket_close(ticket["status"] == "open", None, upstream_resolvable=False)
        sql.TOUCH_TICKET.run(conn, {"row_id": ticket_id, "touched_at": now})  # an agent's change
        sql.close_ticket(conn, ticket_id, actor, now)
        if note:
            sql.insert_note(conn, ticket_id, actor, note, now)
        resolved, outbox_ids = [], []
        for alert in alerts:
            decision = decide_ticket_close(True, sql.snapshot(alert, None),
                                           alert["source"] in UPSTREAM_RESOLVABLE_SOURCES)
            outbox_id = None
            if decision.resolve_alert:
                sql.UPDATE_ALERT.run(conn, {"row_id": alert["id"],
                                            **sql.resolved(ResolvedBy.TICKET, now)})
                resolved.append(alert["id"])
            if decision.resolve_upstream:
                outbox_id = self._insert_outbox.scalar(conn, {
                    "action": RESOLVE_ALERT, "source": alert["source"], "target": alert["uid"],
                    "alert_id": alert["id"], "status": "pending", "attempts": 0,
                    "next_attempt_at": now, "created_at": now})
                if outbox_id is not None:
                    outbox_ids.append(outbox_id)
            sql.INSERT_TRAIL.run(conn, trail_row(
                alert["id"], "ticket_closed", now, actor=actor,
                reason="the alert resolved by its ticket; resolve queued upstream"
                if outbox_id is not None else "the alert resolved by its ticket"))
        if not alerts and found["alert_id"] is not None:
            sql.INSERT_TRAIL.run(conn, trail_row(found["alert_id"], "ticket_closed", now,
                                              actor=actor,
                                              reason="the alert was resolved already"))
        self.notices.queue(conn, TICKET_CLOSED, now,
                           source=alerts[0]["source"] if alerts else None,
                           ticket_id=ticket_id, alert_id=found["alert_id"], closed_by=actor,
                           note=note or None)
        first = alerts[0] if alerts else None
        return CloseResult(ticket_id, first["id"] if first else found["alert_id"],
                           bool(resolved), outbox_ids[0] if outbox_ids else None,
                           first["source"] if first else None, tuple(resolved),
                           tuple(outbox_ids))

    def add_note(self, conn: Connection, ticket_id: int, author: str, body: str,
                 now: datetime) -> int:
        """Add a note to a ticket (open or closed); raises `TicketNotFound`."""
        if sql.TICKET_EXISTS.first(conn, {"id": ticket_id}) is None:
            raise TicketNotFound(f"ticket {ticket_id} not found")
        # An agent's note marks the ticket as worked on: an upstream resolve no longer closes
        # it under `auto_close = "untouched"`.
        sql.TOUCH_TICKET.run(conn, {"row_id": ticket_id, "touched_at": now})
        return sql.insert_note(conn, ticket_id, author, body, now)
