"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

import warnings

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import SAWarning

from daemon.store.database import Database
from daemon.store.models import Base
from daemon.store.ticket_search import is_search_object


def _not_search_object(name: str | None, type_: str, parent_names: object) -> bool:
    """The tickets' full-text index is backend-specific DDL that only migration 0005 knows
    (a GIN expression index on PostgreSQL; an FTS5 table and its shadow tables on SQLite):
    the models cannot describe it, so the comparison leaves out exactly its objects, named
    in daemon/store/ticket_search.py, and compares everything else."""
    return not (type_ in ("table", "index") and is_search_object(name))


async def test_migrated_schema_matches_the_models(db: Database) -> None:
    def diff(connection: object) -> list[object]:
        context = MigrationContext.configure(connection, opts={  # type: ignore[arg-type]
            "compare_type": True, "include_name": _not_search_object})
        with warnings.catch_warnings():
            # SQLAlchemy cannot reflect SQLite's expression indexes (lower(serial)); it says
            # so and leaves them out of the comparison. PostgreSQL compares them.
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of "
                                    "expression-based index", SAWarning)
            warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified "
                                    "expression-based index", UserWarning)
            return list(compare_metadata(context, Base.metadata))

    assert await db.run_on_connection(diff) == []


async def test_upgrade_is_idempotent(db: Database) -> None:
    current, head = await db.schema_revisions()
    assert current == head
    assert await db.upgrade() == (head, head)
