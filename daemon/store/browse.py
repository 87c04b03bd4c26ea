"""Read side of the reference data the sync imports: customers, sites, assets and end users as
JSON-ready dicts, newest (highest id) first, paged like every listing (daemon.store.queries).

Each item carries the names of what it belongs to, read by outer joins in the same query (one
query per page, never one per row). `q` is a case-insensitive substring of the name (and of
the serial for assets, the email for end users); `%` and `_` in it are plain characters.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, or_, select

from daemon.core.clock import utc_iso
from daemon.store.database import Database
from daemon.store.models import Asset, AssetType, Customer, EndUser, Site
from daemon.store.queries import (
    AnySelect,
    Page,
    flag_filter,
    id_filter,
    read_page,
    search_filter,
)


def _contains(q: str | None, *columns: Any) -> ColumnElement[bool] | None:
    """Any of `columns` contains `q` (checked, stripped), without case; None: no filter."""
    text = search_filter(q)
    if text is None:
        return None
    return or_(*(column.icontains(text, autoescape=True) for column in columns))


def _where(query: AnySelect, *conditions: ColumnElement[bool] | None) -> AnySelect:
    """`query` with each condition that is not None."""
    for condition in conditions:
        if condition is not None:
            query = query.where(condition)
    return query


def _equals(column: Any, name: str, value: str | None) -> ColumnElement[bool] | None:
    """`column` is the id `value` (checked: BadFilter); None: no filter."""
    record_id = id_filter(name, value)
    return None if record_id is None else column == record_id


def customer_view(customer: Customer) -> dict[str, Any]:
    return {"id": customer.id, "name": customer.name, "top_level": customer.top_level,
            "active": customer.active, "updated_at": utc_iso(customer.updated_at)}


def site_view(row: Any) -> dict[str, Any]:
    site, customer = row
    return {"id": site.id, "name": site.name, "customer_id": site.customer_id,
            "customer": customer, "active": site.active,
            "updated_at": utc_iso(site.updated_at)}


def end_user_view(row: Any) -> dict[str, Any]:
    user, customer = row
    return {"id": user.id, "name": user.name, "email": user.email, "phone": user.phone,
            "customer_id": user.customer_id, "customer": customer,
            "is_default": user.is_default, "active": user.active,
            "updated_at": utc_iso(user.updated_at)}


def asset_view(row: Any) -> dict[str, Any]:
    asset, customer, site, end_user, asset_type = row
    return {"id": asset.id, "name": asset.name, "serial": asset.serial,
            "asset_type": asset_type, "customer_id": asset.customer_id, "customer": customer,
            "site_id": asset.site_id, "site": site, "end_user_id": asset.end_user_id,
            "end_user": end_user, "active": asset.active, "fields": asset.fields,
            "updated_at": utc_iso(asset.updated_at)}


def _active(column: Any, value: str | None) -> ColumnElement[bool] | None:
    """`column` is `value` (`true` or `false`, checked: BadFilter); None: no filter."""
    active = flag_filter("active", value)
    return None if active is None else column.is_(active)


class Browse:
    """Listings of the imported reference data (GET /api/customers, /sites, /assets,
    /end-users). Filters are the raw query values, checked here (BadFilter); every given one
    must hold."""

    def __init__(self, db: Database):
        self._db = db

    async def customers(self, page: Page, q: str | None = None, active: str | None = None
                        ) -> dict[str, Any]:
        query = _where(select(Customer),
                       _contains(q, Customer.name),
                       _active(Customer.active, active))
        return await read_page(self._db, query, Customer.id, page, customer_view)

    async def sites(self, page: Page, q: str | None = None, customer_id: str | None = None,
                    active: str | None = None) -> dict[str, Any]:
        query = _where(select(Site, Customer.name).outerjoin(
                           Customer, Site.customer_id == Customer.id),
                       _contains(q, Site.name),
                       _equals(Site.customer_id, "customer_id", customer_id),
                       _active(Site.active, active))
        return await read_page(self._db, query, Site.id, page, site_view, rows=True)

    async def end_users(self, page: Page, q: str | None = None,
                        customer_id: str | None = None, active: str | None = None
                        ) -> dict[str, Any]:
        query = _where(
            select(EndUser, Customer.name).outerjoin(Customer, EndUser.customer_id == Customer.id),
            _contains(q, EndUser.name, EndUser.email),
            _equals(EndUser.customer_id, "customer_id", customer_id),
            _active(EndUser.active, active))
        return await read_page(self._db, query, EndUser.id, page, end_user_view, rows=True)

    async def assets(self, page: Page, q: str | None = None, customer_id: str | None = None,
                     site_id: str | None = None, active: str | None = None
                     ) -> dict[str, Any]:
        query = _where(
            select(Asset, Customer.name, Site.name, EndUser.name, AssetType.name)
            .outerjoin(Customer, Asset.customer_id == Customer.id)
            .outerjoin(Site, Asset.site_id == Site.id)
            .outerjoin(EndUser, Asset.end_user_id == EndUser.id)
            .outerjoin(AssetType, Asset.asset_type_id == AssetType.id),
            _contains(q, Asset.name, Asset.serial),
            _equals(Asset.customer_id, "customer_id", customer_id),
            _equals(Asset.site_id, "site_id", site_id),
            _active(Asset.active, active))
        return await read_page(self._db, query, Asset.id, page, asset_view, rows=True)
