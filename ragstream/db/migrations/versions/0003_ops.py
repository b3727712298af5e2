"""ops: embedding models

Revision ID: 0003
Revises: 0001

The embedding models vectors exist for, and which one search uses: a model
back-filled by ``ragstream reembed`` is ``building`` until ``--swap`` makes it
``active`` (and the previous one ``retired``). At most one is active.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None

STATES = ("building", "active", "retired")


def upgrade() -> None:
    op.create_table(
        "embedding_models",
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("model", name=op.f("pk_embedding_models")),
    )
    op.create_check_constraint(
        "ck_embedding_models_state", "embedding_models", sa.column("state").in_(STATES)
    )
    op.create_index(
        "uq_embedding_models_one_active",
        "embedding_models",
        ["state"],
        unique=True,
        postgresql_where=sa.text("state = 'active'"),
    )


def downgrade() -> None:
    op.drop_index("uq_embedding_models_one_active", table_name="embedding_models")
    op.drop_table("embedding_models")
