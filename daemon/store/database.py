"""The database handle: async engine, transactions for readers and writers, migrations.

SQLite (the default) runs in WAL mode with `synchronous=FULL`, so a commit survives a power cut
as well as a kill -9. SQLite allows one writer at a time: write transactions start with
`BEGIN IMMEDIATE` (a deferred BEGIN that upgrades to a write lock can fail at once with
"database is locked" instead of waiting) and are serialised inside the process by a lock, so
they queue in asyncio rather than spin in SQLite's busy handler. PostgreSQL uses row locks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.dml import Insert

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

    from daemon.config import Config

log = logging.getLogger(__name__)

# Any constant shared by all alertd processes: serialises concurrent `db upgrade` on PostgreSQL.
_MIGRATION_LOCK_KEY = 0x616C65727464


class SchemaOutOfDate(Exception):
    """The database is behind this alertd's schema and auto-migration is off."""


def async_url(url: str) -> str:
    """Map the configured URL to its asyncio driver (aiosqlite / asyncpg)."""
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    return url


def redact_url(url: str) -> str:
    """The URL without its password, for logs and errors."""
    return make_url(url).render_as_string(hide_password=True)


class Database:
    """Owns the engine. `write()` and `read()` yield a session inside one transaction."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 5,
                 pg_schema: str = ""):
        self.url = async_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        options: dict[str, Any] = {}
        if self.is_sqlite:
            path = self.url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            options["connect_args"] = {"timeout": 30}
        else:
            options.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
            if pg_schema:
                # Every connection, alembic's included, sees only this schema.
                options["connect_args"] = {"server_settings": {"search_path": pg_schema}}
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            _configure_sqlite(self.engine, sqlite_synchronous)
        writer = self.engine.execution_options(sqlite_immediate=True)
        self._write_sessions = async_sessionmaker(writer, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        if self._write_lock is not None:
            async with self._write_lock, self._write_sessions.begin() as session:
                yield session
        else:
            async with self._write_sessions.begin() as session:
                yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._read_sessions.begin() as session:
            yield session

    def insert_ignore(self, table: Any, *conflict_columns: str) -> Insert:
        """INSERT ... ON CONFLICT (cols) DO NOTHING for the current backend."""
        dialect = sqlite if self.is_sqlite else postgresql
        return dialect.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()

    # --- migrations ---------------------------------------------------------------------

    async def schema_revisions(self) -> tuple[str | None, str]:
        """(the database's current revision or None, the newest revision alertd knows)."""
        # Alembic is imported only here and in upgrade: most CLI commands never need it.
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        async with self.engine.connect() as conn:
            current = await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
        return current, head or ""

    async def upgrade(self) -> tuple[str | None, str]:
        """Apply pending migrations (one process at a time on PostgreSQL); returns (from, to)."""
        before, head = await self.schema_revisions()
        if before == head:
            return before, head
        async with self.engine.connect() as conn:
            if not self.is_sqlite:
                await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            try:
                await conn.run_sync(_run_upgrade)
                await conn.commit()
            finally:
                if not self.is_sqlite:
                    await conn.execute(
                        text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY}
                    )
                    await conn.commit()
        log.info("database schema upgraded from %s to %s", before or "empty", head)
        return before, head

    async def ensure_schema(self, auto_migrate: bool) -> None:
        """Upgrade, or refuse with the command to run, when the schema is behind."""
        current, head = await self.schema_revisions()
        if current == head:
            return
        if not auto_migrate:
            raise SchemaOutOfDate(
                f"database schema is at {current or 'empty'}, this alertd needs {head}: "
                "run 'alertd db upgrade' (or set [database] auto_migrate = true)"
            )
        await self.upgrade()


def open_database(config: Config) -> Database:
    """The database described by `[database]`."""
    db = config.database
    url = db.url
    if db.password is not None and not db.url.startswith("sqlite"):
        url = make_url(url).set(password=db.password.get_secret_value()).render_as_string(
            hide_password=False)
    return Database(url, sqlite_synchronous=db.sqlite_synchronous, pool_size=db.pool_size,
                    pg_schema=db.schema_)


def _alembic_config(connection: Connection | None = None) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", "daemon.store:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _run_upgrade(connection: Connection) -> None:
    from alembic import command

    command.upgrade(_alembic_config(connection), "head")


def _configure_sqlite(engine: AsyncEngine, synchronous: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so we can choose BEGIN IMMEDIATE below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
