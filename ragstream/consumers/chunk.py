"""chunk: documents.parsed -> documents.chunked. Text in, token-sized chunks out."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete

from ragstream import crypto, ids, textsearch
from ragstream.chunking import CHUNKER_VERSION, Chunk, ChunkerConfig, chunk_document
from ragstream.consumers.base import Incoming, Stage, StageContext, StageOutput
from ragstream.db import blobs, purge
from ragstream.db.models import ChunkBuffer
from ragstream.db.repository import Transition
from ragstream.documents import ParsedDocument
from ragstream.embedding.budget import token_budget
from ragstream.errors import MissingBlob
from ragstream.schemas import outgoing
from ragstream.schemas.events import DocumentParsed, utc_now
from ragstream.state import DocumentStatus


class ChunkStage(Stage):
    name = "chunk"
    consumes = DocumentParsed
    started_status = DocumentStatus.CHUNKING
    batch_limit = 1

    def setup(self, ctx: StageContext) -> None:
        budget = token_budget(ctx.settings)
        self.count_tokens = budget.count_tokens
        self.count_tokens_batch = budget.count_tokens_batch
        self.config = ChunkerConfig(
            target_tokens=ctx.settings.chunk_target_tokens,
            overlap_tokens=ctx.settings.chunk_overlap_tokens,
            max_tokens=budget.max_input_tokens,
        )
        self.config_hash = self.config.config_hash()

    def process_one(self, message: Incoming, ctx: StageContext) -> StageOutput:
        event: DocumentParsed = message.event
        with ctx.engine.begin() as conn:
            # The chunks' text travels sealed with the document's key (crypto-shredding).
            key = crypto.key_for(conn, uuid.UUID(event.document_id))
            if key is None:
                if purge.was_deleted(conn, uuid.UUID(event.document_id)):
                    return StageOutput()  # the document was deleted: nothing to chunk
                # Never existed: no blob and no key, dead-lettered.
                raise MissingBlob(f"document {event.document_id} does not exist")
            parsed = ParsedDocument.from_json(blobs.get(conn, event.text_blob_sha256))
        chunks = chunk_document(
            parsed, self.config, self.count_tokens, count_tokens_batch=self.count_tokens_batch
        )
        return chunked_output(
            ctx,
            event,
            message,
            key,
            chunks,
            config_hash=self.config_hash,
            text_search_config=textsearch.detect_config_of(parsed),
        )


def chunked_output(
    names: outgoing.TopicNames,
    event: DocumentParsed,
    source: Incoming,
    key: crypto.Key,
    chunks: Sequence[Chunk],
    *,
    config_hash: str,
    text_search_config: str,
) -> StageOutput:
    """The writes and events of a chunked document (no I/O): its chunk rows (and the
    removal of rows another chunker left), one sealed event per chunk, ``chunked``."""
    document_id = uuid.UUID(event.document_id)
    job_id = uuid.UUID(event.job_id)
    chunk_ids = [ids.chunk_id(document_id, CHUNKER_VERSION, c.index) for c in chunks]
    out = StageOutput()
    # A re-chunk with another chunker replaces the document's chunks, never adds to them.
    out.statements.append(
        delete(ChunkBuffer).where(
            ChunkBuffer.document_id == document_id, ChunkBuffer.id.not_in(chunk_ids)
        )
    )
    now = utc_now()
    for chunk, chunk_id in zip(chunks, chunk_ids, strict=True):
        out.upserts.append(
            (
                ChunkBuffer,
                {
                    "id": chunk_id,
                    "document_id": document_id,
                    "job_id": job_id,
                    "chunk_index": chunk.index,
                    "text": chunk.text,
                    "token_count": chunk.token_count,
                    "pages": list(chunk.pages),
                    "heading_path": list(chunk.heading_path),
                    "chunker_version": CHUNKER_VERSION,
                    "chunker_config_hash": config_hash,
                    "parser": event.parser,
                    "parser_version": event.parser_version,
                    "text_search_config": text_search_config,
                    "source_topic": source.topic,
                    "source_partition": source.partition,
                    "source_offset": source.offset,
                },
            )
        )
        out.events.append(
            outgoing.chunk_created(
                names,
                key=key,
                chunk_id=chunk_id,
                document_id=document_id,
                job_id=job_id,
                tenant=event.tenant,
                chunk_index=chunk.index,
                chunk_count=len(chunks),
                text=chunk.text,
                token_count=chunk.token_count,
                pages=chunk.pages,
                heading_path=chunk.heading_path,
                chunker_version=CHUNKER_VERSION,
                chunker_config_hash=config_hash,
                parser=event.parser,
                parser_version=event.parser_version,
                created_at=now,
            )
        )
    out.transitions.append(
        Transition(
            document_id,
            job_id,
            DocumentStatus.CHUNKED,
            {"chunk_count": len(chunks), "text_search_config": text_search_config},
        )
    )
    return out
