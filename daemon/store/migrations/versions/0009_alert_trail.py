"""Lifecycle, the trail: every decision alertd takes about an alert, with its reason
(issue 16, rule 7). Alerts stored before start their trail from their deliveries' outcomes.

Revision ID: 0009
Revises: 0008
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_trail",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("alert_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"],
                                name="fk_alert_trail_alert_id_alerts"),
        sa.PrimaryKeyConstraint("id", name="pk_alert_trail"),
    )
    op.create_index("ix_alert_trail_alert_id_id", "alert_trail", ["alert_id", "id"])
    # What is known of the alerts stored before: each processed delivery's outcome (for a
    # delivery with several events, the first event's alert and the outcomes joined).
    op.execute(
        "INSERT INTO alert_trail (alert_id, at, decision, channel) "
        "SELECT alert_id, processed_at, substr(outcome, 1, 32), channel FROM deliveries "
        "WHERE alert_id IS NOT NULL AND outcome IS NOT NULL AND processed_at IS NOT NULL "
        "ORDER BY id")


def downgrade() -> None:
    op.drop_index("ix_alert_trail_alert_id_id", table_name="alert_trail")
    op.drop_table("alert_trail")
