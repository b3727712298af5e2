"""document keys (crypto-shredding)

Revision ID: 0009
Revises: 0008

Every text-bearing field of an event (a chunk's text and headings) is sealed
with its document's own AES-256-GCM key, kept here and deleted with the
document (ON DELETE CASCADE): the copies in the topics, their DLQs included,
are unreadable from the moment the delete commits. Documents stored before this
revision get a key now (two random UUIDs: 244 random bits from the server's
strong generator); their older records, written in the clear, stay readable.

The two ``text_sha256`` indexes let a delete find the embedding-cache rows of
its chunks' texts, and whether another document still uses them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "document_keys",
        sa.Column("document_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("key_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_document_keys_document_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("document_id", name=op.f("pk_document_keys")),
    )
    op.execute(
        "INSERT INTO document_keys (document_id, key_id, key) "
        "SELECT id, gen_random_uuid(), "
        "uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()) FROM documents"
    )
    op.create_index(
        op.f("ix_embedding_cache_text_sha256"), "embedding_cache", ["text_sha256"], unique=False
    )
    op.create_index(
        op.f("ix_document_vector_buffer_text_sha256"),
        "document_vector_buffer",
        ["text_sha256"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_document_vector_buffer_text_sha256"), "document_vector_buffer")
    op.drop_index(op.f("ix_embedding_cache_text_sha256"), "embedding_cache")
    op.drop_table("document_keys")
