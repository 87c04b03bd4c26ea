"""The database handle: group commit (SQLite's writer thread, PostgreSQL's lanes) isolates
failing units; writers from two handles (two processes) on one SQLite file queue instead of
failing with "database is locked"."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from daemon.store.database import Database
from daemon.store.models import AssetGroup
from daemon.store.sqlite_writer import configure_sqlite
from tests.conftest import pg_database, require_postgres, reset_postgres


def add_group(name: str, fail: bool = False):  # type: ignore[no-untyped-def]
    def unit(session: Session) -> str:
        session.add(AssetGroup(name=name))
        session.flush()
        if fail:
            raise RuntimeError(f"unit {name} fails")
        return name
    return unit


async def count_groups(db: Database) -> int:
    return await db.read(lambda s: s.scalar(select(func.count()).select_from(AssetGroup)) or 0)


async def test_a_failing_unit_rolls_back_alone(db: Database) -> None:
    units = [add_group(f"g{n}", fail=n == 7) for n in range(50)]
    results = await asyncio.gather(*(db.write(u) for u in units), return_exceptions=True)
    failures = [r for r in results if isinstance(r, Exception)]
    assert [str(f) for f in failures] == ["unit g7 fails"]
    assert await count_groups(db) == 49
    names = await db.read(lambda s: set(s.scalars(select(AssetGroup.name))))
    assert "g7" not in names


async def test_a_constraint_violation_fails_only_its_unit(db: Database) -> None:
    await db.write(add_group("taken"))
    results = await asyncio.gather(db.write(add_group("taken")), db.write(add_group("free")),
                                   return_exceptions=True)
    assert isinstance(results[0], Exception) and results[1] == "free"
    assert await count_groups(db) == 2


async def test_two_sqlite_handles_write_concurrently(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = Database(url), Database(url)
    try:
        await first.upgrade()
        await asyncio.gather(*(db.write(add_group(f"{i}-{n}"))
                               for n in range(100) for i, db in enumerate((first, second))))
        assert await count_groups(first) == 200
    finally:
        await first.dispose()
        await second.dispose()


async def test_write_results_arrive_after_commit(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    await db.upgrade()
    try:
        await db.write(add_group("committed"))
        # A fresh handle (another process) sees it at once: the answer came after COMMIT.
        other = Database(f"sqlite:///{tmp_path / 'a.db'}")
        assert await count_groups(other) == 1
        await other.dispose()
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_postgres_commits_queued_units_together() -> None:
    require_postgres()
    await reset_postgres()
    db = pg_database(pool_size=2)
    await db.upgrade()
    try:
        def unit(session: Session) -> int:
            return int(session.scalar(text("SELECT txid_current()")) or 0)
        transactions = await asyncio.gather(*(db.write(unit) for _ in range(100)))
        # Two lanes: each transaction carried every unit queued while the previous one ran.
        assert len(set(transactions)) < 20, sorted(set(transactions))
    finally:
        await db.dispose()


class _NoJsonCursor(sqlite3.Cursor):
    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        if "json_each" in sql:
            raise sqlite3.OperationalError("no such table: json_each")
        return super().execute(sql, *args)


class _NoJsonConnection(sqlite3.Connection):
    """A SQLite built without its JSON functions, as far as alertd's check can tell."""

    def cursor(self, factory: Any = _NoJsonCursor) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory)


def test_a_sqlite_without_json_functions_is_refused_with_its_reason(tmp_path: Path) -> None:
    engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(
        tmp_path / "old.db", factory=_NoJsonConnection, check_same_thread=False))
    configure_sqlite(engine, "FULL")
    with pytest.raises(ValueError, match=r"SQLite [\d.]+ has no JSON functions, which alertd "
                                         r"needs: use SQLite 3\.38 or later"):
        engine.connect()
    engine.dispose()
