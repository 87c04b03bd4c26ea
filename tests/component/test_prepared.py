"""Prepared statements on SQLite's DB-API write and read exactly what SQLAlchemy's
`Connection.execute` writes and reads (daemon.store.prepared)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import (
    Connection,
    DateTime,
    Table,
    bindparam,
    create_engine,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import sqlite

from daemon.store.database import insert_ignore
from daemon.store.models import Base, Delivery, UTCDateTime
from daemon.store.prepared import Prepared, json_values

_DELIVERIES: Table = Delivery.__table__  # type: ignore[assignment]
NOW = datetime(2026, 12, 6, 21, 30, 1, 123456, tzinfo=UTC)


def _row(key: str, **changes: Any) -> dict[str, Any]:
    return {"channel": "webhook", "source": "datto", "dedupe_key": key, "received_at": NOW,
            "status": "received", "attempts": 1, "next_attempt_at": None, "error": None,
            "content_type": "application/json", "meta": {"remote": "127.0.0.1", "n": [1, 2]},
            "payload": b"{}", "trace": None, **changes}


@pytest.fixture
def conn(tmp_path: Path) -> Any:
    engine = create_engine(f"sqlite:///{tmp_path / 'prepared.db'}")
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        yield connection
    engine.dispose()


def _stored(conn: Connection) -> list[tuple[Any, ...]]:
    """The rows as SQLite holds them (text, not Python values)."""
    return [tuple(row) for row in conn.exec_driver_sql(
        "SELECT dedupe_key, received_at, meta, trace, payload FROM deliveries ORDER BY id")]


def test_insert_stores_the_same_text_as_sqlalchemy(conn: Connection) -> None:
    conn.execute(insert(_DELIVERIES), _row("core"))
    new_id = Prepared(insert(_DELIVERIES).returning(_DELIVERIES.c.id)).scalar(
        conn, _row("prepared"))
    core, prepared = _stored(conn)
    assert new_id == 2
    assert core[1:] == prepared[1:]
    assert prepared[1] == "2026-12-06 21:30:01.123456"  # UTC, as SQLAlchemy stores it


def test_rows_read_back_as_sqlalchemy_reads_them(conn: Connection) -> None:
    conn.execute(insert(_DELIVERIES), _row("k", trace={"rules": ["a"]}))
    query = select(_DELIVERIES).where(_DELIVERIES.c.dedupe_key == bindparam("key"))
    expected = dict(conn.execute(query, {"key": "k"}).mappings().one())
    assert Prepared(query).first(conn, {"key": "k"}) == expected
    assert expected["received_at"] == NOW and expected["meta"]["n"] == [1, 2]


def test_literals_and_limits_in_the_statement_are_bound(conn: Connection) -> None:
    for key in ("a", "b", "c"):
        conn.execute(insert(_DELIVERIES), _row(key, status="failed" if key == "b" else
                                               "received"))
    query = Prepared(select(_DELIVERIES.c.dedupe_key)
                     .where(_DELIVERIES.c.status == "received")
                     .order_by(_DELIVERIES.c.id.desc()).limit(1))
    assert query.scalar(conn, {}) == "c"


def test_update_sets_the_columns_named_and_insert_ignore_reports_a_conflict(
        conn: Connection) -> None:
    insert_once = Prepared(insert_ignore("sqlite", _DELIVERIES, "channel", "dedupe_key")
                           .returning(_DELIVERIES.c.id))
    first = insert_once.scalar(conn, _row("k"))
    assert insert_once.scalar(conn, _row("k")) is None
    finish = Prepared(update(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("row_id")))
    finish.run(conn, {"row_id": first, "status": "processed", "processed_at": NOW})
    finish.run(conn, {"row_id": first, "outcome": "opened"})  # another set of columns
    row = conn.execute(select(_DELIVERIES).where(_DELIVERIES.c.id == first)).mappings().one()
    assert (row["status"], row["processed_at"], row["outcome"]) == ("processed", NOW, "opened")


@pytest.mark.parametrize("count", [1, 2, 37, 300])
def test_many_rows_in_multi_row_inserts_store_what_one_by_one_stores(
        conn: Connection, count: int) -> None:
    """`run_many` inserts in statements of several rows (powers of two, under SQLite's
    parameter limit: 300 rows of 14 columns take several); every row is stored as
    `Connection.execute` stores it, in order."""
    rows = [_row(f"k{n:03}", trace={"n": n} if n % 2 else None, payload=bytes([n % 256]))
            for n in range(count)]
    for row in rows:
        conn.execute(insert(_DELIVERIES), {**row, "dedupe_key": "core-" + row["dedupe_key"]})
    statements: list[str] = []
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    dbapi.set_trace_callback(statements.append)
    try:
        Prepared(insert(_DELIVERIES)).run_many(conn, rows)
    finally:
        dbapi.set_trace_callback(None)
    # 13 columns: at most 64 rows a statement; 37 = 32 + 4 + 1, 300 = 4 x 64 + 32 + 8 + 4.
    assert len(statements) == {1: 1, 2: 1, 37: 3, 300: 7}[count]
    stored = _stored(conn)
    core, prepared = stored[:count], stored[count:]
    assert [row[0] for row in prepared] == [row["dedupe_key"] for row in rows]
    assert [row[1:] for row in prepared] == [row[1:] for row in core]


def test_json_values_looks_up_a_whole_list_of_keys(conn: Connection) -> None:
    for key in ("a", "b", "c"):
        conn.execute(insert(_DELIVERIES), _row(key))
    query = Prepared(select(_DELIVERIES.c.dedupe_key)
                     .where(_DELIVERIES.c.dedupe_key.in_(json_values("keys")))
                     .order_by(_DELIVERIES.c.dedupe_key))
    assert [row["dedupe_key"] for row in query.all(conn, {"keys": ["c", "x", "a"]})] == [
        "a", "c"]
    assert query.all(conn, {"keys": []}) == []


def test_no_row_is_none(conn: Connection) -> None:
    query = Prepared(select(_DELIVERIES).where(_DELIVERIES.c.id == bindparam("id")))
    assert query.first(conn, {"id": 1}) is None
    assert query.scalar(conn, {"id": 1}) is None


@pytest.mark.parametrize("moment", [
    NOW,
    datetime(2026, 12, 6, 21, 30, 1, tzinfo=UTC),  # no microseconds: still six digits
    datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),  # a three-digit year
    datetime(2026, 3, 29, 3, 30, tzinfo=ZoneInfo("Europe/Berlin")),  # another zone
])
def test_utc_datetimes_are_stored_as_sqlalchemys_sqlite_datetime_stores_them(
        moment: datetime) -> None:
    """UTCDateTime's one-step SQLite processor (models.py) against the two steps it
    replaces: the type's conversion to naive UTC, then SQLite DATETIME's text."""
    dialect = sqlite.dialect()
    naive_utc = moment.astimezone(UTC).replace(tzinfo=None)
    dialects_text = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert dialects_text is not None
    process = UTCDateTime().bind_processor(dialect)
    assert process(moment) == dialects_text(naive_utc)
    assert process(None) is None
    with pytest.raises(ValueError, match="naive"):
        process(naive_utc)


def test_the_utc_processor_gives_each_value_its_own_text_in_any_order() -> None:
    """The processor keeps its last value's text: a repeat, the same instant in another
    zone, a later one and a naive one in between each get their own answer."""
    dialect = sqlite.dialect()
    process = UTCDateTime().bind_processor(dialect)
    berlin = NOW.astimezone(ZoneInfo("Europe/Berlin"))
    later = NOW.replace(microsecond=0)
    for value, text in [(NOW, "2026-12-06 21:30:01.123456"), (NOW, "2026-12-06 21:30:01.123456"),
                        (berlin, "2026-12-06 21:30:01.123456"),
                        (later, "2026-12-06 21:30:01.000000"), (NOW, "2026-12-06 21:30:01.123456")]:
        assert process(value) == text
    with pytest.raises(ValueError, match="naive"):
        process(NOW.replace(tzinfo=None))
    assert process(later) == "2026-12-06 21:30:01.000000"
