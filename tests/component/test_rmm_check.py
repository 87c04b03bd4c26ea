"""`check_datto`/`check_syncro` and `/api/rmm/{name}/test` tell apart an unreachable host, a
wrong platform or URL, bad credentials and a missing permission (named), against the fake
RMMs."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from daemon.config import Config
from daemon.http.app import create_app
from daemon.rmm.check import CheckResult, check_datto, check_syncro
from daemon.rmm.datto import DattoClient, DattoLimits
from daemon.rmm.syncro import SyncroClient, SyncroLimits
from daemon.service.wiring import ROUTES, build_services
from daemon.store.database import Database
from tests.api_client import TOKEN, Api
from tests.fakes.datto import DattoFake
from tests.fakes.syncro import SyncroFake


def closed_port_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def html_page(request: web.Request) -> web.Response:
    return web.Response(text="<html><body>Welcome to nginx!</body></html>",
                        content_type="text/html")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def datto_check(session: aiohttp.ClientSession, url: str, secret: str = "s"  # noqa: S107
                      ) -> CheckResult:
    return await check_datto(DattoClient(session, url, "k", secret, limits=DattoLimits(
        backoff_base_s=0.01, retries=1)))


async def syncro_check(session: aiohttp.ClientSession, url: str, key: str = "t") -> CheckResult:
    return await check_syncro(SyncroClient(session, url, key, limits=SyncroLimits(
        backoff_base_s=0.01, retries=1)))


async def test_datto_check_tells_each_failure_apart(
        aiohttp_server: Callable[..., Any], session: aiohttp.ClientSession) -> None:
    fake = DattoFake(api_key="k", api_secret="s")
    url = str((await aiohttp_server(fake.app)).make_url(""))
    other_app = web.Application()
    other_app.router.add_route("*", "/{tail:.*}", html_page)
    not_datto = str((await aiohttp_server(other_app)).make_url(""))

    ok = await datto_check(session, url)
    assert (ok.status, ok.ok) == ("ok", True)
    assert "Example MSP" in ok.message and all(p.ok for p in ok.probes)

    unreachable = await datto_check(session, closed_port_url())
    assert unreachable.status == "unreachable"
    assert (await datto_check(session, not_datto)).status == "wrong_endpoint"

    fake.wrong_platform = True
    wrong_platform = await datto_check(session, url)
    assert wrong_platform.status == "wrong_endpoint" and "platform" in wrong_platform.message
    fake.wrong_platform = False

    refused = await datto_check(session, url, secret="not-the-secret")
    assert refused.status == "bad_credentials"
    assert "not-the-secret" not in json.dumps(refused.as_json())

    assert [p.what for p in ok.probes] == [
        "alerts (read)", "sites (read)", "devices (read)", "alerts (resolve)"]
    # An answer that is neither "not found" nor a refusal proves nothing: shown, not held
    # against the key.
    fake.fail_path("POST", r"/resolve$", 400)
    unsure = await datto_check(session, url)
    assert unsure.status == "ok"
    assert unsure.probes[-1].ok and unsure.probes[-1].detail.startswith("not confirmed: ")
    fake.clear_failures()
    fake.deny(r"^/api/v2/account/devices")
    fake.deny(r"^/api/v2/alert/[^/]+/resolve")
    missing = await datto_check(session, url)
    assert missing.status == "missing_permission"
    assert [p.what for p in missing.probes if not p.ok] == ["devices (read)",
                                                             "alerts (resolve)"]
    assert "devices (read), alerts (resolve)" in missing.message


async def test_syncro_check_tells_each_failure_apart(
        aiohttp_server: Callable[..., Any], session: aiohttp.ClientSession) -> None:
    fake = SyncroFake(api_key="t")
    base = (await aiohttp_server(fake.app)).make_url("")
    url = str(base / "api/v1")
    other_app = web.Application()
    other_app.router.add_route("*", "/{tail:.*}", html_page)
    not_syncro = str((await aiohttp_server(other_app)).make_url("/api/v1"))

    ok = await syncro_check(session, url)
    assert ok.status == "ok" and all(p.ok for p in ok.probes)
    assert (await syncro_check(session, closed_port_url() + "/api/v1")).status == "unreachable"
    wrong_path = await syncro_check(session, str(base / "api/v2"))  # /me is 404 there
    assert wrong_path.status == "wrong_endpoint" and "api_url" in wrong_path.message
    assert (await syncro_check(session, not_syncro)).status == "wrong_endpoint"
    refused = await syncro_check(session, url, key="not-the-token")
    assert refused.status == "bad_credentials"
    assert "not-the-token" not in json.dumps(refused.as_json())

    assert [p.what for p in ok.probes][-1] == "RMM Alerts - resolve (DELETE)"
    fake.deny("/api/v1/customer_assets")
    fake.deny("/api/v1/rmm_alerts/0")
    missing = await syncro_check(session, url)
    assert missing.status == "missing_permission"
    assert [p.what for p in missing.probes if not p.ok] == ["Assets - List/Search",
                                                             "RMM Alerts - resolve (DELETE)"]


async def test_the_check_over_the_api(
        aiohttp_server: Callable[..., Any], aiohttp_client: Callable[..., Any],
        make_config: Callable[..., Config], db: Database, db_url: str) -> None:
    fake = DattoFake(api_key="k", api_secret="s")
    url = (await aiohttp_server(fake.app)).make_url("")
    config = make_config(f'[api]\ntokens = ["{TOKEN}"]\n'
                         f'[datto]\napi_url = "{url}"\napi_key = "k"\napi_secret = "s"\n',
                         db_url=db_url)
    ctx = build_services(config, db)
    try:
        api = Api(await aiohttp_client(create_app(ctx.http, ROUTES)), ctx)
        status, body = await api.call("POST", "/api/rmm/datto/test")
        assert status == 200 and body["status"] == "ok", body
        status, body = await api.call("POST", "/api/rmm/syncro/test")
        assert status == 200 and body["status"] == "not_configured"
        status, body = await api.call("POST", "/api/rmm/autotask/test")
        assert status == 404 and "datto or syncro" in body["detail"]
        status, _ = await api.call("POST", "/api/rmm/datto/test", auth=False)
        assert status == 401
    finally:
        await ctx.rmm.close()
