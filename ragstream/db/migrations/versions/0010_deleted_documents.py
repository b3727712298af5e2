"""deleted documents (tombstones without content)

Revision ID: 0010
Revises: 0009

The id of every deleted document, and when: its queued or replayed events are
then skipped as deleted, while an event naming a document that never existed
stays an error (dead-lettered). Holds no text, name or metadata.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deleted_documents",
        sa.Column("document_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column(
            "deleted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("document_id", name=op.f("pk_deleted_documents")),
    )


def downgrade() -> None:
    op.drop_table("deleted_documents")
