"""merge: per-model vectors, sync sources and text search join one history

Revision ID: 0015
Revises: 0011, 0012, 0014

The three revisions were written side by side on top of 0010 and touch
different tables; this empty revision joins them so that ``alembic heads``
names one revision again and the next migration has one parent.
"""

from __future__ import annotations

revision = "0015"
down_revision = ("0011", "0012", "0014")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
