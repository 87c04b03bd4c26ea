"""Statements of the intake hot path: built once with SQLAlchemy Core, run on the DB-API
cursor directly.

A write unit on the hot path runs four to six statements. Through `Connection.execute` each
costs SQLAlchemy's execution set-up (compiled-cache lookup, execution context, event
dispatch, result metadata), about half of the SQLite writer thread's time before issue 15. A
`Prepared` statement is compiled once per dialect and set of parameter names, then executed
on the DB-API connection that the unit's transaction holds (sqlite3, or SQLAlchemy's asyncpg
adapter, which keeps asyncpg's prepared statements), with SQLAlchemy's own bind and result
processors of each column type: the values written and read are exactly those of
`Connection.execute` (UTC datetimes as SQLAlchemy stores them, JSON through the dialect's
serializer); only the machinery around them is skipped. No cursor-level events run for these
statements (alertd registers none).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Connection, Table, bindparam, func, insert, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Insert, Select
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import TableValuedAlias

Processor = Callable[[Any], Any]
Statement = Select[Any] | UpdateBase
# sqlite3 binds a dict by name; SQLite's dialect would compile "?" placeholders.
_NAMED_SQLITE = sqlite.dialect(paramstyle="named")
_QMARK_SQLITE = sqlite.dialect(paramstyle="qmark")
# The one row of "INSERT INTO t (a, b) VALUES (?, ?)" that a multi-row INSERT repeats.
_ONE_ROW = re.compile(r" VALUES (\(\?(?:, \?)*\))$")
# Host parameters in one SQLite statement: SQLite before 3.32 allows no more than 999.
_MAX_PARAMETERS = 999


def json_array(name: str) -> TableValuedAlias:
    """SQLite: the list bound as `name` (sent as one JSON array), as a table of its `value`s
    (`json_each`): a whole group's keys in one statement whose SQL text is the same for any
    number of keys."""
    return func.json_each(bindparam(name, type_=JSON)).table_valued("value")


def json_values(name: str) -> Select[Any]:
    """`json_array(name)`'s values as a subquery, for `IN`."""
    return select(json_array(name).c.value)


class _Compiled:
    """One statement compiled for one dialect and one set of parameter names."""

    __slots__ = ("binds", "columns", "most_rows", "names", "positional", "row_sql", "rows_sql",
                 "sql")

    def __init__(self, statement: Statement, dialect: Dialect, keys: Iterable[str]):
        # The SQL text in the driver's paramstyle; the values' processors from the
        # connection's own dialect (its JSON serializer).
        compiled = statement.compile(
            dialect=_NAMED_SQLITE if dialect.name == "sqlite" else dialect,
            column_keys=list(keys))
        self.sql = compiled.string
        self.positional = compiled.positional
        names = compiled.positiontup if compiled.positional else list(compiled.binds)
        assert names is not None
        self.names = tuple(names)
        # For every parameter in the SQL, in order: (its name, the literal it carries when
        # the caller does not name it - a constant in a WHERE, a LIMIT - and its processor).
        self.binds: tuple[tuple[str, Any, Processor | None], ...] = tuple(
            (name, compiled.binds[name].value,
             compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in names)
        if any(bind.expanding for bind in compiled.binds.values()):
            raise TypeError("IN lists with expanding parameters are not prepared")
        # Result column names and their result processors (SELECT and RETURNING).
        self.columns: tuple[tuple[str, Processor | None], ...] = tuple(
            (column.key, column.type.dialect_impl(dialect).result_processor(dialect, None))
            for column in getattr(statement, "exported_columns", ()))
        # SQLite, an INSERT of plain values without RETURNING: the SQL up to VALUES and one
        # row's "(?, ...)", for inserting many rows in one statement (`run_many`).
        self.row_sql: tuple[str, str] | None = None
        self.rows_sql: dict[int, str] = {}
        # The most rows one such statement takes: a power of two, at least one.
        fitting = _MAX_PARAMETERS // max(1, len(self.names))
        self.most_rows = 1 << max(0, fitting.bit_length() - 1)
        if (dialect.name == "sqlite" and isinstance(statement, Insert)
                and not statement._returning):
            qmark = statement.compile(dialect=_QMARK_SQLITE, column_keys=list(keys))
            one_row = _ONE_ROW.search(qmark.string)
            if (one_row is not None and qmark.positiontup == list(self.names)
                    and one_row.group(1).count("?") == len(self.names)):
                self.row_sql = (qmark.string[:one_row.start()] + " VALUES ", one_row.group(1))

    def values(self, params: Mapping[str, Any]) -> list[Any] | dict[str, Any]:
        """The DB-API parameters for `params`: processed, in the driver's paramstyle."""
        values = self.ordered_values(params)
        return values if self.positional else dict(zip(self.names, values, strict=True))

    def ordered_values(self, params: Mapping[str, Any]) -> list[Any]:
        """The processed values for `params`, in the order the SQL names them."""
        return [params.get(name, literal) if process is None
                else process(params.get(name, literal))
                for name, literal, process in self.binds]

    def insert_rows(self, cursor: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert `rows` with multi-row INSERTs (`row_sql` set): one statement per run of up
        to the parameter limit, instead of one execution per row. Each statement's row count
        is a power of two, so a few SQL texts serve every group size (sqlite3 keeps the
        prepared ones in its statement cache)."""
        assert self.row_sql is not None
        start = 0
        while start < len(rows):
            count = min(self.most_rows, 1 << ((len(rows) - start).bit_length() - 1))
            sql = self.rows_sql.get(count)
            if sql is None:
                head, row = self.row_sql
                sql = self.rows_sql[count] = head + ", ".join([row] * count)
            cursor.execute(sql, [value for params in rows[start:start + count]
                                 for value in self.ordered_values(params)])
            start += count


class Prepared:
    """A Core statement run on the DB-API cursor of the unit's connection.

    Parameters are given by name as to `Connection.execute`; for an INSERT or UPDATE
    without `.values()`, the names given become its columns (as there). Every parameter the
    SQL names must be given: Python-side column defaults are not applied here.
    """

    def __init__(self, statement: Statement):
        self.statement = statement
        self._compiled: dict[tuple[int, frozenset[str]], _Compiled] = {}

    def first(self, conn: Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row as a dict (None when there is none)."""
        compiled, raw = self._execute(conn, params)
        if raw is None:
            return None
        return {name: value if process is None else process(value)
                for (name, process), value in zip(compiled.columns, raw, strict=True)}

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every row, as dicts (for a query with a small LIMIT: the rows are read at once)."""
        compiled = self._compiled_for(conn.dialect, params)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, compiled.values(params))
            raws = cursor.fetchall()
        finally:
            cursor.close()
        return [{name: value if process is None else process(value)
                 for (name, process), value in zip(compiled.columns, raw, strict=True)}
                for raw in raws]

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        compiled, raw = self._execute(conn, params)
        if raw is None:
            return None
        process = compiled.columns[0][1]
        return raw[0] if process is None else process(raw[0])

    def run(self, conn: Connection, params: Mapping[str, Any]) -> None:
        """Execute for its effect."""
        self._execute(conn, params)

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute once per row (rows all name the same parameters): on SQLite an INSERT as
        multi-row INSERTs, anything else in one DB-API `executemany`."""
        if not rows:
            return
        compiled = self._compiled_for(conn.dialect, rows[0])
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if compiled.row_sql is not None and len(rows) > 1:
                # One statement for many rows: each execution costs sqlite3's per-call work
                # and two hand-overs of the interpreter lock (one before and one after
                # SQLite's step), which under load wait for the event loop's thread.
                compiled.insert_rows(cursor, rows)
            else:
                values: Any = [compiled.values(row) for row in rows]
                cursor.executemany(compiled.sql, values)
        finally:
            cursor.close()

    def _compiled_for(self, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled:
        key = (id(dialect), frozenset(params))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _Compiled(self.statement, dialect, params)
        return compiled

    def _execute(self, conn: Connection, params: Mapping[str, Any]
                 ) -> tuple[_Compiled, tuple[Any, ...] | None]:
        """Run the statement; returns its compiled form and its first row, if it has rows."""
        compiled = self._compiled_for(conn.dialect, params)
        # The transaction is the unit's: the DB-API connection under `conn` is inside it.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, compiled.values(params))
            return compiled, cursor.fetchone() if compiled.columns else None
        finally:
            cursor.close()


class NumberedInsert:
    """INSERT of rows known to be new, numbered here: `max(id) + 1` onwards, with
    `Prepared.run_many` (no RETURNING, which neither `executemany` nor a multi-row INSERT
    gives back in order).

    Only where nothing else can insert until the transaction ends and no row can conflict:
    SQLite, whose write transaction (BEGIN IMMEDIATE) excludes every other writer, with the
    caller having checked the unique keys in the same transaction. SQLite numbers an
    INTEGER PRIMARY KEY the same way when it is left out.
    """

    def __init__(self, table: Table):
        self._max_id = Prepared(select(func.max(table.c.id)))
        self._insert = Prepared(insert(table))

    def run(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Insert `rows`; their ids, in order."""
        ids = self.next_ids(conn, len(rows))
        self.insert(conn, [{"id": row_id, **row} for row_id, row in zip(ids, rows, strict=True)])
        return ids

    def next_ids(self, conn: Connection, count: int) -> list[int]:
        """The ids the next `count` rows get, for a caller that needs them before it inserts
        (with `insert`, before anything else inserts into the table in this transaction)."""
        if count == 0:
            return []
        first = int(self._max_id.scalar(conn, {}) or 0) + 1
        return list(range(first, first + count))

    def insert(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert `rows`, each with the id `next_ids` gave it."""
        self._insert.run_many(conn, rows)
