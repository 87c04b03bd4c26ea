"""Issue 17, item 9: a Datto alert that arrives by mail only is placed on the imported asset
of its device: alertd asks the Datto API (the in-repo fake) which device raised it. Through
the real sync, pipeline, packaged rules and client, on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from daemon.config import Config
from daemon.intake.inbound import Inbound
from daemon.rmm.clients import RmmClients
from daemon.rmm.datto import DattoClient
from daemon.rmm.mail_devices import MailAlertDevices
from daemon.service.wiring import build_services
from daemon.store.database import Database
from daemon.store.models import Alert, Asset, Customer, Ticket, TicketNote
from daemon.sync.runner import SyncRunner
from daemon.tickets.placement import TicketPlacer
from tests.fakes.datto import DattoFake
from tests.helpers import datto_alert_mail


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def mail(uid: str, n: int) -> Inbound:
    return datto_alert_mail(n, uid, ip=f"10.0.0.{n}", body="Disk C: 97% used")


async def test_a_mail_alerts_ticket_is_placed_on_its_devices_asset(
        aiohttp_server: Callable[..., Any], http: aiohttp.ClientSession, db: Database,
        db_url: str, make_config: Callable[..., Config]) -> None:
    fake = DattoFake(api_key="k", api_secret="s")
    site = fake.add_site("Acme Dental")
    device = fake.add_device(site["uid"], hostname="FS-ACME-01")
    known = fake.add_alert(device_uid=device["uid"])["alertUid"]
    unknown = "5e0c8b1a-7d2f-4c3e-9a6b-0000000000ff"  # Datto does not know it
    url = str((await aiohttp_server(fake.app)).make_url(""))
    config = make_config("[sync.datto]\ncustomers = true\nassets = true\n", db_url=db_url)
    client = DattoClient(http, url, "k", "s")
    report = await SyncRunner(db, RmmClients(datto=client), config.sync).run("datto")
    assert report.status == "ok", report.errors

    ctx = build_services(config, db)
    tickets = {}
    for n, uid in enumerate((known, unknown), start=1):
        accepted = await ctx.pipeline.submit(mail(uid, n))
        result = await ctx.pipeline.process(accepted.delivery_id)
        assert result is not None and result.events[0].outcome == "opened"
        tickets[uid] = result.events[0].ticket_id

    def ticket_of(uid: str) -> Any:
        return db.read(lambda s: s.get(Ticket, tickets[uid]))
    assert (await ticket_of(known)).asset_id is None  # the mail alone names no device

    job = MailAlertDevices(db, client, TicketPlacer())
    assert await job.run_once() == 1
    placed = await ticket_of(known)
    asset = await db.read(lambda s: s.get(Asset, placed.asset_id))
    customer = await db.read(lambda s: s.get(Customer, placed.customer_id))
    assert (asset.name, customer.name) == ("FS-ACME-01", "Acme Dental")
    alert = await db.read(lambda s: s.scalar(select(Alert).where(Alert.uid == known)))
    assert (alert.device_ref, alert.device) == (device["uid"], "FS-ACME-01")
    notes = await db.read(lambda s: list(s.scalars(select(TicketNote.body).where(
        TicketNote.ticket_id == tickets[known]))))
    assert any(f"Placed on asset FS-ACME-01: Datto RMM names device FS-ACME-01 "
               f"({device['uid']})" in note for note in notes)
    assert (await ticket_of(unknown)).asset_id is None

    asked = len(fake.calls_to("GET", "/api/v2/alert/"))
    assert await job.run_once() == 0
    assert len(fake.calls_to("GET", "/api/v2/alert/")) == asked  # each alert asked once
