"""The sync's reading of the RMM listings: Syncro customers, custom field kinds and assets,
Datto sites and devices (with a device's serial from its audit), as the planner's `Up*` records.

Each listing is an async iterator over the client's pages; the runner (daemon.sync.runner)
plans and applies them batch by batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

from daemon.rmm.datto import DattoClient
from daemon.rmm.syncro import SyncroClient
from daemon.sync.field_values import kind_of, map_fields
from daemon.sync.records import PageState, UpAsset, UpContact, UpCustomer

DELETED_DEVICES_SITE = "Deleted Devices"  # Datto's built-in site, never imported
AUDIT_CONCURRENCY = 8  # audits in flight; more would only wait in the limiter


async def syncro_customers(client: SyncroClient) -> AsyncIterator[UpCustomer]:
    async for record in client.paged("/customers", "customers"):
        if record.get("id") is None:
            continue
        contacts = tuple(
            UpContact(str(c["id"]), str(c.get("name") or "").strip(), c.get("email") or None,
                      c.get("phone") or c.get("mobile") or None)
            for c in sorted((c for c in record.get("contacts") or []
                             if isinstance(c, dict) and c.get("id") is not None),
                            key=lambda c: int(c["id"]) if str(c["id"]).isdigit() else 0))
        name = (record.get("business_then_name") or record.get("business_name")
                or record.get("fullname") or f"Syncro customer {record['id']}")
        email = (record.get("email") or "").lower()
        default = next((c.ext_id for c in contacts if email and (c.email or "").lower()
                        == email), contacts[0].ext_id if contacts else None)
        yield UpCustomer(str(record["id"]), str(name), contacts, default)


async def syncro_field_kinds(client: SyncroClient
                             ) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Custom field kinds by name, and dropdown option labels (id -> label) by field name,
    from `GET /settings`."""
    body = await client.settings()
    assets = body.get("assets") if isinstance(body, dict) else None
    if not isinstance(assets, dict):
        return {}, {}
    fields = [f for f in assets.get("asset_type_fields") or [] if isinstance(f, dict)]
    kinds = {str(f.get("name")): kind_of(f.get("field_type")) for f in fields}
    names_by_id = {f.get("id"): str(f.get("name")) for f in fields}
    dropdowns: dict[str, dict[str, str]] = {}
    for answer in assets.get("asset_type_field_answers") or []:
        if not isinstance(answer, dict):
            continue
        field_name = names_by_id.get(answer.get("asset_type_field_id"))
        label = answer.get("value") or answer.get("content") or answer.get("name")
        if field_name is not None and label is not None:
            dropdowns.setdefault(field_name, {})[str(answer.get("id"))] = str(label)
    return kinds, dropdowns


async def syncro_assets(client: SyncroClient, mappings: list[Any], kinds: dict[str, str],
                        dropdowns: dict[str, dict[str, str]]) -> AsyncIterator[UpAsset]:
    async for record in client.paged("/customer_assets", "assets"):
        if record.get("id") is None:
            continue
        properties = record.get("properties") if isinstance(record.get("properties"),
                                                            dict) else {}
        customer_id = record.get("customer_id")
        contact_id = record.get("contact_id")
        yield UpAsset(
            ext_id=str(record["id"]), name=str(record.get("name") or ""),
            owner_ext_id=str(customer_id) if customer_id is not None else None,
            type_name=record.get("asset_type"), serial=record.get("asset_serial"),
            mapped=map_fields(mappings, record, properties or {}, {}, kinds, dropdowns),
            contact_ext_id=str(contact_id) if contact_id is not None else None)


async def datto_sites(client: DattoClient) -> AsyncIterator[UpCustomer]:
    async for record in client.paged("/api/v2/account/sites", "sites"):
        if not record.get("uid") or record.get("name") == DELETED_DEVICES_SITE:
            continue
        yield UpCustomer(str(record["uid"]), str(record.get("name") or record["uid"]))


async def datto_deleted_site_uid(client: DattoClient) -> str | None:
    async for record in client.paged("/api/v2/account/sites", "sites"):
        if record.get("name") == DELETED_DEVICES_SITE:
            return str(record.get("uid"))
    return None


async def datto_devices(client: DattoClient, mappings: list[Any],
                        deleted_site_uid: str | None) -> AsyncIterator[UpAsset]:
    async for record in client.paged("/api/v2/account/devices", "devices"):
        if not record.get("uid"):
            continue
        device_type = record.get("deviceType") if isinstance(record.get("deviceType"),
                                                             dict) else {}
        udf = record.get("udf") if isinstance(record.get("udf"), dict) else {}
        yield UpAsset(
            ext_id=str(record["uid"]), name=str(record.get("hostname") or ""),
            owner_ext_id=record.get("siteUid"),
            type_name=(device_type or {}).get("type") or (device_type or {}).get("category"),
            serial=None, mapped=map_fields(mappings, record, {}, udf or {}, {}, {}),
            last_user=record.get("lastLoggedInUser"),
            deleted=bool(record.get("deleted"))
            or (deleted_site_uid is not None and record.get("siteUid") == deleted_site_uid),
            device_class=record.get("deviceClass"))


def serial_fetcher(client: DattoClient) -> Callable[[list[UpAsset], PageState], Any]:
    async def fetch(batch: list[UpAsset], state: PageState) -> list[UpAsset]:
        """Serials for the batch's devices alertd has no serial for (one audit read each,
        under the client's read limiter); the others keep the one alertd has."""
        # Few in flight: more would only hold limiter slots while they wait for a connection.
        gate = asyncio.Semaphore(AUDIT_CONCURRENCY)

        async def one(asset: UpAsset) -> UpAsset:
            local = state.by_ref.get(asset.ext_id)
            if asset.deleted or (local is not None and local.serial):
                return asset
            async with gate:
                serial = await client.device_serial(asset.ext_id, asset.device_class)
            return dataclasses.replace(asset, serial=serial)
        return list(await asyncio.gather(*(one(asset) for asset in batch)))
    return fetch
