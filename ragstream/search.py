"""Semantic search: the query's vector against the stored chunks, cosine top-k.

Only ``complete`` documents of the caller's tenant are searched, and only
vectors of the embedding model that embeds the query: vectors of different
models are never compared. The HTTP API and ``ragstream search`` both call
:func:`search`, with the embedder :class:`QueryEmbedders` picks: the model a
caller names, else the one ``ragstream reembed --swap`` made active, else the
configured one. A swap is seen by the next query, without a restart.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pgvector.sqlalchemy import Vector
from sqlalchemy import Engine, cast, exists, select, text

from ragstream.db.models import ChunkBuffer, Document, VectorBuffer
from ragstream.embedding import Embedder, make_embedder
from ragstream.errors import NoVectors
from ragstream.settings import Settings
from ragstream.state import DocumentStatus

MAX_K = 100


@dataclass(frozen=True)
class Hit:
    score: float
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    chunk_index: int
    text: str
    pages: tuple[int, ...]
    heading_path: tuple[str, ...]
    filename: str | None
    external_id: str | None


class QueryEmbedders:
    """The embedder for each model queries ask for, made once and kept for the process."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._made: dict[tuple[str, str], Embedder] = {}
        self._lock = threading.Lock()

    def get(self, model: str | None = None) -> Embedder:
        """``model`` is a spec (``hash``, ``minilm``, ``openai:<name>``); None = the active one."""
        from ragstream.ops import reembed  # the model registry; it imports the stages

        chosen = (
            reembed.model_settings(self.settings, model)
            if model
            else reembed.search_settings(self.settings, self.engine)
        )
        key = (
            chosen.embedder,
            chosen.openai_model if chosen.embedder == "openai" else str(chosen.hash_dimensions),
        )
        with self._lock:
            if key not in self._made:
                try:
                    self._made[key] = make_embedder(chosen)
                except ImportError as exc:  # e.g. minilm without its extra
                    raise reembed.UnknownModel(f"model {model} cannot be loaded: {exc}") from exc
            return self._made[key]

    def close(self) -> None:
        with self._lock:
            for embedder in self._made.values():
                embedder.close()
            self._made.clear()


def search(
    engine: Engine,
    embedder: Embedder,
    query: str,
    *,
    tenant: str,
    k: int = 5,
    document_ids: Sequence[uuid.UUID] | None = None,
    metadata: Mapping[str, str] | None = None,
    named: bool = False,
) -> list[Hit]:
    """The ``k`` chunks closest to ``query`` (cosine), best first; score = cosine similarity.

    ``named``: the caller chose the model, so one without any vectors is an
    error (:class:`NoVectors`) rather than an empty answer.
    """
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be between 1 and {MAX_K}, not {k}")
    if named:
        with engine.connect() as conn:
            found = conn.execute(select(exists().where(VectorBuffer.model == embedder.name)))
            if not found.scalar():
                raise NoVectors(f"model {embedder.name} has no vectors here: nothing to search")
    (vector,) = embedder.embed([query])
    # The same cast and ``model =`` filter as the model's partial HNSW index (db/vectors.py).
    embedding = cast(VectorBuffer.embedding, Vector(embedder.dimensions))
    distance = embedding.cosine_distance(list(vector))
    stmt = (
        select(
            (1 - distance).label("score"),
            ChunkBuffer.id,
            ChunkBuffer.document_id,
            ChunkBuffer.chunk_index,
            ChunkBuffer.text,
            ChunkBuffer.pages,
            ChunkBuffer.heading_path,
            Document.filename,
            Document.external_id,
        )
        .select_from(VectorBuffer)
        .join(ChunkBuffer, ChunkBuffer.id == VectorBuffer.chunk_id)
        .join(Document, Document.id == VectorBuffer.document_id)
        .where(
            Document.tenant == tenant,
            Document.status == DocumentStatus.COMPLETE.value,
            VectorBuffer.model == embedder.name,
        )
        .order_by(distance)
        .limit(k)
    )
    if document_ids is not None:
        stmt = stmt.where(Document.id.in_(list(document_ids)))
    if metadata:
        stmt = stmt.where(Document.metadata_.contains(dict(metadata)))
    with engine.begin() as conn:
        # Filters are applied while the HNSW index is walked, not after it, so a
        # selective filter still returns k hits (pgvector >= 0.8).
        conn.execute(text("SET LOCAL hnsw.iterative_scan = strict_order"))
        rows = conn.execute(stmt).all()
    return [
        Hit(
            score=float(r.score),
            chunk_id=r.id,
            document_id=r.document_id,
            chunk_index=r.chunk_index,
            text=r.text,
            pages=tuple(r.pages),
            heading_path=tuple(r.heading_path),
            filename=r.filename,
            external_id=r.external_id,
        )
        for r in rows
    ]
