"""monitor tables

Revision ID: 0004
Revises: 0001

What the monitor knows, kept where the API and the CLI can read it: alerts
(open and resolved), the health of each stage, and where each waiting document
sits in its stage's queue.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "monitor_alerts",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=True),
        sa.Column("document_id", sa.UUID(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "details", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column("occurrences", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "first_seen_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False
        ),
        sa.Column(
            "last_seen_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False
        ),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_alerts")),
    )
    op.create_index("ix_monitor_alerts_resolved_at", "monitor_alerts", ["resolved_at"])
    op.create_index("ix_monitor_alerts_first_seen_at", "monitor_alerts", ["first_seen_at"])
    op.create_table(
        "monitor_stages",
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("lag", sa.BigInteger(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("processed_per_min", sa.Float(), nullable=False),
        sa.Column("arrivals_per_min", sa.Float(), nullable=False),
        sa.Column("dlq_messages", sa.BigInteger(), nullable=False),
        sa.Column(
            "partitions",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("last_progress_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("stage", name=op.f("pk_monitor_stages")),
    )
    op.create_table(
        "monitor_waiting",
        sa.Column("document_id", sa.UUID(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("document_id", name=op.f("pk_monitor_waiting")),
    )


def downgrade() -> None:
    op.drop_table("monitor_waiting")
    op.drop_table("monitor_stages")
    op.drop_index("ix_monitor_alerts_first_seen_at", table_name="monitor_alerts")
    op.drop_index("ix_monitor_alerts_resolved_at", table_name="monitor_alerts")
    op.drop_table("monitor_alerts")
