"""Which ticket a new alert gets, applied in SQL (issue 16, rules 2 and 3): its own, its
condition's open ticket (joined), or its condition's ticket closed a moment ago (reopened).

`daemon.core.conditions` decides; this module reads the condition's newest ticket under the
condition's lock and writes the answer, inside the caller's transaction. Lock order: the alert
row (the caller's), then the condition (PostgreSQL: a transaction-scoped advisory lock), then
the ticket row. Intake's resolves and agents' closes lock the alert rows, then the ticket: a
raise joining a ticket waits for them and decides on what they committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from daemon.core.conditions import (
    BURST_GAP,
    ConditionPolicy,
    ConditionTicket,
    TicketChoice,
    choose_ticket,
    starts_burst,
)
from daemon.core.durations import format_duration
from daemon.core.events import AlertEvent
from daemon.core.lifecycle import Outcome, rmm_name
from daemon.tickets import statements as sql
from daemon.tickets.placement import Placement

# The outcome of a new alert's raise, by the ticket it got.
OUTCOME_OF_CHOICE = {TicketChoice.NEW: Outcome.OPENED, TicketChoice.JOIN: Outcome.JOINED,
                     TicketChoice.REOPEN: Outcome.REOPENED}


_BURST_GAP = format_duration(int(BURST_GAP.total_seconds()))


@dataclass(frozen=True)
class TicketOfAlert:
    ticket_id: int
    choice: TicketChoice
    reason: str | None = None  # for the trail: which ticket it joined or reopened, and why


class ConditionTickets:
    """Gives new alerts their ticket by condition, on one backend."""

    def __init__(self, dialect_name: str, policy: ConditionPolicy,
                 insert_ticket: Callable[[Connection, AlertEvent, int, datetime, str | None,
                                          Placement | None], int]):
        self.policy = policy
        self._lock_conditions = dialect_name == "postgresql"
        self._insert_ticket = insert_ticket

    def lock(self, conn: Connection, condition: str) -> None:
        """Take the condition's lock until the transaction ends (PostgreSQL; SQLite has one
        writer): one transaction at a time decides or changes its ticket's alerts."""
        if self._lock_conditions:
            sql.LOCK_CONDITION.first(conn, {"condition": condition})

    def opening_new(self, conn: Connection, conditions: Iterable[str], now: datetime
                    ) -> set[str]:
        """Those of `conditions` whose new open alert gets a ticket of its own (no ticket of
        the condition to join or reopen), as `ticket_for` would decide; one statement for
        all. Without the conditions' locks: for SQLite, whose one writer keeps the answer
        true until the transaction ends."""
        asked = set(conditions)
        if not asked:
            return set()
        newest = {row["condition"]: row for row in sql.NEWEST_OF_CONDITIONS.all(
            conn, {"conditions": sorted(asked)})}
        return {condition for condition in asked
                if (found := newest.get(condition)) is None or choose_ticket(
                    ConditionTicket(found["status"] == "open", found["closed_at"]),
                    self.policy, now) is TicketChoice.NEW}

    def decides(self, condition: str | None) -> bool:
        """Whether a new alert of `condition` needs `ticket_for` (else: a ticket of its own)."""
        return condition is not None and self.policy.active

    def ticket_for(self, conn: Connection, channel: str, event: AlertEvent, alert_id: int,
                   condition: str | None, now: datetime, alert_open: bool = True,
                   placement: Placement | None = None) -> TicketOfAlert:
        """Give the stored alert `alert_id` (new: no ticket yet) its ticket, and say which.

        `alert_open` is False for a raise that came after its own resolve: it may join its
        condition's open ticket, but never reopens one (`choose_ticket`). `placement`: where
        a new ticket belongs, when the caller looked it up already.
        """
        newest = None
        choice = TicketChoice.NEW
        if condition is not None and self.policy.active:
            self.lock(conn, condition)
            newest = sql.LOCK_NEWEST_OF_CONDITION.first(conn, {"condition": condition})
            choice = choose_ticket(
                None if newest is None else ConditionTicket(newest["status"] == "open",
                                                            newest["closed_at"]),
                self.policy, now, alert_open)
        if newest is None or choice is TicketChoice.NEW:
            ticket_id = self._insert_ticket(conn, event, alert_id, now, condition, placement)
            result = TicketOfAlert(ticket_id, TicketChoice.NEW)
        else:
            result = self._raise_again(conn, channel, event, newest, choice, now, alert_open)
        sql.UPDATE_ALERT.run(conn, {"row_id": alert_id, "ticket_id": result.ticket_id})
        return result

    def _raise_again(self, conn: Connection, channel: str, event: AlertEvent,
                     ticket: dict[str, Any], choice: TicketChoice, now: datetime,
                     alert_open: bool) -> TicketOfAlert:
        """Join, reopen or record on `ticket` (locked) another raise of its condition."""
        ticket_id = int(ticket["id"])
        occurrences = ticket["occurrences"] + 1
        if not alert_open and choice is TicketChoice.JOIN:
            # Resolved before its raise arrived: counted, nothing more. The ticket's other
            # alerts decide when it closes (a close waiting for the condition to stay clear
            # still waits: this raise is not a new occurrence of the problem).
            sql.UPDATE_TICKET.run(conn, {"row_id": ticket_id, "occurrences": occurrences})
            return TicketOfAlert(ticket_id, choice, f"counted on open ticket {ticket_id} of "
                                 "its condition (resolved before its raise arrived)")
        # A raise cancels a close waiting for the condition to stay clear, and makes a ticket
        # left open after its alerts were resolved upstream (`auto_close`) current again.
        changes: dict[str, Any] = {"row_id": ticket_id, "occurrences": occurrences,
                                   "last_raised_at": now, "close_due_at": None}
        if choice is TicketChoice.JOIN:
            changes["upstream_resolved_at"] = None
        said = f"{rmm_name(event.source)} raised its condition again: alert {event.uid} " \
               f"(by {channel}); {occurrences} raises on this ticket."
        if choice is TicketChoice.RECORD:
            sql.insert_note(conn, ticket_id, "alertd", (
                f"{said} It was resolved already when its raise arrived: the ticket stays "
                "closed."), now)
            reason = f"recorded on ticket {ticket_id} of its condition, closed a moment ago"
        elif choice is TicketChoice.REOPEN:
            closed_ago = format_duration(int((now - ticket["closed_at"]).total_seconds()))
            changes.update(status="open", closed_at=None, closed_by=None,
                           upstream_resolved_at=None)
            sql.insert_note(conn, ticket_id, "alertd", (
                f"Ticket reopened: {said} It had closed {closed_ago} before (within "
                f"reopen_window, {format_duration(self.policy.reopen_window_s)})."), now)
            reason = f"reopened ticket {ticket_id}, closed {closed_ago} before"
        else:
            if starts_burst(ticket["last_raised_at"], now):
                sql.insert_note(conn, ticket_id, "alertd", (
                    f"{said} Further raises less than {_BURST_GAP} apart are counted "
                    "without a note."), now)
            reason = f"joined open ticket {ticket_id} of its condition"
        sql.UPDATE_TICKET.run(conn, changes)
        return TicketOfAlert(ticket_id, choice, reason)
