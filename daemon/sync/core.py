"""The pure core of the sync: what an RMM record means for alertd's customers, sites, end users
and assets, as a list of operations (create, update, match, deactivate).

The planner never touches the database. It works on an `Index` of alertd's small reference
data (customers, sites, end users, asset types, the RMM ids already stored) loaded once per run,
and on a `PageState` of the assets one listing page concerns, looked up per page so a run over
50,000 assets stays flat in memory. Records the plan creates get provisional (negative) ids;
the applier (daemon.sync.store) maps them to real ones. A preview and an apply run the same
planner over the same listing, so the applied operations are the previewed ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from daemon.config.sync_sections import FieldMapping, LocalSiteRef

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


# --- planning ------------------------------------------------------------------------------

class Planner:
    """Plans one source's sync over an `Index`; see the module docstring."""

    def __init__(self, policy: Policy, index: Index):
        self.policy = policy
        self.index = index
        self.claimed_assets: set[int] = set()  # matched by the match field in this run
        self.seen_assets: set[str] = set()
        self._users_by_name: dict[tuple[int | None, str], int] | None = None

    # -- customers and sites --

    def resolve_ref(self, ref: LocalSiteRef, ops: list[SyncOp]) -> tuple[int, int]:
        """The (customer id, site id) a configured reference names; a missing site of an
        existing customer is created (`site_name` when the reference names none)."""
        customers = self.index.customers_named(ref.customer)
        if not customers:
            raise ConfigProblem(f"no alertd customer named {ref.customer!r}")
        customer = customers[0]
        sites = self.index.sites_of(customer.id)
        if ref.site is not None:
            sites = [s for s in sites if s.name == ref.site]
        if sites:
            return customer.id, sites[0].id
        return customer.id, self._create_site(customer.id, ref.site or self.policy.site_name,
                                              None, ops)

    def customer(self, up: UpCustomer) -> tuple[list[SyncOp], str | None]:
        """A Syncro customer or (customer_per_site) a Datto site: a customer and its site.
        Returns the operations, or the reason the record is skipped."""
        ops: list[SyncOp] = []
        index, key = self.index, up.ext_id
        customer_id = index.refs.get(("customer", key))
        mapped = self.policy.customer_map.get(key)
        name = _cut(up.name)
        named = index.customers_named(name, existing_only=True)
        if customer_id is not None and customer_id in index.customers:
            if mapped is None:
                _follow_name("customer", index.customers[customer_id], name, key, ops)
            site_id = index.refs.get(("site", key))
            if site_id is None or site_id not in index.sites or \
                    not index.sites[site_id].active:  # re-link a deactivated site
                index.refs.pop(("site", key), None)
                site_id = self._first_or_new_site(customer_id, key, ops)
        elif mapped is not None:
            customer_id, site_id = self.resolve_ref(mapped, ops)
            ops.append(self._match("customer", customer_id, key, "map"))
            ops.append(self._match("site", site_id, key, "map"))
        elif len(named) > 1:  # never guess between namesakes
            return [], (f"customer {name!r} ({key}): {len(named)} alertd customers have this "
                        "name; map it in the configuration")
        elif named:
            customer_id = named[0].id
            ops.append(self._match("customer", customer_id, key, "name"))
            site_id = self._first_or_new_site(customer_id, key, ops)
        else:
            customer_id = self._create_customer(_cut(up.name), key, ops)
            site_id = self._create_site(customer_id, self.policy.site_name, key, ops)
        if ("site", key) not in index.refs:
            ops.append(self._match("site", site_id, key, "customer"))
        ops.extend(self._contacts(up, customer_id))
        return ops, None

    def site_under_parent(self, up: UpCustomer) -> tuple[list[SyncOp], str | None]:
        """Datto `sites_under_customer`: the Datto site is a site of the configured customer
        (created if missing), or of the customer its mapping names."""
        ops: list[SyncOp] = []
        index, key = self.index, up.ext_id
        site_id = index.refs.get(("site", key))
        mapped = self.policy.customer_map.get(key)
        name = _cut(up.name)
        if site_id is not None and site_id in index.sites:
            if mapped is None:
                _follow_name("site", index.sites[site_id], name, key, ops)
            return ops, None
        if mapped is not None:
            _, site_id = self.resolve_ref(mapped, ops)
            ops.append(self._match("site", site_id, key, "map"))
            return ops, None
        parents = index.customers_named(self.policy.parent_customer)
        parent_id = parents[0].id if parents else self._create_customer(
            self.policy.parent_customer, None, ops)
        same_name = [s for s in index.sites_of(parent_id) if s.name == name]
        if same_name:
            ops.append(self._match("site", same_name[0].id, key, "name"))
        else:
            self._create_site(parent_id, name, key, ops)
        return ops, None

    def _first_or_new_site(self, customer_id: int, key: str, ops: list[SyncOp]) -> int:
        sites = self.index.sites_of(customer_id)
        if sites:
            return sites[0].id
        return self._create_site(customer_id, self.policy.site_name, key, ops)

    def _create_customer(self, name: str, key: str | None, ops: list[SyncOp]) -> int:
        new_id = self.index.new_id()
        top_level = self.policy.top_level or None
        self.index.customers[new_id] = LocalCustomer(new_id, name, top_level)
        ops.append(SyncOp("customer", "create", new_id, name, key,
                      {"name": name, "top_level": top_level}))
        if key is not None:
            self.index.refs[("customer", key)] = new_id
        return new_id

    def _create_site(self, customer_id: int, name: str, key: str | None, ops: list[SyncOp]) -> int:
        new_id = self.index.new_id()
        self.index.sites[new_id] = LocalSite(new_id, customer_id, name)
        ops.append(SyncOp("site", "create", new_id, name, key,
                      {"name": name, "customer_id": customer_id}))
        if key is not None:
            self.index.refs[("site", key)] = new_id
        return new_id

    def _match(self, entity: Entity, local_id: int, key: str, via: str) -> SyncOp:
        self.index.refs[(entity, key)] = local_id
        name = (self.index.customers[local_id].name if entity == "customer"
                else self.index.sites[local_id].name if entity == "site" else "")
        return SyncOp(entity, "match", local_id, name, key, via=via)

    def _contacts(self, up: UpCustomer, customer_id: int) -> list[SyncOp]:
        ops: list[SyncOp] = []
        for contact in up.contacts:
            name = _cut(contact.name) or "(no name)"
            is_default = contact.ext_id == up.default_contact_ext_id
            wanted: dict[str, Any] = {"name": name, "email": contact.email,
                                      "phone": contact.phone, "customer_id": customer_id,
                                      "is_default": is_default}
            user_id = self.index.refs.get(("end_user", contact.ext_id))
            user = self.index.end_users.get(user_id) if user_id is not None else None
            if user is None:
                new_id = self.index.new_id()
                self.index.end_users[new_id] = LocalEndUser(
                    new_id, customer_id, name, contact.email, contact.phone, is_default)
                self.index.refs[("end_user", contact.ext_id)] = new_id
                ops.append(SyncOp("end_user", "create", new_id, name, contact.ext_id, wanted))
                continue
            changes = {k: v for k, v in wanted.items() if getattr(user, k) != v}
            if changes:
                ops.append(SyncOp("end_user", "update", user.id, name, contact.ext_id,
                              changes, {k: getattr(user, k) for k in changes}))
                for k, v in changes.items():
                    setattr(user, k, v)
        return ops

    # -- assets --

    def asset(self, up: UpAsset, state: PageState) -> tuple[list[SyncOp], str | None]:
        """The operations for one asset, or the reason it is skipped."""
        self.seen_assets.add(up.ext_id)
        local = state.by_ref.get(up.ext_id)
        ops: list[SyncOp] = []
        if up.deleted:
            if local is not None and local.active and self.policy.deactivate:
                ops.append(SyncOp("asset", "deactivate", local.id, local.name, up.ext_id))
                local.active = False
            return ops, None
        placement = self._placement(up, ops)
        if placement is None:
            owner = "Syncro customer" if self.policy.source == "syncro" else "Datto site"
            hint = ("import customers first, map it, or set default_site"
                    if self.policy.source == "syncro" else "import the sites first, or map it")
            return ops, (f"asset {up.name!r} ({up.ext_id}): its {owner} {up.owner_ext_id} "
                         f"is not in alertd: {hint}")
        customer_id, site_id = placement
        wanted: dict[str, Any] = {
            "name": _cut(up.name) or up.ext_id, "serial": _cut_or_none(up.serial),
            "customer_id": customer_id, "site_id": site_id}
        # What the RMM does not say (no type, no user) leaves alertd's value alone.
        type_id = self._asset_type(up.type_name, ops)
        if type_id is not None:
            wanted["asset_type_id"] = type_id
        end_user_id = self._end_user(up, customer_id, ops)
        if end_user_id is not None:
            wanted["end_user_id"] = end_user_id
        if local is None:
            local = self._match_asset(up, state)
            if local is not None:
                ops.append(SyncOp("asset", "match", local.id, local.name, up.ext_id,
                              via=self.policy.match_field))
        if local is None:
            values = {"asset_type_id": None, "end_user_id": None, **wanted}
            fields = {}
            for mapped in up.mapped:
                if mapped.field in ASSET_COLUMNS:
                    if mapped.value is not None or mapped.field != "name":
                        values[mapped.field] = mapped.value
                elif mapped.value is not None:
                    fields[mapped.field] = mapped.value
            values["fields"] = fields
            ops.append(SyncOp("asset", "create", self.index.new_id(), values["name"], up.ext_id,
                          values))
            return ops, None
        changes = self._asset_changes(local, wanted, up.mapped)
        if changes:
            ops.append(SyncOp("asset", "update", local.id, wanted["name"], up.ext_id, changes,
                          {k: getattr(local, k) for k in changes}))
        return ops, None

    def missing_assets(self, stored: Iterable[tuple[str, int, str]]) -> list[SyncOp]:
        """Deactivations for active assets whose stored id the full listing did not contain
        (`stored`: ext id, local id, name)."""
        if not self.policy.deactivate:
            return []
        return [SyncOp("asset", "deactivate", local_id, name, ext_id)
                for ext_id, local_id, name in stored if ext_id not in self.seen_assets]

    def _placement(self, up: UpAsset, ops: list[SyncOp]) -> tuple[int, int] | None:
        owner = up.owner_ext_id
        site_id = self.index.refs.get(("site", owner)) if owner else None
        if site_id is not None and site_id in self.index.sites:
            return self.index.sites[site_id].customer_id, site_id
        if self.policy.default_site is not None:
            return self.resolve_ref(self.policy.default_site, ops)
        return None

    def _asset_type(self, name: str | None, ops: list[SyncOp]) -> int | None:
        name = _cut(name or "")
        if not name:
            return None
        type_id = self.index.asset_types.get(name.lower())
        if type_id is not None:
            return type_id
        group_id = None
        if self.policy.asset_group:
            group_id = self.index.asset_groups.get(self.policy.asset_group)
            if group_id is None:
                group_id = self.index.new_id()
                self.index.asset_groups[self.policy.asset_group] = group_id
                ops.append(SyncOp("asset_group", "create", group_id, self.policy.asset_group,
                              values={"name": self.policy.asset_group}))
        type_id = self.index.new_id()
        self.index.asset_types[name.lower()] = type_id
        ops.append(SyncOp("asset_type", "create", type_id, name,
                      values={"name": name, "asset_group_id": group_id}))
        return type_id

    def _end_user(self, up: UpAsset, customer_id: int, ops: list[SyncOp]) -> int | None:
        if up.contact_ext_id is not None:
            return self.index.refs.get(("end_user", up.contact_ext_id))
        if not (self.policy.last_user_as_end_user and up.last_user):
            return None
        name = _cut(re.split(r"[\\/]", up.last_user)[-1].strip())  # DOMAIN\user -> user
        if not name:
            return None
        if self._users_by_name is None:
            self._users_by_name = {(u.customer_id, u.name.lower()): u.id
                                   for u in sorted(self.index.end_users.values(),
                                                   key=lambda u: -u.id)}
        found = self._users_by_name.get((customer_id, name.lower()))
        if found is not None:
            return found
        new_id = self.index.new_id()
        self.index.end_users[new_id] = LocalEndUser(new_id, customer_id, name)
        self._users_by_name[(customer_id, name.lower())] = new_id
        ops.append(SyncOp("end_user", "create", new_id, name, None,
                      {"name": name, "customer_id": customer_id, "email": None,
                       "phone": None, "is_default": False}))
        return new_id

    def _match_asset(self, up: UpAsset, state: PageState) -> LocalAsset | None:
        value = self.policy.match_value(up)
        if value is None:
            return None
        candidates = [a for a in state.by_match.get(value, ())
                      if a.id not in self.claimed_assets]
        if len(candidates) != 1:  # none, or ambiguous: never guess
            return None
        self.claimed_assets.add(candidates[0].id)
        return candidates[0]

    @staticmethod
    def _asset_changes(local: LocalAsset, wanted: dict[str, Any],
                       mapped: tuple[MappedValue, ...]) -> dict[str, Any]:
        target = dict(wanted)
        fields = dict(local.fields)
        for value in mapped:
            in_column = value.field in ASSET_COLUMNS
            current = getattr(local, value.field) if in_column else fields.get(value.field)
            if value.only_when_empty and current not in (None, ""):
                if in_column:
                    target[value.field] = current  # keep what alertd has
                continue
            if in_column:
                if value.value is not None or value.field != "name":  # a name stays a name
                    target[value.field] = value.value
            elif value.value is None:
                fields.pop(value.field, None)
            else:
                fields[value.field] = value.value
        if target.get("serial") is None and local.serial:  # the RMM forgetting it is no news
            target["serial"] = local.serial
        changes = {k: v for k, v in target.items() if getattr(local, k) != v}
        if fields != local.fields:
            changes["fields"] = fields
        if not local.active:
            changes["active"] = True
        return changes


# --- field values --------------------------------------------------------------------------

def convert(kind: str, raw: Any, dropdown_labels: Mapping[str, str] | None = None) -> Any:
    """A raw RMM field value as the mapping's kind: text (stripped str), date (ISO date),
    checkbox (bool; Syncro's "1"), dropdown (the option's label). Empty -> None."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if kind == "checkbox":
        return str(raw).strip().lower() in ("1", "true", "yes", "on", "checked")
    if kind == "date":
        return parse_date(raw)
    if kind == "dropdown":
        return (dropdown_labels or {}).get(str(raw).strip(), str(raw).strip())
    return str(raw).strip()


_DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d")


def parse_date(raw: Any) -> str | None:
    """ISO date (YYYY-MM-DD) of an epoch-ms number, an ISO date-time or a common date
    format; None when it is none of these."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return datetime.fromtimestamp(raw / 1000, UTC).date().isoformat()
    text = str(raw).strip()
    if text.isdigit() and len(text) >= 11:  # epoch milliseconds as a string
        return datetime.fromtimestamp(int(text) / 1000, UTC).date().isoformat()
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date().isoformat()
    except ValueError:
        pass
    for pattern in _DATE_FORMATS:
        try:
            return datetime.strptime(text, pattern).date().isoformat()
        except ValueError:
            continue
    return None


def kind_of(field_type: str | None) -> str:
    """The mapping kind of a Syncro custom field type as /settings names it (the names vary:
    "date", "date_field", "check_box", "select_box", "dropdown", "text_area"...)."""
    name = (field_type or "").lower()
    if "date" in name:
        return "date"
    if "check" in name:
        return "checkbox"
    if "select" in name or "drop" in name:
        return "dropdown"
    if "area" in name:
        return "textarea"
    return "text"


def map_fields(mappings: Iterable[FieldMapping], core: Mapping[str, Any],
               custom: Mapping[str, Any], udf: Mapping[str, Any],
               kinds: Mapping[str, str], dropdowns: Mapping[str, Mapping[str, str]]
               ) -> tuple[MappedValue, ...]:
    """The mapped values of one record: `core` its own fields, `custom` its custom fields by
    name (Syncro), `udf` its UDFs (Datto, "udf1"...), `kinds` Syncro's field kinds by name,
    `dropdowns` the option labels by field name."""
    values = []
    for mapping in mappings:
        if mapping.custom is not None:
            raw = custom.get(mapping.custom)
            kind = mapping.kind or kinds.get(mapping.custom, "text")
            labels = dropdowns.get(mapping.custom)
        elif mapping.udf is not None:
            raw, kind, labels = udf.get(f"udf{mapping.udf}"), mapping.kind or "text", None
        else:
            assert mapping.core is not None
            raw, kind, labels = core.get(mapping.core), mapping.kind or "text", None
        value = convert(kind, raw, labels)
        if isinstance(value, str):
            value = value[:MAX_NAME] if mapping.field in ASSET_COLUMNS else value[:4000]
        values.append(MappedValue(mapping.field, value, mapping.only_when_empty))
    return tuple(values)


def _follow_name(entity: Entity, record: LocalCustomer | LocalSite, name: str, key: str,
                 ops: list[SyncOp]) -> None:
    """Rename `record` to the RMM's `name` if it differs."""
    if record.name != name:
        ops.append(SyncOp(entity, "update", record.id, name, key, {"name": name},
                      {"name": record.name}))
        record.name = name


def _oldest_first(record: LocalCustomer | LocalSite) -> tuple[bool, int]:
    """Existing records by id, then those this run creates, in creation order."""
    return record.id < 0, abs(record.id)


def _cut(text: str) -> str:
    return text.strip()[:MAX_NAME]


def _cut_or_none(text: str | None) -> str | None:
    return _cut(text) or None if text else None

