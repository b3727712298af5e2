"""uploads kept in S3-compatible object storage: blobs.location, blobs.content nullable

Revision ID: 0020
Revises: 0019

With ``blob_store = s3://bucket/prefix`` an upload's bytes are an object there;
its row stays (the index that references, locks and deletes go through), with
the object's URI in ``location`` and no content. Every row has one or the other.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("blobs", sa.Column("location", sa.Text(), nullable=True))
    op.alter_column("blobs", "content", existing_type=sa.LargeBinary(), nullable=True)
    op.create_check_constraint(
        "content_or_location", "blobs", "content IS NOT NULL OR location IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_constraint("content_or_location", "blobs", type_="check")
    op.execute("DELETE FROM blobs WHERE content IS NULL")
    op.alter_column("blobs", "content", existing_type=sa.LargeBinary(), nullable=False)
    op.drop_column("blobs", "location")
