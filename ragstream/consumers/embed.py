"""embed: documents.chunked -> documents.embedded. Batches chunks across messages."""

from __future__ import annotations

import hashlib
import uuid

from ragstream import ids, topology
from ragstream.consumers.base import Incoming, Outgoing, Stage, StageContext, StageOutput
from ragstream.db.models import VectorBuffer
from ragstream.embedding import Embedder, make_embedder
from ragstream.schemas.events import ChunkCreated, ChunkEmbedded, utc_now
from ragstream.state import DocumentStatus


class EmbedStage(Stage):
    name = "embed"
    consumes = ChunkCreated
    started_status = DocumentStatus.EMBEDDING

    def setup(self, ctx: StageContext) -> None:
        self.embedder: Embedder = make_embedder(ctx.settings)

    def process(self, batch: list[Incoming], ctx: StageContext) -> StageOutput:
        events: list[ChunkCreated] = [m.event for m in batch]
        vectors = self.embedder.embed([e.text for e in events])
        out = StageOutput()
        now = utc_now()
        for message, event, vector in zip(batch, events, vectors, strict=True):
            chunk_id = uuid.UUID(event.chunk_id)
            embedding_id = ids.embedding_id(chunk_id, self.embedder.name)
            out.upserts.append(
                (
                    VectorBuffer,
                    {
                        "id": embedding_id,
                        "chunk_id": chunk_id,
                        "document_id": uuid.UUID(event.document_id),
                        "job_id": uuid.UUID(event.job_id),
                        "model": self.embedder.name,
                        "model_version": self.embedder.version,
                        "text_sha256": hashlib.sha256(event.text.encode()).hexdigest(),
                        "chunker_version": event.chunker_version,
                        "chunker_config_hash": event.chunker_config_hash,
                        "parser": event.parser,
                        "parser_version": event.parser_version,
                        "embedding": list(vector),
                        "source_topic": message.topic,
                        "source_partition": message.partition,
                        "source_offset": message.offset,
                    },
                )
            )
            out.events.append(
                Outgoing(
                    ctx.topic(topology.EMBEDDED),
                    event.document_id,
                    ChunkEmbedded(
                        event_id=str(ids.event_id("ChunkEmbedded", embedding_id, event.job_id)),
                        embedding_id=str(embedding_id),
                        chunk_id=event.chunk_id,
                        document_id=event.document_id,
                        job_id=event.job_id,
                        tenant=event.tenant,
                        chunk_index=event.chunk_index,
                        chunk_count=event.chunk_count,
                        model=self.embedder.name,
                        model_version=self.embedder.version,
                        dimensions=self.embedder.dimensions,
                        vector=tuple(vector),
                        embedded_at=now,
                    ),
                )
            )
        return out

    def process_one(self, message: Incoming, ctx: StageContext) -> StageOutput:
        return self.process([message], ctx)
