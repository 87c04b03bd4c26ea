"""The administration routes over the API, on both backends: the rules test (nothing stored),
the webhook set-up (never a secret in the answer) with each vendor's last delivery, and sync
preview and run against the fake Syncro. Every response is validated against the OpenAPI
document (tests/api_client.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daemon.config import Config
from daemon.http.api_admin import MASK
from daemon.http.app import create_app
from daemon.rules.explain import explain_message
from daemon.service.wiring import ROUTES, Services, build_services
from daemon.store.database import Database
from daemon.store.models import Customer, Delivery, SyncRun
from tests.api_client import TOKEN, Api
from tests.fakes.syncro import SyncroFake
from tests.helpers import table_counts

MAIL = Path(__file__).resolve().parents[1] / "fixtures/mail"
# Characters that URL quoting changes, so a quoted copy of the secret would show too.
DATTO_SECRET = "datto/secret+with=chars-0123456789"
SYNCRO_TOKEN = "syncro token&with?chars-0123456789"


@pytest.fixture
async def start(aiohttp_client: Callable[..., Any], make_config: Callable[..., Config],
                db: Database, db_url: str) -> AsyncIterator[Callable[..., Any]]:
    """start(extra_toml) -> Api over a fresh app with that configuration."""
    started: list[Services] = []

    async def make(extra: str = "") -> Api:
        config = make_config(f'[api]\ntokens = ["{TOKEN}"]\n' + extra, db_url=db_url)
        ctx = build_services(config, db)
        started.append(ctx)
        return Api(await aiohttp_client(create_app(ctx.http, ROUTES)), ctx)
    yield make
    for ctx in started:
        await ctx.rmm.close()


async def deliveries(db: Database) -> int:
    return await db.read(lambda s: s.scalar(select(func.count()).select_from(Delivery)) or 0)


# --- POST /api/rules/test ------------------------------------------------------------------

async def test_rules_test_answers_the_cli_report_and_stores_nothing(
        start: Callable[..., Any]) -> None:
    api = await start()
    raw = (MAIL / "datto-alert-disk-plain.eml").read_bytes()
    status, report = await api.call("POST", "/api/rules/test",
                                    body={"message": raw.decode("utf-8")})
    assert status == 200, report
    assert report == json.loads(json.dumps(explain_message(api.ctx.rules.rules, raw)))
    assert report["error"] is None and report["event"]["action"] == "raise"
    assert report["trace"]["decided_by"] is not None
    status, garbage = await api.call("POST", "/api/rules/test",
                                     body={"message": "no headers, no alert"})
    assert status == 200 and garbage["event"] is None
    assert await deliveries(api.ctx.db) == 0


BAD_BODIES = [
    (b'{}', "application/json", 422, "'message'"),
    (b'{"message": 5}', "application/json", 422, "'message'"),
    (b'{"message": "  "}', "application/json", 422, "'message'"),
    (b'{"message": "x", "rules": "[]"}', "application/json", 422, "unknown field(s): rules"),
    (b'["message"]', "application/json", 422, "JSON object"),
    (b'{"message": ', "application/json", 400, "malformed JSON"),
    (b'{"message": "\\ud800"}', "application/json", 400, "surrogate"),
    (b"message=x", "application/x-www-form-urlencoded", 415, "application/json"),
    (b'{"message": "' + b"a" * 5000 + b'"}', "application/json", 413, "too large"),
]


async def test_rules_test_refuses_bad_bodies(start: Callable[..., Any]) -> None:
    api = await start("[http]\nmax_body_bytes = 4096\n")
    for data, content_type, status, detail in BAD_BODIES:
        got, body = await api.call("POST", "/api/rules/test", data=data,
                                   headers={"Content-Type": content_type})
        assert got == status and detail in body["detail"], (data[:40], body)


# --- GET /api/webhooks/config ----------------------------------------------------------------

async def test_webhook_config_masks_every_secret_and_shows_the_last_delivery(
        start: Callable[..., Any]) -> None:
    api = await start(f'[datto]\nwebhook_secret = "{DATTO_SECRET}"\n'
                      f'[syncro]\nwebhook_token = "{SYNCRO_TOKEN}"\n')
    status, body = await api.call("GET", "/api/webhooks/config")
    assert status == 200
    text = json.dumps(body)
    for secret in (DATTO_SECRET, SYNCRO_TOKEN):
        for form in (secret, quote(secret, safe=""), quote(secret), json.dumps(secret)[1:-1]):
            assert form not in text
    datto, syncro = body["datto"], body["syncro"]
    assert datto["configured"] and datto["message"] is None
    assert datto["setup"]["alert_raised_payload"]["state"] == MASK
    assert datto["setup"]["url"].endswith("/api/notify/datto")
    assert syncro["setup"]["url"].endswith(f"/api/notify/syncro?token={MASK}")
    assert datto["last_delivery"] is None and syncro["last_delivery"] is None

    status, _ = await api.call("POST", "/api/notify/datto", auth=False, body={
        "alert_uid": "5e0c8b1a-7d2f-4c3e-9a6b-1f2e3d4c5b6a", "alert_resolved": "false",
        "state": DATTO_SECRET, "alert_message": "Disk C: 97% used",
        "device_hostname": "FS-ACME-01"})
    assert status == 201
    _, body = await api.call("GET", "/api/webhooks/config")
    last = body["datto"]["last_delivery"]
    assert (last["status"], last["outcome"], last["error"]) == ("processed", "opened", None)
    assert body["syncro"]["last_delivery"] is None


async def test_webhook_config_says_what_to_configure(start: Callable[..., Any]) -> None:
    api = await start()
    _, body = await api.call("GET", "/api/webhooks/config")
    for vendor, key in (("datto", "webhook_secret"), ("syncro", "webhook_token")):
        assert not body[vendor]["configured"] and body[vendor]["setup"] is None
        assert f"[{vendor}] {key} is not set" in body[vendor]["message"]
    open_syncro = await start('[syncro]\nwebhook_auth = "none"\n')
    _, body = await open_syncro.call("GET", "/api/webhooks/config")
    assert body["syncro"]["configured"] and "?token" not in body["syncro"]["setup"]["url"]
    assert "anyone who can reach this URL" in body["syncro"]["setup"]["warnings"][-1]


# --- POST /api/sync/{source}/preview|run ---------------------------------------------------

async def syncro_api(start: Callable[..., Any], aiohttp_server: Callable[..., Any],
                     fake: SyncroFake, entities: str = "customers = true\n") -> Api:
    url = (await aiohttp_server(fake.app)).make_url("/api/v1")
    return await start(f'[syncro]\napi_url = "{url}"\napi_key = "t"\n'
                       f'[sync.syncro]\n{entities}')


async def test_sync_preview_writes_nothing_then_run_applies_it(
        start: Callable[..., Any], aiohttp_server: Callable[..., Any]) -> None:
    fake = SyncroFake(api_key="t")
    for name in ("Acme Dental", "Harbor Vets"):
        fake.add_customer(name)
    api = await syncro_api(start, aiohttp_server, fake)
    status, preview = await api.call("POST", "/api/sync/syncro/preview")
    assert status == 200, preview
    assert (preview["preview"], preview["status"], preview["run_id"]) == (True, "ok", None)
    created = sorted(op["name"] for op in preview["operations"]
                     if (op["entity"], op["action"]) == ("customer", "create"))
    assert created == ["Acme Dental", "Harbor Vets"]
    assert set((await api.ctx.db.read(table_counts)).values()) == {0}  # not even a history row

    status, run = await api.call("POST", "/api/sync/syncro/run")
    assert status == 200 and run["status"] == "ok" and "operations" not in run
    assert run["counts"]["customer.create"] == 2
    names = await api.ctx.db.read(lambda s: sorted(s.scalars(select(Customer.name))))
    assert names == ["Acme Dental", "Harbor Vets"]
    _, runs = await api.call("GET", "/api/sync/runs")
    assert [(r["id"], r["trigger"], r["status"]) for r in runs["items"]] == [
        (run["run_id"], "api", "ok")]


async def test_sync_refusals(start: Callable[..., Any], aiohttp_server: Callable[..., Any]
                             ) -> None:
    api = await syncro_api(start, aiohttp_server, SyncroFake(api_key="t"))
    status, body = await api.call("POST", "/api/sync/autotask/run", documented=False)
    assert (status, body["error"]) == (404, "not_found")
    status, body = await api.call("POST", "/api/sync/datto/preview")
    assert status == 409 and body["detail"] == "[datto] API credentials are not configured"
    async with api.ctx.db.exclusive("sync") as got:  # as another instance's run would
        assert got
        status, body = await api.call("POST", "/api/sync/syncro/run")
    assert status == 409 and "another sync is running" in body["detail"]
    nothing = await syncro_api(start, aiohttp_server, SyncroFake(api_key="t"), entities="")
    status, body = await nothing.call("POST", "/api/sync/syncro/run")
    assert status == 409 and "nothing to sync" in body["detail"]

    def runs(session: Session) -> int:
        return session.scalar(select(func.count()).select_from(SyncRun)) or 0
    assert await api.ctx.db.read(runs) == 0
