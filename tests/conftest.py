"""Shared fixtures: configs in temp dirs, databases on SQLite and on the local PostgreSQL.

PostgreSQL tests use the server at 127.0.0.1:5432, database `test` (override with
ALERTD_TEST_PG_URL). Without it they skip with the reason, except in CI (CI=true), where a
missing server fails the run instead.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection

from daemon.config import Config, load_config
from daemon.core.api_event import interpret_api_delivery
from daemon.core.events import Channel
from daemon.intake.pipeline import Pipeline
from daemon.metrics import Metrics
from daemon.store.database import Database
from daemon.tickets.agent import AgentActions

PG_URL = os.environ.get("ALERTD_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
# A schema of this test run's own, so two runs against one server never wipe each other.
PG_SCHEMA = f"alertd_test_{os.getpid()}"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_pg_state: dict[str, str | None] = {}


def postgres_unavailable_reason() -> str | None:
    """None when PostgreSQL answers, else why not (checked once per session)."""
    if "reason" not in _pg_state:
        async def probe() -> None:
            db = Database(PG_URL)
            try:
                await asyncio.wait_for(db.ping(), timeout=5)
            finally:
                await db.dispose()
        try:
            asyncio.run(probe())
            _pg_state["reason"] = None
        except Exception as err:
            _pg_state["reason"] = f"PostgreSQL at {PG_URL} unavailable: {type(err).__name__}: {err}"
    return _pg_state["reason"]


def require_postgres() -> None:
    reason = postgres_unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI must run the PostgreSQL tier)")
    pytest.skip(reason)


async def reset_postgres(drop_only: bool = False) -> None:
    """Give this run an empty schema of its own (or drop it at the end)."""
    db = Database(PG_URL)

    def reset(connection: Connection) -> None:
        connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
        if not drop_only:
            connection.exec_driver_sql(f"CREATE SCHEMA {PG_SCHEMA}")
    try:
        await db.run_on_connection(reset)
    finally:
        await db.dispose()


def pg_database(**options: object) -> Database:
    return Database(PG_URL, pg_schema=PG_SCHEMA, **options)  # type: ignore[arg-type]


def database_toml(url: str) -> str:
    """The [database] table for `url` (with this run's schema on PostgreSQL)."""
    schema = f'schema = "{PG_SCHEMA}"\n' if url.startswith("postgresql") else ""
    return f'[database]\nurl = "{url}"\n{schema}'


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_schema() -> Iterator[None]:
    yield
    if "reason" in _pg_state and _pg_state["reason"] is None:
        asyncio.run(reset_postgres(drop_only=True))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL on each backend (the test runs once per backend)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'alertd.db'}"
    require_postgres()
    asyncio.run(reset_postgres())
    return PG_URL


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = pg_database() if db_url.startswith("postgresql") else Database(db_url)
    await database.upgrade()
    yield database
    await database.dispose()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def pipeline(db: Database, metrics: Metrics) -> Pipeline:
    # Every channel reads the normalised API event here, so lifecycle tests can play the
    # email/webhook/poll twins of one alert without the (later) channel parsers.
    return Pipeline(db, metrics, {c.value: interpret_api_delivery for c in Channel},
                    retry_base_s=0.01)


@pytest.fixture
def agent(db: Database, metrics: Metrics) -> AgentActions:
    return AgentActions(db, metrics)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a TOML config (dedented) into the test's temp dir and return its path."""
    def write(text: str, name: str = "alertd.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path
    return write


@pytest.fixture
def make_config(tmp_path: Path, write_config: Callable[[str], Path]) -> Callable[..., Config]:
    """A validated Config with a private state dir; extra TOML text is appended."""
    def make(extra: str = "", db_url: str | None = None) -> Config:
        text = f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
        if db_url:
            text += database_toml(db_url)
        path = write_config(text + textwrap.dedent(extra))
        return load_config(path, environ={})
    return make
