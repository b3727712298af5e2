"""finalize: documents.embedded -> complete, once every chunk has a vector of the active model.

Vectors of any other model never complete a document: a document whose chunks
were embedded partly by another model (a worker that had not seen a swap yet)
is completed by the active model's vectors when they arrive, never split.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy import func, select

from ragstream.consumers.base import Incoming, Stage, StageContext, StageOutput
from ragstream.db.models import ChunkBuffer, Document, VectorBuffer
from ragstream.db.repository import Transition
from ragstream.embedding import registry
from ragstream.schemas.events import ChunkEmbedded
from ragstream.state import DocumentStatus


class FinalizeStage(Stage):
    name = "finalize"
    consumes = ChunkEmbedded

    def process_current(self, batch: list[Incoming], ctx: StageContext) -> StageOutput:
        latest: dict[uuid.UUID, ChunkEmbedded] = {}
        for message in batch:
            latest[uuid.UUID(message.event.document_id)] = message.event
        with ctx.engine.connect() as conn:
            expected = dict(
                conn.execute(
                    select(Document.id, Document.chunk_count).where(Document.id.in_(latest))
                ).all()
            )
            live = registry.active(conn)
            vectors: dict[uuid.UUID, tuple[str, int]] = {}
            for document_id, event in latest.items():
                model = live.model if live is not None else event.model
                vectors[document_id] = (
                    model,
                    conn.execute(
                        select(func.count())
                        .select_from(VectorBuffer)
                        .join(ChunkBuffer, ChunkBuffer.id == VectorBuffer.chunk_id)
                        .where(
                            VectorBuffer.document_id == document_id,
                            VectorBuffer.model == model,
                        )
                    ).scalar_one(),
                )
        return StageOutput(transitions=completions(latest, expected, vectors))

    def process_one(self, message: Incoming, ctx: StageContext) -> StageOutput:
        return self.process_current([message], ctx)


def completions(
    latest: Mapping[uuid.UUID, ChunkEmbedded],
    chunk_counts: Mapping[uuid.UUID, int | None],
    vectors: Mapping[uuid.UUID, tuple[str, int]],
) -> list[Transition]:
    """The documents of ``latest`` (their last event) that are complete (no I/O): those
    with a vector of the model that counts (``vectors``: model, how many) for each of
    their chunks; a document without a chunk count yet is not."""
    out = []
    for document_id, event in latest.items():
        total = chunk_counts.get(document_id)
        model, have = vectors[document_id]
        if total is not None and have >= total:
            out.append(
                Transition(
                    document_id,
                    uuid.UUID(event.job_id),
                    DocumentStatus.COMPLETE,
                    {"embedding_model": model},
                )
            )
    return out
