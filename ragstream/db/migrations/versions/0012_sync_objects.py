"""sync sources: which object of which source each synced document came from

Revision ID: 0012
Revises: 0010

``ragstream sync`` compares a source (a directory) with this table: an object
whose size and modification time are unchanged is not read again, one whose
content hash is unchanged is not submitted again, and a row whose object is
gone names the document to delete. No foreign key to ``documents``: the row
outlives a version replaced by the next one, which it then names.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_objects",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("stamp", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("document_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=False),
        sa.Column(
            "synced_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("tenant", "source", "key", name=op.f("pk_sync_objects")),
    )
    op.create_index(op.f("ix_sync_objects_document_id"), "sync_objects", ["document_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_sync_objects_document_id"), table_name="sync_objects")
    op.drop_table("sync_objects")
