"""the monitor's stage history: monitor_stage_history

Revision ID: 0018
Revises: 0017

Each watchdog look writes one row per stage (processed per minute, arrivals
per minute, lag) so the dashboard can chart the last hour; the monitor's
housekeeping prunes rows older than ``monitor_retention_s``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_stage_history",
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_per_min", sa.Float(), nullable=False),
        sa.Column("arrivals_per_min", sa.Float(), nullable=False),
        sa.Column("lag", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("stage", "at", name=op.f("pk_monitor_stage_history")),
    )
    op.create_index("ix_monitor_stage_history_at", "monitor_stage_history", ["at"])


def downgrade() -> None:
    op.drop_index("ix_monitor_stage_history_at", table_name="monitor_stage_history")
    op.drop_table("monitor_stage_history")
