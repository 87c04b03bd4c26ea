"""Statements of the intake hot path: built once with SQLAlchemy Core, run on SQLite's DB-API
connection directly.

A write unit on the hot path runs four to six statements. Through `Connection.execute` each
costs SQLAlchemy's execution set-up (compiled-cache lookup, execution context, event
dispatch, result metadata), about half of the writer thread's time before issue 15. A
`Prepared` statement is compiled once per set of parameter names for SQLite and then executed
on the `sqlite3` connection that the unit's transaction holds, with SQLAlchemy's own bind and
result processors of each column type: the values written and read are exactly those of
`Connection.execute` (UTC datetimes as SQLAlchemy stores them, JSON through the dialect's
serializer), only the machinery around them is skipped. `sqlite3` keeps the prepared SQLite
statements in its per-connection cache, so each is parsed once.

On PostgreSQL the same object runs through `Connection.execute` (the cost there is the round
trip, not the Python around it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import UpdateBase

Processor = Callable[[Any], Any]
Statement = Select[Any] | UpdateBase
_NAMED_SQLITE = sqlite.dialect(paramstyle="named")


class _Compiled:
    """One statement compiled for one SQLite dialect and one set of parameter names."""

    __slots__ = ("binds", "columns", "sql")

    def __init__(self, statement: Statement, dialect: Dialect, keys: Iterable[str]):
        # The SQL text with named parameters (sqlite3 binds a dict by name); the values'
        # processors from the connection's own dialect (its JSON serializer).
        compiled = statement.compile(dialect=_NAMED_SQLITE, column_keys=list(keys))
        self.sql = compiled.string
        # For every parameter in the SQL: (its name, the literal it carries when the caller
        # does not name it - a constant in a WHERE, a LIMIT - and its bind processor).
        self.binds: tuple[tuple[str, Any, Processor | None], ...] = tuple(
            (name, bind.value, bind.type.dialect_impl(dialect).bind_processor(dialect))
            for name, bind in compiled.binds.items())
        if any(bind.expanding for bind in compiled.binds.values()):
            raise TypeError("IN lists with expanding parameters are not prepared")
        # Result column names and their result processors (SELECT and RETURNING).
        self.columns: tuple[tuple[str, Processor | None], ...] = tuple(
            (column.key, column.type.dialect_impl(dialect).result_processor(dialect, None))
            for column in getattr(statement, "exported_columns", ()))


class Prepared:
    """A Core statement, run with SQLAlchemy on PostgreSQL and on the DB-API on SQLite.

    Parameters are given by name as to `Connection.execute`; for an INSERT or UPDATE
    without `.values()`, the names given become its columns (as there). Every parameter the
    SQL names must be given: Python-side column defaults are not applied on SQLite's path.
    """

    def __init__(self, statement: Statement):
        self.statement = statement
        self._compiled: dict[tuple[int, frozenset[str]], _Compiled] = {}

    def first(self, conn: Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row as a dict (None when there is none)."""
        if conn.dialect.name != "sqlite":
            row = conn.execute(self.statement, params).mappings().first()
            return dict(row) if row is not None else None
        compiled, cursor = self._execute(conn, params)
        raw = cursor.fetchone()
        cursor.close()
        if raw is None:
            return None
        return {name: value if process is None else process(value)
                for (name, process), value in zip(compiled.columns, raw, strict=True)}

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        if conn.dialect.name != "sqlite":
            return conn.execute(self.statement, params).scalar()
        compiled, cursor = self._execute(conn, params)
        raw = cursor.fetchone()
        cursor.close()
        if raw is None:
            return None
        process = compiled.columns[0][1]
        return raw[0] if process is None else process(raw[0])

    def run(self, conn: Connection, params: Mapping[str, Any]) -> None:
        """Execute for its effect."""
        if conn.dialect.name != "sqlite":
            conn.execute(self.statement, params)
            return
        self._execute(conn, params)[1].close()

    def _execute(self, conn: Connection, params: Mapping[str, Any]) -> tuple[_Compiled, Any]:
        dialect = conn.dialect
        key = (id(dialect), frozenset(params))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _Compiled(self.statement, dialect, params)
        values = {}
        for name, literal, process in compiled.binds:
            value = params.get(name, literal)
            values[name] = value if process is None else process(value)
        # The transaction is the unit's: the DB-API connection under `conn` is inside it.
        driver = conn.connection.driver_connection
        assert driver is not None
        return compiled, driver.execute(compiled.sql, values)
