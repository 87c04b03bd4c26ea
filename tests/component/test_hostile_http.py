"""Hostile input on the HTTP routes: each gets its specific 4xx in the JSON error shape before
anything is stored, and no configured secret is kept of what a webhook sent."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from daemon.config import Config
from daemon.http.app import create_app
from daemon.http.submissions import MAX_JSON_DEPTH, json_depth
from daemon.service.wiring import ROUTES, build_services
from daemon.store.database import Database
from daemon.store.models import Delivery, Ticket
from tests.api_client import AUTH, Api
from tests.webhook_samples import CONFIG, DATTO_SECRET, SYNCRO_TOKEN, UID, syncro_body

DATTO = "/api/notify/datto"
SYNCRO = f"/api/notify/syncro?token={SYNCRO_TOKEN}"
ALERTS = "/api/alerts"


@pytest.fixture
async def api(aiohttp_client: Callable[..., Any], make_config: Callable[..., Config],
              db: Database, db_url: str) -> Api:
    config = make_config(CONFIG, db_url=db_url)
    ctx = build_services(config, db)
    return Api(await aiohttp_client(create_app(ctx.http, ROUTES)), ctx)


async def stored_count(db: Database, model: type = Delivery) -> int:
    return int(await db.read(lambda s: s.scalar(select(func.count()).select_from(model)) or 0))


async def post_raw(api: Api, path: str, data: bytes, auth: bool = True) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", **(AUTH if auth else {})}
    response = await api.client.post(path, data=data, headers=headers)
    return response.status, await response.json()


def datto_body(**extra: Any) -> dict[str, Any]:
    return {"alert_uid": UID, "alert_resolved": "false", "state": DATTO_SECRET,
            "alert_message": "Disk C: 97% used", "device_hostname": "FS-01", **extra}


def api_body(**extra: Any) -> dict[str, Any]:
    return {"source": "datto", "uid": UID, "action": "raise", **extra}


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# --- nesting depth --------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "auth"), [(DATTO, False), (SYNCRO, False), (ALERTS, True),
                                            ("/api/tickets/1/close", True),
                                            ("/api/tickets/1/notes", True)])
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1_000, 100_000])
async def test_deep_nesting_is_a_400_and_stores_nothing(api: Api, path: str, auth: bool,
                                                        depth: int) -> None:
    status, body = await post_raw(api, path, nested(depth), auth=auth)
    assert (status, body) == (400, {
        "error": "bad_request",
        "detail": f"malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels"})
    assert await stored_count(api.ctx.db) == 0


@pytest.mark.parametrize("raw", [
    b'{"a": "[[[[", "b": [1, {"c": "]]}}"}]}',
    b'{"a": "\\"[[[", "b": "\\\\"}',
    b'[[[["x\\\\\\"]]]]"]]]]',
])
def test_json_depth_ignores_brackets_inside_strings(raw: bytes) -> None:
    def parsed_depth(value: Any) -> int:
        if isinstance(value, list):
            return 1 + max((parsed_depth(v) for v in value), default=0)
        if isinstance(value, dict):
            return 1 + max((parsed_depth(v) for v in value.values()), default=0)
        return 0

    assert json_depth(raw) == parsed_depth(json.loads(raw))


async def test_the_deepest_allowed_nesting_reaches_the_body_checks(api: Api) -> None:
    status, body = await post_raw(api, ALERTS, b'{"x": ' + nested(MAX_JSON_DEPTH - 1) + b"}")
    assert status == 422 and "nested" not in body["detail"]  # parsed; not an alert event


# --- text that cannot be stored as UTF-8 -----------------------------------------------------

LONE = "\\ud800"


@pytest.mark.parametrize(("path", "auth", "text"), [
    (DATTO, False, json.dumps(datto_body(state="@")).replace('"@"', f'"{LONE}"')),
    (DATTO, False, json.dumps(datto_body(alert_message="@")).replace('"@"', f'"{LONE}"')),
    (SYNCRO, False, json.dumps(syncro_body(description="@")).replace('"@"', f'"{LONE}x"')),
    (ALERTS, True, json.dumps(api_body(uid="@")).replace('"@"', f'"{LONE}"')),
    (ALERTS, True, json.dumps(api_body(message="@")).replace('"@"', f'"a{LONE}b"')),
    ("/api/tickets/1/notes", True, f'{{"body": "{LONE}"}}'),
])
async def test_a_lone_surrogate_is_a_400_and_stores_nothing(api: Api, path: str, auth: bool,
                                                            text: str) -> None:
    assert LONE in text
    status, body = await post_raw(api, path, text.encode(), auth=auth)
    assert status == 400 and body["error"] == "bad_request", body
    assert "surrogate" in body["detail"]
    assert await stored_count(api.ctx.db) == 0


NUL = "\\u0000"


@pytest.mark.parametrize(("path", "auth", "text"), [
    (DATTO, False, json.dumps(datto_body(alert_message="@")).replace('"@"', f'"a{NUL}b"')),
    (SYNCRO, False, json.dumps(syncro_body(description="@")).replace('"@"', f'"{NUL}"')),
    (ALERTS, True, json.dumps(api_body(uid="@")).replace('"@"', f'"u{NUL}"')),
    (ALERTS, True, json.dumps(api_body(x="@")).replace('"x"', f'"{NUL}"')),  # in a key
    ("/api/tickets/1/notes", True, f'{{"body": "note{NUL}"}}'),
    ("/api/tickets/1/close", True, f'{{"note": "{NUL}"}}'),
])
async def test_a_nul_character_is_a_400_and_stores_nothing(api: Api, path: str, auth: bool,
                                                           text: str) -> None:
    """PostgreSQL's text columns cannot hold U+0000: refused at the door, on every database."""
    assert NUL in text
    status, body = await post_raw(api, path, text.encode(), auth=auth)
    assert (status, body) == (400, {
        "error": "bad_request",
        "detail": "malformed JSON: a string holds a NUL character (\\u0000), which cannot be "
                  "stored"})
    assert await stored_count(api.ctx.db) == 0


async def test_an_escaped_backslash_before_u0000_is_no_nul(api: Api) -> None:
    text = json.dumps(api_body(message="path C:\\u0000x"))  # a backslash, then u0000: no NUL
    assert "\\\\u0000" in text
    status, _ = await post_raw(api, ALERTS, text.encode())
    assert status == 201


@pytest.mark.parametrize("raw", [b'{"uid": "\xff"}', '{"uid": "x"}'.encode("utf-16")])
async def test_a_body_that_is_not_utf8_is_a_400(api: Api, raw: bytes) -> None:
    status, body = await post_raw(api, ALERTS, raw)
    assert status == 400 and body["detail"].startswith("malformed JSON: the body is not UTF-8")
    assert await stored_count(api.ctx.db) == 0


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
async def test_non_json_constants_are_a_400(api: Api, constant: bytes) -> None:
    status, body = await post_raw(api, ALERTS, b'{"source": "datto", "x": ' + constant + b"}")
    assert (status, body["detail"]) == (400, f"malformed JSON: {constant.decode()} is not a "
                                        "JSON value")


# --- headers ----------------------------------------------------------------------------------

async def raw_request(api: Api, head: bytes) -> bytes:
    """Send `head` as is (bytes aiohttp's client would refuse) and read the whole answer."""
    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(head)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return answer


@pytest.mark.parametrize("token", [b"\xff\xfe\x80", b"caf\xe9", b"\xc3"])
async def test_an_8bit_bearer_token_is_a_401(api: Api, token: bytes) -> None:
    answer = await raw_request(api, b"GET /api/tickets HTTP/1.1\r\nHost: x\r\n"
                               b"Authorization: Bearer " + token + b"\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 ")
    assert json.loads(body)["error"] == "unauthorized"


@pytest.mark.parametrize("key", ["", "k" * 201, "caf\u00e9", "a\tb"])
async def test_a_bad_idempotency_key_is_a_400(api: Api, key: str) -> None:
    response = await api.client.post(ALERTS, json=api_body(), headers={
        **AUTH, "Idempotency-Key": key})
    body = await response.json()
    assert response.status == 400 and "Idempotency-Key" in body["detail"], body
    assert await stored_count(api.ctx.db) == 0


# --- secrets are not kept ---------------------------------------------------------------------

async def test_a_datto_secret_anywhere_in_a_body_is_not_stored(api: Api) -> None:
    """A list around the alert (so no `state` field at the top) authenticated by ?token=: the
    body is kept as a rejected delivery, with the secret masked wherever it was."""
    body = [datto_body(note=f"https://x.example/?token={DATTO_SECRET}")]
    status, answer = await api.call("POST", DATTO, body=body, auth=False,
                                    params={"token": DATTO_SECRET})
    assert status == 422, answer
    rows = await api.ctx.db.read(lambda s: list(s.execute(select(Delivery.id,
                                                                 Delivery.payload))))
    assert len(rows) == 1
    delivery_id, payload = rows[0]
    assert DATTO_SECRET.encode() not in payload
    assert json.loads(payload)[0]["state"] == "********"
    status, shown = await api.call("GET", f"/api/deliveries/{delivery_id}")
    assert status == 200 and DATTO_SECRET not in json.dumps(shown)


async def test_a_syncro_token_in_a_body_is_not_stored(api: Api) -> None:
    status, _ = await api.call("POST", "/api/notify/syncro", auth=False,
                               params={"token": SYNCRO_TOKEN},
                               body=syncro_body(description=f"see ?token={SYNCRO_TOKEN}"))
    assert status in (200, 201)
    payloads = await api.ctx.db.read(lambda s: list(s.scalars(select(Delivery.payload))))
    assert [SYNCRO_TOKEN.encode() in p for p in payloads] == [False]
    assert await stored_count(api.ctx.db, Ticket) == 1


# --- bounded logs -----------------------------------------------------------------------------

async def test_repeated_webhook_refusals_are_one_log_line_per_cause(
        api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for _ in range(50):
        status, _ = await api.call("POST", "/api/notify/syncro", auth=False,
                                   params={"token": "wrong"}, body=syncro_body())
        assert status == 401
    for _ in range(50):
        assert (await api.call("POST", DATTO, auth=False, body=datto_body(state="no")))[0] == 401
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals == [
        "webhook syncro_webhook refused (401): missing or wrong token: the URL must end in "
        "?token=<token> (see `alertd webhook-config syncro`)",
        "webhook datto_webhook refused (401): wrong secret in the 'state' field"]
    assert api.ctx.metrics.auth_failures.labels("syncro_webhook")._value.get() == 50


# --- metric labels ----------------------------------------------------------------------------

async def test_unknown_sources_are_counted_under_one_label(api: Api) -> None:
    for n in range(20):
        status, _ = await api.call("POST", ALERTS, body={
            "source": f"made-up{n}" if n % 2 else f"src{n}", "uid": f"u{n}", "action": "raise"})
        assert status == 201, _
    await api.call("POST", ALERTS, body=api_body())
    status, text = await api.call("GET", "/metrics", auth=False)
    assert status == 200
    series = [line for line in text.decode().splitlines()
              if line.startswith("alertd_tickets_opened_total{")]
    assert sorted(series) == ['alertd_tickets_opened_total{source="datto"} 1.0',
                              'alertd_tickets_opened_total{source="other"} 20.0']
    assert b"src1" not in text and b"made-up" not in text
