"""The sync's pure planner: what an RMM record means for alertd's customers, sites, end users
and assets, as a list of operations (create, update, match, deactivate).

The planner never touches the database. It works on an `Index` of alertd's small reference
data (customers, sites, end users, asset types, the RMM ids already stored) loaded once per run,
and on a `PageState` of the assets one listing page concerns, looked up per page so a run over
50,000 assets stays flat in memory (types in daemon.sync.records). Records the plan creates get
provisional (negative) ids; the applier (daemon.sync.persist) maps them to real ones. A preview
and an apply run the same planner over the same listing, so the applied operations are the
previewed ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from daemon.config.sync_sections import LocalSiteRef
from daemon.sync.records import (
    ASSET_COLUMNS,
    MAX_NAME,
    ConfigProblem,
    Entity,
    Index,
    LocalAsset,
    LocalCustomer,
    LocalEndUser,
    LocalSite,
    MappedValue,
    PageState,
    Policy,
    SyncOp,
    UpAsset,
    UpCustomer,
)


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


def _follow_name(entity: Entity, record: LocalCustomer | LocalSite, name: str, key: str,
                 ops: list[SyncOp]) -> None:
    """Rename `record` to the RMM's `name` if it differs."""
    if record.name != name:
        ops.append(SyncOp(entity, "update", record.id, name, key, {"name": name},
                      {"name": record.name}))
        record.name = name


def _cut(text: str) -> str:
    return text.strip()[:MAX_NAME]


def _cut_or_none(text: str | None) -> str | None:
    return _cut(text) or None if text else None
