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

PostgreSQL runs units through SQLAlchemy's asyncio engine (asyncpg) with `Session.run_sync`;
concurrency there is handled by row locks (`SELECT ... FOR UPDATE`) in the units.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import queue
import threading
import zlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Insert

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

    from daemon.config import Config

log = logging.getLogger(__name__)

T = TypeVar("T")
Unit = Callable[[Session], T]

# Any constant shared by all alertd processes: serialises concurrent `db upgrade` on PostgreSQL.
_MIGRATION_LOCK_KEY = 0x616C65727464
# Upper bound on units per SQLite commit: keeps one batch's latency bounded under a flood.
_MAX_BATCH = 256


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


def head_revision() -> str:
    """The newest schema revision this alertd knows."""
    from alembic.script import ScriptDirectory  # only migrations need alembic

    return ScriptDirectory.from_config(_alembic_config()).get_current_head() or ""


class Database:
    """Owns the engines. `write(unit)` / `read(unit)` run a unit in one transaction."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 5,
                 pg_schema: str = ""):
        self.url = driver_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self._async_engine: AsyncEngine | None = None
        self._sync_engine: Engine | None = None
        self._writer: _SqliteWriter | None = None
        self._readers: ThreadPoolExecutor | None = None
        if self.is_sqlite:
            path = self.url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            engine = create_engine(self.url, connect_args={"check_same_thread": False,
                                                           "timeout": 30})
            _configure_sqlite(engine, sqlite_synchronous)
            self._sync_engine = engine
            self._read_sessions = sessionmaker(engine, expire_on_commit=False)
            self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="alertd-read")
            self._writer = _SqliteWriter(engine.execution_options(sqlite_immediate=True))
        else:
            connect_args: dict[str, Any] = {}
            if pg_schema:
                # Every connection, alembic's included, sees only this schema.
                connect_args["server_settings"] = {"search_path": pg_schema}
            self._async_engine = create_async_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                connect_args=connect_args)
            self._async_sessions = async_sessionmaker(self._async_engine, expire_on_commit=False)

    @property
    def applies_writes_in_order(self) -> bool:
        """True when concurrent `write` calls commit in the order they were made (SQLite's
        single writer thread); PostgreSQL runs them in parallel transactions."""
        return self._writer is not None

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    async def write(self, unit: Unit[T]) -> T:
        """Run `unit` in a write transaction; return its result once it is committed.

        If the unit raises, its changes are rolled back and the exception propagates.
        """
        if self._writer is not None:
            return await self._writer.submit(unit)
        assert self._async_engine is not None
        async with self._async_sessions.begin() as session:
            return await session.run_sync(unit)

    async def read(self, unit: Unit[T]) -> T:
        """Run `unit` in a read transaction (a consistent snapshot); nothing it writes stays."""
        if self._readers is not None:
            def run() -> T:
                with self._read_sessions() as session, session.begin():
                    return unit(session)
            return await asyncio.get_running_loop().run_in_executor(self._readers, run)
        async with self._async_sessions.begin() as session:
            return await session.run_sync(unit)

    def insert_ignore(self, table: Any, *conflict_columns: str) -> Insert:
        """INSERT ... ON CONFLICT (cols) DO NOTHING for the current backend."""
        dialect = sqlite if self.is_sqlite else postgresql
        return dialect.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))

    async def ping(self) -> None:
        await self.read(lambda session: session.execute(text("SELECT 1")))

    async def dispose(self) -> None:
        if self._writer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._writer.stop)
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
        # Alembic is imported only for migrations: most CLI commands never need more.
        from alembic.runtime.migration import MigrationContext

        head = head_revision()
        current = await self.run_on_connection(
            lambda conn: MigrationContext.configure(conn).get_current_revision())
        return current, head

    async def upgrade(self) -> tuple[str | None, str]:
        """Apply pending migrations (one process at a time on PostgreSQL); returns (from, to)."""
        before, head = await self.schema_revisions()
        if before == head:
            return before, head

        def migrate(conn: Connection) -> str | None:
            from alembic.runtime.migration import MigrationContext

            if not self.is_sqlite:
                # Transaction-scoped: released by the commit that ends the migration.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                             {"k": _MIGRATION_LOCK_KEY})
            # Another instance may have migrated while we waited for the lock.
            current = MigrationContext.configure(conn).get_current_revision()
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


class _SqliteWriter:
    """One thread that runs every SQLite write, committing the units queued together at once."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self._connection: Connection | None = None  # the writer thread's own, kept open
        self._queue: queue.SimpleQueue[tuple[Unit[Any], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue())
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, unit: Unit[T]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="alertd-sqlite-writer",
                                                daemon=True)
                self._thread.start()
        self._queue.put((unit, future))
        return future

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < _MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                self._commit(batch)
            except Exception:  # the writer must outlive any one batch (e.g. a closed loop)
                log.exception("sqlite writer: a batch of %d write(s) could not be answered",
                              len(batch))

    def _commit(self, batch: list[tuple[Unit[Any], asyncio.Future[Any]]]) -> None:
        try:
            outcomes = [(True, result) for result in self._run_together(batch)]
        except Exception as err:
            if self._connection is not None and self._connection.invalidated:
                self._connection.close()  # reconnect for the next batch
                self._connection = None
            if len(batch) == 1 or isinstance(err, OperationalError):
                # A locked or failing database fails every unit alike: answer all at once
                # (re-running each would wait out the busy timeout again, unit by unit).
                outcomes = [(False, err)] * len(batch)
            else:
                # Rare path: a unit (or the COMMIT) failed, and the whole batch was rolled
                # back. Run each unit again in its own transaction so only the failing one
                # fails. Units are functions of the database state, so re-running is safe.
                outcomes = [self._run_alone(unit) for unit, _ in batch]
        # One wake-up per event loop for the whole batch, not one per unit: each
        # call_soon_threadsafe writes to the loop's self-pipe.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(future.get_loop(), []).append((future, ok, value))
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_settle_all, settled)

    def _session(self) -> Session:
        # One connection for the thread's life: no pool checkout and reset per batch.
        if self._connection is None or self._connection.closed:
            self._connection = self._engine.connect()
        return Session(bind=self._connection, expire_on_commit=False)

    def _run_together(self, batch: list[tuple[Unit[Any], asyncio.Future[Any]]]) -> list[Any]:
        with self._session() as session, session.begin():
            results = []
            for unit, _ in batch:
                results.append(unit(session))
                # Units share the transaction, not ORM state: write out what this one
                # changed (plain-SQL units do not autoflush) and forget loaded rows, so the
                # next unit sees the database as it now is.
                session.flush()
                session.expunge_all()
            return results

    def _run_alone(self, unit: Unit[Any]) -> tuple[bool, Any]:
        try:
            with self._session() as session, session.begin():
                return True, unit(session)
        except Exception as err:
            return False, err




def _settle_all(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in settled:
        _settle(future, ok, value)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return  # the caller gave up waiting; the unit's outcome stands
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


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


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so we can choose BEGIN IMMEDIATE below
        # (and so SAVEPOINTs work: pysqlite's own transaction handling breaks them).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: a deferred BEGIN that later upgrades can fail
        # at once with "database is locked" when another process writes.
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
