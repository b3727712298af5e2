"""keyword search: a generated tsvector per chunk, in its document's language, with a GIN index

Revision ID: 0014
Revises: 0010

Each chunk row gets ``text_search_config`` (the PostgreSQL text-search
configuration of its document's language, ``simple`` when unknown) and
``text_search``, generated from the text with that configuration and stored,
with a GIN index; the document row records the configuration too, so a query
is parsed once per configuration a tenant uses. Existing chunks are indexed
as ``simple`` (a re-chunk picks their language).
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE documents ADD COLUMN text_search_config regconfig")
    op.execute(
        "ALTER TABLE document_chunk_buffer "
        "ADD COLUMN text_search_config regconfig NOT NULL DEFAULT 'simple'"
    )
    op.execute(
        "ALTER TABLE document_chunk_buffer ADD COLUMN text_search tsvector "
        "GENERATED ALWAYS AS (to_tsvector(text_search_config, text)) STORED"
    )
    op.execute(
        "CREATE INDEX ix_document_chunk_buffer_text_search "
        "ON document_chunk_buffer USING gin (text_search)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_document_chunk_buffer_text_search")
    op.execute("ALTER TABLE document_chunk_buffer DROP COLUMN text_search")
    op.execute("ALTER TABLE document_chunk_buffer DROP COLUMN text_search_config")
    op.execute("ALTER TABLE documents DROP COLUMN text_search_config")
