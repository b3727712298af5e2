"""Reprocessing and deleting a document: the database change first, then the events.

Both refuse a document still in flight (409): a reprocess starts a new job only
from ``complete`` or ``failed`` (the state machine's rule), and a delete never
pulls rows from under a running stage.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy import Connection, Row, delete, exists, func, select
from sqlalchemy.orm import Session

from ragstream import crypto, ids, state, tracing
from ragstream.api.services import Services
from ragstream.db import purge, repository
from ragstream.db.models import ChunkBuffer, Document, DocumentPart, Job, ParseBuffer, VectorBuffer
from ragstream.schemas import outgoing
from ragstream.schemas.events import utc_now
from ragstream.state import DocumentStatus, Stage

log = structlog.get_logger(__name__)


class NotFound(Exception):
    """No such document for this tenant."""


class Conflict(Exception):
    """The document's state does not allow this now."""


@dataclass(frozen=True)
class Reprocessed:
    job_id: uuid.UUID
    status: DocumentStatus
    created: bool  # False: the same reprocess was already waiting; its event was sent again


@dataclass(frozen=True)
class Deleted:
    chunks: int
    vectors: int


def _locked_document(
    conn: Connection, tenant: str, document_id: uuid.UUID
) -> Row[str, uuid.UUID | None, str | None]:
    row = conn.execute(
        select(Document.status, Document.current_job_id, Document.sha256)
        .where(Document.id == document_id, Document.tenant == tenant)
        .with_for_update()
    ).one_or_none()
    if row is None:
        raise NotFound(str(document_id))
    return row


def reprocess(services: Services, tenant: str, document_id: uuid.UUID, stage: Stage) -> Reprocessed:
    """Reset the document to the status before ``stage`` under a new job and re-emit its input.

    Asked again while that reprocess still waits for its stage, it re-emits the
    same event (same event id) instead of refusing, so a client whose first call
    ended in a 503 can simply retry. Runs in a ``reprocess`` span (the request's
    child); a new job records its trace id, and the events carry the trace on.
    """
    with tracing.span(
        "reprocess",
        attributes={"ragstream.document_id": str(document_id), "ragstream.from_stage": stage},
    ):
        return _reprocess(services, tenant, document_id, stage)


def _reprocess(
    services: Services, tenant: str, document_id: uuid.UUID, stage: Stage
) -> Reprocessed:
    target = state.REPROCESS_RESETS_TO[stage]
    with services.engine.begin() as conn:
        document = _locked_document(conn, tenant, document_id)
        if not state.is_terminal(document.status):
            waiting = conn.execute(
                select(Job.kind, Job.from_stage).where(Job.id == document.current_job_id)
            ).one_or_none()
            if not (
                waiting is not None
                and waiting.kind == "reprocess"
                and waiting.from_stage == stage
                and document.status == target
            ):
                raise Conflict(
                    f"document is {document.status}; reprocess it once it is complete or failed"
                )
            job_id, created = document.current_job_id, False
        else:
            _require_input(conn, document_id, stage)
            job_id, created = ids.job_id(document_id, f"reprocess:{uuid.uuid4()}"), True
            conn.execute(delete(VectorBuffer).where(VectorBuffer.document_id == document_id))
            if stage != "embed":
                conn.execute(delete(ChunkBuffer).where(ChunkBuffer.document_id == document_id))
            repository.reset_for_reprocess(
                conn, document_id, job_id, stage, trace_id=tracing.current_trace_id()
            )
        assert job_id is not None
    _emit(services, document_id, job_id, stage)
    log.info("reprocess", document_id=str(document_id), job_id=str(job_id), stage=stage)
    return Reprocessed(job_id, target, created)


def _require_input(conn: Connection, document_id: uuid.UUID, stage: Stage) -> None:
    sha256 = conn.execute(select(Document.sha256).where(Document.id == document_id)).scalar_one()
    if sha256 is None:
        raise Conflict(
            "the document's object was never read (see its error); publish its upload event "
            "again once the object can be read"
        )
    if stage == "chunk":
        parsed = conn.execute(
            select(exists().where(ParseBuffer.document_id == document_id))
        ).scalar_one()
        if not parsed:
            raise Conflict("the document was never parsed; reprocess it from parse")
    if stage == "embed":
        chunked = conn.execute(
            select(exists().where(ChunkBuffer.document_id == document_id))
        ).scalar_one()
        if not chunked:
            raise Conflict("the document has no chunks; reprocess it from parse or chunk")


def _emit(services: Services, document_id: uuid.UUID, job_id: uuid.UUID, stage: Stage) -> None:
    """The event the stage reads, for the new job; the stage runs again from its stored input."""
    settings = services.settings
    with Session(services.engine) as session:
        document = session.get_one(Document, document_id)
        if stage == "parse":
            assert document.sha256 is not None  # checked by _require_input
            with services.publish_lock:
                services.submitter.publish(
                    document_id,
                    job_id,
                    tenant=document.tenant,
                    sha=document.sha256,
                    size=document.size_bytes,
                    filename=document.filename,
                    metadata=document.metadata_,
                    parser=document.parser,
                    uploaded_at=document.uploaded_at,
                )
            return
        if stage == "chunk":
            parsed = session.execute(
                select(ParseBuffer).where(ParseBuffer.document_id == document_id)
            ).scalar_one()
            events = [
                outgoing.document_parsed(
                    settings,
                    document_id,
                    job_id,
                    document.tenant,
                    text_blob_sha256=parsed.text_blob_sha256,
                    content_type=parsed.content_type,
                    parser=parsed.parser,
                    parser_version=parsed.parser_version,
                    block_count=parsed.block_count,
                    page_count=parsed.page_count,
                    parsed_at=document.parsed_at or utc_now(),
                )
            ]
        else:
            with services.engine.begin() as conn:
                doc_key = crypto.key_for(conn, document_id)
            if doc_key is None:
                return  # deleted meanwhile
            chunks = list(
                session.execute(
                    select(ChunkBuffer)
                    .where(ChunkBuffer.document_id == document_id)
                    .order_by(ChunkBuffer.chunk_index)
                ).scalars()
            )
            now = utc_now()
            events = [
                outgoing.chunk_created(
                    settings,
                    key=doc_key,
                    chunk_id=c.id,
                    document_id=document_id,
                    job_id=job_id,
                    tenant=document.tenant,
                    chunk_index=c.chunk_index,
                    chunk_count=len(chunks),
                    text=c.text,
                    token_count=c.token_count,
                    pages=c.pages,
                    heading_path=c.heading_path,
                    chunker_version=c.chunker_version,
                    chunker_config_hash=c.chunker_config_hash,
                    parser=c.parser,
                    parser_version=c.parser_version,
                    created_at=now,
                )
                for c in chunks
            ]
    with services.publish_lock:
        for out in events:
            services.producer.send(
                out.topic,
                out.key,
                services.codec.encode(out.event),
                tracing.header(),  # the stage continues this reprocess's trace
                spread=out.spread,
            )
        services.producer.wait()


def delete_document(services: Services, tenant: str, document_id: uuid.UUID) -> Deleted:
    """Remove the document with every row holding its text, then tombstone its keys.

    Blobs and embedding-cache rows go too when no other document refers to them
    (both are content-addressed, so another tenant may hold the same bytes).
    Deleting its key shreds the text in the topics (``ragstream/crypto.py``).
    """
    with services.engine.begin() as conn:
        document = _locked_document(conn, tenant, document_id)
        if not state.is_terminal(document.status):
            raise Conflict(
                f"document is {document.status}; delete it once it is complete or failed"
            )
        chunks = [
            (chunk_id, index)
            for chunk_id, index in conn.execute(
                select(ChunkBuffer.id, ChunkBuffer.chunk_index).where(
                    ChunkBuffer.document_id == document_id
                )
            )
        ]
        vectors = conn.execute(
            select(func.count())
            .select_from(VectorBuffer)
            .where(VectorBuffer.document_id == document_id)
        ).scalar_one()
        parts = list(
            conn.execute(
                select(DocumentPart.part_index)
                .where(DocumentPart.document_id == document_id)
                .distinct()
            ).scalars()
        )
        # Every row that holds its text goes in this transaction, its key included:
        # the copies of its text in the topics are unreadable from this commit on.
        purge.purge_documents(conn, [document_id])
    _tombstones(services, document_id, chunks, parts)
    log.info("deleted", document_id=str(document_id), chunks=len(chunks), vectors=vectors)
    return Deleted(chunks=len(chunks), vectors=int(vectors))


def _tombstones(
    services: Services,
    document_id: uuid.UUID,
    chunks: list[tuple[uuid.UUID, int]],
    parts: list[int],
) -> None:
    """A null value for every key the document had, on its partition, so compacted topics
    forget it."""
    stones = outgoing.document_tombstones(
        services.settings, document_id, chunks=chunks, parts=parts
    )
    with services.publish_lock:
        for stone in stones:
            services.producer.send(stone.topic, stone.key, None, spread=stone.spread)
        services.producer.wait()
