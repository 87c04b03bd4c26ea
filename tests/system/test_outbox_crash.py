"""A resolve owed across a kill -9 of `alertd run` arrives upstream exactly once (real daemon
processes against the in-repo Datto fake)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.api_client import AUTH, TOKEN
from tests.daemon_process import Daemon
from tests.fakes.datto import DattoFake


@contextlib.asynccontextmanager
async def daemons_on_one_state(tmp_path: Path, config: str
                               ) -> AsyncIterator[tuple[Daemon, Daemon]]:
    """Two `alertd run` processes on the same state, started by the test one after the other
    (the second is the first restarted); both stopped at the end."""
    state_dir = tmp_path / "state"
    first = Daemon(tmp_path / "first", config, state_dir=state_dir)
    second = Daemon(tmp_path / "second", config, state_dir=state_dir)
    try:
        yield first, second
    finally:
        for daemon in (first, second):
            if daemon.process is not None:
                await daemon.stop()
            daemon.close()

async def test_a_resolve_owed_across_a_crash_arrives_once(
        aiohttp_server: Callable[..., Any], tmp_path: Path) -> None:
    """Real `alertd run` processes: the RMM is down when the ticket is closed, the daemon is
    killed (-9) in the middle of an attempt, the RMM comes back and a new daemon starts on the
    same state: the resolve arrives exactly once."""
    fake = DattoFake(api_key="k", api_secret="s")
    uid = fake.add_alert()["alertUid"]
    server = await aiohttp_server(fake.app)
    config = f"""
        [api]
        tokens = ["{TOKEN}"]
        [datto]
        api_url = "{server.make_url('')}"
        api_key = "k"
        api_secret = "s"
        [outbox]
        retry_base_s = 0.2
        retry_max_s = 0.5
        lease_s = 2
        interval_s = 0.2
        """
    async with daemons_on_one_state(tmp_path, config) as (first, second):
        await first.start()
        async with aiohttp.ClientSession(headers=AUTH) as http:
            async with http.post(first.url("/api/alerts"), json={
                    "source": "datto", "uid": uid, "action": "raise"}) as response:
                assert response.status == 201, await response.text()
                ticket_id = (await response.json())["events"][0]["ticket_id"]
            fake.down = True
            async with http.post(first.url(f"/api/tickets/{ticket_id}/close"),
                                 json={}) as response:
                assert response.status == 200, await response.text()
            async with asyncio.timeout(10):  # the worker is trying, and failing
                while not any(c.status == 503 for c in fake.calls):
                    await asyncio.sleep(0.02)
            assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
            assert not fake.alerts[uid]["resolved"]

            fake.down = False
            await second.start()
            async with asyncio.timeout(15):  # after the dead claim's lease (2 s) runs out
                while not fake.alerts[uid]["resolved"]:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # several outbox runs later: still one resolve
            async with http.get(second.url("/api/outbox")) as response:
                rows = (await response.json())["items"]
    resolves = fake.calls_to("POST", f"/api/v2/alert/{uid}/resolve")
    assert [c.status for c in resolves] == [200]
    assert [(r["target"], r["status"]) for r in rows] == [(uid, "done")]
    assert rows[0]["attempts"] >= 2  # the killed attempt counted, then the one that worked


async def test_a_notification_owed_across_a_crash_arrives_once(
        aiohttp_server: Callable[..., Any], tmp_path: Path) -> None:
    """The receiver hangs while `alertd run` sends the ticket.opened notification; the daemon
    is killed (-9) mid-request; a new daemon on the same state sends it once it is back:
    one acknowledged delivery, and nothing after it."""
    hanging = asyncio.Event()
    down = True
    answered: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        delivery = request.headers["X-Alertd-Delivery"]
        if down:
            hanging.set()
            await asyncio.sleep(30)  # killed meanwhile: never answered
        answered.append(delivery)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    server = await aiohttp_server(app)
    config = f"""
        [api]
        tokens = ["{TOKEN}"]
        [outbox]
        retry_base_s = 0.2
        retry_max_s = 0.5
        lease_s = 2
        interval_s = 0.2
        [[notify]]
        name = "ops"
        kind = "webhook"
        url = "{server.make_url('/hook')}"
        secret = "crash-test-secret-0123456789"
        events = ["ticket.opened"]
        """
    async with daemons_on_one_state(tmp_path, config) as (first, second):
        await first.start()
        async with aiohttp.ClientSession(headers=AUTH) as http:
            async with http.post(first.url("/api/alerts"), json={
                    "source": "datto", "uid": "crash-1", "action": "raise"}) as response:
                assert response.status == 201, await response.text()
            async with asyncio.timeout(10):
                await hanging.wait()
            assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
            assert answered == []

            down = False
            await second.start()
            async with asyncio.timeout(15):  # after the dead claim's lease (2 s) runs out
                while not answered:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # several outbox runs later: still one
            async with http.get(second.url("/api/outbox")) as response:
                rows = (await response.json())["items"]
    assert [(r["action"], r["target"], r["status"]) for r in rows] == [
        ("notify", "ticket.opened", "done")]
    assert answered == [str(rows[0]["id"])]
