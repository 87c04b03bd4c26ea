"""Sync: customers get a top level; each sync run is recorded.

Revision ID: 0003
Revises: 0002
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch_op:
        batch_op.add_column(sa.Column("top_level", sa.String(length=255), nullable=True))
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("entities", sa.String(length=64), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
    )
    with op.batch_alter_table("sync_runs") as batch_op:
        batch_op.create_index(batch_op.f("ix_sync_runs_started_at"), ["started_at"],
                              unique=False)
    # The sync matches assets by serial or name without case.
    op.create_index("ix_assets_serial_lower", "assets", [sa.text("lower(serial)")])
    op.create_index("ix_assets_name_lower", "assets", [sa.text("lower(name)")])


def downgrade() -> None:
    op.drop_index("ix_assets_name_lower", table_name="assets")
    op.drop_index("ix_assets_serial_lower", table_name="assets")
    with op.batch_alter_table("sync_runs") as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_runs_started_at"))
    op.drop_table("sync_runs")
    with op.batch_alter_table("customers") as batch_op:
        batch_op.drop_column("top_level")
