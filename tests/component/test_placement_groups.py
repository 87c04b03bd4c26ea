"""A group's placements (daemon.tickets.placement): devices that no synced record names are
placed nowhere by a few statements for the whole group, and every event ends where its own
lookups would put it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from daemon.core.events import AlertEvent
from daemon.core.lifecycle import AlertAction
from daemon.store.database import Database
from daemon.store.models import Asset, Customer, EndUser, ExternalRef, Site
from daemon.tickets.placement import Placement, TicketPlacer

NOW = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)


def event(uid: str, **names: Any) -> AlertEvent:
    return AlertEvent("datto", uid, AlertAction.RAISE, **names)


def seed(session: Session) -> None:
    acme = Customer(name="Acme Dental", updated_at=NOW)
    session.add(acme)
    session.flush()
    site = Site(customer_id=acme.id, name="Main", updated_at=NOW)
    contact = EndUser(customer_id=acme.id, name="Dana", is_default=True, updated_at=NOW)
    session.add_all([site, contact, Customer(name="Beta Law", updated_at=NOW),
                     Customer(name="Gone Ltd", active=False, updated_at=NOW)])
    session.flush()
    by_ref = Asset(customer_id=acme.id, site_id=site.id, name="WS-REF", updated_at=NOW)
    by_name = Asset(customer_id=acme.id, site_id=site.id, name="WS-NAME", updated_at=NOW)
    retired = Asset(customer_id=acme.id, name="WS-OLD", active=False, updated_at=NOW)
    session.add_all([by_ref, by_name, retired])
    session.flush()
    session.add_all([ExternalRef(entity="asset", entity_id=asset.id, source="datto",
                                 external_id=ref)
                     for asset, ref in ((by_ref, "dev-1"), (by_name, "dev-2"),
                                        (retired, "dev-3"))])


async def test_a_groups_placements_are_each_events_own(db: Database) -> None:
    await db.write(seed)
    events = [
        event("1", device_ref="dev-1", device="renamed"),  # its id finds the asset
        event("2", device="WS-NAME"),  # its name does
        event("3", device="NEW-PC", customer="Acme Dental"),  # no asset, a customer
        event("4", device="NEW-PC", site="Beta Law"),  # a site imported as a customer
        event("5", device="WS-OLD"),  # a retired asset: nowhere
        event("6", device_ref="dev-3"),  # the retired asset by id: nowhere
        event("7", device="NEW-PC", customer="Gone Ltd"),  # an inactive customer
        event("8", device="NOBODY-1"),
        event("9", device="NOBODY-2", customer="Nobody Inc", site="Nowhere"),
        event("10"),  # no names at all
        event("11", device="NOBODY-1"),  # a key twice in the group
    ]

    def both(session: Session) -> tuple[list[Placement], list[Placement], list[str]]:
        conn = session.connection()
        one_by_one = [TicketPlacer().locate(conn, each) for each in events]
        statements: list[str] = []
        dbapi = conn.connection.dbapi_connection
        tracing = hasattr(dbapi, "set_trace_callback")  # sqlite3 (not asyncpg's adapter)
        if tracing:
            dbapi.set_trace_callback(statements.append)  # type: ignore[union-attr]
        try:
            grouped = TicketPlacer().place_many(conn, events, NOW)
        finally:
            if tracing:
                dbapi.set_trace_callback(None)  # type: ignore[union-attr]
        return one_by_one, grouped, statements

    one_by_one, grouped, statements = await db.read(both)
    assert grouped == one_by_one
    assert grouped[0].asset_id is not None and grouped[1].asset_id is not None
    assert grouped[2].customer_id is not None and grouped[2].end_user_id is not None
    assert grouped[3].customer_id is not None and grouped[3].customer_id != grouped[2].customer_id
    assert grouped[4:] == [Placement()] * 7
    if db.dialect_name != "sqlite":  # PostgreSQL looks each one up
        return
    # The five that a record names are looked up one by one (at most two asset lookups
    # each); the six that none names take three statements between them.
    assert sum(1 for sql in statements if "FROM assets" in sql and "json_each" not in sql
               ) <= 2 * 5
    assert sum(1 for sql in statements if "json_each" in sql) == 3
