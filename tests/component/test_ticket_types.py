"""Issue 17, item 5: the ticket type per source for tickets made by webhook and by polling
(Syncro's "New Alert Ticket Type", Datto's "Default Ticket Type"); email rules keep theirs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from daemon.config import Config, ConfigError
from daemon.http.app import create_app
from daemon.rmm.datto import DattoClient
from daemon.rmm.poll import datto_poller
from daemon.service.wiring import ROUTES, build_services
from daemon.store.database import Database
from daemon.store.models import Alert, Ticket
from daemon.store.queries import Queries
from tests.api_client import Api
from tests.component.test_webhooks import datto_body, mail, post_datto, post_syncro
from tests.fakes.datto import DattoFake
from tests.webhook_samples import CONFIG, UID, syncro_body

TYPES = CONFIG.replace("[datto]\n", '[datto]\nticket_type = "Alert (Datto)"\n').replace(
    "[syncro]\n", '[syncro]\nticket_type = "RMM Alert"\n')


@pytest.fixture
async def hooks(aiohttp_client: Callable[..., Any], make_config: Callable[..., Config],
                db: Database, db_url: str) -> Api:
    ctx = build_services(make_config(TYPES, db_url=db_url), db)
    return Api(await aiohttp_client(create_app(ctx.http, ROUTES)), ctx)


async def ticket_types(db: Database) -> dict[str, str]:
    """alert uid -> its ticket's type."""
    return dict(await db.read(lambda s: s.execute(
        select(Alert.uid, Ticket.type).join(Ticket, Ticket.alert_id == Alert.id)).all()))


async def test_webhook_tickets_take_their_sources_type(hooks: Api) -> None:
    status, _ = await post_datto(hooks, datto_body())
    assert status == 201
    # A webhook field mapped to the type (CONFIG: "Ticket type" = "type") wins.
    status, _ = await post_datto(hooks, datto_body(
        uid="5e0c8b1a-7d2f-4c3e-9a6b-000000000001", alert_category="CPU",
        fields={"Ticket type": "Server down"}))
    assert status == 201
    status, _ = await post_syncro(hooks, syncro_body(id=501234567))
    assert status == 201
    assert await ticket_types(hooks.ctx.db) == {
        UID: "Alert (Datto)", "5e0c8b1a-7d2f-4c3e-9a6b-000000000001": "Server down",
        "501234567": "RMM Alert"}


async def test_mail_tickets_keep_their_rules_type(hooks: Api) -> None:
    assert await mail(hooks, UID.upper()) == "opened"
    assert await ticket_types(hooks.ctx.db) == {UID: "alert"}  # the packaged rule's type


async def test_polling_tickets_take_their_sources_type(
        aiohttp_server: Callable[..., Any], hooks: Api) -> None:
    fake = DattoFake(api_key="k", api_secret="s")
    missed = fake.add_alert()["alertUid"]
    server = await aiohttp_server(fake.app)
    async with aiohttp.ClientSession() as session:
        client = DattoClient(session, str(server.make_url("")), "k", "s")
        poller = datto_poller(client, hooks.ctx.pipeline, Queries(hooks.ctx.db))
        assert (await poller.poll()).raised == [missed]
    assert await ticket_types(hooks.ctx.db) == {missed: "Alert (Datto)"}


def test_a_ticket_type_that_cannot_be_stored_is_a_config_error(
        make_config: Callable[..., Config]) -> None:
    with pytest.raises(ConfigError, match="ticket_type"):
        make_config('[datto]\nticket_type = "' + "x" * 65 + '"\n')
