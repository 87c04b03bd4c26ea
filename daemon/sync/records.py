"""The sync's data: what an RMM says (`Up*`), what alertd has (`Local*`, `Index`, `PageState`),
and what to do about it (`SyncOp`), with the settings that steer the planning (`Policy`).

Plain values only, no I/O: the planner (daemon.sync.planner) works on them, the database
adapter (daemon.sync.persist) loads and writes them. Records a plan creates get provisional
(negative) ids until the adapter maps them to real ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from daemon.config.sync_sections import LocalSiteRef

Entity = Literal["customer", "site", "end_user", "asset_group", "asset_type", "asset"]
SyncVerb = Literal["create", "update", "match", "deactivate"]

ASSET_COLUMNS = ("name", "serial", "customer_id", "site_id", "asset_type_id", "end_user_id")
MAX_NAME = 255


# --- what the RMM says ---------------------------------------------------------------------

@dataclass(frozen=True)
class UpContact:
    ext_id: str
    name: str
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class UpCustomer:
    """A Syncro customer, or a Datto site (which alertd turns into a customer or a site)."""

    ext_id: str
    name: str
    contacts: tuple[UpContact, ...] = ()
    default_contact_ext_id: str | None = None


@dataclass(frozen=True)
class MappedValue:
    """One configured field mapping's value for one asset (already converted to its kind)."""

    field: str
    value: Any
    only_when_empty: bool


@dataclass(frozen=True)
class UpAsset:
    ext_id: str
    name: str
    owner_ext_id: str | None  # Syncro customer id / Datto site uid
    type_name: str | None
    serial: str | None = None
    mapped: tuple[MappedValue, ...] = ()
    contact_ext_id: str | None = None  # Syncro: the asset's contact
    last_user: str | None = None  # Datto: the last logged-in user
    deleted: bool = False
    device_class: str | None = None  # Datto: which audit holds the serial


# --- what alertd has -----------------------------------------------------------------------

@dataclass
class LocalCustomer:
    id: int
    name: str
    top_level: str | None = None
    active: bool = True  # an inactive one keeps its stored id, but is never matched


@dataclass
class LocalSite:
    id: int
    customer_id: int
    name: str
    active: bool = True


@dataclass
class LocalEndUser:
    id: int
    customer_id: int | None
    name: str
    email: str | None = None
    phone: str | None = None
    is_default: bool = False


@dataclass
class LocalAsset:
    id: int
    name: str
    serial: str | None
    customer_id: int | None
    site_id: int | None
    asset_type_id: int | None
    end_user_id: int | None
    active: bool
    fields: dict[str, Any]


@dataclass
class Index:
    """alertd's reference data for one run, kept current as the plan creates and matches.

    `refs` holds this source's stored ids: (entity, external id) -> local id."""

    customers: dict[int, LocalCustomer] = field(default_factory=dict)
    sites: dict[int, LocalSite] = field(default_factory=dict)
    end_users: dict[int, LocalEndUser] = field(default_factory=dict)
    asset_types: dict[str, int] = field(default_factory=dict)  # lower-cased name -> id
    asset_groups: dict[str, int] = field(default_factory=dict)  # name -> id
    refs: dict[tuple[str, str], int] = field(default_factory=dict)
    last_provisional_id: int = 0

    def new_id(self) -> int:
        """A provisional id for a record the plan creates (negative: never a real id)."""
        self.last_provisional_id -= 1
        return self.last_provisional_id

    def customers_named(self, name: str, *, existing_only: bool = False
                        ) -> list[LocalCustomer]:
        """Active customers with exactly this name, oldest first; `existing_only`: only those
        alertd had before this run (not created by it)."""
        return sorted((c for c in self.customers.values()
                       if c.name == name and c.active and (c.id > 0 or not existing_only)),
                      key=_oldest_first)

    def sites_of(self, customer_id: int) -> list[LocalSite]:
        """The customer's active sites, oldest first (those this run creates last)."""
        return sorted((s for s in self.sites.values()
                       if s.customer_id == customer_id and s.active), key=_oldest_first)


@dataclass
class PageState:
    """The assets one listing page concerns: those with the page's stored ids, and the
    candidates for the match field (only assets without an id of this source)."""

    by_ref: dict[str, LocalAsset]
    by_match: dict[str, list[LocalAsset]]


# --- what to do ----------------------------------------------------------------------------

@dataclass(frozen=True)
class SyncOp:
    """One write. `local_id` is provisional (negative) for a create. `values`: the columns of
    a create, the new values of an update (with `before` the old ones). `via`: how a match was
    made (map, name, serial)."""

    entity: Entity
    action: SyncVerb
    local_id: int
    name: str
    ext_id: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    before: dict[str, Any] = field(default_factory=dict)
    via: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"entity": self.entity, "action": self.action,
                                "name": self.name, "ext_id": self.ext_id}
        if self.local_id > 0:
            body["id"] = self.local_id
        if self.values:
            body["values"] = self.values
        if self.before:
            body["before"] = self.before
        if self.via:
            body["via"] = self.via
        return body

    def describe(self) -> str:
        ref = f" ({self.ext_id})" if self.ext_id else ""
        text = f"{self.action} {self.entity.replace('_', ' ')} {self.name!r}{ref}"
        if self.action == "update":
            text += ": " + ", ".join(f"{k} {self.before.get(k)!r} -> {v!r}"
                                     for k, v in self.values.items())
        elif self.action == "match":
            text += f" to #{self.local_id} by {self.via}"
        return text


@dataclass(frozen=True)
class Policy:
    """The settings the planner needs, from `[sync]` and `[sync.<source>]`."""

    source: str
    site_name: str = "Main"
    top_level: str = ""
    asset_group: str = ""
    match_field: str = "serial"
    match_exclusions: frozenset[str] = frozenset()
    # Syncro customer id / Datto site uid -> configured local customer and site.
    customer_map: Mapping[str, LocalSiteRef] = field(default_factory=dict)
    default_site: LocalSiteRef | None = None
    site_mode: str = "customer_per_site"  # Datto only
    parent_customer: str = ""  # Datto sites_under_customer
    deactivate: bool = False  # Syncro: missing assets; Datto: deleted devices
    last_user_as_end_user: bool = False

    def match_value(self, asset: UpAsset) -> str | None:
        """The asset's value of the match field, lower-cased, or None when it must not be
        matched on (empty or in the exclusion list)."""
        raw = {"serial": asset.serial, "name": asset.name}.get(self.match_field)
        value = (raw or "").strip().lower()
        return None if not value or value in self.match_exclusions else value


class ConfigProblem(Exception):
    """The configuration names something alertd does not have (a mapped customer or site)."""


def _oldest_first(record: LocalCustomer | LocalSite) -> tuple[bool, int]:
    """Existing records by id, then those this run creates, in creation order."""
    return record.id < 0, abs(record.id)
