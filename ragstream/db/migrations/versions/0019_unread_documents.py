"""documents whose content was never read: documents.sha256 nullable

Revision ID: 0019
Revises: 0018

An upload event from another service that names an object ragstream cannot
read (absent, refused, over the size limit, another hash) is recorded as a
failed document with the reason; its content, and so its hash, is unknown.
The (tenant, sha256) unique constraint lets any number of NULLs through.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("documents", "sha256", existing_type=sa.String(64), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM documents WHERE sha256 IS NULL")
    op.alter_column("documents", "sha256", existing_type=sa.String(64), nullable=False)
