"""api: LlamaParse jobs, webhook deliveries, document versions

Revision ID: 0002
Revises: 0001

What the HTTP API adds: the LlamaParse jobs a parse is waiting on (so a lost
callback is found and a webhook and the poller meet in one idempotent write),
the ids of webhooks already accepted (a replay is accepted once), and the
version of a document a client names by its own ``external_id``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LLAMAPARSE_STATUSES = ("pending", "received", "failed", "abandoned")


def _timestamps() -> list[sa.Column[Any]]:
    return [
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    ]


def upgrade() -> None:
    op.add_column("documents", sa.Column("external_id", sa.Text(), nullable=True))
    op.add_column(
        "documents", sa.Column("version", sa.Integer(), server_default="1", nullable=False)
    )
    op.create_index(
        "uq_documents_tenant_external_id_version",
        "documents",
        ["tenant", "external_id", "version"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_table(
        "llamaparse_jobs",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("document_id", sa.UUID(), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="1", nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("callback_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_via", sa.Text(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result_blob_sha256", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("source_topic", sa.Text(), nullable=True),
        sa.Column("source_partition", sa.Integer(), nullable=True),
        sa.Column("source_offset", sa.BigInteger(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_llamaparse_jobs_document_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llamaparse_jobs")),
    )
    op.create_check_constraint(
        "ck_llamaparse_jobs_status", "llamaparse_jobs", sa.column("status").in_(LLAMAPARSE_STATUSES)
    )
    op.create_index(
        op.f("ix_llamaparse_jobs_document_id"), "llamaparse_jobs", ["document_id"], unique=False
    )
    op.create_index(op.f("ix_llamaparse_jobs_job_id"), "llamaparse_jobs", ["job_id"], unique=False)
    op.create_index(
        "ix_llamaparse_jobs_open",
        "llamaparse_jobs",
        ["callback_due_at"],
        unique=False,
        postgresql_where=sa.text(
            "status = 'pending' OR (status = 'received' AND published_at IS NULL)"
        ),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_llamaparse_jobs_open", table_name="llamaparse_jobs")
    op.drop_index(op.f("ix_llamaparse_jobs_job_id"), table_name="llamaparse_jobs")
    op.drop_index(op.f("ix_llamaparse_jobs_document_id"), table_name="llamaparse_jobs")
    op.drop_table("llamaparse_jobs")
    op.drop_index("uq_documents_tenant_external_id_version", table_name="documents")
    op.drop_column("documents", "version")
    op.drop_column("documents", "external_id")
