"""The HTTP API through aiohttp's test client; every /api response is checked against the
OpenAPI document the app serves, so the document and the behaviour cannot drift apart."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from daemon.config import Config
from daemon.http.app import create_app
from daemon.http.openapi import openapi_document
from daemon.service.wiring import ROUTES, build_services
from daemon.store.database import Database
from daemon.store.models import Delivery, OutboxAction
from tests.api_client import AUTH, TOKEN, Api

UID = "2b0a1e7c-5a0e-4f7e-8d2a-6d1b8f3c9e01"


@pytest.fixture
async def api(aiohttp_client: Callable[..., Any], make_config: Callable[..., Config],
              db: Database, db_url: str) -> Api:
    config = make_config(f'[api]\ntokens = ["{TOKEN}"]\n', db_url=db_url)
    ctx = build_services(config, db)
    client = await aiohttp_client(create_app(ctx.http, ROUTES))
    return Api(client, ctx)


async def raise_alert(api: Api, uid: str = UID, action: str = "raise", **extra: Any
                      ) -> dict[str, Any]:
    status, body = await api.call("POST", "/api/alerts", body={
        "source": "datto", "uid": uid, "action": action, "device": "FS-ACME-01",
        "message": "Disk C: 97% full", **extra})
    assert status == 201, body
    return body


# --- auth and plumbing ---------------------------------------------------------------------

PROTECTED = [("GET", "/api/tickets"), ("GET", "/api/tickets/1"), ("POST", "/api/tickets/1/close"),
             ("POST", "/api/tickets/1/notes"), ("GET", "/api/alerts"), ("POST", "/api/alerts"),
             ("GET", "/api/alerts/1"), ("GET", "/api/deliveries"), ("GET", "/api/deliveries/1"),
             ("POST", "/api/deliveries/1/replay")]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_api_refuses_without_or_with_wrong_token(api: Api, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = await api.client.request(method, path, headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        body = await response.json()
        assert body["error"] == "unauthorized" and "token" in body["detail"]
    count = select(func.count()).select_from(Delivery)
    assert await api.ctx.db.read(lambda s: s.scalar(count)) == 0


async def test_every_api_route_is_documented_and_every_documented_route_exists(api: Api) -> None:
    document = openapi_document("http://x")
    documented = {(path, method.upper()) for path, ops in document["paths"].items()
                  for method in ops}
    served = {(r.resource.canonical, r.method) for r in api.client.app.router.routes()
              if r.resource is not None and r.resource.canonical.startswith("/api")
              and r.method != "HEAD"}
    assert served == documented


async def test_every_lazily_loaded_route_names_a_handler(api: Api) -> None:
    """Routes import their handler's module at the first request (`lazy_handler`): a wrong
    name fails here, not at a user's first click."""
    from daemon.console.browse import ENTITIES
    from daemon.console.routes import BROWSE_ENTITIES

    lazy = [route.handler for route in api.client.app.router.routes()
            if hasattr(route.handler, "load")]
    assert len(lazy) >= 50  # the API's and the console's
    for handler in lazy:
        loaded = handler.load()
        assert inspect.iscoroutinefunction(loaded), handler.__name__
    assert tuple(ENTITIES) == BROWSE_ENTITIES
    routed = {(route.method, route.resource.canonical)
              for route in api.client.app.router.routes() if route.resource is not None}
    assert [path for method, path in routed if method == "GET"
            and ("HEAD", path) not in routed] == []  # HEAD is answered as GET is


async def test_health_ready_metrics(api: Api) -> None:
    status, body = await api.call("GET", "/healthz", auth=False)
    assert (status, body) == (200, {"status": "ok"})
    status, body = await api.call("GET", "/readyz", auth=False)
    assert status == 503 and body["checks"] == {"database": "ok", "listeners": "not bound"}
    api.ctx.readiness.listeners["http"] = True
    status, body = await api.call("GET", "/readyz", auth=False)
    assert (status, body["status"]) == (200, "ready")
    await raise_alert(api)
    status, text = await api.call("GET", "/metrics", auth=False)
    assert status == 200
    assert b'alertd_lifecycle_events_total{outcome="opened",source="datto"} 1.0' in text
    assert b'alertd_tickets_opened_total{source="datto"} 1.0' in text


async def test_unknown_route_and_method_answer_json(api: Api) -> None:
    status, body = await api.call("GET", "/api/nothing-here", documented=False)
    assert status == 404 and body["error"] == "not_found"
    response = await api.client.delete("/api/tickets", headers=AUTH)
    assert response.status == 405
    assert (await response.json())["error"] == "method_not_allowed"


# --- ingestion -----------------------------------------------------------------------------

async def test_raise_creates_alert_and_ticket_and_duplicate_changes_nothing(api: Api) -> None:
    first = await raise_alert(api)
    assert first["status"] == "processed"
    [event] = first["events"]
    assert event["outcome"] == "opened" and event["ticket_id"]
    status, again = await api.call("POST", "/api/alerts", body={
        "source": "datto", "uid": UID, "action": "raise", "device": "FS-ACME-01",
        "message": "Disk C: 97% full"})
    assert status == 200
    assert again["duplicate"] and again["delivery_id"] == first["delivery_id"]
    status, listing = await api.call("GET", "/api/alerts", params={"uid": UID})
    [alert] = listing["items"]
    assert alert["occurrences"] == 1 and alert["ticket_id"] == event["ticket_id"]


async def test_idempotency_key_dedupes_and_refuses_a_different_body(api: Api) -> None:
    key = {"Idempotency-Key": "evt-1"}
    event = {"source": "datto", "uid": "a", "action": "raise"}
    status, first = await api.call("POST", "/api/alerts", headers=key, body=event)
    assert status == 201
    status, again = await api.call("POST", "/api/alerts", headers=key, body=event)
    assert status == 200 and again["duplicate"]
    assert again["delivery_id"] == first["delivery_id"]
    status, body = await api.call("POST", "/api/alerts", headers=key,
                                  body={**event, "message": "a different event"})
    assert status == 409 and "different body" in body["detail"]


async def test_the_raw_body_is_stored_as_received(api: Api) -> None:
    raw = b'{ "uid": "spaced",\n  "action": "raise", "source": "datto" }'
    status, result = await api.call("POST", "/api/alerts", data=raw,
                                    headers={"Content-Type": "application/json"})
    assert status == 201
    _, delivery = await api.call("GET", f"/api/deliveries/{result['delivery_id']}")
    assert delivery["payload"] == raw.decode()


async def test_invalid_event_is_422_and_kept_as_rejected(api: Api) -> None:
    status, body = await api.call("POST", "/api/alerts",
                                  body={"source": "datto", "uid": "x", "action": "explode"})
    assert status == 422
    assert "'action' must be one of: raise, resolve" in body["detail"]
    status, listing = await api.call("GET", "/api/deliveries", params={"status": "rejected"})
    [delivery] = listing["items"]
    assert delivery["error"] == "'action' must be one of: raise, resolve"
    status, alerts = await api.call("GET", "/api/alerts")
    assert alerts["items"] == []


@pytest.mark.parametrize(("data", "content_type", "status", "error"), [
    (b"{not json", "application/json", 400, "bad_request"),
    # Half a surrogate pair is no character: no text column or UTF-8 payload can hold it.
    (b'{"source": "datto", "uid": "x", "action": "raise", "message": "\\ud800"}',
     "application/json", 400, "bad_request"),
    (b"source=datto", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b'{"x": "' + b"a" * 2_000_000 + b'"}', "application/json", 413, "payload_too_large"),
])
async def test_bad_bodies_store_nothing(api: Api, data: bytes, content_type: str, status: int,
                                        error: str) -> None:
    got, body = await api.call("POST", "/api/alerts", data=data,
                               headers={"Content-Type": content_type})
    assert (got, body["error"]) == (status, error)
    count = select(func.count()).select_from(Delivery)
    assert await api.ctx.db.read(lambda s: s.scalar(count)) == 0


async def test_a_surrogate_pair_is_one_character(api: Api) -> None:
    data = b'{"source": "datto", "uid": "pair", "action": "raise", "message": "\\ud83d\\ude00"}'
    status, body = await api.call("POST", "/api/alerts", data=data,
                                  headers={"Content-Type": "application/json"})
    assert status == 201, body
    status, alert = await api.call("GET", f"/api/alerts/{body['events'][0]['alert_id']}")
    assert alert["message"] == "\U0001f600"


async def test_storage_failure_answers_503(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any) -> Any:  # the database refuses every write
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))
    monkeypatch.setattr(api.ctx.db, "write", broken)
    status, body = await api.call("POST", "/api/alerts",
                                  body={"source": "datto", "uid": "z", "action": "raise"})
    assert status == 503 and body["error"] == "unavailable"


# --- tickets -------------------------------------------------------------------------------

async def test_ticket_json_carries_its_alert_and_filters_work(api: Api) -> None:
    await raise_alert(api)
    await api.call("POST", "/api/alerts", body={"source": "syncro", "uid": 501234567,
                                                "action": "raise"})
    status, listing = await api.call("GET", "/api/tickets", params={"alert_uid": UID})
    assert status == 200
    [ticket] = listing["items"]
    assert ticket["status"] == "open"
    assert ticket["alert"]["source"] == "datto"
    assert ticket["alert"]["uid"] == UID and ticket["alert"]["state"] == "open"
    assert ticket["summary"] == "FS-ACME-01 - Disk C: 97% full"
    _, syncro = await api.call("GET", "/api/tickets", params={"source": "syncro"})
    assert [t["alert"]["uid"] for t in syncro["items"]] == ["501234567"]
    _, closed = await api.call("GET", "/api/tickets", params={"status": "closed"})
    assert closed["items"] == []
    status, body = await api.call("GET", "/api/tickets", params={"status": "pending"})
    assert status == 400 and "'status' must be one of: open, closed" in body["detail"]


async def test_close_resolves_alert_and_queues_upstream_once(api: Api) -> None:
    ticket_id = (await raise_alert(api))["events"][0]["ticket_id"]
    status, ticket = await api.call("POST", f"/api/tickets/{ticket_id}/close",
                                    body={"note": "disk cleaned", "actor": "dana"})
    assert status == 200
    assert ticket["status"] == "closed" and ticket["closed_by"] == "agent:dana"
    assert ticket["alert"]["state"] == "resolved"
    assert ticket["notes"][-1]["body"] == "disk cleaned"
    status, body = await api.call("POST", f"/api/tickets/{ticket_id}/close")
    assert status == 409 and body["error"] == "conflict"
    # The upstream's own "resolved" afterwards is absorbed.
    echo = await raise_alert(api, action="resolve")
    assert echo["events"][0]["outcome"] == "already_resolved"


async def test_notes_and_missing_tickets(api: Api) -> None:
    ticket_id = (await raise_alert(api))["events"][0]["ticket_id"]
    status, ticket = await api.call("POST", f"/api/tickets/{ticket_id}/notes",
                                    body={"body": "called the customer"})
    assert status == 201 and ticket["notes"][-1]["author"] == "agent:api"
    status, body = await api.call("POST", f"/api/tickets/{ticket_id}/notes", body={"body": " "})
    assert (status, body["detail"]) == (422, "'body' must not be empty")
    status, body = await api.call("POST", f"/api/tickets/{ticket_id}/close",
                                  body={"notes": "typo'd key"})
    assert (status, body["detail"]) == (422, "unknown field(s): notes")
    status, body = await api.call("POST", f"/api/tickets/{ticket_id}/close", body={"note": 5})
    assert (status, body["detail"]) == (422, "'note' must be a string")
    _, ticket = await api.call("GET", f"/api/tickets/{ticket_id}")
    assert ticket["status"] == "open"
    for method, path in (("GET", "/api/tickets/999"), ("POST", "/api/tickets/999/close"),
                         ("GET", "/api/alerts/999"), ("GET", "/api/deliveries/999"),
                         ("GET", "/api/tickets/abc")):
        status, body = await api.call(method, path)
        assert status == 404 and body["error"] == "not_found", path


# --- deliveries ----------------------------------------------------------------------------

async def test_delivery_show_and_replay(api: Api) -> None:
    processed = await raise_alert(api)
    status, delivery = await api.call("GET", f"/api/deliveries/{processed['delivery_id']}")
    assert status == 200 and delivery["status"] == "processed"
    assert json.loads(delivery["payload"])["uid"] == UID
    status, body = await api.call("POST", f"/api/deliveries/{processed['delivery_id']}/replay")
    assert status == 409 and "processed already" in body["detail"]

    await api.call("POST", "/api/alerts", body={"source": "datto", "action": "raise"})
    _, rejected = await api.call("GET", "/api/deliveries", params={"status": "rejected"})
    rejected_id = rejected["items"][0]["id"]
    status, body = await api.call("POST", f"/api/deliveries/{rejected_id}/replay")
    assert status == 200 and body["status"] == "failed" and "'uid'" in body["error"]


async def test_listing_pages_by_id(api: Api) -> None:
    for n in range(5):
        await raise_alert(api, uid=f"uid-{n}")
    _, first = await api.call("GET", "/api/alerts", params={"limit": "2"})
    assert [a["uid"] for a in first["items"]] == ["uid-4", "uid-3"]
    _, second = await api.call("GET", "/api/alerts", params={
        "limit": "2", "before_id": str(first["next_before_id"])})
    assert [a["uid"] for a in second["items"]] == ["uid-2", "uid-1"]
    for limit, rule in (("0", "'limit' must be at least 1"), ("1001", "'limit' must be at most 1000"),
                        ("", "'limit' must be a whole number")):
        status, body = await api.call("GET", "/api/alerts", params={"limit": limit})
        assert (status, body["error"]) == (400, "bad_request") and rule in body["detail"]


async def test_a_retried_bad_request_is_still_refused(api: Api) -> None:
    bad = {"source": "datto", "uid": "x", "action": "explode"}
    for _ in range(2):
        status, body = await api.call("POST", "/api/alerts", body=bad)
        assert status == 422 and "'action'" in body["detail"]


async def test_ids_and_paging_take_ascii_digits_only(api: Api) -> None:
    status, _ = await api.call("GET", "/api/tickets/%C2%B2", documented=False)
    assert status == 404
    status, body = await api.call("GET", "/api/alerts",
                                  params={"before_id": "99999999999999999999"})
    assert status == 400 and "'before_id' must be a whole number" in body["detail"]


async def test_outbox_listing_retry_and_drop(api: Api) -> None:
    # No RMM credentials here: the rows wait as pending, so the test can act on them.
    uids = ["0d4c9a52-1f0b-4c39-9c8e-3a1b2c3d4e01", "0d4c9a52-1f0b-4c39-9c8e-3a1b2c3d4e02"]
    for uid in uids:
        ticket_id = (await raise_alert(api, uid))["events"][0]["ticket_id"]
        assert (await api.call("POST", f"/api/tickets/{ticket_id}/close"))[0] == 200
    status, listing = await api.call("GET", "/api/outbox", params={"status": "pending"})
    assert status == 200
    rows = {row["target"]: row for row in listing["items"]}
    assert sorted(rows) == uids
    assert {(r["action"], r["source"], r["attempts"]) for r in rows.values()} == {
        ("resolve_alert", "datto", 0)}
    first, second = rows[uids[0]]["id"], rows[uids[1]]["id"]

    status, dropped = await api.call("POST", f"/api/outbox/{first}/drop")
    assert status == 200 and dropped["status"] == "dropped"
    status, body = await api.call("POST", f"/api/outbox/{first}/retry")
    assert status == 409 and "dropped" in body["detail"]

    def make_dead(session: Any) -> None:
        row = session.get(OutboxAction, second)
        row.status, row.attempts, row.last_error = "dead", 10, "datto: 403: permission"
    await api.ctx.db.write(make_dead)
    status, retried = await api.call("POST", f"/api/outbox/{second}/retry")
    assert status == 200 and (retried["status"], retried["attempts"]) == ("pending", 0)
    assert (await api.call("GET", "/api/outbox", params={"status": "dropped"}))[1]["items"][0][
        "id"] == first
    status, body = await api.call("POST", "/api/outbox/999999/drop")
    assert status == 404 and body["detail"] == "outbox row not found"
    status, _ = await api.call("GET", "/api/outbox", params={"status": "sent"})
    assert status == 400
