"""Lifecycle, human work: when an agent first worked on a ticket, and when its alert was
resolved upstream while the ticket was left open (`[lifecycle] auto_close`, issue 16).

Revision ID: 0007
Revises: 0006
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns without a default: SQLite adds them in place (no table copy). Plain
    # types, as in 0001: a migration never depends on model code that changes later.
    op.add_column("tickets", sa.Column("touched_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("tickets", sa.Column("upstream_resolved_at", sa.DateTime(timezone=True),
                                       nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch_op:
        batch_op.drop_column("upstream_resolved_at")
        batch_op.drop_column("touched_at")
