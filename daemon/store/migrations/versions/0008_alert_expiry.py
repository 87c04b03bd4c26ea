"""Lifecycle, alerts that never clear: an email rule's `expire_after` kept on its alert
(issue 16).

Revision ID: 0008
Revises: 0007
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: SQLite adds the column in place (no table copy).
    op.add_column("alerts", sa.Column("expire_after_s", sa.Integer(), nullable=True))
    # The expiry job reads the non-null entries: the open alerts a rule gave an expiry
    # (alertd clears the column when an alert resolves).
    op.create_index("ix_alerts_expire_after_s", "alerts", ["expire_after_s"])


def downgrade() -> None:
    op.drop_index("ix_alerts_expire_after_s", table_name="alerts")
    with op.batch_alter_table("alerts") as batch_op:
        batch_op.drop_column("expire_after_s")
