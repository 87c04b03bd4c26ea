"""Lifecycle, conditions and flapping (issue 16, rules 2 and 3): a ticket holds every alert of
its condition. Each alert names its ticket (`alerts.ticket_id`; `tickets.alert_id` stays the
alert that opened it) and its condition; a ticket counts its raises, remembers when the last
one came (one note per burst), and when it closes once its condition stayed clear.

Revision ID: 0010
Revises: 0009
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Nullable columns (or with a constant default): SQLite adds them in place.
    op.add_column("alerts", sa.Column("ticket_id", _ID, nullable=True))
    op.add_column("alerts", sa.Column("condition", sa.String(length=255), nullable=True))
    # No foreign key: SQLite cannot add one to a table in place, and alertd writes the
    # column only in the lifecycle's transaction, with the id of the ticket it just locked.
    # A ticket's alerts in order (its page), and its open ones (a resolve asks whether others
    # are still open; a flapping condition's ticket may hold thousands of resolved ones).
    op.create_index("ix_alerts_ticket_id_id", "alerts", ["ticket_id", "id"])
    op.create_index("ix_alerts_ticket_id_state", "alerts", ["ticket_id", "state"])
    op.add_column("tickets", sa.Column("condition", sa.String(length=255), nullable=True))
    op.add_column("tickets", sa.Column("occurrences", sa.Integer(), nullable=False,
                                       server_default="1"))
    op.add_column("tickets", sa.Column("last_raised_at", sa.DateTime(timezone=True),
                                       nullable=True))
    op.add_column("tickets", sa.Column("close_due_at", sa.DateTime(timezone=True),
                                       nullable=True))
    # The newest ticket of a condition (open: join it; closed a moment ago: reopen it).
    op.create_index("ix_tickets_condition_id", "tickets", ["condition", "id"])
    # Tickets whose condition stayed clear long enough to close (`close_after_clear`).
    op.create_index("ix_tickets_close_due_at", "tickets", ["close_due_at"])
    op.execute("UPDATE alerts SET ticket_id = "
               "(SELECT tickets.id FROM tickets WHERE tickets.alert_id = alerts.id)")


def downgrade() -> None:
    op.drop_index("ix_tickets_close_due_at", table_name="tickets")
    op.drop_index("ix_tickets_condition_id", table_name="tickets")
    with op.batch_alter_table("tickets") as batch_op:
        batch_op.drop_column("close_due_at")
        batch_op.drop_column("last_raised_at")
        batch_op.drop_column("occurrences")
        batch_op.drop_column("condition")
    op.drop_index("ix_alerts_ticket_id_state", table_name="alerts")
    op.drop_index("ix_alerts_ticket_id_id", table_name="alerts")
    with op.batch_alter_table("alerts") as batch_op:
        batch_op.drop_column("condition")
        batch_op.drop_column("ticket_id")
