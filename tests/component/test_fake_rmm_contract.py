"""Contract test of the in-repo RMM fakes (tests/fakes) against the vendors' OpenAPI documents
in ../shared/specs, plus the fake behaviour the RMM clients' tests rely on.

Every request goes through `CheckedClient`, a real aiohttp client that checks each response
before the test sees it: 2xx bodies with openapi-core against the (patched) vendor document,
error bodies against the shapes rmm-facts.md describes. At teardown the number of responses
checked must equal the fake's call log, so no body a fake produced escapes the check.

The documents are patched in memory (files never edited), as little as the wire demands:

Datto (zinfandel build 201, OpenAPI 3.1), `patch_datto`:
1. Most operations have no 2xx response; their success schema sits under 401/403/404/400.
   For an operation without a 2xx response, the content of the first of 401, 403, 404, 400
   becomes its 200 response, and the error codes lose that content (it never describes the
   errors). The resolve operation gets a 200 without content (facts: empty or ignorable body).
2. Timestamps are epoch-millisecond integers on the wire: every `format: date-time` schema
   becomes `{"type": "integer", "format": "int64"}` (stricter than "string or integer").
3. Nullability is not modelled: every object property also accepts null ("null" added to its
   type and enum, or `anyOf [..., {"type": "null"}]` around a $ref).
4. alertContext is a `oneOf` of 27 context schemas without a discriminator mapping; each
   accepts any object with an `@class`, so oneOf rejects every real context, and the wire's
   `@class` values (`perf_disk_usage_ctx`) are not the schema names. It becomes the base
   `AlertContext` (an object with a string `@class`, free-form otherwise).
5. servers[0].url already ends in /api: nothing patched; each response is presented as coming
   from the documented host with the fake's path (/api/v2/...), which is what the document's
   server plus its /v2/... paths spell.
The document also fails openapi-spec-validator (schema names with spaces such as
"Account Descriptor"), so it is loaded without spec validation: we check bodies, not the
document. The token endpoint is outside the document: `TOKEN` per the facts.

Syncro (OpenAPI 3.0), `patch_syncro`: bodies are documented by examples only, so each example
becomes a schema (`schema_from_example`): the example's value types, null allowed anywhere,
every key of an example object required; except `meta` (optional, any subset of its four
integer keys: the facts say it is partial or missing) and `properties` maps (custom fields
keyed by display name: free-form). The malformed schema of GET /customer_assets/{id} is
replaced by `{"asset": <schema of the list example's asset>}`.

Error bodies, which neither document describes: Datto 401 and token errors are OAuth errors
(`error`, `error_description`), other Datto errors Spring's (`timestamp` epoch ms, `status`
equal to the HTTP status, `error`, `message`, `path`); Syncro 404 is `{"message"}` and other
errors `{"error"}` (the document's examples); a Syncro throttle may be the plain text
"Retry later" with any status; a 503 from a proxy (`down`) is a plain-text page.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jsonschema
import pytest
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.response.exceptions import InvalidData
from yarl import URL

from tests.fakes import FakeServer
from tests.fakes.datto import BLOCKED, PERMISSION_DENIED, PUBLIC_CLIENT, TOKEN_PATH, DattoFake
from tests.fakes.syncro import PERMISSION_DENIED as SYNCRO_PERMISSION_DENIED
from tests.fakes.syncro import SyncroFake

SPECS = Path(__file__).resolve().parents[3] / "shared" / "specs"
DATTO_SPEC = SPECS / "datto-rmm" / "datto-rmm-openapi.zinfandel-build201.json"
SYNCRO_SPEC = SPECS / "syncro" / "syncro-openapi-v1.json"

pytestmark = pytest.mark.skipif(
    not SPECS.is_dir(), reason=f"vendor OpenAPI documents not found at {SPECS} "
                               "(the read-only ../shared/specs beside the repository)")


# --- patching the documents ---

def patch_datto(document: dict[str, Any]) -> dict[str, Any]:
    """The Datto document as the wire carries it (module docstring, defects 1-4)."""
    spec = copy.deepcopy(document)
    schemas = spec["components"]["schemas"]
    schemas["Alert"]["properties"]["alertContext"] = {
        "type": "object", "$ref": "#/components/schemas/AlertContext"}
    _epoch_ms_timestamps(spec)
    _allow_null(schemas)
    for path_item in spec["paths"].values():
        for operation in path_item.values():
            _success_to_200(operation["responses"])
    return spec


def _success_to_200(responses: dict[str, Any]) -> None:
    if any(code.startswith("2") for code in responses):
        return
    misplaced = [responses[code].pop("content") for code in ("401", "403", "404", "400")
                 if "content" in responses.get(code, {})]
    responses["200"] = {"description": "OK", **({"content": misplaced[0]} if misplaced else {})}


def _epoch_ms_timestamps(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("format") == "date-time":
            node.update(type="integer", format="int64")
        for value in node.values():
            _epoch_ms_timestamps(value)
    elif isinstance(node, list):
        for value in node:
            _epoch_ms_timestamps(value)


def _allow_null(node: Any) -> None:
    """Let every object property below `node` be null (OpenAPI 3.1 spelling)."""
    if isinstance(node, dict):
        for key, value in node.items():
            _allow_null(value)
            if key == "properties" and isinstance(value, dict):
                node[key] = {name: _or_null(prop) for name, prop in value.items()}
    elif isinstance(node, list):
        for value in node:
            _allow_null(value)


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    if "type" not in schema or "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    nullable = {**schema, "type": [*types, "null"]}
    if "enum" in schema:
        nullable["enum"] = [*schema["enum"], None]
    return nullable


META_SCHEMA = {"type": "object", "properties": {
    key: {"type": "integer"} for key in ("total_pages", "total_entries", "per_page", "page")}}
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def schema_from_example(example: Any, key: str = "") -> dict[str, Any]:
    """An OpenAPI 3.0 schema of a documented example (module docstring, Syncro)."""
    if key == "meta":
        return META_SCHEMA
    if key == "properties" or example is None:
        return {}
    if isinstance(example, dict):
        required = [k for k in example if k != "meta"]
        return {"type": "object", "nullable": True, **({"required": required} if required else {}),
                "properties": {k: schema_from_example(v, k) for k, v in example.items()}}
    if isinstance(example, list):
        items = {"items": schema_from_example(example[0])} if example else {}
        return {"type": "array", "nullable": True, **items}
    return {"type": JSON_TYPES[type(example)], "nullable": True}


def patch_syncro(document: dict[str, Any]) -> dict[str, Any]:
    """The Syncro document with schemas derived from its examples (module docstring)."""
    spec = copy.deepcopy(document)
    for path_item in spec["paths"].values():
        for operation in path_item.values():
            for response in operation.get("responses", {}).values():
                for media in response.get("content", {}).values():
                    if "schema" not in media and "example" in media:
                        media["schema"] = schema_from_example(media["example"])
    listing = spec["paths"]["/customer_assets"]["get"]["responses"]["200"]["content"]
    asset = schema_from_example(listing["application/json"]["example"]["assets"][0])
    spec["paths"]["/customer_assets/{id}"]["get"]["responses"]["200"]["content"] = {
        "application/json": {"schema": {"type": "object", "required": ["asset"],
                                        "properties": {"asset": asset}}}}
    return spec


@dataclass(frozen=True)
class Document:
    """A patched vendor document, and the host its first server names."""

    openapi: OpenAPI
    host_url: str


@functools.cache
def datto_document() -> Document:
    return _load(DATTO_SPEC, patch_datto)


@functools.cache
def syncro_document() -> Document:
    return _load(SYNCRO_SPEC, patch_syncro)


def _load(path: Path, patch: Callable[[dict[str, Any]], dict[str, Any]]) -> Document:
    spec = patch(json.loads(path.read_text()))
    server = spec["servers"][0]
    url = urlsplit(server["url"].format(**{
        name: var["default"] for name, var in server.get("variables", {}).items()}))
    return Document(OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None)),
                    f"{url.scheme}://{url.netloc}")


# --- error shapes the documents do not describe (from rmm-facts.md) ---

def _object(required: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": required}


STRING = {"type": "string"}
TOKEN = _object({"access_token": STRING, "token_type": {"const": "bearer"},
                 "expires_in": {"type": "integer"}, "scope": STRING, "jti": STRING})
OAUTH_ERROR = _object({"error": STRING, "error_description": STRING})
SYNCRO_ERROR = _object({"error": STRING})
SYNCRO_NOT_FOUND = _object({"message": STRING})


def spring_error(status: int) -> dict[str, Any]:
    return _object({"timestamp": {"type": "integer"}, "status": {"const": status},
                    "error": STRING, "message": STRING, "path": STRING})


# --- the checking client ---

@dataclass(frozen=True)
class Exchange:
    """One response as a client saw it."""

    method: str
    url: URL
    status: int
    content_type: str
    headers: dict[str, str]
    raw: bytes

    @property
    def path(self) -> str:
        return self.url.path

    @property
    def text(self) -> str:
        return self.raw.decode()

    def json(self) -> Any:
        return json.loads(self.raw)


def check_documented(document: Document, ex: Exchange) -> None:
    request = MockRequest(document.host_url, ex.method.lower(), ex.path, args=dict(ex.url.query))
    document.openapi.validate_response(request, MockResponse(ex.raw, ex.status,
                                                    content_type=ex.content_type))


def is_proxy_page(ex: Exchange) -> bool:
    return ex.status == 503 and ex.content_type == "text/plain" and bool(ex.raw)


def check_datto(ex: Exchange) -> None:
    if is_proxy_page(ex):
        return
    if ex.path == TOKEN_PATH and ex.status == 200:
        jsonschema.validate(ex.json(), TOKEN)
    elif ex.status == 401 or (ex.path == TOKEN_PATH and ex.status == 400):
        jsonschema.validate(ex.json(), OAUTH_ERROR)
    elif ex.status >= 400:
        jsonschema.validate(ex.json(), spring_error(ex.status))
    else:
        check_documented(datto_document(), ex)


def check_syncro(ex: Exchange) -> None:
    if is_proxy_page(ex):
        return
    if ex.content_type == "text/plain" and ex.text.strip() == "Retry later":
        return  # Rack::Attack's throttle answer, whatever the status
    if ex.status == 404:
        jsonschema.validate(ex.json(), SYNCRO_NOT_FOUND)
    elif ex.status >= 400:
        jsonschema.validate(ex.json(), SYNCRO_ERROR)
    else:
        check_documented(syncro_document(), ex)


class CheckedClient:
    """A real aiohttp client; every response passes its vendor's contract check before the
    test sees it. `headers` go with every request unless a call passes its own."""

    def __init__(self, session: aiohttp.ClientSession, base: URL,
                 check: Callable[[Exchange], None]):
        self.session = session
        self.base = base
        self.check = check
        self.headers: dict[str, str] = {}
        self.responses = 0

    async def request(self, method: str, target: str, *,
                      headers: dict[str, str] | None = None, **kwargs: Any) -> Exchange:
        url = self.base.join(URL(target))
        async with self.session.request(method, url, headers=self.headers if headers is None
                                        else headers, **kwargs) as response:
            ex = Exchange(method, response.url, response.status, response.content_type,
                          dict(response.headers), await response.read())
        self.responses += 1
        self.check(ex)
        return ex

    async def get(self, target: str, **kwargs: Any) -> Exchange:
        return await self.request("GET", target, **kwargs)


Serve = Callable[[FakeServer], Awaitable[CheckedClient]]


@pytest.fixture
async def serve(aiohttp_server: Callable[..., Any]) -> AsyncIterator[Serve]:
    """Start a fake on 127.0.0.1 and return a checking client for it."""
    started: list[tuple[FakeServer, CheckedClient]] = []

    async def start(fake: FakeServer) -> CheckedClient:
        server = await aiohttp_server(fake.app)
        # Load the document now, so the first check does not slow a timed request.
        datto = isinstance(fake, DattoFake)
        (datto_document if datto else syncro_document)()
        check = check_datto if datto else check_syncro
        client = CheckedClient(aiohttp.ClientSession(), server.make_url("/"), check)
        started.append((fake, client))
        return client

    yield start
    for fake, client in started:
        await client.session.close()
        assert client.responses == len(fake.calls), "a response escaped the contract check"


class ManualClock:
    """A clock tests move by hand, so windows and blocks expire without sleeping."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


# --- Datto ---

def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def datto_token(api: CheckedClient, username: str, password: str, *,
                      client: tuple[str, str] = PUBLIC_CLIENT,
                      grant_type: str = "password") -> Exchange:
    return await api.request(
        "POST", TOKEN_PATH, headers={"Authorization": basic_auth(*client)},
        data={"grant_type": grant_type, "username": username, "password": password})


async def datto_login(api: CheckedClient, fake: DattoFake) -> None:
    token = (await datto_token(api, fake.api_key, fake.api_secret)).json()["access_token"]
    api.headers = {"Authorization": f"Bearer {token}"}


async def walk_datto(api: CheckedClient, path: str, key: str) -> tuple[list[Any], int]:
    """Every item of a Datto list, following nextPageUrl; also how many pages it took."""
    items: list[Any] = []
    url: str | None = path
    pages = 0
    while url:
        page = (await api.get(url)).json()
        items += page[key]
        pages += 1
        url = page["pageDetails"]["nextPageUrl"]
        assert pages < 50, "nextPageUrl loops"
    return items, pages


async def test_datto_token_and_bearer_auth(serve: Serve) -> None:
    fake = DattoFake()
    api = await serve(fake)
    token = await datto_token(api, fake.api_key, fake.api_secret)
    assert token.status == 200 and token.json()["expires_in"] == 359_999
    wrong_secret = await datto_token(api, fake.api_key, "wrong")
    assert (wrong_secret.status, wrong_secret.json()["error"]) == (400, "invalid_grant")
    wrong_client = await datto_token(api, fake.api_key, fake.api_secret, client=("me", "x"))
    assert (wrong_client.status, wrong_client.json()["error"]) == (401, "invalid_client")
    wrong_grant = await datto_token(api, fake.api_key, fake.api_secret, grant_type="implicit")
    assert (wrong_grant.status, wrong_grant.json()["error"]) == (400, "unsupported_grant_type")

    assert (await api.get("/api/v2/account")).json()["error"] == "unauthorized"
    unknown = await api.get("/api/v2/account", headers={"Authorization": "Bearer nope"})
    assert (unknown.status, unknown.json()["error"]) == (401, "invalid_token")
    await datto_login(api, fake)
    assert (await api.get("/api/v2/account")).json()["uid"] == fake.account["uid"]

    fake.expire_tokens()
    assert (await api.get("/api/v2/account")).status == 401
    await datto_login(api, fake)
    assert (await api.get("/api/v2/account")).status == 200


async def test_datto_every_endpoint(serve: Serve) -> None:
    fake = DattoFake(page_max=2)
    acme = fake.add_site("Acme Dental", autotask_company_name="Acme Dental Ltd")
    boreal = fake.add_site("Borealis Freight")
    server = fake.add_device(acme["uid"], hostname="ACME-FS01", serial_number="7QX9K42")
    desktop = fake.add_device(acme["uid"], hostname="ACME-WS02", online=False)
    fake.add_device(boreal["uid"], hostname="BOR-WS01")
    printer = fake.add_device(boreal["uid"], hostname="BOR-PRN1", device_class="printer")
    alert = fake.add_alert(device_uid=server["uid"], priority="High")
    muted = fake.add_alert(device_uid=desktop["uid"], muted=True, context={
        "@class": "online_offline_status_ctx", "status": "OFFLINE"})
    fake.add_alert(device_uid=printer["uid"], resolved=True, context={
        "@class": "srvc_status_ctx", "serviceName": "Spooler", "status": "STOPPED"})
    api = await serve(fake)
    await datto_login(api, fake)

    account = (await api.get("/api/v2/account")).json()
    assert account["devicesStatus"]["numberOfOfflineDevices"] == 1
    sites, pages = await walk_datto(api, "/api/v2/account/sites", "sites")
    assert [s["name"] for s in sites] == ["Deleted Devices", "Acme Dental", "Borealis Freight"]
    assert pages == 2 and sites[1]["devicesStatus"]["numberOfDevices"] == 2
    devices, pages = await walk_datto(api, "/api/v2/account/devices", "devices")
    assert len(devices) == 4 and pages == 2
    site_devices, _ = await walk_datto(api, f"/api/v2/site/{boreal['uid']}/devices", "devices")
    assert [d["hostname"] for d in site_devices] == ["BOR-WS01", "BOR-PRN1"]
    assert (await api.get("/api/v2/site/no-such-site/devices")).status == 404

    open_alerts, _ = await walk_datto(api, "/api/v2/account/alerts/open", "alerts")
    assert {a["alertUid"] for a in open_alerts} == {alert["alertUid"], muted["alertUid"]}
    only_muted = (await api.get("/api/v2/account/alerts/open?muted=true")).json()["alerts"]
    assert [a["alertUid"] for a in only_muted] == [muted["alertUid"]]
    got = (await api.get(f"/api/v2/alert/{alert['alertUid']}")).json()
    assert got == alert and isinstance(got["timestamp"], int)
    assert (await api.get("/api/v2/alert/no-such-alert")).status == 404

    resolved = await api.request("POST", f"/api/v2/alert/{alert['alertUid']}/resolve")
    assert (resolved.status, resolved.raw) == (200, b"")
    got = (await api.get(f"/api/v2/alert/{alert['alertUid']}")).json()
    assert got["resolved"] and isinstance(got["resolvedOn"], int)
    resolved_alerts, _ = await walk_datto(api, "/api/v2/account/alerts/resolved", "alerts")
    assert len(resolved_alerts) == 2
    assert (await api.request("POST", "/api/v2/alert/no-such-alert/resolve")).status == 404

    assert (await api.get("/api/v2/system/pagination")).json() == {"max": 2}
    rate = (await api.get("/api/v2/system/request_rate")).json()
    assert rate["accountRateLimit"] == 600 and rate["accountCount"] == len(
        fake.buckets["read"].accepted_s)
    assert rate["operationWriteStatus"]["alert-resolve"]["count"] == 2  # the 404 counts too
    audit = (await api.get(f"/api/v2/audit/device/{server['uid']}")).json()
    assert audit["bios"]["serialNumber"] == "7QX9K42"
    assert (await api.get("/api/v2/audit/device/no-such-device")).status == 404
    assert (await api.get(f"/api/v2/audit/device/{printer['uid']}")).status == 400

    capped = (await api.get("/api/v2/account/devices?max=100")).json()["pageDetails"]
    assert capped["count"] == 2
    assert (await api.get("/api/v2/account/devices?page=first")).status == 400
    assert (await api.get("/api/v2/no/such/route")).status == 404
    fake.deny(r"^/api/v2/audit/")
    denied = await api.get(f"/api/v2/audit/device/{server['uid']}")
    assert (denied.status, denied.json()["message"]) == (403, PERMISSION_DENIED)
    assert (await api.get("/api/v2/account")).status == 200


async def test_datto_next_page_url_drops_filters(serve: Serve) -> None:
    fake = DattoFake(page_max=2)
    for n in range(5):
        fake.add_device(hostname=f"ACME-WS{n}")
    fake.add_device(hostname="BOR-WS1")
    api = await serve(fake)
    await datto_login(api, fake)

    first = (await api.get("/api/v2/account/devices?hostname=acme")).json()["pageDetails"]
    assert (first["count"], first["totalCount"], first["prevPageUrl"]) == (2, 5, None)
    next_url = URL(first["nextPageUrl"])
    assert next_url.is_absolute() and (next_url.host, next_url.port) == (api.base.host,
                                                                        api.base.port)
    assert dict(next_url.query) == {"page": "1", "max": "2"}  # hostname is gone
    assert (await api.get(str(next_url))).json()["pageDetails"]["totalCount"] == 6
    last = (await api.get(str(next_url.update_query(hostname="acme", page=2)))).json()
    assert last["pageDetails"]["count"] == 1 and last["pageDetails"]["nextPageUrl"] is None
    assert URL(last["pageDetails"]["prevPageUrl"]).query["page"] == "1"


async def test_datto_rate_limit_429_then_block(serve: Serve) -> None:
    clock = ManualClock()
    fake = DattoFake(window_s=0.5, block_s=1.0, read_limit=3, resolve_limit=1,
                     slow_delay_s=0.0, clock=clock)
    alert = fake.add_alert()
    api = await serve(fake)
    await datto_login(api, fake)

    assert [(await api.get("/api/v2/account")).status for _ in range(3)] == [200] * 3
    limited = await api.get("/api/v2/account")
    assert limited.status == 429 and "Retry-After" not in limited.headers
    resolves = [(await api.request("POST", f"/api/v2/alert/{alert['alertUid']}/resolve")).status
                for _ in range(2)]
    assert resolves == [200, 429]  # its own bucket: the reads' 429 does not count here

    clock.advance(0.6)  # the window rolled over: the earlier 429s no longer count
    assert [(await api.get("/api/v2/account")).status for _ in range(4)] == [200] * 3 + [429]
    blocked = await api.get("/api/v2/account")
    assert (blocked.status, blocked.json()["message"]) == (403, BLOCKED)
    assert (await datto_token(api, fake.api_key, fake.api_secret)).status == 403
    clock.advance(0.9)
    assert (await api.get("/api/v2/account")).status == 403
    clock.advance(0.2)
    assert (await api.get("/api/v2/account")).status == 200
    assert fake.max_rate_in_window() == 3


async def test_datto_retry_after_and_slow_reads(serve: Serve) -> None:
    assert DattoFake(window_s=6.0).slow_delay_s == pytest.approx(0.1)  # 1 s per real minute
    fake = DattoFake(window_s=30.0, read_limit=10, slow_delay_s=0.2, send_retry_after=True)
    api = await serve(fake)
    await datto_login(api, fake)
    durations_s = []
    for _ in range(10):
        started_s = time.monotonic()
        assert (await api.get("/api/v2/account")).status == 200
        durations_s.append(time.monotonic() - started_s)
    assert max(durations_s[:9]) < 0.2 <= durations_s[9]  # the 10th is past 90 % of 10
    limited = await api.get("/api/v2/account")
    assert limited.status == 429 and 0 < int(limited.headers["Retry-After"]) <= 30


# --- Syncro ---

async def walk_syncro(api: CheckedClient, path: str, key: str) -> tuple[list[Any], int]:
    """Every item of a Syncro list, page by page up to meta.total_pages."""
    items: list[Any] = []
    page = total_pages = 1
    while page <= total_pages:
        body = (await api.get(path, params={"page": page})).json()
        items += body[key]
        total_pages = body["meta"]["total_pages"]
        page += 1
    return items, total_pages


async def test_syncro_auth_and_permissions(serve: Serve) -> None:
    fake = SyncroFake()
    api = await serve(fake)
    assert (await api.get("/api/v1/me")).status == 401
    assert (await api.get("/api/v1/me", headers={"Authorization": "Bearer nope"})).status == 401
    me = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {fake.api_key}"})
    assert me.json()["subdomain"] == fake.subdomain
    assert (await api.get("/api/v1/me", headers={"Authorization": fake.api_key})).status == 200

    api.headers = {"Authorization": f"Bearer {fake.api_key}"}
    fake.deny("/api/v1/customer_assets")
    denied = await api.get("/api/v1/customer_assets")
    assert (denied.status, denied.json()["error"]) == (401, SYNCRO_PERMISSION_DENIED)
    assert (await api.get("/api/v1/customers")).status == 200


async def test_syncro_every_endpoint(serve: Serve) -> None:
    fake = SyncroFake(customers_per_page=2, contacts_per_page=2, assets_per_page=2,
                      alerts_per_page=2)
    acme = fake.add_customer("Acme Dental", properties={"Contract Tier": "Gold"})
    boreal = fake.add_customer("Borealis Freight")
    person = fake.add_customer(None, firstname="Sam", lastname="Lee")
    fake.add_customer("Gone Ltd", disabled=True)
    contact = fake.add_contact(acme["id"])
    fake.add_contact(boreal["id"], "Kim Ode")
    server = fake.add_asset(acme["id"], name="FS-ACME-01", serial="7QX9K42")
    fake.add_asset(acme["id"])
    printer = fake.add_asset(boreal["id"], asset_type="Managed Printer")
    alerts = [fake.add_alert(asset_id=a["id"]) for a in (server, server, printer)]
    fake.add_alert(asset_id=printer["id"], resolved=True)
    api = await serve(fake)
    api.headers = {"Authorization": f"Bearer {fake.api_key}"}

    customers, pages = await walk_syncro(api, "/api/v1/customers", "customers")
    assert [c["id"] for c in customers] == [acme["id"], boreal["id"], person["id"]]
    assert pages == 2 and customers[2]["business_then_name"] == "Sam Lee"
    assert customers[0]["contacts"] == [contact]
    everyone = (await api.get("/api/v1/customers?include_disabled=true")).json()["meta"]
    assert everyone["total_entries"] == 4
    contacts = await api.get("/api/v1/contacts", params={"customer_id": acme["id"]})
    assert [c["id"] for c in contacts.json()["contacts"]] == [contact["id"]]

    assets = (await api.get("/api/v1/customer_assets", params={"customer_id": acme["id"]})).json()
    assert len(assets["assets"]) == 2 and assets["assets"][0]["customer"]["id"] == acme["id"]
    printers = (await api.get("/api/v1/customer_assets?asset_type_id=2")).json()["assets"]
    assert [a["id"] for a in printers] == [printer["id"]]
    asset = (await api.get(f"/api/v1/customer_assets/{server['id']}")).json()["asset"]
    assert asset["asset_serial"] == "7QX9K42"
    assert (await api.get("/api/v1/customer_assets/999")).json() == {"message": "Not found"}
    settings = (await api.get("/api/v1/settings")).json()
    assert settings["assets"]["asset_types"] == fake.asset_types

    active, pages = await walk_syncro(api, "/api/v1/rmm_alerts", "rmm_alerts")
    assert [a["id"] for a in active] == [a["id"] for a in alerts] and pages == 2
    assert len((await api.get("/api/v1/rmm_alerts?status=resolved")).json()["rmm_alerts"]) == 1
    assert (await api.get("/api/v1/rmm_alerts?status=all")).json()["meta"]["total_entries"] == 4
    assert (await api.get("/api/v1/rmm_alerts?status=open")).status == 400
    target = alerts[0]["id"]
    assert (await api.get(f"/api/v1/rmm_alerts/{target}")).json()["rmm_alert"] == alerts[0]
    assert (await api.get("/api/v1/rmm_alerts/12345")).status == 404
    cleared = await api.request("DELETE", f"/api/v1/rmm_alerts/{target}")
    assert cleared.json() == {"success": "true"}
    assert (await api.get(f"/api/v1/rmm_alerts/{target}")).json()["rmm_alert"]["resolved"]
    assert (await api.request("DELETE", "/api/v1/rmm_alerts/12345")).status == 404

    fake.meta_mode = "partial"
    meta = (await api.get("/api/v1/rmm_alerts")).json()["meta"]
    assert meta == {"total_pages": 1, "page": 1}
    fake.meta_mode = "none"
    assert "meta" not in (await api.get("/api/v1/customers")).json()


async def test_syncro_rate_limit(serve: Serve) -> None:
    clock = ManualClock()
    fake = SyncroFake(window_s=0.5, rate_limit=3, clock=clock)
    api = await serve(fake)
    api.headers = {"Authorization": f"Bearer {fake.api_key}"}
    assert (await api.get("/api/v1/me", headers={})).status == 401  # counts: limited per IP
    assert [(await api.get("/api/v1/me")).status for _ in range(3)] == [200, 200, 429]
    clock.advance(0.6)
    assert (await api.get("/api/v1/me")).status == 200

    text_fake = SyncroFake(rate_limit=1, retry_later_text=True, retry_later_status=200)
    text_api = await serve(text_fake)
    text_api.headers = api.headers
    await text_api.get("/api/v1/me")
    throttled = await text_api.get("/api/v1/me")
    assert (throttled.status, throttled.content_type, throttled.text.strip()) == (
        200, "text/plain", "Retry later")
    assert text_fake.max_rate_in_window() == 1


# --- both fakes ---

async def start_logged_in(vendor: str, serve: Serve) -> tuple[FakeServer, CheckedClient, str]:
    """A fake of `vendor`, a client that can call it, and a cheap GET path."""
    if vendor == "datto":
        datto = DattoFake()
        api = await serve(datto)
        await datto_login(api, datto)
        return datto, api, "/api/v2/account"
    syncro = SyncroFake()
    api = await serve(syncro)
    api.headers = {"Authorization": f"Bearer {syncro.api_key}"}
    return syncro, api, "/api/v1/me"


@pytest.mark.parametrize("vendor", ["datto", "syncro"])
async def test_fault_injection_and_call_log(vendor: str, serve: Serve) -> None:
    fake, api, path = await start_logged_in(vendor, serve)
    fake.fail_next(2, status=502)
    assert [(await api.get(path)).status for _ in range(3)] == [502, 502, 200]
    if isinstance(fake, DattoFake):  # the token endpoint is exempt from fail_next
        fake.fail_next(1)
        assert (await datto_token(api, fake.api_key, fake.api_secret)).status == 200
        assert (await api.get(path)).status == 500
    fake.fail_path("GET", f"^{path}$", 500, count=1)
    assert [(await api.get(path)).status for _ in range(2)] == [500, 200]
    fake.fail_path("GET", f"^{path}$", 504)
    assert [(await api.get(path)).status for _ in range(2)] == [504, 504]
    fake.clear_failures()

    fake.down = True
    down = await api.get(path)
    assert (down.status, down.content_type) == (503, "text/plain")
    fake.down = False
    fake.delay_s = 0.2
    started_s = time.monotonic()
    assert (await api.get(path, params={"probe": "slow"})).status == 200
    assert time.monotonic() - started_s >= 0.2
    fake.delay_s = 0.0

    log = fake.calls_to("GET", path)
    assert [c.status for c in log][-4:] == [504, 504, 503, 200]
    assert log[-1].query == {"probe": "slow"}
    assert all(a.at_s <= b.at_s for a, b in zip(fake.calls, fake.calls[1:], strict=False))


async def test_concurrent_requests_are_all_logged(serve: Serve) -> None:
    fake, api, path = await start_logged_in("syncro", serve)
    statuses = await asyncio.gather(*(api.get(path) for _ in range(20)))
    assert {ex.status for ex in statuses} == {200} and len(fake.calls_to("GET", path)) == 20


# --- the check itself ---

async def test_contract_rejects_wrong_shapes(serve: Serve) -> None:
    datto = DattoFake()
    alert = datto.add_alert()
    api = await serve(datto)
    await datto_login(api, datto)
    good = await api.get(f"/api/v2/alert/{alert['alertUid']}")

    def with_body(ex: Exchange, body: Any) -> Exchange:
        return replace(ex, raw=json.dumps(body).encode())

    for wrong in ({"priority": "Urgent"}, {"timestamp": "2026-10-14T08:15:02Z"},
                  {"alertSourceInfo": "FS-ACME-01"}, {"alertContext": {"diskName": "C:"}}):
        with pytest.raises(InvalidData):
            check_datto(with_body(good, alert | wrong))
    not_found = await api.get("/api/v2/alert/no-such-alert")
    with pytest.raises(jsonschema.ValidationError):
        check_datto(with_body(not_found, {"error": "Not Found"}))

    syncro = SyncroFake()
    cleared = syncro.add_alert()
    syncro_api = await serve(syncro)
    syncro_api.headers = {"Authorization": f"Bearer {syncro.api_key}"}
    ok = await syncro_api.request("DELETE", f"/api/v1/rmm_alerts/{cleared['id']}")
    with pytest.raises(InvalidData):
        check_syncro(with_body(ok, {"success": True}))  # Syncro sends the string "true"
    listing = await syncro_api.get("/api/v1/rmm_alerts?status=all")
    without_id = {k: v for k, v in cleared.items() if k != "id"}
    with pytest.raises(InvalidData):
        check_syncro(with_body(listing, {"rmm_alerts": [without_id]}))
