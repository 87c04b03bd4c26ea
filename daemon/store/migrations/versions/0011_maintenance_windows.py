"""Lifecycle, maintenance windows (issue 16, rule 4): the windows set through the API and the
CLI, and on each alert the window that held its ticket back.

Revision ID: 0011
Revises: 0010
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "maintenance_windows",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("ended_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_maintenance_windows"),
    )
    # The windows not over yet: every few seconds, by each process.
    op.create_index("ix_maintenance_windows_ends_at", "maintenance_windows", ["ends_at"])
    # Nullable, no default: SQLite adds it in place.
    op.add_column("alerts", sa.Column("suppressed_by", sa.String(length=100), nullable=True))
    op.add_column("alerts", sa.Column("held", sa.JSON(), nullable=True))
    op.add_column("alerts", sa.Column("held_since", sa.DateTime(timezone=True), nullable=True))
    # The suppressed alerts waiting for their ticket: cleared when one gets it or resolves,
    # so the release job reads only those, however many were suppressed before.
    op.create_index("ix_alerts_held_since", "alerts", ["held_since"])
    # The suppressed alerts still waiting for their ticket (the release job's lookup).
    op.create_index("ix_alerts_suppressed_by", "alerts", ["suppressed_by"])


def downgrade() -> None:
    op.drop_index("ix_alerts_held_since", table_name="alerts")
    op.drop_index("ix_alerts_suppressed_by", table_name="alerts")
    with op.batch_alter_table("alerts") as batch_op:
        batch_op.drop_column("held_since")
        batch_op.drop_column("held")
        batch_op.drop_column("suppressed_by")
    op.drop_index("ix_maintenance_windows_ends_at", table_name="maintenance_windows")
    op.drop_table("maintenance_windows")
