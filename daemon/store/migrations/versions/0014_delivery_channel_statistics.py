"""PostgreSQL: statistics of which (channel, source) pairs deliveries hold (issue 18, item 3).

"The newest delivery of webhook:syncro" is `WHERE channel = .. AND source = .. ORDER BY id
DESC LIMIT 1`. Without these statistics the planner multiplies the two columns' frequencies,
expects many rows of a pair that has none (Syncro by webhook, Datto by poll: each value
common, the pair absent) and walks the primary key backwards through every row: 146 ms at a
million deliveries, on every /metrics scrape, GET /api/status and silence check. With them it
knows the pair is rare and takes `ix_deliveries_channel_source_id`: 0.02 ms
(bench/metrics_scrape.py). SQLite's planner takes that index anyway.

Revision ID: 0014
Revises: 0013
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE STATISTICS IF NOT EXISTS st_deliveries_channel_source (mcv) "
                   "ON channel, source FROM deliveries")
        # Gathered now, not at autovacuum's next visit, which may be days away on a table
        # that is mostly inserted into.
        op.execute("ANALYZE deliveries")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP STATISTICS IF EXISTS st_deliveries_channel_source")
