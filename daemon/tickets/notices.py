"""Notifications queued with the change they tell of (issue 17).

A ticket opened, reopened or closed, an alert held back by a maintenance window: each
`[[notify]]` target that asks for the event (and whose filters match) gets one outbox row,
inserted in the transaction that made the change. So a notification exists exactly when its
change committed, and a crash can lose neither. The outbox worker renders and sends it
(`daemon.notify`, `daemon.rmm.outbox`).

With no target configured, `queue` returns at once: intake pays nothing for the feature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, insert, select

from daemon.config.notify_sections import NOTIFY_EVENTS
from daemon.store.models import Customer
from daemon.store.prepared import Prepared
from daemon.tickets import statements as sql

NOTIFY = "notify"  # the outbox action of a notification

TICKET_OPENED = "ticket.opened"
TICKET_REOPENED = "ticket.reopened"
TICKET_CLOSED = "ticket.closed"
TICKET_UPSTREAM_RESOLVED = "ticket.upstream_resolved"
ALERT_SUPPRESSED = "alert.suppressed"
CHANNEL_SILENT = "channel.silent"
assert set(NOTIFY_EVENTS) == {TICKET_OPENED, TICKET_REOPENED, TICKET_CLOSED,
                              TICKET_UPSTREAM_RESOLVED, ALERT_SUPPRESSED, CHANNEL_SILENT}

_INSERT = Prepared(insert(sql.OUTBOX))
_CUSTOMERS: Table = Customer.__table__  # type: ignore[assignment]
# The customer: the synced record the ticket is placed on, else the name the alert gave.
_FACTS = Prepared(select(sql.ALERTS.c.source, sql.TICKETS.c.priority,
                         func.coalesce(_CUSTOMERS.c.name, sql.ALERTS.c.customer)
                         .label("customer"))
                  .select_from(sql.TICKETS)
                  .outerjoin(sql.ALERTS, sql.ALERTS.c.id == sql.TICKETS.c.alert_id)
                  .outerjoin(_CUSTOMERS, _CUSTOMERS.c.id == sql.TICKETS.c.customer_id)
                  .where(sql.TICKETS.c.id == bindparam("ticket_id")))
_CUSTOMER = Prepared(select(_CUSTOMERS.c.name).where(_CUSTOMERS.c.id == bindparam("customer_id")))


@dataclass(frozen=True)
class Route:
    """One target's interest: its events and filters (lowercased; empty: any)."""

    name: str
    sources: frozenset[str] = frozenset()
    customers: frozenset[str] = frozenset()
    priorities: frozenset[str] = frozenset()

    @property
    def needs_facts(self) -> bool:
        return bool(self.customers or self.priorities)

    def matches(self, source: str, customer: str | None, priority: str | None) -> bool:
        return ((not self.sources or source in self.sources)
                and (not self.customers or (customer or "").casefold() in self.customers)
                and (not self.priorities or (priority or "").casefold() in self.priorities))


@dataclass(frozen=True)
class Facts:
    """What the filters look at; read from the ticket when the caller does not know it."""

    customer: str | None
    priority: str | None


class Notices:
    """Queues notifications for the configured targets; every method runs inside a write
    unit."""

    def __init__(self, targets: Sequence[Any] = ()):
        routes: dict[str, list[Route]] = {}
        for target in targets:
            route = Route(target.name, frozenset(target.sources),
                          frozenset(c.casefold() for c in target.customers),
                          frozenset(p.casefold() for p in target.priorities))
            for event in target.events:
                routes.setdefault(event, []).append(route)
        self._routes = {event: tuple(found) for event, found in routes.items()}

    @property
    def any(self) -> bool:
        """Whether any target is configured."""
        return bool(self._routes)

    def wants(self, event: str) -> bool:
        return event in self._routes

    def queue(self, conn: Connection, event: str, now: datetime, *, source: str | None,
              ticket_id: int | None = None, alert_id: int | None = None,
              facts: Facts | None = None, **details: Any) -> int:
        """Queue `event` for each target that wants it; how many rows were queued.

        `source`, `facts`: what the filters look at, when the caller knows it (an alert
        without a ticket); otherwise read from the ticket, and only when needed. `details`:
        what the message adds (who closed, which window)."""
        rows = self._rows(conn, event, now, source, ticket_id, alert_id, facts, details)
        if rows:
            _INSERT.run_many(conn, rows)
        return len(rows)

    def _rows(self, conn: Connection, event: str, now: datetime, source: str | None,
              ticket_id: int | None, alert_id: int | None, facts: Facts | None,
              details: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The outbox rows of `event`, one per target that wants it."""
        routes = self._routes.get(event)
        if not routes:
            return []
        if ticket_id is not None and (source is None or (
                facts is None and any(r.needs_facts for r in routes))):
            row = _FACTS.first(conn, {"ticket_id": ticket_id}) or {}
            source = source or row.get("source")
            facts = Facts(row.get("customer"), row.get("priority"))
        facts = facts or Facts(None, None)
        return [{"action": NOTIFY, "source": route.name, "target": event,
                 "ticket_id": ticket_id, "alert_id": None, "status": "pending",
                 "attempts": 0, "next_attempt_at": now, "created_at": now,
                 "payload": {"alert_id": alert_id, **details}}
                for route in routes if route.matches(source or "", facts.customer,
                                                     facts.priority)]

    def queue_opened(self, conn: Connection, opened: Mapping[int, tuple[str, int]],
                     now: datetime) -> None:
        """`ticket.opened` for many new tickets, in one statement: {ticket id: (source, alert
        id)}."""
        if TICKET_OPENED in self._routes:
            rows = [row for ticket_id, (source, alert_id) in opened.items()
                    for row in self._rows(conn, TICKET_OPENED, now, source, ticket_id,
                                          alert_id, None, {})]
            if rows:
                _INSERT.run_many(conn, rows)

    def customer_name(self, conn: Connection, customer_id: int | None) -> str | None:
        """A placement's customer, by name (for an alert that has no ticket yet)."""
        if customer_id is None or not self.wants(ALERT_SUPPRESSED):
            return None
        row = _CUSTOMER.first(conn, {"customer_id": customer_id})
        return row["name"] if row else None


NO_NOTICES = Notices()
