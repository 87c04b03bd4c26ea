"""Full-text search of tickets (summary and details) on each backend's own index.

The index is created by migration 0005 (backend-specific DDL the models cannot describe):
- PostgreSQL: a GIN index over `to_tsvector('simple', summary || ' ' || details)`, queried with
  `plainto_tsquery('simple', q)`: every word must appear, `q` is never parsed as syntax.
- SQLite: the FTS5 table `tickets_fts` (external content, kept in step by triggers), queried
  with MATCH. FTS5 has a query language (AND, OR, NEAR, quotes, parentheses, column filters),
  so each word of `q` is sent as a quoted string: syntax in `q` is text, never an error.

Words are whole words on both backends (no prefix matching), compared without case.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, TextClause, select, text

from daemon.store.models import Ticket

# The objects of the full-text index, outside the models: schema comparisons skip exactly
# these (tests/component/test_migrations.py). FTS5 keeps its data in shadow tables named
# after the index.
FTS_TABLE = "tickets_fts"
FTS_SHADOW_SUFFIXES = ("_data", "_idx", "_content", "_docsize", "_config")
PG_FTS_INDEX = "ix_tickets_fts"
MAX_QUERY_CHARS = 200


def is_search_object(name: str | None) -> bool:
    """True for the name of a table or index that belongs to the full-text index."""
    if name is None:
        return False
    return name in (FTS_TABLE, PG_FTS_INDEX) or (
        name.startswith(FTS_TABLE) and name.removeprefix(FTS_TABLE) in FTS_SHADOW_SUFFIXES)


def fts5_query(q: str) -> str:
    """`q` as an FTS5 query that means "all these words": each whitespace-separated part a
    quoted string (a `"` inside doubled), so no character of `q` is FTS5 syntax. A part
    without letters or digits (`(`) is an empty string, which FTS5 ignores."""
    return " ".join('"' + part.replace('"', '""') + '"' for part in q.split())


def ticket_text_matches(dialect_name: str, q: str) -> ColumnElement[Any] | TextClause:
    """A condition on `tickets` that holds when every word of `q` is in its summary or
    details (see the module docstring)."""
    if dialect_name == "postgresql":
        # Literally the indexed expression, or PostgreSQL does not use the index. In a
        # MATERIALIZED CTE, so the matching ids come from the GIN index first: left in the
        # outer query, the planner can prefer walking the newest tickets and computing
        # to_tsvector of each until a page is full, which takes seconds for a rare word.
        matches = select(Ticket.id).where(text(
            "to_tsvector('simple', tickets.summary || ' ' || tickets.details) "
            "@@ plainto_tsquery('simple', :ticket_q)").bindparams(ticket_q=q)
        ).cte("ticket_matches").prefix_with("MATERIALIZED")
        return Ticket.id.in_(select(matches.c.id))
    return Ticket.id.in_(text(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH "
                              ":ticket_q").bindparams(ticket_q=fts5_query(q))
                         .columns(rowid=Ticket.id.type))
