"""The HTTP listener's limits against slow and abusive clients, over real loopback sockets:
header and body timeouts, idle keep-alive, the connection cap, and protocol garbage answered
in the JSON shape with one summarised log line."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from daemon.http.listener import ConnectionLimits, HttpListener

LIMITS = ConnectionLimits(header_timeout_s=0.5, body_timeout_s=0.5, keepalive_timeout_s=0.5,
                          max_connections=4)
GET = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"


async def echo(request: web.Request) -> web.Response:
    return web.json_response({"read_bytes": len(await request.read())})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/ok", echo)
    app.router.add_post("/ok", echo)
    listener = HttpListener(app, LIMITS, shutdown_timeout_s=1)
    bound = await listener.start("127.0.0.1", 0)
    yield bound
    await listener.stop_accepting()
    await listener.close()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_within(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    """Everything the server sends until it closes the connection (fails if it does not)."""
    return await asyncio.wait_for(reader.read(), timeout=timeout_s)


async def test_a_request_head_that_never_completes_is_closed(port: int) -> None:
    reader, writer = await connect(port)
    writer.write(b"GET /ok HTTP/1.1\r\nHost: x\r\n")  # no blank line: the head goes on
    assert await closed_within(reader, timeout_s=5) == b""
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed(port: int) -> None:
    reader, writer = await connect(port)
    assert await closed_within(reader, timeout_s=5) == b""
    writer.close()


async def test_a_body_that_never_completes_is_closed(port: int) -> None:
    reader, writer = await connect(port)
    writer.write(b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part")
    answer = await closed_within(reader, timeout_s=5)
    assert b"read_bytes" not in answer  # the handler never got a whole body
    writer.close()


async def test_an_idle_keepalive_connection_is_closed_after_its_answer(port: int) -> None:
    reader, writer = await connect(port)
    writer.write(GET)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    assert head.startswith(b"HTTP/1.1 200 ")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    assert json.loads(await reader.readexactly(length)) == {"read_bytes": 0}
    assert await closed_within(reader, timeout_s=5) == b""
    writer.close()


async def test_a_slow_but_steady_client_is_served(port: int) -> None:
    """The timeouts are per head and per body, not per byte: a client that takes a while
    between requests on one connection is not cut off in the middle of one."""
    reader, writer = await connect(port)
    for _ in range(2):
        for chunk in (GET[:10], GET[10:]):
            writer.write(chunk)
            await asyncio.sleep(0.1)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        assert head.startswith(b"HTTP/1.1 200 ")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
    writer.close()


async def test_one_connection_over_the_cap_is_answered_503(port: int) -> None:
    held = [await connect(port) for _ in range(LIMITS.max_connections)]
    await asyncio.sleep(0.05)  # the server has accepted them
    reader, writer = await connect(port)
    answer = await closed_within(reader, timeout_s=5)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in head
    assert json.loads(body)["detail"] == "too many open connections; retry later"
    writer.close()
    for _, held_writer in held:
        held_writer.close()
    await asyncio.sleep(0.1)  # their slots are free again
    reader, writer = await connect(port)
    writer.write(GET)
    assert (await asyncio.wait_for(reader.readline(), timeout=5)).startswith(b"HTTP/1.1 200")
    writer.close()


@pytest.mark.parametrize("garbage", [
    b"GET /ok HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32) + b"\r\n\r\n",  # TLS hello
    b"GET /ok HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
])
async def test_protocol_garbage_is_a_json_400_and_one_log_line(
        port: int, garbage: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        reader, writer = await connect(port)
        writer.write(garbage)
        answer = await closed_within(reader, timeout_s=5)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == b"400"  # HTTP/1.0: the parser never read a version
        assert json.loads(body)["error"] == "bad_request"
        writer.close()
    refusals = [r for r in caplog.records if "malformed request" in r.getMessage()]
    assert len(refusals) == 1  # the next two are counted, reported when the interval ends
    assert not any(r.exc_info for r in caplog.records)
