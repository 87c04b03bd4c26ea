"""Fixtures shared by the component tests of the lifecycle (conditions, maintenance)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.config import Config
from daemon.http.app import create_app
from daemon.service.wiring import ROUTES, Services, build_services
from daemon.store.database import Database
from tests.api_client import Api
from tests.lifecycle_app import MAIL_RULES, MakeApp
from tests.webhook_samples import CONFIG


@pytest.fixture
async def make_app(aiohttp_client: Callable[..., Any], make_config: Callable[..., Config],
                   db: Database, db_url: str, tmp_path: Path) -> AsyncIterator[MakeApp]:
    """The app with `lifecycle` as its [lifecycle] section (and MAIL_RULES)."""
    async def make(lifecycle: str = "") -> Api:
        rules = tmp_path / "rules.toml"
        rules.write_text(MAIL_RULES)
        config = make_config(f'{CONFIG}\n[rules]\npath = "{rules}"\n[lifecycle]\n{lifecycle}',
                             db_url=db_url)
        ctx = build_services(config, db)
        built.append(ctx)
        return Api(await aiohttp_client(create_app(ctx.http, ROUTES)), ctx)
    built: list[Services] = []
    yield make
    for ctx in built:
        await ctx.notifiers.close()


@pytest.fixture
async def app(make_app: MakeApp) -> Api:
    return await make_app("")
