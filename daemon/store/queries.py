"""Read side: tickets, alerts and deliveries as JSON-ready dicts, shared by the API and the CLI.

Listings are newest first and paged by id: pass the previous page's `next_before_id` as
`before_id` to get the next page.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from daemon.core.clock import utc_iso
from daemon.core.events import Channel, DeliveryStatus
from daemon.core.lifecycle import AlertState
from daemon.store.database import Database
from daemon.store.models import (
    Alert,
    Asset,
    Customer,
    Delivery,
    EndUser,
    OutboxAction,
    Site,
    SyncRun,
    Ticket,
    TicketNote,
)
from daemon.store.ticket_filters import source_condition, uid_condition
from daemon.store.ticket_search import MAX_QUERY_CHARS, ticket_text_matches

MAX_PAGE = 1000
TICKET_STATUSES = ("open", "closed")
OUTBOX_STATUSES = ("pending", "done", "dead", "dropped")
MAX_TICKET_ALERTS = 100  # alerts listed with one ticket (GET /api/tickets/{id})


# A select of any row shape (SQLAlchemy types a select by its columns).
AnySelect = Select[*tuple[Any, ...]]


class BadFilter(ValueError):
    """A filter value outside its allowed set; the message names the filter."""


@dataclass(frozen=True)
class Page:
    limit: int = 100
    before_id: int | None = None


def parse_page(limit: str | None, before_id: str | None) -> Page:
    for value in (limit, before_id):
        if value and not re.fullmatch(r"[0-9]{1,18}", value):
            raise BadFilter("'limit' and 'before_id' must be whole numbers")
    page = Page(int(limit) if limit else 100, int(before_id) if before_id else None)
    if not 1 <= page.limit <= MAX_PAGE:
        raise BadFilter(f"'limit' must be between 1 and {MAX_PAGE}")
    return page


def _one_of(name: str, value: str | None, allowed: tuple[str, ...]) -> str | None:
    if value is not None and value not in allowed:
        raise BadFilter(f"'{name}' must be one of: {', '.join(allowed)}")
    return value


def id_filter(name: str, value: str | None) -> int | None:
    """A filter naming a record by id: ASCII digits that fit a 64-bit id, or absent."""
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,18}", value):
        raise BadFilter(f"'{name}' must be a whole number (an id)")
    return int(value)


def flag_filter(name: str, value: str | None) -> bool | None:
    """`true` or `false`, or absent."""
    if value is None:
        return None
    if value not in ("true", "false"):
        raise BadFilter(f"'{name}' must be true or false")
    return value == "true"


def search_filter(value: str | None) -> str | None:
    """The free-text `q`: None when absent or blank (an empty search box filters nothing)."""
    if value is None or not value.strip():
        return None
    if len(value) > MAX_QUERY_CHARS:
        raise BadFilter(f"'q' must be at most {MAX_QUERY_CHARS} characters")
    return value.strip()


def _paged(query: AnySelect, id_column: Any, page: Page) -> AnySelect:
    if page.before_id is not None:
        query = query.where(id_column < page.before_id)
    # The limit is written into the SQL, not bound. PostgreSQL plans a prepared statement
    # once for every value (a generic plan); not knowing the limit, it expects a tenth of
    # the table, so with 100,000 tickets that plan is a parallel one, dearer than planning
    # each time, and every page re-planned the six-way join of a ticket page (5 of its 7
    # ms). Knowing the limit, the generic plan is the custom one and is planned once.
    return query.order_by(id_column.desc()).limit(
        bindparam("page_limit", page.limit, literal_execute=True))


def _listing(items: list[dict[str, Any]], page: Page) -> dict[str, Any]:
    full = len(items) == page.limit
    return {"items": items, "next_before_id": items[-1]["id"] if full and items else None}


# A ticket with its alert and the names of what it belongs to, as plain columns: outer joins,
# one query for a whole page, no ORM objects to build (a page of 100 is twice as quick).
_TICKET_ROWS = (
    select(Ticket.__table__, Alert.source.label("alert_source"), Alert.uid.label("alert_uid"),
           Alert.state.label("alert_state"), Alert.device.label("alert_device"),
           Alert.channels.label("alert_channels"), Customer.name.label("customer"),
           Site.name.label("site"), Asset.name.label("asset"),
           EndUser.name.label("end_user"))
    .outerjoin(Alert, Ticket.alert_id == Alert.id)
    .outerjoin(Customer, Ticket.customer_id == Customer.id)
    .outerjoin(Site, Ticket.site_id == Site.id)
    .outerjoin(Asset, Ticket.asset_id == Asset.id)
    .outerjoin(EndUser, Ticket.end_user_id == EndUser.id)
)


def ticket_view(row: Any, notes: list[TicketNote] | None = None) -> dict[str, Any]:
    """One row of `_TICKET_ROWS` as JSON; with `notes` (the single-ticket answers) too."""
    view: dict[str, Any] = {
        "id": row.id,
        "type": row.type,
        "status": row.status,
        "priority": row.priority,
        "summary": row.summary,
        "details": row.details,
        "customer_id": row.customer_id,
        "site_id": row.site_id,
        "asset_id": row.asset_id,
        "end_user_id": row.end_user_id,
        "customer": row.customer,
        "site": row.site,
        "asset": row.asset,
        "end_user": row.end_user,
        "opened_at": utc_iso(row.opened_at),
        "closed_at": utc_iso(row.closed_at),
        "closed_by": row.closed_by,
        # Worked on by an agent (a note, a change): an upstream resolve leaves it open under
        # `[lifecycle] auto_close = "untouched"`, and marks it resolved upstream instead.
        "touched": row.touched_at is not None,
        "touched_at": utc_iso(row.touched_at),
        "upstream_resolved": row.upstream_resolved_at is not None,
        "upstream_resolved_at": utc_iso(row.upstream_resolved_at),
        "alert": None if row.alert_id is None else {
            "id": row.alert_id, "source": row.alert_source, "uid": row.alert_uid,
            "state": row.alert_state, "device": row.alert_device,
            "channels": list(row.alert_channels or ())},
        # Its condition's raises (issue 16, rules 2 and 3): the alert that opened it, those
        # that joined it, those that reopened it; `close_due_at` while `close_after_clear`
        # holds its close back.
        "condition": row.condition,
        "occurrences": row.occurrences,
        "last_raised_at": utc_iso(row.last_raised_at),
        "close_due_at": utc_iso(row.close_due_at),
    }
    if notes is not None:
        view["notes"] = [
            {"id": n.id, "created_at": utc_iso(n.created_at), "author": n.author, "body": n.body}
            for n in notes
        ]
    return view


def ticket_alert_view(row: Any) -> dict[str, Any]:
    """One of a ticket's alerts, as its ticket lists it."""
    return {"id": row.id, "source": row.source, "uid": row.uid, "state": row.state,
            "device": row.device, "channels": list(row.channels or ())}


def alert_view(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "source": alert.source,
        "uid": alert.uid,
        "state": alert.state,
        "resolved_by": alert.resolved_by,
        "resolved_at": utc_iso(alert.resolved_at),
        # The deciding email rule's expiry (`[lifecycle] expire_after` of the source applies
        # when null and configured).
        "expire_after_s": alert.expire_after_s,
        "first_seen_at": utc_iso(alert.first_seen_at),
        "last_seen_at": utc_iso(alert.last_seen_at),
        "channels": list(alert.channels),
        "occurrences": alert.occurrences,
        "device": alert.device,
        "site": alert.site,
        "customer": alert.customer,
        "priority": alert.priority,
        "message": alert.message,
        "ticket_id": alert.ticket_id,
        "condition": alert.condition,
        # The maintenance window that held its ticket back, if one did (issue 16, rule 4).
        "suppressed_by": alert.suppressed_by,
    }


def delivery_view(delivery: Delivery, with_payload: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": delivery.id,
        "channel": delivery.channel,
        "source": delivery.source,
        "dedupe_key": delivery.dedupe_key,
        "received_at": utc_iso(delivery.received_at),
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": utc_iso(delivery.next_attempt_at),
        "processed_at": utc_iso(delivery.processed_at),
        "error": delivery.error,
        "outcome": delivery.outcome,
        "alert_id": delivery.alert_id,
        "content_type": delivery.content_type,
        "size_bytes": len(delivery.payload),
    }
    if with_payload:
        view["meta"] = delivery.meta
        view["trace"] = delivery.trace
        try:
            view["payload"] = delivery.payload.decode("utf-8")
            view["payload_encoding"] = "utf-8"
        except UnicodeDecodeError:
            view["payload"] = base64.b64encode(delivery.payload).decode("ascii")
            view["payload_encoding"] = "base64"
    return view


def outbox_view(row: OutboxAction) -> dict[str, Any]:
    return {
        "id": row.id, "action": row.action, "source": row.source, "target": row.target,
        "alert_id": row.alert_id, "ticket_id": row.ticket_id, "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": utc_iso(row.next_attempt_at) if row.status == "pending" else None,
        "last_error": row.last_error, "created_at": utc_iso(row.created_at),
        "done_at": utc_iso(row.done_at),
    }


def sync_run_view(run: SyncRun) -> dict[str, Any]:
    return {
        "id": run.id, "source": run.source, "entities": run.entities.split(","),
        "trigger": run.trigger, "status": run.status, "started_at": utc_iso(run.started_at),
        "finished_at": utc_iso(run.finished_at), "counts": run.counts, "errors": run.errors,
    }


async def read_page(db: Database, query: AnySelect, id_column: Any, page: Page,
                    view: Callable[[Any], dict[str, Any]], rows: bool = False,
                    narrow: Callable[[Session, AnySelect], AnySelect] | None = None
                    ) -> dict[str, Any]:
    """One page of `query` as a listing of `view(x)`: x the first entity of each row, or
    with `rows` the whole row (an entity and the names joined to it). `narrow`, when given,
    adds conditions that depend on what the database holds, read in the same snapshot."""
    def run(session: Session) -> list[dict[str, Any]]:
        paged = _paged(narrow(session, query) if narrow else query, id_column, page)
        found = session.execute(paged).all() if rows else session.scalars(paged)
        return [view(x) for x in found]
    return _listing(await db.read(run), page)


def _of_source(source: str) -> Callable[[Session, AnySelect], AnySelect]:
    """Narrows a ticket query to the tickets of `source` (`source_condition`: the form of
    the condition depends on how many alerts the source has)."""
    return lambda session, query: query.where(source_condition(session, source))


class Queries:
    def __init__(self, db: Database):
        self._db = db

    async def _page_of(self, query: AnySelect, id_column: Any, page: Page,
                       view: Callable[[Any], dict[str, Any]], rows: bool = False
                       ) -> dict[str, Any]:
        return await read_page(self._db, query, id_column, page, view, rows)

    async def tickets(self, page: Page, status: str | None = None, alert_uid: str | None = None,
                      source: str | None = None, customer_id: str | None = None,
                      site_id: str | None = None, q: str | None = None,
                      no_customer: str | None = None) -> dict[str, Any]:
        """Tickets, newest first; every given filter must hold (raw values, checked here:
        BadFilter). `q`: every word in the summary or details (daemon/store/ticket_search.py).
        `no_customer`: "true", only tickets placed at no customer; "false", only placed ones.
        """
        customer, site, text = (id_filter("customer_id", customer_id),
                                id_filter("site_id", site_id), search_filter(q))
        unplaced = flag_filter("no_customer", no_customer)
        query = _TICKET_ROWS
        if _one_of("status", status, TICKET_STATUSES):
            query = query.where(Ticket.status == status)
        # The alert filters are written for the indexes there are (ticket_filters).
        narrow = None
        if alert_uid is not None:
            query = query.where(uid_condition(alert_uid, source))
        elif source is not None:
            narrow = _of_source(source)
        if customer is not None:
            query = query.where(Ticket.customer_id == customer)
        if unplaced is not None:  # (customer_id, id) index: IS NULL enters it too
            query = query.where(Ticket.customer_id.is_(None) if unplaced
                                else Ticket.customer_id.is_not(None))
        if site is not None:
            query = query.where(Ticket.site_id == site)
        if text is not None:
            query = query.where(ticket_text_matches(self._db.dialect_name, text))
        return await read_page(self._db, query, Ticket.id, page, ticket_view, rows=True,
                               narrow=narrow)

    async def ticket(self, ticket_id: int) -> dict[str, Any] | None:
        """One ticket with its notes, oldest first, and its alerts (the newest
        `MAX_TICKET_ALERTS`, oldest first: `occurrences` counts them all)."""
        query = _TICKET_ROWS.where(Ticket.id == ticket_id)
        notes = select(TicketNote).where(TicketNote.ticket_id == ticket_id).order_by(
            TicketNote.id)
        alerts = (select(Alert.id, Alert.source, Alert.uid, Alert.state, Alert.device,
                         Alert.channels)
                  .where(Alert.ticket_id == ticket_id).order_by(Alert.id.desc())
                  .limit(MAX_TICKET_ALERTS))

        def run(session: Session) -> dict[str, Any] | None:
            row = session.execute(query).first()
            if row is None:
                return None
            view = ticket_view(row, list(session.scalars(notes)))
            view["alerts"] = [ticket_alert_view(a)
                              for a in reversed(session.execute(alerts).all())]
            return view
        return await self._db.read(run)

    async def alerts(self, page: Page, source: str | None = None, uid: str | None = None,
                     state: str | None = None) -> dict[str, Any]:
        query = select(Alert)
        if source is not None:
            query = query.where(Alert.source == source)
        if uid is not None:
            query = query.where(Alert.uid == uid)
        if _one_of("state", state, tuple(s.value for s in AlertState)):
            query = query.where(Alert.state == state)
        return await self._page_of(query, Alert.id, page, alert_view)

    async def notice_records(self, ticket_ids: Sequence[int], alert_ids: Sequence[int]
                             ) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
        """What notifications tell of, in a few queries however many: tickets (without
        notes, with their newest alerts) and alerts, each by id."""
        def run(session: Session) -> tuple[dict[int, dict[str, Any]],
                                           dict[int, dict[str, Any]]]:
            tickets: dict[int, dict[str, Any]] = {}
            alerts: dict[int, dict[str, Any]] = {}
            for start in range(0, len(ticket_ids), 500):  # bounded IN lists
                chunk = list(ticket_ids[start:start + 500])
                for row in session.execute(_TICKET_ROWS.where(Ticket.id.in_(chunk))):
                    tickets[row.id] = {**ticket_view(row), "alerts": []}
                # Each ticket's newest MAX_TICKET_ALERTS, counted in the database: a
                # flapping condition's ticket may have thousands.
                newest = (select(Alert.id, Alert.ticket_id, Alert.source, Alert.uid,
                                 Alert.state, Alert.device, Alert.channels,
                                 func.row_number().over(partition_by=Alert.ticket_id,
                                                        order_by=Alert.id.desc()).label("n"))
                          .where(Alert.ticket_id.in_(chunk)).subquery())
                for a in session.execute(select(newest).where(newest.c.n <= MAX_TICKET_ALERTS)
                                         .order_by(newest.c.id.desc())):
                    found = tickets.get(a.ticket_id)
                    if found is not None:
                        found["alerts"].append(ticket_alert_view(a))
            for found in tickets.values():
                found["alerts"].reverse()  # the newest MAX_TICKET_ALERTS, oldest first
            for start in range(0, len(alert_ids), 500):
                chunk = list(alert_ids[start:start + 500])
                for alert in session.scalars(select(Alert).where(Alert.id.in_(chunk))):
                    alerts[alert.id] = alert_view(alert)
            return tickets, alerts
        return await self._db.read(run)

    async def alert(self, alert_id: int) -> dict[str, Any] | None:
        query = select(Alert).where(Alert.id == alert_id)

        def run(session: Session) -> dict[str, Any] | None:
            alert = session.scalar(query)
            return alert_view(alert) if alert else None
        return await self._db.read(run)

    async def deliveries(self, page: Page, status: str | None = None,
                         channel: str | None = None, source: str | None = None
                         ) -> dict[str, Any]:
        query = select(Delivery)
        if _one_of("status", status, tuple(s.value for s in DeliveryStatus)):
            query = query.where(Delivery.status == status)
        if _one_of("channel", channel, tuple(c.value for c in Channel)):
            query = query.where(Delivery.channel == channel)
        if source is not None:
            query = query.where(Delivery.source == source)
        return await self._page_of(query, Delivery.id, page, delivery_view)

    async def delivery(self, delivery_id: int) -> dict[str, Any] | None:
        def run(session: Session) -> dict[str, Any] | None:
            delivery = session.get(Delivery, delivery_id)
            return delivery_view(delivery, with_payload=True) if delivery else None
        return await self._db.read(run)

    async def outbox(self, page: Page, status: str | None = None, source: str | None = None
                     ) -> dict[str, Any]:
        query = select(OutboxAction)
        if _one_of("status", status, OUTBOX_STATUSES):
            query = query.where(OutboxAction.status == status)
        if source is not None:
            query = query.where(OutboxAction.source == source)
        return await self._page_of(query, OutboxAction.id, page, outbox_view)

    async def sync_runs(self, page: Page, source: str | None = None) -> dict[str, Any]:
        query = select(SyncRun)
        if source is not None:
            query = query.where(SyncRun.source == source)
        return await self._page_of(query, SyncRun.id, page, sync_run_view)

    async def outbox_row(self, row_id: int) -> dict[str, Any] | None:
        def run(session: Session) -> dict[str, Any] | None:
            row = session.get(OutboxAction, row_id)
            return outbox_view(row) if row else None
        return await self._db.read(run)

    # --- polling (daemon.rmm.poll) ------------------------------------------------------

    async def known_alert_uids(self, source: str, uids: list[str]) -> set[str]:
        """Which of `uids` of `source` alertd has an alert for."""
        def run(session: Session) -> set[str]:
            known: set[str] = set()
            for start in range(0, len(uids), 500):  # bounded IN lists
                known.update(session.scalars(select(Alert.uid).where(
                    Alert.source == source, Alert.uid.in_(uids[start:start + 500]))))
            return known
        return await self._db.read(run)

    async def open_alert_uids(self, source: str, seen_before: datetime) -> list[str]:
        """Uids of the open alerts of `source` first seen at or before `seen_before`."""
        query = select(Alert.uid).where(Alert.source == source,
                                        Alert.state == AlertState.OPEN.value,
                                        Alert.first_seen_at <= seen_before)
        return await self._db.read(lambda session: list(session.scalars(query)))
