"""The RMM API clients (daemon/rmm/datto.py, daemon/rmm/syncro.py) against the in-repo fakes.

What is checked is what the clients document (and ../shared/rmm-facts.md asks of them):
paging (Datto by `nextPageUrl` with the dropped filters re-added and host/cycle guards, Syncro
by `meta.total_pages`), throttling (429, Retry-After, "Retry later", Datto's 403 block), retries
of 409/5xx, the error classes callers act on, the token's life cycle, lenient alert parsing,
resolves, and that the limiters keep a client under the fake's limit.

Tests that wait for a pause or a block run the fake and the client on one simulated clock
(`SimClock`): sleeping moves the time, so a 429 pause or a 300 s block costs nothing and its
length can be compared exactly. Tests of concurrent traffic against the limiters use the real
clock on windows scaled down to 0.5 s (a shared simulated clock would let one caller's sleep
move the time of requests still in flight).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from daemon.rmm.datto import DattoAlert, DattoClient, DattoLimits
from daemon.rmm.errors import (
    AuthFailed,
    Blocked,
    PermissionDenied,
    RateLimited,
    Rejected,
    ServerError,
)
from daemon.rmm.syncro import SyncroClient, SyncroLimits
from tests.fakes import Call, FakeServer
from tests.fakes.datto import RESOLVE, TOKEN_PATH, DattoFake
from tests.fakes.syncro import MetaMode, SyncroFake

Server = Callable[..., Any]  # the pytest-aiohttp `aiohttp_server` fixture

DATTO_KEY = "datto-key-7f3a91"
DATTO_SECRET = "datto-secret-c4e8d2"
SYNCRO_KEY = "syncro-token-5b9e07"
WINDOW_S = 0.5
ALERTS_OPEN = "/api/v2/account/alerts/open"


class SimClock:
    """Time that moves only when someone sleeps: exact and instant."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds

    async def sleep(self, seconds: float) -> None:
        self.now_s += max(0.0, seconds)
        await asyncio.sleep(0)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


def datto_fake(**options: Any) -> DattoFake:
    return DattoFake(api_key=DATTO_KEY, api_secret=DATTO_SECRET, **options)


async def datto_client(aiohttp_server: Server, session: aiohttp.ClientSession, fake: DattoFake,
                       *, clock: SimClock | None = None, secret: str = DATTO_SECRET,
                       **limits: Any) -> DattoClient:
    """A client of `fake` (served now); small backoffs unless `limits` say otherwise."""
    server = await aiohttp_server(fake.app)
    timing: dict[str, Any] = {"clock": clock, "sleep": clock.sleep} if clock else {}
    return DattoClient(session, str(server.make_url("")), DATTO_KEY, secret,
                       limits=DattoLimits(**{"backoff_base_s": 0.01, **limits}), **timing)


async def syncro_client(aiohttp_server: Server, session: aiohttp.ClientSession,
                        fake: SyncroFake, *, clock: SimClock | None = None,
                        **limits: Any) -> SyncroClient:
    server = await aiohttp_server(fake.app)
    timing: dict[str, Any] = {"clock": clock, "sleep": clock.sleep} if clock else {}
    return SyncroClient(session, str(server.make_url("/api/v1")), SYNCRO_KEY,
                        limits=SyncroLimits(**{"backoff_base_s": 0.01, **limits}), **timing)


def statuses(fake: FakeServer, method: str, path: str) -> list[int]:
    return [c.status for c in fake.calls_to(method, path)]


def after(calls: list[Call], status: int) -> tuple[Call, Call]:
    """The first call answered `status` and the call right after it."""
    index = next(i for i, c in enumerate(calls) if c.status == status)
    return calls[index], calls[index + 1]


async def collect(items: AsyncIterator[Any], into: list[Any] | None = None) -> list[Any]:
    """Drain an async iterator; with `into`, what came before an error stays visible."""
    got = [] if into is None else into
    async for item in items:
        got.append(item)
    return got


def tiny_datto(pages: dict[str, dict[str, Any]], log: list[str]) -> web.Application:
    """A minimal Datto: a token endpoint and the open-alerts list, which answers
    `pages[<page query value>]` and logs each request's query string."""
    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "tiny-token", "token_type": "bearer",
                                  "expires_in": 359_999})

    async def alerts(request: web.Request) -> web.Response:
        log.append(request.query_string)
        return web.json_response(pages[request.query["page"]])

    app = web.Application()
    app.router.add_post(TOKEN_PATH, token)
    app.router.add_get(ALERTS_OPEN, alerts)
    return app


def alerts_page(uids: list[str], next_url: str | None) -> dict[str, Any]:
    return {"pageDetails": {"count": len(uids), "nextPageUrl": next_url},
            "alerts": [{"alertUid": uid} for uid in uids]}


# --- Datto: paging ---------------------------------------------------------------------------

async def test_datto_paging_follows_next_page_url_and_re_adds_filters(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    fake = datto_fake(page_max=2)  # the fake caps `max` at 2: five matches take three pages
    acme = [fake.add_device(hostname=f"ACME-WS{n}")["uid"] for n in range(5)]
    fake.add_device(hostname="BOR-WS1")  # would appear if the filter were lost on page 2
    client = await datto_client(aiohttp_server, session, fake)

    devices = await collect(client.paged("/api/v2/account/devices", "devices",
                                         {"hostname": "acme"}))

    assert [d["uid"] for d in devices] == acme  # each once, in order
    queries = [c.query for c in fake.calls_to("GET", "/api/v2/account/devices")]
    assert [q["page"] for q in queries] == ["0", "1", "2"]
    # The fake's nextPageUrl carries only page and max; the client put the filter back.
    assert all(q["hostname"] == "acme" for q in queries)


async def test_datto_open_alerts_walks_every_page_once(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    fake = datto_fake(page_max=2)
    uids = [fake.add_alert()["alertUid"] for _ in range(5)]
    fake.add_alert(resolved=True)  # not open: not listed
    client = await datto_client(aiohttp_server, session, fake)

    alerts = await collect(client.open_alerts())

    assert [a.uid for a in alerts] == [uid.lower() for uid in uids]
    assert len(fake.calls_to("GET", ALERTS_OPEN)) == 3


async def test_datto_next_page_url_on_another_host_is_not_followed(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    elsewhere: list[str] = []

    async def record(request: web.Request) -> web.Response:
        elsewhere.append(f"{request.method} {request.path_qs}")
        return web.json_response(alerts_page(["stolen"], None))

    other_app = web.Application()
    other_app.router.add_route("*", "/{tail:.*}", record)
    other = await aiohttp_server(other_app)  # same address, another port: another netloc
    log: list[str] = []
    pages: dict[str, dict[str, Any]] = {}
    server = await aiohttp_server(tiny_datto(pages, log))
    pages["0"] = alerts_page(["a1", "a2"], str(other.make_url(f"{ALERTS_OPEN}?page=1&max=250")))
    client = DattoClient(session, str(server.make_url("")), DATTO_KEY, DATTO_SECRET)

    got: list[DattoAlert] = []
    with pytest.raises(ServerError, match="another host"):
        await collect(client.open_alerts(), got)

    assert [a.uid for a in got] == ["a1", "a2"]
    assert log == ["page=0&max=250"]
    assert elsewhere == []  # not one request (and so no bearer token) went there


async def test_datto_repeated_next_page_url_stops_the_walk(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    log: list[str] = []
    pages: dict[str, dict[str, Any]] = {}
    server = await aiohttp_server(tiny_datto(pages, log))
    page1 = str(server.make_url(f"{ALERTS_OPEN}?page=1&max=250"))
    pages["0"] = alerts_page(["a1", "a2"], page1)
    pages["1"] = alerts_page(["b1"], page1)  # a server bug: page 1 names itself as next
    client = DattoClient(session, str(server.make_url("")), DATTO_KEY, DATTO_SECRET)

    got: list[DattoAlert] = []
    with pytest.raises(ServerError, match="repeats"):
        await collect(client.open_alerts(), got)

    assert [a.uid for a in got] == ["a1", "a2", "b1"]
    assert log == ["page=0&max=250", "page=1&max=250"]


async def test_datto_next_page_url_back_to_the_first_page_is_a_cycle(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    log: list[str] = []
    pages: dict[str, dict[str, Any]] = {}
    server = await aiohttp_server(tiny_datto(pages, log))
    pages["0"] = alerts_page(["a1", "a2"], str(server.make_url(f"{ALERTS_OPEN}?page=0&max=250")))
    client = DattoClient(session, str(server.make_url("")), DATTO_KEY, DATTO_SECRET)

    got: list[DattoAlert] = []
    with pytest.raises(ServerError, match="repeats"):
        await collect(client.open_alerts(), got)

    assert log == ["page=0&max=250"]
    assert [a.uid for a in got] == ["a1", "a2"]


# --- Datto: throttling, block, permissions ---------------------------------------------------

@pytest.mark.parametrize(("send_retry_after", "min_429_wait_s", "expected_pause_s"), [
    # The fake sends Retry-After: ceil(time until its window frees) = 1 s; it wins over 0.05.
    (True, 0.05, 1.0),
    # No Retry-After: the client's minimum wait (longer than the fake's window).
    (False, 0.7, 0.7),
])
async def test_datto_429_pauses_reads_then_succeeds(
        aiohttp_server: Server, session: aiohttp.ClientSession, send_retry_after: bool,
        min_429_wait_s: float, expected_pause_s: float) -> None:
    clock = SimClock()
    fake = datto_fake(window_s=WINDOW_S, read_limit=2, slow_delay_s=0.0,
                      send_retry_after=send_retry_after, clock=clock)
    # The client's own budget is far above the fake's limit, so the fake's 429 is reached.
    client = await datto_client(aiohttp_server, session, fake, clock=clock, window_s=WINDOW_S,
                                reads=100, min_429_wait_s=min_429_wait_s)

    for _ in range(3):
        assert isinstance(await client.account(), dict)

    gets = fake.calls_to("GET", "/api/v2/account")
    assert [c.status for c in gets] == [200, 200, 429, 200]
    refused, retried = after(gets, 429)
    # Simulated time: the only sleep between the two is the limiter's pause. A shorter pause
    # would have met the still-full bucket and been blocked (403) by the fake.
    assert retried.at_s - refused.at_s == pytest.approx(expected_pause_s)


async def test_datto_403_right_after_a_429_blocks_every_call(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    clock = SimClock()
    fake = datto_fake(window_s=WINDOW_S, read_limit=2, block_s=2.0, slow_delay_s=0.0,
                      clock=clock)
    uid = fake.add_alert()["alertUid"]
    # min_429_wait_s below the fake's window: the retry meets the full bucket again, and the
    # fake answers the persisting client with its 403 block.
    client = await datto_client(aiohttp_server, session, fake, clock=clock, window_s=WINDOW_S,
                                reads=100, min_429_wait_s=0.1, block_s=3.0)
    await client.account()
    await client.account()

    with pytest.raises(Blocked) as blocked:
        await client.account()
    assert blocked.value.retryable
    assert blocked.value.until_s == pytest.approx(clock() + 3.0)
    assert statuses(fake, "GET", "/api/v2/account") == [200, 200, 429, 403]

    calls_when_blocked = len(fake.calls)
    clock.advance(2.9)  # still inside the client's block: reads and resolves stop at once
    with pytest.raises(Blocked):
        await client.alert(uid)
    with pytest.raises(Blocked):
        await client.resolve_alert(uid)
    assert len(fake.calls) == calls_when_blocked  # not even a token request

    clock.advance(0.2)  # block over (the fake's own 2 s block too)
    assert await client.alert(uid) is not None
    assert fake.calls[-1].status == 200


async def test_datto_403_without_a_recent_429_is_a_missing_permission(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    fake = datto_fake()
    fake.add_device(serial_number="SN-1")
    fake.deny(r"^/api/v2/audit/")
    client = await datto_client(aiohttp_server, session, fake)
    device = fake.devices[0]

    with pytest.raises(PermissionDenied) as denied:
        await client.device_serial(device["uid"], "device")

    path = f"/api/v2/audit/device/{device['uid']}"
    assert denied.value.resource == path and path in str(denied.value)
    assert not denied.value.retryable
    assert statuses(fake, "GET", "/api/v2/audit/") == [403]  # not retried
    assert isinstance(await client.account(), dict)  # no block: other calls go on


async def test_datto_403_long_after_a_429_is_a_missing_permission(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    clock = SimClock()
    fake = datto_fake(window_s=WINDOW_S, read_limit=1, slow_delay_s=0.0, clock=clock)
    client = await datto_client(aiohttp_server, session, fake, clock=clock, window_s=WINDOW_S,
                                reads=100, min_429_wait_s=0.6)
    await client.account()
    await client.account()  # 429, paused, then 200
    assert statuses(fake, "GET", "/api/v2/account") == [200, 429, 200]

    clock.advance(2 * WINDOW_S)  # the 429 is no longer "right before"
    fake.deny(r"^/api/v2/account$")
    with pytest.raises(PermissionDenied):
        await client.account()


# --- Datto: retries and refusals -------------------------------------------------------------

@pytest.mark.parametrize("status", [409, 500, 502, 503])
async def test_datto_409_and_5xx_are_retried(
        aiohttp_server: Server, session: aiohttp.ClientSession, status: int) -> None:
    fake = datto_fake()
    client = await datto_client(aiohttp_server, session, fake, retries=3)
    fake.fail_path("GET", r"^/api/v2/account$", status, count=2)

    assert (await client.account())["uid"] == fake.account["uid"]
    assert statuses(fake, "GET", "/api/v2/account") == [status, status, 200]


async def test_datto_a_409_on_a_resolve_is_retried(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    fake = datto_fake()
    uid = fake.add_alert()["alertUid"]
    client = await datto_client(aiohttp_server, session, fake)
    fake.fail_next(1, 409)  # a concurrent write

    assert await client.resolve_alert(uid) is True
    assert statuses(fake, "POST", f"/api/v2/alert/{uid}/resolve") == [409, 200]


async def test_datto_server_errors_past_the_retries_raise_server_error(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    fake = datto_fake()
    client = await datto_client(aiohttp_server, session, fake, retries=2)
    fake.fail_path("GET", r"^/api/v2/account$", 500)

    with pytest.raises(ServerError) as failed:
        await client.account()

    assert failed.value.retryable
    assert statuses(fake, "GET", "/api/v2/account") == [500] * 3  # first try + 2 retries


@pytest.mark.parametrize("status", [400, 405, 422])
async def test_datto_other_4xx_are_rejected_without_retry(
        aiohttp_server: Server, session: aiohttp.ClientSession, status: int) -> None:
    fake = datto_fake()
    client = await datto_client(aiohttp_server, session, fake)
    fake.fail_next(1, status)

    with pytest.raises(Rejected) as rejected:
        await client.account()

    assert not rejected.value.retryable
    assert str(status) in str(rejected.value)
    assert statuses(fake, "GET", "/api/v2/account") == [status]


# --- Datto: resolve ---------------------------------------------------------------------------

async def test_datto_resolve_alert(aiohttp_server: Server,
                                   session: aiohttp.ClientSession) -> None:
    fake = datto_fake()
    uid = fake.add_alert()["alertUid"]
    client = await datto_client(aiohttp_server, session, fake)

    assert await client.resolve_alert(uid) is True
    assert fake.alerts[uid]["resolved"] is True
    assert [(c.method, c.path) for c in fake.calls if c.path != TOKEN_PATH] == [
        ("POST", f"/api/v2/alert/{uid}/resolve")]

    unknown = "0b0e5f5e-0000-4000-8000-000000000000"
    assert await client.resolve_alert(unknown) is False  # 404: gone, treated as done
    assert statuses(fake, "POST", f"/api/v2/alert/{unknown}/resolve") == [404]


# --- Datto: token -----------------------------------------------------------------------------

async def test_datto_one_token_for_many_concurrent_calls(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    fake = datto_fake()
    uid = fake.add_alert()["alertUid"]
    client = await datto_client(aiohttp_server, session, fake)

    alerts = await asyncio.gather(*(client.alert(uid) for _ in range(20)))

    assert all(a is not None and a.uid == uid.lower() for a in alerts)
    assert len(fake.calls_to("POST", TOKEN_PATH)) == 1
    assert statuses(fake, "GET", "/api/v2/alert/") == [200] * 20


async def test_datto_token_renewed_once_when_it_expires(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    fake = datto_fake()
    uid = fake.add_alert()["alertUid"]
    client = await datto_client(aiohttp_server, session, fake)
    assert await client.alert(uid) is not None

    fake.expire_tokens()
    # Every concurrent caller meets the 401, yet only one of them asks for a new token.
    alerts = await asyncio.gather(*(client.alert(uid) for _ in range(20)))

    assert None not in alerts
    assert len(fake.calls_to("POST", TOKEN_PATH)) == 2
    assert 401 in statuses(fake, "GET", "/api/v2/alert/")


async def test_datto_a_401_with_a_fresh_token_is_auth_failed(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    fake = datto_fake()
    client = await datto_client(aiohttp_server, session, fake)
    fake.fail_path("GET", r"^/api/v2/account$", 401)

    with pytest.raises(AuthFailed) as failed:
        await client.account()

    assert not failed.value.retryable
    assert statuses(fake, "GET", "/api/v2/account") == [401, 401]  # one renewal, no loop


async def test_datto_wrong_secret_is_auth_failed_without_leaking_credentials(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    fake = datto_fake()
    wrong = "not-the-secret-e1d2c3"
    client = await datto_client(aiohttp_server, session, fake, secret=wrong)

    with pytest.raises(AuthFailed) as failed:
        await client.account()

    text = f"{failed.value} {failed.value!r}"
    for credential in (wrong, DATTO_KEY, DATTO_SECRET):
        assert credential not in text
    assert not failed.value.retryable
    assert statuses(fake, "POST", TOKEN_PATH) == [400]  # not retried
    assert fake.calls_to("GET", "/api/") == []


async def test_datto_a_short_lived_token_is_still_shared(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    fake = datto_fake(token_lifetime_s=1800)  # 30 minutes: shorter than the early refresh
    client = await datto_client(aiohttp_server, session, fake)

    await asyncio.gather(*(client.account() for _ in range(20)))

    assert len(fake.calls_to("POST", TOKEN_PATH)) == 1


# --- Datto: lenient parsing ------------------------------------------------------------------

async def test_datto_alerts_parse_leniently(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    fake = datto_fake()
    odd = fake.add_alert(priority="Catastrophic",  # an enum value the client has never seen
                         context={"@class": "brand_new_ctx_2031", "whatever": [1, None]})
    odd.update(timestamp=1_700_000_000_123, diagnostics=None, resolved=None, muted=None,
               ticketNumber=None, responseActions=None)
    odd["alertSourceInfo"].update(deviceName=None, siteUid=None)
    bare = fake.add_alert()
    bare.update(alertUid=bare["alertUid"].upper(), priority=None, timestamp=None,
                alertContext=None, alertSourceInfo=None)
    fake.alerts[bare["alertUid"]] = fake.alerts.pop(bare["alertUid"].lower())
    fake.add_alert()["alertUid"] = None  # unusable: skipped
    client = await datto_client(aiohttp_server, session, fake)

    source = odd["alertSourceInfo"]
    parsed = await client.alert(odd["alertUid"])
    assert parsed == DattoAlert(
        uid=odd["alertUid"], resolved=False, priority="Catastrophic", device_name=None,
        device_uid=source["deviceUid"], site_name=source["siteName"], site_uid=None,
        context_class="brand_new_ctx_2031",
        raised_at=datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC), diagnostics=None)

    odd["resolved"] = False  # the fake lists only alerts whose `resolved` is exactly False
    listed = {a.uid: a for a in await collect(client.open_alerts())}
    assert listed[odd["alertUid"]] == parsed
    assert listed[bare["alertUid"].lower()] == DattoAlert(
        uid=bare["alertUid"].lower(), resolved=False, priority=None, device_name=None,
        device_uid=None, site_name=None, site_uid=None, context_class=None, raised_at=None,
        diagnostics=bare["diagnostics"])
    assert len(listed) == len(fake.alerts) - 1  # all but the one without a uid


# --- Syncro: paging --------------------------------------------------------------------------

@pytest.mark.parametrize("meta_mode", ["full", "partial"])
async def test_syncro_paging_by_total_pages(
        aiohttp_server: Server, session: aiohttp.ClientSession, meta_mode: MetaMode) -> None:
    fake = SyncroFake(api_key=SYNCRO_KEY, alerts_per_page=2, meta_mode=meta_mode)
    active = [str(fake.add_alert()["id"]) for _ in range(5)]
    fake.add_alert(resolved=True)
    client = await syncro_client(aiohttp_server, session, fake)

    alerts = await collect(client.active_alerts())

    assert [a.id for a in alerts] == active  # each once, in order
    queries = [c.query for c in fake.calls_to("GET", "/api/v1/rmm_alerts")]
    assert queries == [{"status": "active", "page": str(n)} for n in (1, 2, 3)]


async def test_syncro_paging_stops_on_an_empty_page(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    log: list[str] = []
    pages = {"1": [{"id": 1}, {"id": 2}], "2": [{"id": 3}], "3": []}

    async def alerts(request: web.Request) -> web.Response:
        page = request.query["page"]
        log.append(page)
        # meta over-promises: 9 pages, but page 3 is already empty
        return web.json_response({"rmm_alerts": pages.get(page, [{"id": 99}]),
                                  "meta": {"total_pages": 9, "page": int(page)}})

    app = web.Application()
    app.router.add_get("/api/v1/rmm_alerts", alerts)
    server = await aiohttp_server(app)
    client = SyncroClient(session, str(server.make_url("/api/v1")), SYNCRO_KEY)

    assert [a.id for a in await collect(client.active_alerts())] == ["1", "2", "3"]
    assert log == ["1", "2", "3"]


async def test_syncro_a_list_without_meta_is_read_once(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    fake = SyncroFake(api_key=SYNCRO_KEY, meta_mode="none")  # 25 per page: all on page 1
    active = [str(fake.add_alert()["id"]) for _ in range(3)]
    client = await syncro_client(aiohttp_server, session, fake)

    assert [a.id for a in await collect(client.active_alerts())] == active
    assert len(fake.calls_to("GET", "/api/v1/rmm_alerts")) == 1  # no loop on page 1


# --- Syncro: throttling and resolve ----------------------------------------------------------

@pytest.mark.parametrize(("retry_later_text", "throttle_status"), [
    (False, 429),  # JSON error body
    (True, 429),  # Rack::Attack's plain "Retry later"
    (True, 200),  # the same text with a 200, which the facts warn about
])
async def test_syncro_throttling_pauses_then_succeeds(
        aiohttp_server: Server, session: aiohttp.ClientSession, retry_later_text: bool,
        throttle_status: int) -> None:
    clock = SimClock()
    fake = SyncroFake(api_key=SYNCRO_KEY, window_s=WINDOW_S, rate_limit=2, clock=clock,
                      retry_later_text=retry_later_text, retry_later_status=throttle_status)
    client = await syncro_client(aiohttp_server, session, fake, clock=clock,
                                 window_s=WINDOW_S, requests=100, min_backoff_s=0.6)

    for _ in range(3):
        assert (await client.me())["subdomain"] == fake.subdomain

    gets = fake.calls_to("GET", "/api/v1/me")
    assert [c.status for c in gets] == [200, 200, throttle_status, 200]
    throttled, retried = gets[2], gets[3]
    assert retried.at_s - throttled.at_s == pytest.approx(0.6)  # simulated time: the pause


async def test_syncro_persistent_throttling_raises_rate_limited(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    clock = SimClock()
    fake = SyncroFake(api_key=SYNCRO_KEY, window_s=3600.0, rate_limit=1, clock=clock,
                      retry_later_text=True)
    client = await syncro_client(aiohttp_server, session, fake, clock=clock, requests=100,
                                 min_backoff_s=1.0, retries=2)
    await client.me()

    with pytest.raises(RateLimited) as limited:
        await client.me()

    assert limited.value.retryable
    assert statuses(fake, "GET", "/api/v1/me") == [200, 429, 429, 429]


async def test_syncro_resolve_alert(aiohttp_server: Server,
                                    session: aiohttp.ClientSession) -> None:
    fake = SyncroFake(api_key=SYNCRO_KEY)
    alert_id = fake.add_alert()["id"]
    client = await syncro_client(aiohttp_server, session, fake)

    assert await client.resolve_alert(str(alert_id)) is True
    assert fake.alerts[alert_id]["resolved"] is True
    assert [(c.method, c.path, c.status) for c in fake.calls] == [
        ("DELETE", f"/api/v1/rmm_alerts/{alert_id}", 200)]

    assert await client.resolve_alert("424242") is False  # 404: already gone
    assert statuses(fake, "DELETE", "/api/v1/rmm_alerts/424242") == [404]


# --- both: the limiters keep the clients under the fakes' limits ------------------------------
#
# The fakes count a request when it arrives; the limiters count it from when its answer came
# back, so however long it waited for a connection or an answer, the fake never sees more in
# a window than the client allowed itself. The "speed up" tests make the first window's
# replies slow and the next window's fast over a 2-connection pool: a limiter that counted
# from before the send would let both windows' requests reach the fake in one window.

async def test_datto_limiters_stay_under_the_fake_limits(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    # Client budgets at 90 % of the fake's, as the defaults are (540/600 reads, 95/100
    # resolves), and three windows' worth of each at once.
    fake = datto_fake(window_s=WINDOW_S, read_limit=20, resolve_limit=10, slow_delay_s=0.0)
    uids = [fake.add_alert()["alertUid"] for _ in range(27)]
    client = await datto_client(aiohttp_server, session, fake, window_s=WINDOW_S,
                                reads=18, resolves=9, min_429_wait_s=0.1, block_s=0.1)

    results = await asyncio.gather(*(client.account() for _ in range(54)),
                                   *(client.resolve_alert(uid) for uid in uids))

    assert results[54:] == [True] * 27
    assert [c.status for c in fake.calls] == [200] * len(fake.calls)  # no 429, no 403
    assert len(fake.calls_to("GET", "/api/v2/account")) == 54
    assert fake.max_rate_in_window() <= 20
    assert fake.max_rate_in_window(RESOLVE) <= 10


async def test_syncro_limiter_stays_under_the_fake_limit(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    fake = SyncroFake(api_key=SYNCRO_KEY, window_s=WINDOW_S, rate_limit=10)
    client = await syncro_client(aiohttp_server, session, fake, window_s=WINDOW_S,
                                 requests=9, min_backoff_s=0.1)

    await asyncio.gather(*(client.me() for _ in range(27)))

    assert statuses(fake, "GET", "/api/v1/me") == [200] * 27  # no 429
    assert fake.max_rate_in_window() <= 10


async def faster_after(fake: FakeServer, seconds: float) -> None:
    """The fake's replies stop being slow after `seconds` (slow: Datto past 90 %, a loaded
    server, a first connection's set-up)."""
    await asyncio.sleep(seconds)
    fake.delay_s = 0.0


async def test_datto_limiter_under_the_limit_when_replies_speed_up(
        aiohttp_server: Server) -> None:
    fake = datto_fake(window_s=WINDOW_S, read_limit=10, block_s=0.3, slow_delay_s=0.0)
    fake.delay_s = 0.05  # each reply of the first window takes 50 ms
    server = await aiohttp_server(fake.app)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2)) as session:
        client = DattoClient(session, str(server.make_url("")), DATTO_KEY, DATTO_SECRET,
                             limits=DattoLimits(window_s=WINDOW_S, reads=8, retries=1,
                                                min_429_wait_s=0.3, block_s=0.3,
                                                backoff_base_s=0.01))
        speed_up = asyncio.create_task(faster_after(fake, 0.35))
        await asyncio.gather(*(client.account() for _ in range(16)), return_exceptions=True)
        await speed_up

    assert 429 not in statuses(fake, "GET", "/api/v2/account")


async def test_syncro_limiter_under_the_limit_when_replies_speed_up(
        aiohttp_server: Server) -> None:
    fake = SyncroFake(api_key=SYNCRO_KEY, window_s=WINDOW_S, rate_limit=10)
    fake.delay_s = 0.05
    server = await aiohttp_server(fake.app)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2)) as session:
        client = SyncroClient(session, str(server.make_url("/api/v1")), SYNCRO_KEY,
                              limits=SyncroLimits(window_s=WINDOW_S, requests=8,
                                                  min_backoff_s=0.3, backoff_base_s=0.01))
        speed_up = asyncio.create_task(faster_after(fake, 0.35))
        await asyncio.gather(*(client.me() for _ in range(16)), return_exceptions=True)
        await speed_up

    assert 429 not in statuses(fake, "GET", "/api/v1/me")


async def test_datto_a_403_from_the_token_endpoint_is_the_block(
        aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    # The token endpoint has no permissions: its 403 is Datto's block (set off by another
    # process on this address, say). Every call stops, not just this one.
    clock = SimClock()
    fake = datto_fake(clock=clock)
    fake.blocked_until_s = clock() + 1000.0
    client = await datto_client(aiohttp_server, session, fake, clock=clock, block_s=300.0)

    with pytest.raises(Blocked):
        await client.account()
    with pytest.raises(Blocked):
        await client.resolve_alert("any")
    assert [(c.path, c.status) for c in fake.calls] == [(TOKEN_PATH, 403)]
