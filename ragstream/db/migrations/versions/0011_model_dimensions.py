"""vectors of any dimension, per model; the model registry records each model's identity

Revision ID: 0011
Revises: 0010

``document_vector_buffer.embedding`` becomes an untyped ``vector`` and the one
HNSW index over every model's vectors is replaced by one partial expression
index per model (``ragstream.db.vectors``). Vector rows and ``embedding_models``
gain the model's dimension and, for remote models, the serving endpoint's
model id; the registry also records the model version. Existing rows are
384-dimensional.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ragstream.db import vectors

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("embedding_models", sa.Column("version", sa.Text(), nullable=True))
    op.add_column("embedding_models", sa.Column("dimensions", sa.Integer(), nullable=True))
    op.add_column("embedding_models", sa.Column("served_model_id", sa.Text(), nullable=True))
    op.add_column("document_vector_buffer", sa.Column("dimensions", sa.Integer(), nullable=True))
    op.add_column("document_vector_buffer", sa.Column("served_model_id", sa.Text(), nullable=True))
    op.execute("UPDATE document_vector_buffer SET dimensions = 384")
    op.alter_column("document_vector_buffer", "dimensions", nullable=False)
    op.drop_index("ix_document_vector_buffer_embedding_hnsw", table_name="document_vector_buffer")
    op.execute("ALTER TABLE document_vector_buffer ALTER COLUMN embedding TYPE vector")
    op.execute(
        "UPDATE embedding_models m SET dimensions = 384, version = v.model_version "
        "FROM (SELECT DISTINCT ON (model) model, model_version FROM document_vector_buffer) v "
        "WHERE v.model = m.model"
    )
    conn = op.get_bind()
    for (model,) in conn.execute(sa.text("SELECT DISTINCT model FROM document_vector_buffer")):
        vectors.ensure_index(conn, model, 384)


def downgrade() -> None:
    conn = op.get_bind()
    for (name,) in conn.execute(
        sa.text(
            "SELECT indexname FROM pg_indexes "
            "WHERE tablename = 'document_vector_buffer' AND indexname LIKE 'ix_vectors_%'"
        )
    ):
        op.execute(f'DROP INDEX "{name}"')
    op.execute("DELETE FROM document_vector_buffer WHERE dimensions <> 384")
    op.execute("ALTER TABLE document_vector_buffer ALTER COLUMN embedding TYPE vector(384)")
    op.create_index(
        "ix_document_vector_buffer_embedding_hnsw",
        "document_vector_buffer",
        ["embedding"],
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
    op.drop_column("document_vector_buffer", "served_model_id")
    op.drop_column("document_vector_buffer", "dimensions")
    op.drop_column("embedding_models", "served_model_id")
    op.drop_column("embedding_models", "dimensions")
    op.drop_column("embedding_models", "version")
