"""Browsing and search: full-text index of tickets, indexes for the ticket filters, the
assets-by-site filter and the newest delivery of each channel (GET /api/status).

The full-text index is backend-specific DDL that the models cannot describe
(daemon/store/ticket_search.py names its objects and queries them):
- PostgreSQL: a GIN index over to_tsvector('simple', summary || ' ' || details). The query
  must repeat that expression exactly for the planner to use the index.
- SQLite: an FTS5 table with external content (the text stays in `tickets` only), kept in
  step by three triggers. A later migration that rebuilds `tickets` with batch_alter_table
  (copy, drop, rename) drops these triggers with the old table: it must create them again
  (`_SQLITE_TRIGGERS` below) and rebuild the index.

Revision ID: 0005
Revises: 0004
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_TRIGGERS = (
    """CREATE TRIGGER tickets_fts_insert AFTER INSERT ON tickets BEGIN
         INSERT INTO tickets_fts (rowid, summary, details)
         VALUES (new.id, new.summary, new.details);
       END""",
    # 'delete' must be given the old values: with external content FTS5 cannot read them.
    """CREATE TRIGGER tickets_fts_delete AFTER DELETE ON tickets BEGIN
         INSERT INTO tickets_fts (tickets_fts, rowid, summary, details)
         VALUES ('delete', old.id, old.summary, old.details);
       END""",
    # Only when the text changes: closing a ticket updates other columns and costs nothing.
    """CREATE TRIGGER tickets_fts_update AFTER UPDATE OF summary, details ON tickets BEGIN
         INSERT INTO tickets_fts (tickets_fts, rowid, summary, details)
         VALUES ('delete', old.id, old.summary, old.details);
         INSERT INTO tickets_fts (rowid, summary, details)
         VALUES (new.id, new.summary, new.details);
       END""",
)


def upgrade() -> None:
    op.create_index("ix_tickets_customer_id_id", "tickets", ["customer_id", "id"])
    op.create_index("ix_tickets_site_id_id", "tickets", ["site_id", "id"])
    op.create_index("ix_assets_site_id", "assets", ["site_id"])
    op.create_index("ix_deliveries_channel_id", "deliveries", ["channel", "id"])
    op.create_index("ix_deliveries_channel_source_id", "deliveries",
                    ["channel", "source", "id"])
    if op.get_bind().dialect.name == "postgresql":
        # Built from the existing rows as it is created.
        op.execute("CREATE INDEX ix_tickets_fts ON tickets USING gin "
                   "(to_tsvector('simple', summary || ' ' || details))")
        return
    op.execute("CREATE VIRTUAL TABLE tickets_fts USING fts5 (summary, details, "
               "content='tickets', content_rowid='id')")
    for trigger in _SQLITE_TRIGGERS:
        op.execute(trigger)
    op.execute("INSERT INTO tickets_fts (tickets_fts) VALUES ('rebuild')")  # existing rows


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_tickets_fts")
    else:
        for name in ("tickets_fts_insert", "tickets_fts_delete", "tickets_fts_update"):
            op.execute(f"DROP TRIGGER {name}")
        op.execute("DROP TABLE tickets_fts")
    op.drop_index("ix_deliveries_channel_source_id", table_name="deliveries")
    op.drop_index("ix_deliveries_channel_id", table_name="deliveries")
    op.drop_index("ix_assets_site_id", table_name="assets")
    op.drop_index("ix_tickets_site_id_id", table_name="tickets")
    op.drop_index("ix_tickets_customer_id_id", table_name="tickets")
