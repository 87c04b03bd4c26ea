"""The tickets' full-text index (migration 0005) on both backends: built over the tickets that
were there before it, kept in step with inserts, text changes and deletes, and used by the
query plan."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from daemon.core.clock import utcnow
from daemon.store.database import Database
from daemon.store.models import Ticket
from daemon.store.queries import Page, Queries
from daemon.store.ticket_search import ticket_text_matches
from tests.conftest import pg_database


def upgrade_to(revision: str) -> Any:
    def run(connection: Connection) -> None:
        config = AlembicConfig()
        config.set_main_option("script_location", "daemon.store:migrations")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return run


async def found(queries: Queries, q: str) -> list[str]:
    return [t["summary"] for t in (await queries.tickets(Page(), q=q))["items"]]


async def test_the_index_covers_older_tickets_and_follows_every_change(db_url: str) -> None:
    db = pg_database() if db_url.startswith("postgresql") else Database(db_url)
    try:
        await db.run_on_connection(upgrade_to("0004"))

        def insert(session: Session) -> None:
            for n, details in enumerate(("printer jammed", "disk nearly full", "backup failed")):
                session.execute(text(
                    "INSERT INTO tickets (type, status, summary, details, opened_at) "
                    "VALUES ('alert', 'open', :summary, :details, :opened_at)"),
                    {"summary": f"ticket {n}", "details": details, "opened_at": utcnow()})
        await db.write(insert)
        await db.upgrade()  # 0005 builds the index over these three
        queries = Queries(db)
        assert await found(queries, "disk FULL") == ["ticket 1"]

        await db.write(lambda s: s.execute(text(
            "UPDATE tickets SET details = 'toner empty' WHERE summary = 'ticket 0'")))
        await db.write(lambda s: s.execute(text("UPDATE tickets SET status = 'closed'")))
        await db.write(lambda s: s.execute(text(
            "DELETE FROM tickets WHERE summary = 'ticket 2'")))
        assert await found(queries, "printer") == []
        assert await found(queries, "toner") == ["ticket 0"]
        assert await found(queries, "backup") == []
        assert await found(queries, "ticket") == ["ticket 1", "ticket 0"]
    finally:
        await db.dispose()


async def test_a_search_uses_the_index(db: Database) -> None:
    query = select(Ticket.id).where(ticket_text_matches(db.dialect_name, "disk"))

    def plan(session: Session) -> str:
        sql = query.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        if db.is_sqlite:
            explain = "EXPLAIN QUERY PLAN"
        else:
            # Without statistics the planner may prefer scanning a small table: forbid it, to
            # see that the index can serve the query (the expressions match).
            session.execute(text("SET LOCAL enable_seqscan = off"))
            explain = "EXPLAIN"
        return " ".join(str(row) for row in session.execute(text(f"{explain} {sql}")))
    assert ("tickets_fts" if db.is_sqlite else "ix_tickets_fts") in await db.read(plan)
