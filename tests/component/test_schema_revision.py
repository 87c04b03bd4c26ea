"""The schema check at start reads revisions without alembic and agrees with alembic: the
head found from the scripts' names is alembic's head, the current revision is what alembic
reads from the database."""

from __future__ import annotations

from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from daemon.store.database import Database, _alembic_config, current_revision, head_revision
from tests.conftest import pg_database


def _both(connection: Connection) -> tuple[str | None, str | None]:
    return (current_revision(connection),
            MigrationContext.configure(connection).get_current_revision())


def test_head_revision_is_alembics_head() -> None:
    """Every script is named after its revision, the revisions count up in order of the
    history, so the greatest name is the head (what `head_revision` relies on)."""
    scripts = ScriptDirectory.from_config(_alembic_config())
    history = list(reversed(list(scripts.walk_revisions())))  # oldest first
    for script in history:
        assert script.path and Path(script.path).name.startswith(f"{script.revision}_")
    assert [int(s.revision) for s in history] == sorted(int(s.revision) for s in history)
    assert head_revision() == scripts.get_current_head() == history[-1].revision


async def test_current_revision_reads_what_alembic_reads(db_url: str) -> None:
    db = pg_database() if db_url.startswith("postgresql") else Database(db_url)
    head = head_revision()
    try:
        assert await db.run_on_connection(_both) == (None, None)  # empty: no version table
        assert await db.schema_revisions() == (None, head)
        await db.upgrade()
        assert await db.run_on_connection(_both) == (head, head)
        assert await db.schema_revisions() == (head, head)
    finally:
        await db.dispose()
