"""`alertd sync` as a process against the fake Syncro: preview, apply, history, and the runs
it recorded as the API lists them."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.config import Config
from daemon.http.app import create_app
from daemon.service.wiring import ROUTES, build_services
from daemon.store.database import Database
from tests.api_client import TOKEN, Api
from tests.conftest import database_toml
from tests.fakes.syncro import SyncroFake
from tests.helpers import table_counts

ROOT = Path(__file__).resolve().parents[2]


async def test_sync_command_preview_apply_history_and_api(
        aiohttp_server: Callable[..., Any], aiohttp_client: Callable[..., Any], db: Database,
        db_url: str, write_config: Callable[..., Path], tmp_path: Path,
        make_config: Callable[..., Config]) -> None:
    fake = SyncroFake(api_key="t")
    customer = fake.add_customer("Harbor Vets")
    fake.add_asset(customer["id"], name="HV-RECEPTION", serial="HV-001")
    url = (await aiohttp_server(fake.app)).make_url("/api/v1")
    extra = (f'[syncro]\napi_url = "{url}"\napi_key = "t"\n'
             "[sync.syncro]\ncustomers = true\nassets = true\n")
    config_path = write_config(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
                               + database_toml(db_url) + extra, name="cli.toml")

    async def alertd(*args: str) -> tuple[int, str, str]:
        # Asynchronous, so the fake in this event loop can answer the command.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon", *args, "--config", str(config_path), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, out, err = await alertd("sync", "syncro", "--preview")
    assert code == 0, err
    assert "create customer 'Harbor Vets'" in out and "create asset 'HV-RECEPTION'" in out
    assert "would write" in out.splitlines()[-1]
    assert await db.read(lambda s: table_counts(s)["customers"]) == 0

    code, out, err = await alertd("sync", "syncro", "--customers")
    assert code == 0, err
    assert out.splitlines()[-1].startswith("sync syncro (customers): ok; wrote 2 change(s)")
    code, out, err = await alertd("sync", "--json")  # every configured source, its entities
    assert code == 0, err
    [report] = json.loads(out)
    assert report["counts"]["asset.create"] == 1 and report["counts"]["customer.unchanged"] == 1

    fake.deny("/api/v1/customers")  # the token lost a permission: the run fails at once
    code, out, err = await alertd("sync", "syncro")
    assert code == 1 and "failed" in out.splitlines()[-1]
    code, out, err = await alertd("sync", "history")
    assert code == 0, err
    assert [line.split()[4] for line in out.splitlines()[1:]] == ["failed", "ok", "ok"]

    config = make_config(f'[api]\ntokens = ["{TOKEN}"]\n', db_url=db_url)
    ctx = build_services(config, db)
    api = Api(await aiohttp_client(create_app(ctx.http, ROUTES)), ctx)
    status, runs = await api.call("GET", "/api/sync/runs", params={"source": "syncro"})
    assert status == 200
    assert [(r["status"], r["entities"], r["trigger"]) for r in runs["items"]] == [
        ("failed", ["customers", "assets"], "cli"), ("ok", ["customers", "assets"], "cli"),
        ("ok", ["customers"], "cli")]
    assert "lacks the permission for /customers" in runs["items"][0]["errors"][0]
