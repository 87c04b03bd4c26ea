"""The sync against the fake RMMs: preview then apply (equal), mapped / name-matched / new /
excluded-match-value / deleted records, field mappings of every kind, and a second run that
writes nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.config import Config
from daemon.core.clock import utcnow
from daemon.http.app import create_app
from daemon.rmm.clients import RmmClients
from daemon.rmm.datto import DattoClient, DattoLimits
from daemon.rmm.syncro import SyncroClient, SyncroLimits
from daemon.service.wiring import ROUTES, build_services
from daemon.store.database import Database
from daemon.store.models import (
    Alert,
    Asset,
    AssetGroup,
    AssetType,
    Customer,
    EndUser,
    ExternalRef,
    Site,
    SyncRun,
    Ticket,
)
from daemon.sync.report import SyncReport
from daemon.sync.runner import SyncRefused, SyncRunner
from tests.api_client import TOKEN, Api
from tests.fakes.datto import DattoFake
from tests.fakes.syncro import SyncroFake
from tests.helpers import table_counts

CUSTOMERS, ASSETS = 300, 3000
WINDOW_S = 1.0  # the fakes' rate windows, scaled from 60 s so the test is quick
SYNCRO_SAMPLE = (Path(__file__).resolve().parents[1]
                 / "fixtures/webhooks/syncro-rmm-alert-webhook.json")


def ref_of(session: Session, entity: str, source: str, ext_id: str) -> int | None:
    return session.scalar(select(ExternalRef.entity_id).where(
        ExternalRef.entity == entity, ExternalRef.source == source,
        ExternalRef.external_id == ext_id))


def operations(report: SyncReport) -> list[dict[str, Any]]:
    assert report.ops is not None
    return [op.as_json() for op in report.ops]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def syncro_runner(aiohttp_server: Callable[..., Any], http: aiohttp.ClientSession,
                        fake: SyncroFake, db: Database, config: Config) -> SyncRunner:
    url = (await aiohttp_server(fake.app)).make_url("/api/v1")
    client = SyncroClient(http, str(url), "t", limits=SyncroLimits(window_s=WINDOW_S))
    return SyncRunner(db, RmmClients(syncro=client), config.sync)


async def synced_api(aiohttp_server: Callable[..., Any], aiohttp_client: Callable[..., Any],
                     http: aiohttp.ClientSession, fake: SyncroFake, db: Database, db_url: str,
                     make_config: Callable[..., Config]) -> tuple[SyncRunner, Api]:
    """`fake`'s customers and assets synced (a fallback end user set), and the app on `db`."""
    config = make_config(f"""
        [api]
        tokens = ["{TOKEN}"]
        [syncro]
        webhook_token = "hook-token-0123456789"
        [sync]
        fallback_end_user = "New Alert User"
        [sync.syncro]
        customers = true
        assets = true
        """, db_url=db_url)
    runner = await syncro_runner(aiohttp_server, http, fake, db, config)
    assert (await runner.run("syncro")).status == "ok"
    ctx = build_services(config, db)
    return runner, Api(await aiohttp_client(create_app(ctx.http, ROUTES)), ctx)


async def seed(db: Database, *rows: Any) -> None:
    def add(session: Session) -> None:
        for row in rows:
            session.add(row)
            session.flush()
    await db.write(add)


def now() -> Any:
    return utcnow()


SYNCRO_CONFIG = """
[sync]
site_name = "Main"
[sync.syncro]
customers = true
assets = true
top_level = "Syncro clients"
asset_group = "Syncro"
match_field = "serial"
deactivate_missing = true
customer_map = { "31999001" = { customer = "Mapped Dental", site = "Head Office" } }
field_mappings = [
  { field = "warranty_expires", custom = "Warranty Expires" },
  { field = "backup_agent", custom = "Backup Agent" },
  { field = "os", core = "os_name", only_when_empty = true },
]
"""


async def test_syncro_preview_then_apply(
        aiohttp_server: Callable[..., Any], http: aiohttp.ClientSession, db: Database,
        db_url: str, make_config: Callable[..., Config]) -> None:
    fake = SyncroFake(api_key="t", window_s=WINDOW_S)
    mapped = fake.add_customer("Mapped Dental Group (Syncro name)", id=31999001)
    named = fake.add_customer("Name Match Ltd")
    fake.add_contact(named["id"], "Nadia Match", email=named["email"])
    customers = [mapped, named] + [fake.add_customer(f"Customer {n:03}")
                                   for n in range(CUSTOMERS - 2)]
    for customer in customers[2:]:
        fake.add_contact(customer["id"], f"Contact of {customer['business_name']}")
    fake.asset_types.append({"id": 3, "name": "Firewall"})
    serial_match = fake.add_asset(named["id"], name="FS-NAME-01", serial="SN-MATCH-0001")
    excluded = fake.add_asset(named["id"], name="WS-OEM", serial="To Be Filled By O.E.M.")
    gone = fake.add_asset(named["id"], name="WS-GONE", serial="SN-GONE")
    for n in range(ASSETS - 3):
        fake.add_asset(customers[n % CUSTOMERS]["id"], serial=f"SN-{n:05}",
                       asset_type=("Syncro Device", "Managed Printer", "Firewall")[n % 3])
    # alertd already has: the mapped customer and site, the name-matched customer, an asset
    # with the same serial (matched), and one whose serial is an excluded value (not matched).
    head_office_customer = Customer(name="Mapped Dental", active=True, updated_at=now())
    await seed(db, head_office_customer)
    await seed(db, Site(customer_id=head_office_customer.id, name="Head Office", active=True,
                        updated_at=now()),
               Customer(name="Name Match Ltd", active=True, updated_at=now()))
    local_match = Asset(name="fileserver", serial="sn-match-0001", active=True, fields={},
                        updated_at=now())
    local_oem = Asset(name="old-oem", serial="to be filled by o.e.m.", active=True, fields={},
                      updated_at=now())
    await seed(db, local_match, local_oem)
    config = make_config(SYNCRO_CONFIG, db_url=db_url)
    runner = await syncro_runner(aiohttp_server, http, fake, db, config)
    before = await db.read(table_counts)

    preview = await runner.run("syncro", preview=True)
    assert preview.status == "ok", preview.errors
    assert await db.read(table_counts) == before  # a preview writes nothing

    applied = await runner.run("syncro", keep_ops=True)
    assert applied.status == "ok", applied.errors
    assert operations(applied) == operations(preview)
    assert applied.counts == preview.counts
    assert applied.counts["customer.create"] == CUSTOMERS - 2
    assert applied.counts["customer.match"] == 2
    assert applied.counts["asset.match"] == 1
    assert applied.counts["asset.create"] == ASSETS - 1
    assert applied.counts["asset_type.create"] == 3 and applied.counts["asset_group.create"] == 1

    def check(session: Session) -> None:
        mapped_id = ref_of(session, "customer", "syncro", "31999001")
        assert mapped_id == head_office_customer.id
        site = session.get(Site, ref_of(session, "site", "syncro", "31999001"))
        assert site is not None and site.name == "Head Office"
        assert session.get(Customer, mapped_id).name == "Mapped Dental"  # mapped: not renamed
        named_id = ref_of(session, "customer", "syncro", str(named["id"]))
        assert session.get(Customer, named_id).name == "Name Match Ltd"
        new = session.get(Customer, ref_of(session, "customer", "syncro",
                                           str(customers[5]["id"])))
        assert (new.name, new.top_level) == ("Customer 003", "Syncro clients")
        assert [s.name for s in session.scalars(select(Site).where(
            Site.customer_id == new.id))] == ["Main"]
        assert ref_of(session, "asset", "syncro", str(serial_match["id"])) == local_match.id
        oem_id = ref_of(session, "asset", "syncro", str(excluded["id"]))
        assert oem_id is not None and oem_id != local_oem.id
        asset = session.get(Asset, oem_id)
        assert asset.customer_id == named_id and asset.fields == {
            "warranty_expires": "2027-05-31", "backup_agent": "Veeam"}
        default = session.scalars(select(EndUser).where(EndUser.customer_id == named_id)).one()
        assert (default.name, default.is_default) == ("Nadia Match", True)
        firewall = session.scalars(select(AssetType).where(AssetType.name == "Firewall")).one()
        group = session.get(AssetGroup, firewall.asset_group_id)
        assert group is not None and group.name == "Syncro"
        run = session.scalars(select(SyncRun)).one()
        assert (run.status, run.counts["asset.create"]) == ("ok", ASSETS - 1)
    await db.read(check)

    again = await runner.run("syncro")
    assert again.writes == 0, again.summary()
    assert again.counts["asset.unchanged"] == ASSETS

    del fake.assets[gone["id"]]
    after_delete = await runner.run("syncro", keep_ops=True)
    assert [(op["entity"], op["action"], op["ext_id"]) for op in operations(after_delete)] == [
        ("asset", "deactivate", str(gone["id"]))]
    gone_id = await db.read(lambda s: ref_of(s, "asset", "syncro", str(gone["id"])))
    assert await db.read(lambda s: s.get(Asset, gone_id).active) is False


async def test_syncro_field_mappings_of_each_kind(
        aiohttp_server: Callable[..., Any], http: aiohttp.ClientSession, db: Database,
        db_url: str, make_config: Callable[..., Config]) -> None:
    fake = SyncroFake(api_key="t", window_s=WINDOW_S)
    fake.asset_type_fields = [
        {"id": 11, "name": "Warranty Expires", "field_type": "date", "asset_type_id": 1},
        {"id": 12, "name": "Backup Agent", "field_type": "dropdown", "asset_type_id": 1},
        {"id": 13, "name": "Notes", "field_type": "text_area", "asset_type_id": 1},
        {"id": 14, "name": "Managed", "field_type": "check_box", "asset_type_id": 1},
        {"id": 15, "name": "Room", "field_type": "text_field", "asset_type_id": 1}]
    fake.asset_type_field_answers = [{"id": 101, "asset_type_field_id": 12, "value": "Veeam"},
                                     {"id": 102, "asset_type_field_id": 12, "value": "Datto"}]
    customer = fake.add_customer("Field Kinds Inc")
    asset = fake.add_asset(customer["id"], name="WS-KINDS", serial="SN-KINDS", properties={
        "Warranty Expires": "05/31/2027", "Backup Agent": "102", "Notes": "line 1\nline 2",
        "Managed": "1", "Room": " 2.14 ", "syncro_splashtop_password": "never-stored"})
    config = make_config("""
        [sync.syncro]
        customers = true
        assets = true
        field_mappings = [
          { field = "warranty", custom = "Warranty Expires" },
          { field = "backup", custom = "Backup Agent" },
          { field = "notes", custom = "Notes" },
          { field = "managed", custom = "Managed" },
          { field = "room", custom = "Room", only_when_empty = true },
          { field = "serial", core = "asset_serial", only_when_empty = true },
        ]
        """, db_url=db_url)
    runner = await syncro_runner(aiohttp_server, http, fake, db, config)
    assert (await runner.run("syncro")).status == "ok"

    async def stored() -> Asset:
        found = await db.read(lambda s: s.get(Asset, ref_of(s, "asset", "syncro",
                                                            str(asset["id"]))))
        assert found is not None
        return found

    first = await stored()
    assert first.fields == {"warranty": "2027-05-31", "backup": "Datto",
                            "notes": "line 1\nline 2", "managed": True, "room": "2.14"}
    assert first.serial == "SN-KINDS"
    assert "never-stored" not in repr(first.fields)

    # Upstream changes: the plain mappings follow, the "only when empty" ones keep alertd's.
    asset["properties"].update({"Managed": "0", "Room": "3.01", "Backup Agent": "101"})
    asset["asset_serial"] = "SN-CHANGED"
    changed = await runner.run("syncro", keep_ops=True)
    assert changed.counts["asset.update"] == 1
    second = await stored()
    assert second.fields == {"warranty": "2027-05-31", "backup": "Veeam",
                             "notes": "line 1\nline 2", "managed": False, "room": "2.14"}
    assert second.serial == "SN-KINDS"

    # An emptied field is filled again by the "only when empty" mapping.
    def clear_room(session: Session) -> None:
        row = session.get(Asset, second.id)
        assert row is not None
        row.fields = {k: v for k, v in row.fields.items() if k != "room"}
    await db.write(clear_room)
    await runner.run("syncro")
    assert (await stored()).fields["room"] == "3.01"


DATTO_CONFIG = """
[sync.datto]
customers = true
assets = true
match_field = "serial"
fetch_serials = true
deactivate_deleted = true
last_user_as_end_user = true
site_map = {{ "{mapped_uid}" = {{ customer = "Existing Clinic" }} }}
field_mappings = [
  {{ field = "owner", udf = 3 }},
  {{ field = "installed", udf = 4, kind = "date" }},
  {{ field = "description", core = "description", only_when_empty = true }},
]
"""


async def test_datto_preview_then_apply(
        aiohttp_server: Callable[..., Any], http: aiohttp.ClientSession, db: Database,
        db_url: str, make_config: Callable[..., Config]) -> None:
    fake = DattoFake(api_key="k", api_secret="s", window_s=WINDOW_S, page_max=50)
    mapped = fake.add_site("Clinic (Datto name)")
    named = fake.add_site("Acme Dental")
    sites = [mapped, named] + [fake.add_site(f"Site {n:03}") for n in range(48)]
    matched = fake.add_device(named["uid"], hostname="FS-ACME", serial_number="SN-DATTO-1",
                              udf={"udf3": "Dana", "udf4": "1700000000000"})
    oem = fake.add_device(named["uid"], hostname="WS-OEM", serial_number="Default string")
    deleted = fake.add_device(named["uid"], hostname="WS-DELETED", deleted=True)
    for n in range(400):
        fake.add_device(sites[n % len(sites)]["uid"], serial_number=f"DS-{n:04}",
                        category=("Desktop", "Laptop", "Server")[n % 3])
    clinic = Customer(name="Existing Clinic", active=True, updated_at=now())
    acme = Customer(name="Acme Dental", active=True, updated_at=now())
    await seed(db, clinic, acme)
    await seed(db, Site(customer_id=acme.id, name="Acme HQ", active=True, updated_at=now()))
    local = Asset(name="acme-fs", serial="sn-datto-1", active=True, fields={},
                  updated_at=now())
    local_oem = Asset(name="oem", serial="default string", active=True, fields={},
                      updated_at=now())
    await seed(db, local, local_oem)
    url = (await aiohttp_server(fake.app)).make_url("")
    client = DattoClient(http, str(url), "k", "s", limits=DattoLimits(window_s=WINDOW_S))
    config = make_config(DATTO_CONFIG.format(mapped_uid=mapped["uid"]), db_url=db_url)
    runner = SyncRunner(db, RmmClients(datto=client), config.sync)

    preview = await runner.run("datto", preview=True)
    assert preview.status == "ok", preview.errors
    audits_in_preview = len(fake.calls_to("GET", "/api/v2/audit/device/"))
    applied = await runner.run("datto", keep_ops=True)
    assert operations(applied) == operations(preview)
    assert applied.counts["customer.create"] == 48  # "Deleted Devices" is never imported
    assert applied.counts["customer.match"] == 2
    assert applied.counts["asset.match"] == 1
    assert applied.counts["asset.create"] == 401  # the deleted device is not created
    assert audits_in_preview == 402  # one audit per live device without a serial in alertd

    def check(session: Session) -> None:
        assert ref_of(session, "customer", "datto", mapped["uid"]) == clinic.id
        assert session.get(Site, ref_of(session, "site", "datto", mapped["uid"])).name == "Main"
        assert ref_of(session, "customer", "datto", named["uid"]) == acme.id
        assert session.get(Site, ref_of(session, "site", "datto", named["uid"])).name == \
            "Acme HQ"
        asset = session.get(Asset, ref_of(session, "asset", "datto", matched["uid"]))
        assert asset.id == local.id and asset.customer_id == acme.id
        assert asset.fields == {"owner": "Dana", "installed": "2023-11-14"}
        user = session.get(EndUser, asset.end_user_id)
        assert (user.name, user.customer_id) == ("dana", acme.id)
        assert ref_of(session, "asset", "datto", oem["uid"]) != local_oem.id
        assert ref_of(session, "asset", "datto", deleted["uid"]) is None
        laptop = session.scalars(select(AssetType).where(AssetType.name == "Laptop")).one()
        assert session.get(AssetGroup, laptop.asset_group_id).name == "Datto RMM"
    await db.read(check)

    audits_before = len(fake.calls_to("GET", "/api/v2/audit/device/"))
    again = await runner.run("datto")
    assert again.writes == 0, again.summary()
    # Serials are known now: only the device whose audit has none is asked again.
    assert len(fake.calls_to("GET", "/api/v2/audit/device/")) - audits_before <= 1

    matched["deleted"] = True
    gone = await runner.run("datto", keep_ops=True)
    assert [(o["entity"], o["action"], o["ext_id"]) for o in operations(gone)] == [
        ("asset", "deactivate", matched["uid"])]
    assert await db.read(lambda s: s.get(Asset, local.id).active) is False


async def test_an_alert_ticket_lands_on_the_imported_asset_and_its_user(
        aiohttp_server: Callable[..., Any], aiohttp_client: Callable[..., Any],
        http: aiohttp.ClientSession, db: Database, db_url: str,
        make_config: Callable[..., Config]) -> None:
    fake = SyncroFake(api_key="t", window_s=WINDOW_S)
    acme = fake.add_customer("Acme Dental", email="office@acme.test")
    dana = fake.add_contact(acme["id"], "Dana Whitfield", email="office@acme.test")
    eve = fake.add_contact(acme["id"], "Eve Porter")
    with_user = fake.add_asset(acme["id"], name="WS-EVE", contact_id=eve["id"])
    without_user = fake.add_asset(acme["id"], name="WS-FRONTDESK")
    _, api = await synced_api(aiohttp_server, aiohttp_client, http, fake, db, db_url,
                              make_config)

    # The Syncro webhook names the asset by its id.
    hook = json.loads(SYNCRO_SAMPLE.read_text())
    hook["attributes"].update(id=601, computer_name="WS-EVE", customer_id=acme["id"])
    hook["attributes"]["asset"].update(id=with_user["id"], name="WS-EVE")
    status, body = await api.call("POST", "/api/notify/syncro", body=hook, auth=False,
                                  params={"token": "hook-token-0123456789"})
    assert status == 201, body
    # An email or API alert knows only the device name; another knows nothing we have.
    for uid, device in (("602", "WS-FRONTDESK"), ("603", "UNKNOWN-PC")):
        status, body = await api.call("POST", "/api/alerts", body={
            "source": "syncro", "uid": uid, "action": "raise", "device": device})
        assert status == 201, body

    def placements(session: Session) -> dict[str, tuple[Any, ...]]:
        rows = session.execute(
            select(Alert.uid, Customer.name, Site.name, Asset.name, EndUser.name)
            .join(Ticket, Ticket.alert_id == Alert.id)
            .outerjoin(Customer, Customer.id == Ticket.customer_id)
            .outerjoin(Site, Site.id == Ticket.site_id)
            .outerjoin(Asset, Asset.id == Ticket.asset_id)
            .outerjoin(EndUser, EndUser.id == Ticket.end_user_id)).all()
        return {row[0]: tuple(row[1:]) for row in rows}
    assert await db.read(placements) == {
        "601": ("Acme Dental", "Main", "WS-EVE", "Eve Porter"),  # the asset's user
        "602": ("Acme Dental", "Main", "WS-FRONTDESK", "Dana Whitfield"),  # default contact
        "603": (None, None, None, "New Alert User"),  # the fallback user
    }
    assert without_user["contact_id"] is None and dana["email"] == acme["email"]


async def test_a_ticket_with_no_customer_is_listed_and_placed_by_the_next_sync(
        aiohttp_server: Callable[..., Any], aiohttp_client: Callable[..., Any],
        http: aiohttp.ClientSession, db: Database, db_url: str,
        make_config: Callable[..., Config]) -> None:
    """Issue 16, rule 6: no customer, no silence."""
    fake = SyncroFake(api_key="t", window_s=WINDOW_S)
    acme = fake.add_customer("Acme Dental", email="office@acme.test")
    fake.add_contact(acme["id"], "Dana Whitfield", email="office@acme.test")
    runner, api = await synced_api(aiohttp_server, aiohttp_client, http, fake, db, db_url,
                                   make_config)
    for uid, device in (("701", "WS-NEW"), ("702", "NOBODY-KNOWS")):
        status, body = await api.call("POST", "/api/alerts", body={
            "source": "syncro", "uid": uid, "action": "raise", "device": device})
        assert status == 201, body

    status, unplaced = await api.call("GET", "/api/tickets", params={"no_customer": "true"})
    assert status == 200
    assert [t["alert"]["uid"] for t in unplaced["items"]] == ["702", "701"]
    assert {t["end_user"] for t in unplaced["items"]} == {"New Alert User"}
    status, body = await api.call("GET", "/api/tickets",
                                  params={"no_customer": "true", "customer_id": "1"})
    assert (status, body["items"]) == (200, [])  # filters combine: none is both

    fake.add_asset(acme["id"], name="WS-NEW")  # the device is enrolled after its alert
    report = await runner.run("syncro")
    assert report.status == "ok" and report.counts["tickets.placed"] == 1
    assert "1 tickets placed" in report.summary()

    status, unplaced = await api.call("GET", "/api/tickets", params={"no_customer": "true"})
    assert [t["alert"]["uid"] for t in unplaced["items"]] == ["702"]
    status, placed = await api.call("GET", "/api/tickets", params={"no_customer": "false"})
    [ticket] = placed["items"]
    assert (ticket["alert"]["uid"], ticket["customer"], ticket["site"], ticket["asset"],
            ticket["end_user"]) == ("701", "Acme Dental", "Main", "WS-NEW", "Dana Whitfield")
    status, shown = await api.call("GET", f"/api/tickets/{ticket['id']}")
    assert shown["notes"][-1]["author"] == "alertd"
    assert shown["notes"][-1]["body"].startswith("Placed at customer 'Acme Dental' by the sync")
    assert shown["touched"] is False  # alertd's own note is not an agent's work
    # A run with nothing new to place changes nothing and reports no placement.
    again = await runner.run("syncro")
    assert "tickets.placed" not in again.counts


async def test_datto_sites_under_one_customer(
        aiohttp_server: Callable[..., Any], http: aiohttp.ClientSession, db: Database,
        db_url: str, make_config: Callable[..., Config]) -> None:
    fake = DattoFake(api_key="k", api_secret="s", window_s=WINDOW_S)
    north, south = fake.add_site("North Clinic"), fake.add_site("South Clinic")
    device = fake.add_device(south["uid"], hostname="SOUTH-PC")
    url = (await aiohttp_server(fake.app)).make_url("")
    client = DattoClient(http, str(url), "k", "s", limits=DattoLimits(window_s=WINDOW_S))
    config = make_config("""
        [sync.datto]
        customers = true
        assets = true
        site_mode = "sites_under_customer"
        customer = "Harbor Health"
        """, db_url=db_url)
    runner = SyncRunner(db, RmmClients(datto=client), config.sync)
    report = await runner.run("datto", keep_ops=True)
    assert report.status == "ok", report.errors
    assert report.counts["customer.create"] == 1 and report.counts["site.create"] == 2

    def check(session: Session) -> None:
        [customer] = session.scalars(select(Customer)).all()
        assert customer.name == "Harbor Health"
        sites = {s.name: s.id for s in session.scalars(select(Site))}
        assert sorted(sites) == ["North Clinic", "South Clinic"]
        assert ref_of(session, "site", "datto", north["uid"]) == sites["North Clinic"]
        assert ref_of(session, "customer", "datto", north["uid"]) is None
        asset = session.get(Asset, ref_of(session, "asset", "datto", device["uid"]))
        assert (asset.customer_id, asset.site_id) == (customer.id, sites["South Clinic"])
    await db.read(check)
    north["name"] = "North Clinic (new building)"  # a rename in Datto follows
    renamed = await runner.run("datto", keep_ops=True)
    assert [(o["entity"], o["action"], o["name"]) for o in operations(renamed)] == [
        ("site", "update", "North Clinic (new building)")]


async def test_one_sync_at_a_time(
        aiohttp_server: Callable[..., Any], http: aiohttp.ClientSession, db: Database,
        db_url: str, make_config: Callable[..., Config]) -> None:
    fake = SyncroFake(api_key="t", window_s=WINDOW_S)
    fake.add_customer("Slow Listing Co")
    fake.delay_s = 0.5  # keeps the first run busy while the second one starts
    config = make_config("", db_url=db_url)
    url = (await aiohttp_server(fake.app)).make_url("/api/v1")
    clients = RmmClients(syncro=SyncroClient(http, str(url), "t",
                                             limits=SyncroLimits(window_s=WINDOW_S)))
    # The lock is taken on its own connection (PostgreSQL) or file handle (SQLite), so a
    # second runner meets it as another alertd instance would.
    first, second = SyncRunner(db, clients, config.sync), SyncRunner(db, clients, config.sync)
    running = asyncio.create_task(first.run("syncro", customers=True))
    await asyncio.sleep(0.2)
    with pytest.raises(SyncRefused, match="another sync is running"):
        await second.run("syncro", customers=True)
    assert (await running).status == "ok"
    assert (await second.run("syncro", customers=True)).status == "ok"  # free again


async def test_a_run_left_running_is_marked_failed_by_the_next(
        aiohttp_server: Callable[..., Any], http: aiohttp.ClientSession, db: Database,
        db_url: str, make_config: Callable[..., Config]) -> None:
    fake = SyncroFake(api_key="t", window_s=WINDOW_S)
    await seed(db, SyncRun(source="syncro", entities="customers", trigger="schedule",
                           started_at=now(), status="running", counts={}, errors=[]))
    runner = await syncro_runner(aiohttp_server, http, fake, db, make_config("", db_url=db_url))
    assert (await runner.run("syncro", customers=True)).status == "ok"
    runs = await db.read(lambda s: [(r.status, r.errors) for r in
                                    s.scalars(select(SyncRun).order_by(SyncRun.id))])
    assert runs[0][0] == "failed" and "interrupted" in runs[0][1][0]
    assert runs[1] == ("ok", [])


class RecordedProgress:
    """A `runner.Progress` that keeps what it was told."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.calls: list[str] = []

    def total(self, what: str, count: int) -> None:
        self.totals[what] = count
        self.calls.append(f"total {what}")

    def done(self, what: str, count: int) -> None:
        self.counts[what] = count

    def waiting(self, seconds: float) -> None:
        self.calls.append("waiting")


async def test_progress_is_told_totals_and_counts(
        aiohttp_server: Callable[..., Any], http: aiohttp.ClientSession, db: Database,
        db_url: str, make_config: Callable[..., Config]) -> None:
    fake = SyncroFake(api_key="t", window_s=WINDOW_S)
    customers = [fake.add_customer(f"Customer {n:03}") for n in range(120)]
    for n in range(700):
        fake.add_asset(customers[n % 120]["id"], serial=f"SN-{n:05}")
    runner = await syncro_runner(aiohttp_server, http, fake, db,
                                 make_config(SYNCRO_CONFIG, db_url=db_url))
    progress = RecordedProgress()
    report = await runner.run("syncro", progress=progress)
    assert report.status == "ok", report.errors
    assert progress.totals == progress.counts == {"customers": 120, "assets": 700}
    assert progress.calls[:2] == ["total customers", "total assets"]
