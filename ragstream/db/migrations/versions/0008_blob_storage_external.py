"""blob content stored uncompressed

Revision ID: 0008
Revises: 0007

Large blobs are read in slices; a slice of a compressed value costs a
decompression of everything before it, which makes reading a whole large blob
in slices quadratic. Uploads that compress (PDF, DOCX) are compressed already.
Rows stored before this revision keep their compression until rewritten.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE blobs ALTER COLUMN content SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.execute("ALTER TABLE blobs ALTER COLUMN content SET STORAGE EXTENDED")
