"""Per-model vector indexes: one table, one partial HNSW index per model and dimension.

``document_vector_buffer.embedding`` is an untyped ``vector`` so that every
model keeps its own dimension; each model gets a partial expression index
``((embedding::vector(N))) WHERE model = '<name>'``, which search uses by
ordering on the same cast with the same ``model =`` filter. One table keeps
the chunk join, the lineage columns and the ``ON CONFLICT (id)`` upserts
unchanged, where a table per model would multiply them.
"""

from __future__ import annotations

import hashlib
import re

from sqlalchemy import Connection, text

MAX_DIMENSIONS = 2000
"""pgvector's HNSW index limit for ``vector``."""


def index_name(model: str, dimensions: int) -> str:
    """A stable, valid index name per (model, dimension), under PostgreSQL's 63 bytes."""
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")[:30]
    digest = hashlib.sha256(f"{model}\x1f{dimensions}".encode()).hexdigest()[:8]
    return f"ix_vectors_{slug}_{dimensions}_{digest}"


def ensure_index(conn: Connection, model: str, dimensions: int) -> str:
    """Create ``model``'s HNSW (cosine) index at ``dimensions`` when it does not exist yet."""
    if not 1 <= dimensions <= MAX_DIMENSIONS:
        raise ValueError(
            f"{model}: {dimensions} dimensions; an HNSW index takes 1 to {MAX_DIMENSIONS}"
        )
    name = index_name(model, dimensions)
    literal = model.replace("'", "''")
    # Concurrent first starts of the same model queue on this lock, not on a name clash.
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": name})
    conn.execute(
        text(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON document_vector_buffer USING hnsw '
            f"((embedding::vector({int(dimensions)})) vector_cosine_ops) "
            f"WHERE model = '{literal}'"
        )
    )
    return name
