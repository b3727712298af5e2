"""merge the api, ops, monitor and embedding-cache branches

Revision ID: 0006
Revises: 0002, 0003, 0004, 0005

The four branches grew side by side from the initial schema and touch
different tables; this revision joins them into one head.
"""

from __future__ import annotations

revision = "0006"
down_revision = ("0002", "0003", "0004", "0005")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
