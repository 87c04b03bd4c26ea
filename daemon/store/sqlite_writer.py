"""SQLite's side of the database handle: the one writer thread with group commit, and the
connection settings (WAL, synchronous, busy timeout, BEGIN IMMEDIATE for writers).

See `daemon.store.database` for the unit-of-work contract the writer serves.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

T = TypeVar("T")
Unit = Callable[[Session], T]
# Upper bound on units per SQLite commit: keeps one batch's latency bounded under a flood.
MAX_BATCH = 256


class SqliteWriter:
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
            while len(batch) < MAX_BATCH:
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
            return run_together(session, [unit for unit, _ in batch])

    def _run_alone(self, unit: Unit[Any]) -> tuple[bool, Any]:
        try:
            with self._session() as session, session.begin():
                return True, unit(session)
        except Exception as err:
            return False, err




def run_together(session: Session, units: list[Unit[Any]]) -> list[Any]:
    """Run `units` one after another in `session`'s transaction (both writers' batches)."""
    results = []
    for unit in units:
        results.append(unit(session))
        # Units share the transaction, not ORM state: write out what this one changed
        # (plain-SQL units do not autoflush) and forget loaded rows, so the next unit sees
        # the database as it now is.
        session.flush()
        session.expunge_all()
    return results


def _settle_all(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in settled:
        settle(future, ok, value)


def settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """Give a unit's caller its result or exception (also PostgreSQL's writer)."""
    if future.cancelled():
        return  # the caller gave up waiting; the unit's outcome stands
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def configure_sqlite(engine: Engine, synchronous: str) -> None:
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
        try:  # the intake's set-based lookups (daemon.store.prepared.json_values)
            cursor.execute("SELECT count(*) FROM json_each('[]')")
        except sqlite3.OperationalError as err:
            raise ValueError(
                f"SQLite {sqlite3.sqlite_version} has no JSON functions, which alertd needs: "
                "use SQLite 3.38 or later, or a build with JSON1") from err
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: a deferred BEGIN that later upgrades can fail
        # at once with "database is locked" when another process writes.
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
