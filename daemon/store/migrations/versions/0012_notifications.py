"""Notifications (issue 17): outbox rows that tell a `[[notify]]` target of a ticket's change.

A notification row has action "notify", source = the target's name, target = the event
(`ticket.opened`, ...), the ticket it is about and what the event adds (`payload`). Its
`alert_id` stays empty: the unique (action, alert_id) keeps meaning one resolve per alert.

Revision ID: 0012
Revises: 0011
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Nullable, no default: SQLite adds them in place.
    op.add_column("outbox", sa.Column("ticket_id", _ID, nullable=True))
    op.add_column("outbox", sa.Column("payload", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.drop_column("payload")
        batch_op.drop_column("ticket_id")
