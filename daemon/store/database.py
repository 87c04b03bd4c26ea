"""The database handle: transactions as units of work, group commit on SQLite, migrations.

Application code hands the database a *unit*: a plain function `unit(session) -> result` that
reads and writes through a synchronous SQLAlchemy `Session` and returns plain data. `write`
runs it in a transaction and returns once that transaction is committed; `read` runs it in a
read-only snapshot. Units contain no `await`, so no transaction ever waits on the event loop
while it holds locks.

SQLite (the default) runs in WAL mode with `synchronous=FULL`, so a commit survives a power cut
as well as a kill -9. It allows one writer at a time, so one writer thread owns the writes and
commits them in groups: it takes every unit queued while the previous commit ran, runs them in
one transaction, commits once and only then answers every caller of the batch. One fsync then
covers many requests (the "group commit" reference in ../shared/perf-notes.md). If any unit of
a batch raises, the batch is rolled back and each unit runs again in a transaction of its own,
so a failing unit fails alone (per-unit SAVEPOINTs would cost more than the rare retry).
Reads run on a small thread pool of their own connections.

PostgreSQL runs units through SQLAlchemy's asyncio engine (asyncpg) with `Session.run_sync`,
in group commits too: `pool_size` lanes, each running every unit queued while its previous
transaction ran in one transaction (`daemon.store.pg_writer`). Concurrency there is handled
by row locks (`SELECT ... FOR UPDATE`) in the units.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import re
import zlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Insert

from daemon.store.sqlite_writer import SqliteWriter, configure_sqlite

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from sqlalchemy.ext.asyncio import AsyncEngine

    from daemon.config.runtime_sections import DatabaseConfig
    from daemon.store.pg_writer import PgBatchWriter

log = logging.getLogger(__name__)

T = TypeVar("T")
Unit = Callable[[Session], T]

# Any constant shared by all alertd processes: serialises concurrent `db upgrade` on PostgreSQL.
_MIGRATION_LOCK_KEY = 0x616C65727464
# Alembic's default version table, where it keeps the revision a database is at.
_VERSION_TABLE = "alembic_version"


class SchemaOutOfDate(Exception):
    """The database is behind this alertd's schema and auto-migration is off."""


def driver_url(url: str) -> str:
    """The configured URL with its driver: stdlib sqlite3 for SQLite, asyncpg for PostgreSQL."""
    if url.startswith("sqlite+"):
        return "sqlite://" + url.split("://", 1)[1]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    return url


def redact_url(url: str) -> str:
    """The URL without its password, for logs and errors."""
    return make_url(url).render_as_string(hide_password=True)


# A migration script is named `<revision>_<slug>.py`, the revisions numbered in order (0001,
# 0002, ...), so the newest is the one with the greatest number: knowing it takes a directory
# listing, where alembic's ScriptDirectory would import alembic, mako and pygments and parse
# every script (~10 MiB the idle daemon would keep). tests/component/test_schema_revision.py
# holds the scripts to that naming and this head to alembic's.
_SCRIPT_NAME = re.compile(r"([0-9]+)_\w+\.py")


def head_revision() -> str:
    """The newest schema revision this alertd knows: the migration scripts' head."""
    versions = resources.files("daemon.store.migrations").joinpath("versions")
    found = (match.group(1) for entry in versions.iterdir()
             if (match := _SCRIPT_NAME.fullmatch(entry.name)))
    return max(found, key=int, default="")


class Database:
    """Owns the engines. `write(unit)` / `read(unit)` run a unit in one transaction."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 5,
                 pg_schema: str = ""):
        self.url = driver_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self._pool_size = pool_size
        self._async_engine: AsyncEngine | None = None
        self._sync_engine: Engine | None = None
        self._writer: SqliteWriter | None = None
        self._pg_writer: PgBatchWriter | None = None
        self._readers: ThreadPoolExecutor | None = None
        if self.is_sqlite:
            path = self.url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            engine = create_engine(self.url, connect_args={"check_same_thread": False,
                                                           "timeout": 30})
            configure_sqlite(engine, sqlite_synchronous)
            self._sync_engine = engine
            self._read_sessions = sessionmaker(engine, expire_on_commit=False)
            self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="alertd-read")
            self._writer = SqliteWriter(engine.execution_options(sqlite_immediate=True))
        else:
            # PostgreSQL's modules (asyncio engine, greenlet, dialect) only where it is used:
            # idle memory on the default SQLite.
            from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

            from daemon.store.pg_writer import PgBatchWriter

            connect_args: dict[str, Any] = {}
            if pg_schema:
                # Every connection, alembic's included, sees only this schema.
                connect_args["server_settings"] = {"search_path": pg_schema}
            self._async_engine = create_async_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                connect_args=connect_args)
            self._async_sessions = async_sessionmaker(self._async_engine, expire_on_commit=False)
            # As many write transactions at once as the pool holds; its overflow serves reads.
            self._pg_writer = PgBatchWriter(self._async_sessions, lanes=pool_size)

    @property
    def applies_writes_in_order(self) -> bool:
        """True when concurrent `write` calls commit in the order they were made (SQLite's
        single writer thread); PostgreSQL runs them in parallel transactions."""
        return self._writer is not None

    @property
    def write_lanes(self) -> int:
        """How many write transactions run at once: SQLite's one writer, or PostgreSQL's
        lanes (`pool_size`)."""
        return 1 if self.is_sqlite else self._pool_size

    @property
    def serializes_writes(self) -> bool:
        """True when a write transaction excludes every other writer, of any process, from
        its start (SQLite's BEGIN IMMEDIATE): a row a unit found absent stays absent until it
        commits. PostgreSQL's concurrent transactions need the unique indexes to decide."""
        return self.is_sqlite

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    async def write(self, unit: Unit[T]) -> T:
        """Run `unit` in a write transaction; return its result once it is committed.

        If the unit raises, its changes are rolled back and the exception propagates.
        """
        if self._writer is not None:
            return await self._writer.submit(unit)
        assert self._pg_writer is not None
        return await self._pg_writer.submit(unit)

    async def read(self, unit: Unit[T]) -> T:
        """Run `unit` in a read transaction (a consistent snapshot); nothing it writes stays."""
        if self._readers is not None:
            def run() -> T:
                with self._read_sessions() as session, session.begin():
                    return unit(session)
            return await asyncio.get_running_loop().run_in_executor(self._readers, run)
        async with self._async_sessions.begin() as session:
            return await session.run_sync(unit)

    @property
    def dialect_name(self) -> str:
        """`sqlite` or `postgresql`: what `insert_ignore` needs to build its statement."""
        return "sqlite" if self.is_sqlite else "postgresql"

    async def ping(self) -> None:
        await self.read(lambda session: session.execute(text("SELECT 1")))

    async def dispose(self) -> None:
        if self._writer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._writer.stop)
        if self._pg_writer is not None:
            await self._pg_writer.stop()
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        if self._sync_engine is not None:
            self._sync_engine.dispose()
        if self._async_engine is not None:
            await self._async_engine.dispose()

    async def run_on_connection(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` on a raw connection in a transaction (migrations and schema checks)."""
        if self._sync_engine is not None:
            # IMMEDIATE: a migration racing another process's write waits (busy_timeout)
            # instead of failing at once when its deferred transaction upgrades to a write.
            engine = self._sync_engine.execution_options(sqlite_immediate=True)

            def run() -> T:
                with engine.begin() as conn:
                    return fn(conn)
            # The writer is idle or queued behind this: DDL takes SQLite's write lock itself.
            return await asyncio.get_running_loop().run_in_executor(None, run)
        assert self._async_engine is not None
        async with self._async_engine.begin() as conn:
            return await conn.run_sync(fn)

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """Try to become the only holder of the lock `name` among every process using this
        database (a session advisory lock on PostgreSQL, an flock beside the SQLite file);
        yields whether it was obtained. Never waits."""
        if self._async_engine is not None:
            key = zlib.crc32(f"alertd:{name}".encode())
            async with self._async_engine.connect() as conn:
                got = bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"),
                                             {"k": key}))
                await conn.commit()
                try:
                    yield got
                finally:
                    if got:
                        await conn.scalar(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        await conn.commit()
            return
        path = self.url.split("///", 1)[-1]
        lock_path = Path(f"{path}.{name}.lock") if path and path != ":memory:" else None
        if lock_path is None:
            yield True
            return
        with open(lock_path, "a") as handle:  # noqa: ASYNC230 - a local lock file
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- migrations ---------------------------------------------------------------------

    async def schema_revisions(self) -> tuple[str | None, str]:
        """(the database's current revision or None, the newest revision alertd knows)."""
        return await self.run_on_connection(current_revision), head_revision()

    async def upgrade(self) -> tuple[str | None, str]:
        """Apply pending migrations (one process at a time on PostgreSQL); returns (from, to)."""
        before, head = await self.schema_revisions()
        if before == head:
            return before, head

        def migrate(conn: Connection) -> str | None:
            if not self.is_sqlite:
                # Transaction-scoped: released by the commit that ends the migration.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                             {"k": _MIGRATION_LOCK_KEY})
            # Another instance may have migrated while we waited for the lock.
            current = current_revision(conn)
            if current != head:
                _run_upgrade(conn)
            return current

        found = await self.run_on_connection(migrate)
        if found == head:
            log.info("database schema already upgraded to %s by another process", head)
            return head, head
        log.info("database schema upgraded from %s to %s", found or "empty", head)
        return found, head

    async def ensure_schema(self, auto_migrate: bool) -> None:
        """Upgrade, or refuse with the command to run, when the schema is behind."""
        current, head = await self.schema_revisions()
        if current == head:
            return
        if not auto_migrate:
            raise SchemaOutOfDate(
                f"database schema is at {current or 'empty'}, this alertd needs {head}: "
                "run 'alertd db upgrade'"
            )
        await self.upgrade()


def insert_ignore(dialect_name: str, table: Any, *conflict_columns: str) -> Insert:
    """INSERT ... ON CONFLICT (cols) DO NOTHING for the backend `dialect_name`."""
    if dialect_name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table).on_conflict_do_nothing(
            index_elements=list(conflict_columns))
    from sqlalchemy.dialects import postgresql  # imported only on PostgreSQL (idle memory)

    return postgresql.insert(table).on_conflict_do_nothing(
        index_elements=list(conflict_columns))


def open_database(db: DatabaseConfig) -> Database:
    """The database described by `[database]`."""
    url = db.url
    if db.password is not None and not db.url.startswith("sqlite"):
        url = make_url(url).set(password=db.password.get_secret_value()).render_as_string(
            hide_password=False)
    return Database(url, sqlite_synchronous=db.sqlite_synchronous, pool_size=db.pool_size,
                    pg_schema=db.schema_)


def current_revision(conn: Connection) -> str | None:
    """The database's schema revision, None when it has none yet: what alembic's
    `MigrationContext.get_current_revision` returns, read without importing alembic (only
    a migration needs it)."""
    if not inspect(conn).has_table(_VERSION_TABLE):
        return None
    versions = conn.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalars().all()
    if len(versions) > 1:
        # Branched history, which alertd's migrations never create: alembic raises its own
        # error about it, so let it.
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(conn).get_current_revision()
    return versions[0] if versions else None


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
