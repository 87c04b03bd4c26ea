"""Where a new alert ticket belongs: its customer, site, asset and end user, from what the
sync imported.

- Asset: by the RMM's device id the alert carries (Datto device uid, Syncro asset id) through
  the stored ids; else by the device name, when exactly one active asset of that source has
  it (exact spelling: the name column's index serves the lookup).
- Customer and site: the asset's; else the customer whose exact name the alert gives (its
  customer, else its site: a Datto site imported as a customer keeps its name), with that
  customer's first site.
- End user (`choose_end_user`): the asset's user, else the customer's default contact, else
  the configured fallback user (Halo's "New Alert User"), created on first use.

Runs inside the pipeline's transaction, on its Connection, with prebuilt statements.

Customers, sites, assets and end users change only through applied sync runs (`sync_runs`),
so what the lookups found is kept per *sync generation*: the newest run, once it has
finished. A new run, in this process or another one sharing the database, starts a new
generation; while a run is under way nothing is kept. A ticket then costs one indexed
lookup of the newest run instead of up to five. The fallback user is looked up every time
(it is created inside a transaction that a failing batch may roll back).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Table, bindparam, func, insert, select, update

from daemon.core.events import AlertEvent
from daemon.core.lifecycle import AlertAction
from daemon.store.models import Asset, Customer, EndUser, ExternalRef, Site, SyncRun
from daemon.store.prepared import Prepared, json_values
from daemon.tickets import statements as sql

# Placements kept per generation: a bound on memory, not a working-set estimate (one entry
# per distinct device, customer and site an alert named).
MAX_CACHED_PLACEMENTS = 20_000
# Open tickets without a customer that one sync run looks at, newest first (a ticket that
# nothing places ages out of them). Lookups are per distinct device/customer/site, so the
# read costs little; only tickets that get a customer are written, a few at a time.
MAX_UNPLACED_READ = 20_000


@dataclass(frozen=True)
class Placement:
    customer_id: int | None = None
    site_id: int | None = None
    asset_id: int | None = None
    end_user_id: int | None = None


@dataclass(frozen=True)
class Placeable:
    """An open ticket without a customer, and where the synced records now place it."""

    ticket_id: int
    end_user_id: int | None
    placement: Placement
    customer: str  # the placement's customer's name (for the note)


def choose_end_user(asset_user_id: int | None, default_contact_id: int | None,
                    fallback_user_id: int | None) -> int | None:
    """The ticket's end user: the asset's user, else the customer's default contact, else
    the fallback user."""
    for candidate in (asset_user_id, default_contact_id, fallback_user_id):
        if candidate is not None:
            return candidate
    return None


_ASSETS: Table = Asset.__table__  # type: ignore[assignment]
_REFS: Table = ExternalRef.__table__  # type: ignore[assignment]
_CUSTOMERS: Table = Customer.__table__  # type: ignore[assignment]
_SITES: Table = Site.__table__  # type: ignore[assignment]
_USERS: Table = EndUser.__table__  # type: ignore[assignment]
_ASSET_COLUMNS = (_ASSETS.c.id, _ASSETS.c.customer_id, _ASSETS.c.site_id,
                  _ASSETS.c.end_user_id)
_HAS_SOURCE_REF = (select(_REFS.c.id).where(
    _REFS.c.entity == "asset", _REFS.c.source == bindparam("source"),
    _REFS.c.entity_id == _ASSETS.c.id).exists())

# The lookups run on intake, for every new ticket of a device not placed yet in this sync
# generation: prepared on the DB-API cursor (daemon.store.prepared).
_ASSET_BY_REF = Prepared(select(*_ASSET_COLUMNS)
                         .join(_REFS, _REFS.c.entity_id == _ASSETS.c.id)
                         .where(_REFS.c.entity == "asset",
                                _REFS.c.source == bindparam("source"),
                                _REFS.c.external_id == bindparam("ref"), _ASSETS.c.active))
_ASSETS_BY_NAME = Prepared(select(*_ASSET_COLUMNS)
                           .where(_ASSETS.c.name == bindparam("name"), _ASSETS.c.active,
                                  _HAS_SOURCE_REF).limit(2))
_CUSTOMERS_BY_NAME = Prepared(select(_CUSTOMERS.c.id)
                              .where(_CUSTOMERS.c.name == bindparam("name"),
                                     _CUSTOMERS.c.active)
                              .order_by(_CUSTOMERS.c.id).limit(2))
_FIRST_SITE = Prepared(select(_SITES.c.id)
                       .where(_SITES.c.customer_id == bindparam("customer_id"),
                              _SITES.c.active)
                       .order_by(_SITES.c.id).limit(1))
_DEFAULT_CONTACT = Prepared(select(_USERS.c.id)
                            .where(_USERS.c.customer_id == bindparam("customer_id"),
                                   _USERS.c.is_default, _USERS.c.active)
                            .order_by(_USERS.c.id).limit(1))
_FALLBACK_USER = Prepared(select(func.min(_USERS.c.id))
                          .where(_USERS.c.customer_id.is_(None),
                                 _USERS.c.name == bindparam("name"), _USERS.c.active))
_INSERT_USER = insert(_USERS).returning(_USERS.c.id)
_UNPLACED = (select(sql.TICKETS.c.id, sql.TICKETS.c.end_user_id, sql.ALERTS.c.source,
                    sql.ALERTS.c.uid, sql.ALERTS.c.device, sql.ALERTS.c.customer,
                    sql.ALERTS.c.site)
             .join(sql.ALERTS, sql.ALERTS.c.id == sql.TICKETS.c.alert_id)
             .where(sql.TICKETS.c.status == "open", sql.TICKETS.c.customer_id.is_(None))
             .order_by(sql.TICKETS.c.id.desc()).limit(MAX_UNPLACED_READ))
_CUSTOMER_NAME = select(_CUSTOMERS.c.name).where(_CUSTOMERS.c.id == bindparam("id"))
# Still open and still unplaced: a ticket closed or placed meanwhile is left as it is.
_PLACE_TICKET = (update(sql.TICKETS).where(sql.TICKETS.c.id == bindparam("row_id"),
                                           sql.TICKETS.c.status == "open",
                                           sql.TICKETS.c.customer_id.is_(None))
                 .values(customer_id=bindparam("customer_id"), site_id=bindparam("site_id"),
                         asset_id=bindparam("asset_id"), end_user_id=bindparam("end_user_id")))
# SQLite, for a group's devices not placed yet: which of their ids and names the synced
# records know at all (a superset of what the lookups above can find). A device none of
# whose names is known places nowhere, without its own lookups.
_KNOWN_REFS = Prepared(select(_REFS.c.external_id)
                       .where(_REFS.c.entity == "asset", _REFS.c.source == bindparam("source"),
                              _REFS.c.external_id.in_(json_values("refs"))))
_KNOWN_ASSET_NAMES = Prepared(select(_ASSETS.c.name).distinct()
                              .where(_ASSETS.c.name.in_(json_values("names")), _ASSETS.c.active))
_KNOWN_CUSTOMER_NAMES = Prepared(select(_CUSTOMERS.c.name).distinct()
                                 .where(_CUSTOMERS.c.name.in_(json_values("names")),
                                        _CUSTOMERS.c.active))
_RUNS: Table = SyncRun.__table__  # type: ignore[assignment]
_NEWEST_RUN = Prepared(select(_RUNS.c.id, _RUNS.c.status).order_by(_RUNS.c.id.desc()).limit(1))

_LookupKey = tuple[str, str | None, str | None, str | None, str | None]


def _key(event: AlertEvent) -> _LookupKey:
    return (event.source, event.device_ref, event.device, event.customer, event.site)


class TicketPlacer:
    """Finds a new ticket's customer, site, asset and end user (see the module docstring)."""

    def __init__(self, fallback_end_user: str = ""):
        self._fallback = fallback_end_user
        self._generation: tuple[int, str] | None = None
        # The synced records' answer per alert's names (no fallback user in it).
        self._found: dict[_LookupKey, Placement] = {}

    def place(self, conn: Connection, event: AlertEvent, now: datetime) -> Placement:
        return self.place_many(conn, [event], now)[0]

    def locate(self, conn: Connection, event: AlertEvent) -> Placement:
        """Where the synced records place `event` (customer, site, asset), reading only: no
        end user is chosen and the fallback user is never created (a read transaction)."""
        return self._look_up(conn, event)

    def place_many(self, conn: Connection, events: list[AlertEvent], now: datetime
                   ) -> list[Placement]:
        """Each event's placement, in order (the newest sync run is looked up once)."""
        if not events:
            return []
        run = _NEWEST_RUN.first(conn, {})
        generation = (run["id"], run["status"]) if run is not None else (0, "none")
        if generation != self._generation or len(self._found) >= MAX_CACHED_PLACEMENTS:
            self._found.clear()
            self._generation = generation
        fallback_user_id: int | None = None
        nowhere = self._placed_nowhere(conn, [
            event for event in events if _key(event) not in self._found])
        placements = []
        for event in events:
            key = _key(event)
            placement = self._found.get(key)
            if placement is None:
                placement = Placement() if key in nowhere else self._look_up(conn, event)
                if generation[1] != "running":
                    self._found[key] = placement
            if placement.end_user_id is None and self._fallback:
                if fallback_user_id is None:
                    fallback_user_id = self._fallback_user(conn, now)
                placement = Placement(placement.customer_id, placement.site_id,
                                      placement.asset_id, fallback_user_id)
            placements.append(placement)
        return placements

    @staticmethod
    def _placed_nowhere(conn: Connection, events: list[AlertEvent]) -> set[_LookupKey]:
        """SQLite, two or more events to look up: the keys of those whose device id, device
        name, customer and site no active synced record has. `_look_up` would find nothing
        for them (no asset, no customer, so no site and no end user); this asks for all of
        them in a few statements instead of two or more each."""
        if len(events) < 2 or conn.dialect.name != "sqlite":
            return set()
        refs: dict[str, set[str]] = {}
        for event in events:
            if event.device_ref:
                refs.setdefault(event.source, set()).add(event.device_ref)
        known_refs = {(source, row["external_id"]) for source, ids in refs.items()
                      for row in _KNOWN_REFS.all(conn, {"source": source,
                                                        "refs": sorted(ids)})}
        devices = sorted({event.device for event in events if event.device})
        known_devices = {row["name"] for row in _KNOWN_ASSET_NAMES.all(
            conn, {"names": devices})} if devices else set()
        names = sorted({name for event in events for name in (event.customer, event.site)
                        if name})
        known_names = {row["name"] for row in _KNOWN_CUSTOMER_NAMES.all(
            conn, {"names": names})} if names else set()
        return {_key(event) for event in events
                if (event.source, event.device_ref) not in known_refs
                and event.device not in known_devices
                and event.customer not in known_names and event.site not in known_names}

    def unplaced_placements(self, conn: Connection) -> list[Placeable]:
        """Each open ticket placed at no customer that the synced records now place, by its
        alert's device, customer and site names (read only; newest first, at most
        `MAX_UNPLACED_READ` looked at; each distinct name and customer looked up once)."""
        found: dict[tuple[str, str | None, str | None, str | None], Placement] = {}
        names: dict[int, str] = {}
        placeable = []
        for row in conn.execute(_UNPLACED).all():
            key = (row.source, row.device, row.customer, row.site)
            placement = found.get(key)
            if placement is None:
                placement = found[key] = self._look_up(conn, AlertEvent(
                    row.source, row.uid, AlertAction.RAISE, device=row.device, site=row.site,
                    customer=row.customer))
            if placement.customer_id is None:
                continue
            if placement.customer_id not in names:
                names[placement.customer_id] = conn.execute(
                    _CUSTOMER_NAME, {"id": placement.customer_id}).scalar_one()
            placeable.append(Placeable(row.id, row.end_user_id, placement,
                                       names[placement.customer_id]))
        return placeable

    def place_tickets(self, conn: Connection, placeables: list[Placeable], now: datetime
                      ) -> int:
        """Give each unplaced open ticket its placement (its end user too when it had none
        or the fallback user), with a note by alertd; one closed or placed meanwhile is left
        as it is. How many were placed."""
        fallback_user_id = (_FALLBACK_USER.scalar(conn, {"name": self._fallback})
                            if self._fallback else None)
        placed = 0
        for item in placeables:
            keeps_user = item.end_user_id not in (None, fallback_user_id)
            updated = conn.execute(_PLACE_TICKET, {
                "row_id": item.ticket_id, "customer_id": item.placement.customer_id,
                "site_id": item.placement.site_id, "asset_id": item.placement.asset_id,
                "end_user_id": item.end_user_id
                if keeps_user or item.placement.end_user_id is None
                else item.placement.end_user_id})
            if updated.rowcount != 1:
                continue
            sql.insert_note(conn, item.ticket_id, "alertd",
                            f"Placed at customer {item.customer!r} by the sync: its alert named "
                            "no customer alertd knew when the ticket opened.", now)
            placed += 1
        return placed

    @staticmethod
    def _look_up(conn: Connection, event: AlertEvent) -> Placement:
        """Placement from the synced records alone (no fallback user)."""
        asset = None
        if event.device_ref:
            asset = _ASSET_BY_REF.first(conn, {"source": event.source,
                                               "ref": event.device_ref})
        if asset is None and event.device:
            found = _ASSETS_BY_NAME.all(conn, {"source": event.source, "name": event.device})
            asset = found[0] if len(found) == 1 else None  # ambiguous: never guess
        customer_id: int | None = asset["customer_id"] if asset is not None else None
        site_id: int | None = asset["site_id"] if asset is not None else None
        if customer_id is None:
            for name in (event.customer, event.site):
                if name:
                    ids = _CUSTOMERS_BY_NAME.all(conn, {"name": name})
                    if len(ids) == 1:
                        customer_id = int(ids[0]["id"])
                        break
        if customer_id is not None and site_id is None:
            site_id = _FIRST_SITE.scalar(conn, {"customer_id": customer_id})
        end_user_id = choose_end_user(
            asset["end_user_id"] if asset is not None else None,
            _DEFAULT_CONTACT.scalar(conn, {"customer_id": customer_id})
            if customer_id is not None else None,
            None)
        return Placement(customer_id, site_id, asset["id"] if asset is not None else None,
                         end_user_id)

    def _fallback_user(self, conn: Connection, now: datetime) -> int:
        found = _FALLBACK_USER.scalar(conn, {"name": self._fallback})
        if found is not None:
            return int(found)
        # Two instances may both create it at once; the lowest id is used from then on.
        return int(conn.execute(_INSERT_USER, {
            "customer_id": None, "name": self._fallback, "email": None, "phone": None,
            "is_default": False, "active": True, "updated_at": now}).scalar_one())
