"""``/v1/jobs/{job_id}``: where a job is, counted from the buffer tables."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException
from sqlalchemy import Connection, Engine, func, select, true
from sqlalchemy.orm import Session

from ragstream.api.deps import ServicesDep, TenantDep
from ragstream.api.models import (
    DlqLocation,
    ErrorInfo,
    ErrorPublic,
    JobPublic,
    StageTiming,
    VersionPublic,
    WaitPublic,
)
from ragstream.db.models import ChunkBuffer, Document, DocumentPart, Job, VectorBuffer
from ragstream.embedding import registry
from ragstream.monitor import store
from ragstream.state import STATUS_TIMESTAMP_FIELD, DocumentStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_S = DocumentStatus
# The stage working on (or next to work on) a document in each status.
_STAGE_OF: dict[str, str] = {
    _S.UPLOADED: "parse",
    _S.PARSING: "parse",
    _S.PARSED: "chunk",
    _S.CHUNKING: "chunk",
    _S.CHUNKED: "embed",
    _S.EMBEDDING: "embed",
}
# Each stage's start and end, as status timestamp columns of the document.
_STAGE_SPAN = {
    "parse": ("parsing_started_at", "parsed_at"),
    "chunk": ("chunking_started_at", "chunked_at"),
    "embed": ("embedding_started_at", "completed_at"),
}


def _timing(start: datetime | None, end: datetime | None) -> StageTiming:
    duration = (end - start).total_seconds() if start and end else None
    return StageTiming(started_at=start, finished_at=end, duration_s=duration)


def wait_of(conn: Connection, document: Document) -> WaitPublic | None:
    """Queued (position, estimated start) or stalled (since, why) while it is not finished."""
    wait = store.document_wait(conn, document.id, document.status)
    return WaitPublic.model_validate(wait.as_dict()) if wait is not None else None


def error_of(conn: Connection, document: Document) -> ErrorInfo | None:
    """A failed document's stage, error and, when the monitor saw it, its dead letter."""
    if document.status != _S.FAILED:
        return None
    dlq = store.dead_letter_of(conn, document.id)
    return ErrorInfo(
        stage=document.failed_stage,
        error_class=document.error_class,
        message=document.error_message,
        dlq=DlqLocation.model_validate(dlq) if dlq else None,
    )


def document_status(engine: Engine, document_id: uuid.UUID) -> dict[str, Any] | None:
    """What ``ragstream status DOC_ID`` prints: the job API's view of the current job."""
    with Session(engine) as session:
        document = session.get(Document, document_id)
        if document is None:
            return None
        conn = session.connection()
        times = {column: getattr(document, column) for column in STATUS_TIMESTAMP_FIELD.values()}
        stages = {name: _timing(times[a], times[b]) for name, (a, b) in _STAGE_SPAN.items()}
        wait, error = wait_of(conn, document), error_of(conn, document)
        return {
            "document_id": str(document.id),
            "job_id": str(document.current_job_id) if document.current_job_id else None,
            "status": document.status,
            "current_stage": _STAGE_OF.get(document.status),
            "stages": {k: v.model_dump(mode="json") for k, v in stages.items()},
            "wait": wait.model_dump(mode="json") if wait else None,
            "error": error.model_dump(mode="json", by_alias=True) if error else None,
        }


@router.get("/{job_id}", responses={401: {"model": ErrorPublic}, 404: {"model": ErrorPublic}})
def get_job(job_id: uuid.UUID, services: ServicesDep, tenant: TenantDep) -> JobPublic:
    """Status, stage, chunk counts, per-stage times, the error and the trace id of one job."""
    with Session(services.engine) as conn:
        found = conn.execute(
            select(Job, Document)
            .join(Document, Document.id == Job.document_id)
            .where(Job.id == job_id, Document.tenant == tenant)
        ).one_or_none()
        if found is None:
            raise HTTPException(404, "no such job")
        job, document = found
        current = document.current_job_id == job.id
        chunks = conn.execute(
            select(func.count())
            .select_from(ChunkBuffer)
            .where(ChunkBuffer.document_id == document.id)
        ).scalar_one()
        live = registry.active(conn)  # the active model's vectors only, not every model's
        embedded = conn.execute(
            select(func.count())
            .select_from(VectorBuffer)
            .where(VectorBuffer.document_id == document.id, VectorBuffer.job_id == job.id)
            .where(VectorBuffer.model == live.model if live is not None else true())
        ).scalar_one()
        parts = conn.execute(
            select(func.count(), func.count(DocumentPart.parsed_at)).where(
                DocumentPart.document_id == document.id, DocumentPart.job_id == job.id
            )
        ).one()
        versions = (
            conn.execute(
                select(Document.id, Document.version, Document.status)
                .where(Document.tenant == tenant, Document.external_id == document.external_id)
                .order_by(Document.version)
            ).all()
            if document.external_id is not None
            else []
        )
        wait = wait_of(conn.connection(), document) if current else None
        error = error_of(conn.connection(), document) if current else None
    times = {
        column: getattr(document, column) if current else None
        for column in STATUS_TIMESTAMP_FIELD.values()
    }
    stages = {name: _timing(times[a], times[b]) for name, (a, b) in _STAGE_SPAN.items()}
    stages["total"] = _timing(times["uploaded_at"], times["completed_at"] or times["failed_at"])
    return JobPublic(
        job_id=job.id,
        document_id=document.id,
        kind=job.kind,
        from_stage=job.from_stage,
        status=job.status,
        current_stage=_STAGE_OF.get(document.status) if current else None,
        chunks_total=chunks if current and document.chunk_count is not None else None,
        chunks_embedded=embedded,
        parts_total=parts[0] or None,
        parts_parsed=parts[1] if parts[0] else None,
        created_at=job.created_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
        stages=stages,
        timestamps=times,
        error=error,
        wait=wait,
        versions=[
            VersionPublic(
                document_id=v.id,
                version=v.version,
                status=v.status,
                current=v.status == _S.COMPLETE,
            )
            for v in versions
        ],
        trace_id=job.trace_id,
    )
