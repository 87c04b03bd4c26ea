"""Scale: an index on outbox.alert_id.

The console's ticket page lists the outbox rows of the ticket's alert. The only index with
`alert_id` was the unique (action, alert_id), which a lookup by alert cannot enter, so every
ticket page read the whole outbox: one row per ticket an agent closed (with 100,000 tickets,
1 ms more per page on SQLite, 2 ms on PostgreSQL; bench/ticket_scale.py).

Revision ID: 0006
Revises: 0005
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_outbox_alert_id", "outbox", ["alert_id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_alert_id", table_name="outbox")
