"""Issue 17, item 7: Datto alert mail is taken only from `[datto] email_from`; mail from
another sender is kept as a rejected delivery with the reason, and replays once the sender is
configured. Through the real pipeline and the packaged rules, on each backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from daemon.config import Config
from daemon.core.events import DeliveryStatus
from daemon.intake.inbound import Inbound
from daemon.service.wiring import Services, build_services
from daemon.store.database import Database
from daemon.store.queries import Page
from tests.helpers import datto_alert_mail
from tests.lifecycle_app import uid


def mail(sender: str, n: int) -> Inbound:
    return datto_alert_mail(n, uid(n), sender=f"Datto RMM <{sender}>")


@pytest.fixture
def services(make_config: Callable[..., Config], db: Database, db_url: str
             ) -> Callable[[str], Services]:
    def build(email_from: str) -> Services:
        return build_services(make_config(f"[datto]\nemail_from = {email_from}\n",
                                          db_url=db_url), db)
    return build


async def process(ctx: Services, inbound: Inbound) -> Any:
    accepted = await ctx.pipeline.submit(inbound)
    return await ctx.pipeline.process(accepted.delivery_id)


async def test_only_the_configured_senders_raise_datto_alerts(
        services: Callable[[str], Services]) -> None:
    ctx = services('["RMM-Alerts@msp.example"]')
    good = await process(ctx, mail("rmm-alerts@MSP.example", 1))  # addresses without case
    assert good.status is DeliveryStatus.PROCESSED
    bad = await process(ctx, mail("attacker@elsewhere.example", 2))
    assert bad.status is DeliveryStatus.REJECTED
    assert bad.error == ("datto alert mail from 'attacker@elsewhere.example', which is not a "
                         "[datto] email_from address (rmm-alerts@msp.example)")
    delivery = await ctx.queries.delivery(bad.delivery_id)
    assert delivery is not None and delivery["status"] == "rejected"
    assert delivery["trace"]["message"]["from"] == "attacker@elsewhere.example"
    listing = await ctx.queries.alerts(Page(10, None), source="datto", uid=uid(2))
    assert listing["items"] == []  # nothing stored as an alert

    # The admin adds the second sender; the kept mail replays into its alert.
    fixed = services('["rmm-alerts@msp.example", "attacker@elsewhere.example"]')
    replayed = await fixed.pipeline.replay(bad.delivery_id)
    assert replayed is not None and replayed.status is DeliveryStatus.PROCESSED


async def test_without_email_from_any_sender_is_taken_and_it_is_said_once(
        services: Callable[[str], Services], caplog: pytest.LogCaptureFixture) -> None:
    ctx = services("[]")
    for n in (1, 2):
        assert (await process(ctx, mail(f"sender{n}@any.example", n))).status is (
            DeliveryStatus.PROCESSED)
    said = [r.getMessage() for r in caplog.records if "alert mail" in r.getMessage()]
    assert said == ["datto alert mail is taken from any sender (this one: "
                    "sender1@any.example): set [datto] email_from to your account's sender "
                    "address"]


def test_email_from_takes_addresses_only(make_config: Callable[..., Config]) -> None:
    with pytest.raises(Exception, match="is not a mail address"):
        make_config('[datto]\nemail_from = ["Datto RMM <rmm@msp.example>"]\n')
