"""`alertd run` as a process polls the (fake) Datto RMM when `poll_interval_s` is set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.api_client import AUTH, TOKEN
from tests.daemon_process import Daemon
from tests.fakes.datto import DattoFake


async def test_the_daemon_polls_when_configured(
        aiohttp_server: Callable[..., Any], tmp_path: Path) -> None:
    """`[datto] poll_interval_s` wires the poller into `alertd run`; it polls at start."""
    fake = DattoFake(api_key="k", api_secret="s")
    uid = fake.add_alert(diagnostics="CPU above 95% for 15 minutes")["alertUid"]
    server = await aiohttp_server(fake.app)
    daemon = Daemon(tmp_path, f"""
        [api]
        tokens = ["{TOKEN}"]
        [datto]
        api_url = "{server.make_url('')}"
        api_key = "k"
        api_secret = "s"
        poll_interval_s = 900
        """)
    try:
        await daemon.start()
        await daemon.wait_log(r"poll datto: 1 open upstream, raised 1", timeout=15)
        async with aiohttp.ClientSession(headers=AUTH) as http, \
                http.get(daemon.url("/api/tickets")) as response:
            tickets = (await response.json())["items"]
    finally:
        if daemon.process is not None:
            assert await daemon.stop() == 0, "\n".join(daemon.log[-30:])
        daemon.close()
    assert [(t["alert"]["uid"], t["status"]) for t in tickets] == [(uid, "open")]
    assert "CPU above 95%" in tickets[0]["summary"]
