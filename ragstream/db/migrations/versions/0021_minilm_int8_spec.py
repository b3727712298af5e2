"""the quantized all-MiniLM-L6-v2 gets a spec of its own: minilm-int8

Revision ID: 0021
Revises: 0020

A worker follows the database by the active model's spec; ``minilm`` now means the
fp32 model on either runtime, so an int8 model registered under ``minilm`` before
would be served by the fp32 one. Its rows are renamed to the spec that builds it.
"""

from __future__ import annotations

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "UPDATE embedding_models SET spec = 'minilm-int8' "
        "WHERE spec = 'minilm' AND model LIKE '%-int8'"
    )


def downgrade() -> None:
    op.execute("UPDATE embedding_models SET spec = 'minilm' WHERE spec = 'minilm-int8'")
