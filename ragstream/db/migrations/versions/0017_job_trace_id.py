"""the trace a job belongs to: jobs.trace_id

Revision ID: 0017
Revises: 0016

The job API returns the W3C trace id (32 hex digits) of the trace the job's
request started or continued: an upload's, from its ``traceparent`` or a new
trace; a reprocess's, from its own request. Jobs made before this revision
have none (NULL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("trace_id", sa.String(32), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "trace_id")
