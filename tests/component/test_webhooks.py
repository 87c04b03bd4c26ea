"""The webhook routes through aiohttp's test client (responses validated against the OpenAPI
document), and the twin dedupe with the email copy of the same alert."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from daemon.config import Config
from daemon.http.app import create_app
from daemon.service.wiring import ROUTES, build_services
from daemon.store.database import Database
from daemon.store.models import Alert, Delivery, Ticket
from daemon.webhooks import datto, syncro
from tests.api_client import Api
from tests.fakes.syncro import SyncroFake
from tests.webhook_samples import (
    CONFIG,
    DATTO_SECRET,
    SAMPLE,
    SYNCRO_TOKEN,
    UID,
    syncro_body,
)


@pytest.fixture
async def hooks(aiohttp_client: Callable[..., Any], make_config: Callable[..., Config],
                db: Database, db_url: str) -> Api:
    config = make_config(CONFIG, db_url=db_url)
    ctx = build_services(config, db)
    return Api(await aiohttp_client(create_app(ctx.http, ROUTES)), ctx)


def datto_body(resolved: bool = False, uid: str = UID, **extra: Any) -> dict[str, Any]:
    return {"alert_uid": uid, "alert_resolved": "true" if resolved else "false",
            "state": DATTO_SECRET, "alert_message": "Disk C: 97% used",
            "alert_priority": "High", "alert_category": "Disk Usage",
            "device_hostname": "FS-ACME-01", "device_uid": "0b1c2d3e-aaaa-bbbb-cccc-0123456789ab",
            "site_name": "Acme Dental", "site_uid": "9f8e7d6c-aaaa-bbbb-cccc-0123456789ab",
            "platform": "merlot", **extra}


async def post_syncro(hooks: Api, body: Any, token: str | None = SYNCRO_TOKEN,
                      **kwargs: Any) -> tuple[int, Any]:
    params = {"token": token} if token is not None else None
    return await hooks.call("POST", "/api/notify/syncro", body=body, auth=False, params=params,
                            **kwargs)


async def post_datto(hooks: Api, body: Any, **kwargs: Any) -> tuple[int, Any]:
    return await hooks.call("POST", "/api/notify/datto", body=body, auth=False, **kwargs)


async def count(db: Database, model: type, *where: Any) -> int:
    query = select(func.count()).select_from(model).where(*where)
    return int(await db.read(lambda s: s.scalar(query) or 0))


async def ticket_of(db: Database, source: str, uid: str) -> Ticket:
    query = select(Ticket).join(Alert, Ticket.alert_id == Alert.id).where(
        Alert.source == source, Alert.uid == uid)
    ticket = await db.read(lambda s: s.scalars(query).one())
    assert isinstance(ticket, Ticket)
    return ticket


def auth_failures(hooks: Api, realm: str) -> float:
    value = hooks.ctx.metrics.registry.get_sample_value(
        "alertd_auth_failures_total", {"realm": realm})
    return value or 0.0


def alertd_log(caplog: pytest.LogCaptureFixture) -> str:
    """What alertd itself logged (the test server's access log prints URLs; alertd runs
    without one)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("daemon"))


# --- Syncro ----------------------------------------------------------------------------------


async def test_syncro_sample_with_the_right_token_makes_one_ticket(hooks: Api) -> None:
    status, body = await post_syncro(hooks, SAMPLE)
    assert status == 201, body
    assert [e["outcome"] for e in body["events"]] == ["opened"]
    ticket = await ticket_of(hooks.ctx.db, "syncro", "501234567")
    assert ticket.status == "open"
    assert ticket.summary == "FS-ACME-01: Low Hd Space Trigger"
    assert "Acme Dental | Main Office" in ticket.details
    alert = await hooks.ctx.db.read(lambda s: s.scalars(select(Alert)).one())
    assert (alert.device, alert.customer, alert.channels) == (
        "FS-ACME-01", "Acme Dental | Main Office", ["webhook"])


async def test_syncro_stores_no_remote_access_secret(hooks: Api) -> None:
    await post_syncro(hooks, SAMPLE)
    delivery = await hooks.ctx.db.read(lambda s: s.scalars(select(Delivery)).one())
    stored = json.loads(delivery.payload)
    text = delivery.payload.decode()
    assert "not-a-real-secret" not in text and "splashtop" not in text
    assert "html" not in stored and "properties" not in stored["attributes"]["customer"]
    properties = stored["attributes"]["asset"]["properties"]
    assert properties["model"] == "PowerEdge T150"
    assert properties["kabuto_information"]["last_user"] == "ACME\\dana"
    assert set(properties) <= set(syncro.ASSET_PROPERTY_KEYS)
    assert SYNCRO_TOKEN not in text and SYNCRO_TOKEN not in json.dumps(delivery.meta)


@pytest.mark.parametrize("token", [None, "wrong-token", SYNCRO_TOKEN[:-1], ""])
async def test_syncro_wrong_or_missing_token_is_401_and_stores_nothing(
        hooks: Api, token: str | None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    status, body = await post_syncro(hooks, SAMPLE, token=token)
    assert status == 401 and body["error"] == "unauthorized"
    assert "?token=" in body["detail"]
    assert await count(hooks.ctx.db, Delivery) == 0
    assert auth_failures(hooks, "syncro_webhook") == 1
    assert SYNCRO_TOKEN not in alertd_log(caplog)
    if token:
        assert token not in body["detail"] and token not in alertd_log(caplog)


@pytest.mark.parametrize("resolved", [True, "true", "TRUE", " true "])
async def test_syncro_resolved_as_boolean_or_string_closes_the_ticket(
        hooks: Api, resolved: Any) -> None:
    assert (await post_syncro(hooks, syncro_body(False)))[0] == 201
    status, body = await post_syncro(hooks, syncro_body(resolved))
    assert status == 201, body
    assert [e["outcome"] for e in body["events"]] == ["resolved"]
    ticket = await ticket_of(hooks.ctx.db, "syncro", "501234567")
    assert (ticket.status, ticket.closed_by) == ("closed", "upstream:syncro")


async def test_syncro_resolved_string_false_raises(hooks: Api) -> None:
    status, body = await post_syncro(hooks, syncro_body("false"))
    assert status == 201 and body["events"][0]["outcome"] == "opened"


async def test_syncro_auto_resolved_description_resolves(hooks: Api) -> None:
    await post_syncro(hooks, syncro_body(False))
    status, body = await post_syncro(hooks, syncro_body(
        None, description="Low Hd Space Trigger - auto resolved"))
    assert status == 201 and body["events"][0]["outcome"] == "resolved"


async def test_syncro_id_from_link_and_missing_customer(hooks: Api) -> None:
    body = syncro_body()
    del body["attributes"]["id"]
    del body["attributes"]["customer"]
    status, result = await post_syncro(hooks, body)
    assert status == 201, result
    alert = await hooks.ctx.db.read(lambda s: s.scalars(select(Alert)).one())
    assert (alert.uid, alert.customer) == ("501234567", None)


async def test_syncro_identical_retry_changes_nothing(hooks: Api) -> None:
    first = await post_syncro(hooks, SAMPLE)
    # The same JSON re-spaced and re-ordered is the same delivery.
    data = json.dumps(dict(reversed(list(SAMPLE.items()))), indent=2).encode()
    status, body = await post_syncro(hooks, None, data=data,
                                     headers={"Content-Type": "application/json"})
    assert status == 200 and body["duplicate"] is True
    assert body["delivery_id"] == first[1]["delivery_id"]
    assert await count(hooks.ctx.db, Delivery) == 1
    alert = await hooks.ctx.db.read(lambda s: s.scalars(select(Alert)).one())
    assert alert.occurrences == 1


async def test_syncro_invalid_body_is_422_and_kept_as_rejected(hooks: Api) -> None:
    status, body = await post_syncro(hooks, {"text": "RMM Alert", "link": "https://x/y"})
    assert status == 422 and "'attributes'" in body["detail"]
    delivery = await hooks.ctx.db.read(lambda s: s.scalars(select(Delivery)).one())
    assert (delivery.status, delivery.channel, delivery.source) == (
        "rejected", "webhook", "syncro")
    assert "'attributes'" in (delivery.error or "")
    assert await count(hooks.ctx.db, Alert) == 0
    # An identical retry is still refused, and still one delivery.
    status, body = await post_syncro(hooks, {"text": "RMM Alert", "link": "https://x/y"})
    assert status == 422 and "rejected delivery" in body["detail"]
    assert await count(hooks.ctx.db, Delivery) == 1


async def test_syncro_auth_none_accepts_without_token(
        aiohttp_client: Callable[..., Any], make_config: Callable[..., Config], db: Database,
        db_url: str) -> None:
    config = make_config('[syncro]\nwebhook_auth = "none"\n', db_url=db_url)
    hooks = Api(await aiohttp_client(create_app(build_services(config, db).http, ROUTES)),
                build_services(config, db))
    status, body = await post_syncro(hooks, SAMPLE, token=None)
    assert status == 201, body


async def test_webhooks_without_a_configured_secret_are_403(
        aiohttp_client: Callable[..., Any], make_config: Callable[..., Config], db: Database,
        db_url: str) -> None:
    ctx = build_services(make_config("", db_url=db_url), db)
    hooks = Api(await aiohttp_client(create_app(ctx.http, ROUTES)), ctx)
    status, body = await post_syncro(hooks, SAMPLE, token="anything")
    assert status == 403 and "webhook_token is not set" in body["detail"]
    status, body = await post_datto(hooks, datto_body())
    assert status == 403 and "webhook_secret is not set" in body["detail"]
    assert await count(db, Delivery) == 0
    assert auth_failures(hooks, "datto_webhook") == 1


# --- errors common to both routes ------------------------------------------------------------


@pytest.mark.parametrize("route", ["syncro", "datto"])
async def test_bad_requests_store_nothing(hooks: Api, route: str) -> None:
    params = {"token": SYNCRO_TOKEN if route == "syncro" else DATTO_SECRET}
    path = f"/api/notify/{route}"
    status, body = await hooks.call("POST", path, auth=False, params=params, data=b"{nope",
                                    headers={"Content-Type": "application/json"})
    assert status == 400 and "malformed JSON" in body["detail"]
    status, body = await hooks.call("POST", path, auth=False, params=params,
                                    data=b'{"text": "\\udc00"}',
                                    headers={"Content-Type": "application/json"})
    assert status == 400 and "surrogate" in body["detail"]
    status, body = await hooks.call("POST", path, auth=False, params=params, data=b"a=1",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415 and "application/json" in body["detail"]
    big = json.dumps({"text": "x" * (hooks.ctx.config.http.max_body_bytes + 1)}).encode()
    status, body = await hooks.call("POST", path, auth=False, params=params, data=big,
                                    headers={"Content-Type": "application/json"})
    assert status == 413 and body["error"] == "payload_too_large"
    status, body = await hooks.call("GET", path, auth=False, params=params, documented=False)
    assert status == 405 and body["error"] == "method_not_allowed"
    assert await count(hooks.ctx.db, Delivery) == 0


@pytest.mark.parametrize("route", ["syncro", "datto"])
async def test_storage_failure_answers_503(hooks: Api, route: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:  # the database refuses every write
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))
    monkeypatch.setattr(hooks.ctx.db, "write", broken)
    if route == "syncro":
        status, body = await post_syncro(hooks, SAMPLE)
    else:
        status, body = await post_datto(hooks, datto_body())
    assert status == 503 and body["error"] == "unavailable"


# --- Datto -----------------------------------------------------------------------------------


async def test_datto_raise_then_resolve(hooks: Api) -> None:
    status, body = await post_datto(hooks, datto_body(uid=UID.upper()))
    assert status == 201 and body["events"][0]["outcome"] == "opened", body
    ticket = await ticket_of(hooks.ctx.db, "datto", UID)  # GUIDs are keyed lower-case
    assert (ticket.status, ticket.priority, ticket.summary) == (
        "open", "High", "FS-ACME-01 - Disk C: 97% used")
    assert "Category: Disk Usage" in ticket.details and "Site: Acme Dental" in ticket.details
    status, body = await post_datto(hooks, datto_body(resolved=True))
    assert status == 201 and body["events"][0]["outcome"] == "resolved"
    ticket = await ticket_of(hooks.ctx.db, "datto", UID)
    assert ticket.status == "closed"
    stored = await hooks.ctx.db.read(lambda s: s.scalars(select(Delivery.payload)).all())
    assert all(DATTO_SECRET.encode() not in payload for payload in stored)


async def test_datto_test_send_is_422_with_an_explanation_and_no_alert(hooks: Api) -> None:
    test_send = datto.payload_template(resolved=False, secret=DATTO_SECRET)
    status, body = await post_datto(hooks, test_send)
    assert status == 422
    assert "test send" in body["detail"] and "[alert_uid]" in body["detail"]
    assert "no alert was stored" in body["detail"]
    assert await count(hooks.ctx.db, Alert) == 0
    delivery = await hooks.ctx.db.read(lambda s: s.scalars(select(Delivery)).one())
    assert delivery.status == "rejected" and DATTO_SECRET.encode() not in delivery.payload


@pytest.mark.parametrize(("change", "detail"), [
    ({"state": "wrong"}, "wrong secret"),
    ({"state": None}, "missing secret"),
    ({"state": 12345}, "wrong secret"),
])
async def test_datto_wrong_or_missing_secret_is_401(hooks: Api, change: dict[str, Any],
                                                    detail: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = {k: v for k, v in {**datto_body(), **change}.items() if v is not None}
    status, answer = await post_datto(hooks, body)
    assert status == 401 and detail in answer["detail"]
    status, answer = await post_datto(hooks, datto_body(), params={"token": "wrong"})
    assert status == 401
    assert await count(hooks.ctx.db, Delivery) == 0
    assert auth_failures(hooks, "datto_webhook") == 2
    assert DATTO_SECRET not in alertd_log(caplog)


async def test_datto_secret_in_the_url_instead_of_the_body(hooks: Api) -> None:
    body = datto_body()
    del body["state"]
    status, answer = await post_datto(hooks, body, params={"token": DATTO_SECRET})
    assert status == 201, answer


async def test_datto_long_values_are_cut_to_fit(hooks: Api) -> None:
    status, body = await post_datto(hooks, datto_body(device_hostname="H" * 300,
                                                      site_name="S" * 300))
    assert status == 201, body
    alert = await hooks.ctx.db.read(lambda s: s.scalars(select(Alert)).one())
    assert (alert.device, alert.site) == ("H" * 255, "S" * 255)


async def test_datto_fields_are_mapped_by_config(hooks: Api) -> None:
    status, _ = await post_datto(hooks, datto_body(fields={
        "Client": "Acme Dental", "Ticket type": "Server alert", "Contract": "Gold"}))
    assert status == 201
    ticket = await ticket_of(hooks.ctx.db, "datto", UID)
    alert = await hooks.ctx.db.read(lambda s: s.scalars(select(Alert)).one())
    assert ticket.type == "Server alert" and alert.customer == "Acme Dental"
    assert "Contract: Gold" in ticket.details  # unmapped values land in the details


@pytest.mark.parametrize(("change", "reason"), [
    ({"alert_resolved": None}, "'alert_resolved' is missing"),
    ({"alert_resolved": "maybe"}, "'alert_resolved' must be"),
    ({"alert_uid": "12345"}, "must be a Datto alert GUID"),
    ({"alert_uid": None}, "'alert_uid' is missing"),
    ({"alert_uid": 12345}, "'alert_uid' must be a string"),
    ({"alert_mesage": "typo"}, "unknown field(s): alert_mesage"),
    ({"fields": ["a"]}, "'fields' must be a JSON object"),
    ({"alert_message": {"nested": 1}}, "'alert_message' must be a string"),
])
async def test_datto_invalid_bodies_are_422_and_kept(hooks: Api, change: dict[str, Any],
                                                     reason: str) -> None:
    body = {k: v for k, v in {**datto_body(), **change}.items() if v is not None}
    status, answer = await post_datto(hooks, body)
    assert status == 422 and reason in answer["detail"], answer
    delivery = await hooks.ctx.db.read(lambda s: s.scalars(select(Delivery)).one())
    assert delivery.status == "rejected" and reason in (delivery.error or "")
    assert await count(hooks.ctx.db, Alert) == 0


# --- twins: one alert, one ticket, whatever channel and order --------------------------------


def datto_mail(uid: str, resolved: bool = False) -> bytes:
    subject = (f"Resolved: Disk usage on FS-ACME-01 - Alert{{{uid}}}" if resolved
               else f"Alert on device: FS-ACME-01, reason Disk usage - Alert{{{uid}}}")
    return (f"From: rmm@example-msp.com\r\nTo: alerts@example-msp.com\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{uid}-{resolved}@x>\r\n\r\nbody\r\n").encode()


async def mail(hooks: Api, uid: str, resolved: bool = False) -> str:
    from daemon.core.events import Channel
    from daemon.intake.inbound import Inbound
    pipeline = hooks.ctx.pipeline
    accepted = await pipeline.submit(Inbound(
        channel=Channel.SMTP, dedupe_key=f"{uid}-{resolved}", payload=datto_mail(uid, resolved),
        content_type="message/rfc822"))
    result = await pipeline.process(accepted.delivery_id)
    assert result is not None and result.events, result
    return result.events[0].outcome


@pytest.mark.parametrize("order", [
    ["mail raise", "hook raise", "mail resolve", "hook resolve"],
    ["hook raise", "mail raise", "hook resolve", "mail resolve"],
    ["hook resolve", "mail raise", "hook raise", "mail resolve"],
    ["mail resolve", "hook raise", "mail raise", "hook resolve"],
    ["hook raise", "mail resolve", "mail raise"],
])
async def test_email_and_webhook_twins_end_the_same_in_any_order(hooks: Api,
                                                                 order: list[str]) -> None:
    for step in order:
        channel, action = step.split()
        resolved = action == "resolve"
        if channel == "mail":
            await mail(hooks, UID.upper(), resolved)  # the subject spells the GUID upper-case
        else:
            status, body = await post_datto(hooks, datto_body(resolved=resolved))
            assert status == 201, body
    alert = await hooks.ctx.db.read(lambda s: s.scalars(select(Alert)).one())
    assert alert.state == "resolved" and sorted(alert.channels) == ["smtp", "webhook"]
    ticket = await ticket_of(hooks.ctx.db, "datto", UID)
    assert (ticket.status, ticket.closed_by) == ("closed", "upstream:datto")
    assert await count(hooks.ctx.db, Ticket) == 1


async def test_a_failure_while_applying_keeps_the_delivery_for_a_retry(
        hooks: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-transaction intake falls back to storing the input alone: never lost."""
    def bug(*args: Any) -> None:
        raise RuntimeError("simulated bug in the lifecycle")
    with monkeypatch.context() as patch:
        patch.setattr(hooks.ctx.pipeline._transitions, "apply_event", bug)
        patch.setattr(hooks.ctx.pipeline._transitions, "open_new_alerts", bug)  # in a group
        status, body = await post_datto(hooks, datto_body())
    assert status == 202 and body["status"] == "received", body
    assert "simulated bug" in body["error"]
    assert await count(hooks.ctx.db, Alert) == 0
    # Not before its retry is due (the failed attempt set the time) ...
    assert await hooks.ctx.pipeline.process(body["delivery_id"]) is None
    await hooks.ctx.db.write(lambda s: s.execute(
        update(Delivery).values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))))
    result = await hooks.ctx.pipeline.process(body["delivery_id"])  # the retry, bug gone
    assert result is not None and result.events[0].outcome == "opened"
    assert (await ticket_of(hooks.ctx.db, "datto", UID)).status == "open"
    assert await count(hooks.ctx.db, Delivery) == 1


async def test_syncro_verify_webhooks_trusts_the_api_over_the_body(
        aiohttp_server: Callable[..., Any], aiohttp_client: Callable[..., Any],
        make_config: Callable[..., Config], db: Database, db_url: str) -> None:
    fake = SyncroFake(api_key="syncro-api-token")
    upstream = fake.add_alert(id=501234567)
    url = (await aiohttp_server(fake.app)).make_url("/api/v1")
    config = make_config(CONFIG.replace(
        "[syncro]\n", f'[syncro]\napi_url = "{url}"\napi_key = "syncro-api-token"\n'
                      "verify_webhooks = true\n"), db_url=db_url)
    ctx = build_services(config, db)
    try:
        hooks = Api(await aiohttp_client(create_app(ctx.http, ROUTES)), ctx)
        status, body = await post_syncro(hooks, syncro_body(resolved=False))
        assert status == 201 and [e["outcome"] for e in body["events"]] == ["opened"], body
        # Syncro resolved the alert; a later notification's body still says "not resolved".
        upstream["resolved"] = True
        status, body = await post_syncro(hooks, syncro_body(resolved=False))
        assert status == 201 and [e["outcome"] for e in body["events"]] == ["resolved"], body
        assert (await ticket_of(db, "syncro", "501234567")).status == "closed"
        assert len(fake.calls_to("GET", "/api/v1/rmm_alerts/501234567")) == 2
        # The API cannot be asked (here: the token lost its permission): the body stands.
        second = fake.add_alert(id=501234568)
        second["resolved"] = True
        fake.deny("/api/v1/rmm_alerts/501234568")
        status, body = await post_syncro(hooks, syncro_body(resolved=False, id=501234568))
        # A raise (as the body says), of the condition whose ticket closed a moment ago.
        assert status == 201 and [e["outcome"] for e in body["events"]] == ["reopened"], body
    finally:
        await ctx.rmm.close()
