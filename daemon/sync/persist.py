"""The sync's database adapter: load the `Index`, look up one page's assets, apply a plan.

Every function takes a Session and runs inside the caller's transaction (a preview only
reads; an apply writes one listing batch per transaction)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.orm import Session

from daemon.store.models import (
    Asset,
    AssetGroup,
    AssetType,
    Customer,
    EndUser,
    ExternalRef,
    Site,
)
from daemon.sync.records import (
    Index,
    LocalAsset,
    LocalCustomer,
    LocalEndUser,
    LocalSite,
    PageState,
    SyncOp,
)

_TABLES: dict[str, Table] = {
    "customer": Customer.__table__,  # type: ignore[dict-item]
    "site": Site.__table__,  # type: ignore[dict-item]
    "end_user": EndUser.__table__,  # type: ignore[dict-item]
    "asset_group": AssetGroup.__table__,  # type: ignore[dict-item]
    "asset_type": AssetType.__table__,  # type: ignore[dict-item]
    "asset": Asset.__table__,  # type: ignore[dict-item]
}
# Dependencies first: a site needs its customer, an asset its type, site and end user.
_ORDER = ("asset_group", "asset_type", "customer", "site", "end_user", "asset")
_STAMPED = ("customer", "site", "end_user", "asset")  # tables with updated_at / active
_ID_COLUMNS = ("customer_id", "site_id", "asset_type_id", "asset_group_id", "end_user_id")
_CHUNK = 500  # bounded IN lists


def load_index(session: Session, source: str) -> Index:
    index = Index()
    for c in session.execute(select(Customer.id, Customer.name, Customer.top_level,
                                    Customer.active)):
        index.customers[c.id] = LocalCustomer(c.id, c.name, c.top_level, c.active)
    for s in session.execute(select(Site.id, Site.customer_id, Site.name, Site.active)):
        index.sites[s.id] = LocalSite(s.id, s.customer_id, s.name, s.active)
    for u in session.execute(select(EndUser.id, EndUser.customer_id, EndUser.name,
                                    EndUser.email, EndUser.phone, EndUser.is_default)
                             .where(EndUser.active)):
        index.end_users[u.id] = LocalEndUser(u.id, u.customer_id, u.name, u.email, u.phone,
                                             u.is_default)
    for t in session.execute(select(AssetType.id, AssetType.name)):
        index.asset_types.setdefault(t.name.lower(), t.id)
    for g in session.execute(select(AssetGroup.id, AssetGroup.name)):
        index.asset_groups[g.name] = g.id
    for r in session.execute(select(ExternalRef.entity, ExternalRef.external_id,
                                    ExternalRef.entity_id)
                             .where(ExternalRef.source == source,
                                    ExternalRef.entity.in_(("customer", "site", "end_user")))):
        index.refs[(r.entity, r.external_id)] = r.entity_id
    return index


_ASSET_COLUMNS = (Asset.id, Asset.name, Asset.serial, Asset.customer_id, Asset.site_id,
                  Asset.asset_type_id, Asset.end_user_id, Asset.active, Asset.fields)


def _local_asset(row: Any) -> LocalAsset:
    return LocalAsset(row.id, row.name, row.serial, row.customer_id, row.site_id,
                      row.asset_type_id, row.end_user_id, row.active, dict(row.fields or {}))


def assets_by_ref(session: Session, source: str, ext_ids: Sequence[str]
                  ) -> dict[str, LocalAsset]:
    found: dict[str, LocalAsset] = {}
    for start in range(0, len(ext_ids), _CHUNK):
        rows = session.execute(
            select(ExternalRef.external_id, *_ASSET_COLUMNS)
            .join(Asset, Asset.id == ExternalRef.entity_id)
            .where(ExternalRef.entity == "asset", ExternalRef.source == source,
                   ExternalRef.external_id.in_(ext_ids[start:start + _CHUNK])))
        for row in rows:
            found[row.external_id] = _local_asset(row)
    return found


def assets_by_match(session: Session, source: str, match_field: str, values: Sequence[str]
                    ) -> dict[str, list[LocalAsset]]:
    """Active assets without an id of `source` whose `match_field` (lower-cased) is one of
    `values`."""
    if match_field not in ("serial", "name") or not values:
        return {}
    column = Asset.serial if match_field == "serial" else Asset.name
    has_ref = (select(ExternalRef.id)
               .where(ExternalRef.entity == "asset", ExternalRef.source == source,
                      ExternalRef.entity_id == Asset.id).exists())
    found: dict[str, list[LocalAsset]] = {}
    for start in range(0, len(values), _CHUNK):
        rows = session.execute(
            select(func.lower(column).label("match_value"), *_ASSET_COLUMNS)
            .where(Asset.active, func.lower(column).in_(values[start:start + _CHUNK]),
                   ~has_ref).order_by(Asset.id))
        for row in rows:
            found.setdefault(row.match_value, []).append(_local_asset(row))
    return found


def page_state(session: Session, source: str, ext_ids: Sequence[str], match_field: str,
               match_values: Sequence[str]) -> PageState:
    return PageState(assets_by_ref(session, source, ext_ids),
                     assets_by_match(session, source, match_field, match_values))


def stored_active_assets(session: Session, source: str) -> list[tuple[str, int, str]]:
    """(external id, asset id, name) of every active asset with an id of `source`."""
    rows = session.execute(
        select(ExternalRef.external_id, Asset.id, Asset.name)
        .join(Asset, Asset.id == ExternalRef.entity_id)
        .where(ExternalRef.entity == "asset", ExternalRef.source == source, Asset.active))
    return [(r.external_id, r.id, r.name) for r in rows]


def apply_ops(session: Session, source: str, ops: Iterable[SyncOp], id_map: dict[int, int],
              now: datetime) -> None:
    """Write `ops` (from one or more plans, in plan order). `id_map` maps provisional ids to
    the real ones; it carries over between calls, since a later batch may name a record an
    earlier one created."""
    by_entity: dict[str, list[SyncOp]] = {}
    for op in ops:
        by_entity.setdefault(op.entity, []).append(op)
    refs: dict[tuple[str, str], int] = {}
    for entity in _ORDER:
        entity_ops = by_entity.get(entity, [])
        table = _TABLES[entity]
        creates = [op for op in entity_ops if op.action == "create"]
        if creates:
            rows = [_real_ids(op.values, id_map) for op in creates]
            if entity in _STAMPED:
                for row in rows:
                    row.update(active=True, updated_at=now)
            new_ids = session.execute(
                insert(table).returning(table.c.id, sort_by_parameter_order=True), rows
            ).scalars().all()
            for op, new_id in zip(creates, new_ids, strict=True):
                id_map[op.local_id] = new_id
        for op in entity_ops:
            local_id = id_map.get(op.local_id, op.local_id)
            if op.ext_id is not None and op.action in ("create", "match"):
                refs[(entity, op.ext_id)] = local_id
            if op.action == "update":
                values = _real_ids(op.values, id_map)
                if entity in _STAMPED:
                    values["updated_at"] = now
                session.execute(update(table).where(table.c.id == local_id).values(values))
            elif op.action == "deactivate":
                session.execute(update(table).where(table.c.id == local_id)
                                .values(active=False, updated_at=now))
    _store_refs(session, source, refs)


def _real_ids(values: dict[str, Any], id_map: dict[int, int]) -> dict[str, Any]:
    return {k: id_map.get(v, v) if k in _ID_COLUMNS and isinstance(v, int) else v
            for k, v in values.items()}


def _store_refs(session: Session, source: str, refs: dict[tuple[str, str], int]) -> None:
    """Set each (entity, external id) -> local id, replacing a stale one."""
    if not refs:
        return
    by_entity: dict[str, list[str]] = {}
    for entity, ext_id in refs:
        by_entity.setdefault(entity, []).append(ext_id)
    for entity, ext_ids in by_entity.items():
        for start in range(0, len(ext_ids), _CHUNK):
            session.execute(delete(ExternalRef).where(
                ExternalRef.entity == entity, ExternalRef.source == source,
                ExternalRef.external_id.in_(ext_ids[start:start + _CHUNK])))
    session.execute(insert(ExternalRef), [
        {"entity": entity, "entity_id": local_id, "source": source, "external_id": ext_id}
        for (entity, ext_id), local_id in refs.items()])
