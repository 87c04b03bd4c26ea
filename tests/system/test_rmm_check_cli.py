"""`alertd rmm test` as a process names a missing permission, against the fake Datto RMM."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fakes.datto import DattoFake

ROOT = Path(__file__).resolve().parents[2]


async def test_the_check_from_the_command_line(
        aiohttp_server: Callable[..., Any], write_config: Callable[..., Path],
        tmp_path: Path) -> None:
    fake = DattoFake(api_key="k", api_secret="s")
    fake.deny(r"^/api/v2/account/sites")
    url = (await aiohttp_server(fake.app)).make_url("")
    config = write_config(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
                          f'[datto]\napi_url = "{url}"\napi_key = "k"\napi_secret = "s"\n')

    async def alertd(*args: str) -> tuple[int, str]:
        # Asynchronous, so the fake in this event loop can answer the command.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon", *args, "--config", str(config), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return process.returncode, output.decode()

    code, text = await alertd("rmm", "test", "datto")
    assert code == 1, text
    assert "datto: missing_permission" in text and "MISSING sites (read)" in text
    code, text = await alertd("rmm", "test", "datto", "--json")
    assert code == 1 and json.loads(text)["status"] == "missing_permission"
    code, text = await alertd("rmm", "test", "syncro")
    assert code == 1 and "syncro: not_configured" in text
    fake.denied.clear()
    code, text = await alertd("rmm", "test", "datto")
    assert code == 0 and "datto: ok" in text, text
