"""The RMM's id of an alert's device, kept on the alert (issue 17, item 9): a Datto alert that
came by mail alone names none until alertd asks the API ("" once Datto named none).

Revision ID: 0013
Revises: 0012
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: SQLite adds it in place. Alerts stored before stay NULL; the
    # job asks Datto only about those whose ticket is open and on no asset.
    op.add_column("alerts", sa.Column("device_ref", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch_op:
        batch_op.drop_column("device_ref")
