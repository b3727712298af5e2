"""``/v1/documents``: upload, read, list, chunks, reprocess, delete."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from ragstream.api import lifecycle, metrics
from ragstream.api.deps import ServicesDep, TenantDep
from ragstream.api.models import (
    ChunkPublic,
    ChunkVectorPublic,
    DeletedPublic,
    DocumentAccepted,
    DocumentPublic,
    ErrorInfo,
    ErrorPublic,
    Page,
    ReprocessPublic,
    ReprocessStage,
    UploadPublic,
)
from ragstream.api.routes.jobs import error_of, wait_of
from ragstream.api.services import Services
from ragstream.api.upload import FilePart, UploadRejected, read_form
from ragstream.db.models import ChunkBuffer, Document, VectorBuffer
from ragstream.parsing import sniff_content_type
from ragstream.producers.submit import Submitted
from ragstream.schemas.events import PARSER_CHOICES
from ragstream.state import DocumentStatus

router = APIRouter(prefix="/v1/documents", tags=["documents"])

MAX_EXTERNAL_ID = 1024
MAX_METADATA_KEYS = 100

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "One or more documents (repeat the field).",
                        },
                        "parser": {"type": "string", "enum": sorted(PARSER_CHOICES)},
                        "metadata": {
                            "type": "string",
                            "description": 'A JSON object of strings, e.g. {"source": "wiki"}.',
                        },
                        "external_id": {
                            "type": "string",
                            "maxLength": MAX_EXTERNAL_ID,
                            "description": "Your id for the document: new content under the "
                            "same id is its next version.",
                        },
                    },
                }
            }
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorPublic},
    404: {"model": ErrorPublic},
    409: {"model": ErrorPublic},
    503: {"model": ErrorPublic, "description": "Broker or database unavailable; see Retry-After."},
}


def _job_url(job_id: uuid.UUID | None) -> str | None:
    return f"/v1/jobs/{job_id}" if job_id else None


def _options(fields: dict[str, str]) -> tuple[str | None, dict[str, str], str | None]:
    unknown = set(fields) - {"parser", "metadata", "external_id"}
    if unknown:
        raise HTTPException(422, f"unknown form fields: {', '.join(sorted(unknown))}")
    parser = fields.get("parser") or None
    if parser is not None and parser not in PARSER_CHOICES:
        raise HTTPException(422, f"parser must be one of {', '.join(sorted(PARSER_CHOICES))}")
    metadata: dict[str, str] = {}
    if fields.get("metadata"):
        try:
            raw = json.loads(fields["metadata"])
        except ValueError:
            raise HTTPException(422, "metadata must be a JSON object of strings") from None
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise HTTPException(422, "metadata must be a JSON object of strings")
        if len(raw) > MAX_METADATA_KEYS:
            raise HTTPException(422, f"metadata has more than {MAX_METADATA_KEYS} keys")
        metadata = raw
    external_id = fields.get("external_id") or None
    if external_id is not None and len(external_id) > MAX_EXTERNAL_ID:
        raise HTTPException(422, f"external_id is longer than {MAX_EXTERNAL_ID} characters")
    return parser, metadata, external_id


def _check_type(part: FilePart) -> None:
    sniff_content_type(part.read(), part.filename)


def _submit(
    services: Services,
    part: FilePart,
    tenant: str,
    parser: str | None,
    metadata: dict[str, str],
    external_id: str | None,
) -> Submitted:
    data = part.read()
    with services.publish_lock:
        return services.submitter.submit(
            data,
            filename=part.filename,
            tenant=tenant,
            metadata=metadata,
            parser=parser,
            external_id=external_id,
        )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {"model": UploadPublic, "description": "Every document was submitted before."},
        413: {"model": ErrorPublic},
        415: {"model": ErrorPublic},
        422: {"model": ErrorPublic},
        **_ERRORS,
    },
)
async def upload(
    request: Request, response: Response, services: ServicesDep, tenant: TenantDep
) -> UploadPublic:
    """Store and publish documents; 202 once the broker has acknowledged every upload event.

    The body streams to temporary files and is refused (413) as soon as it passes
    a limit; every file's type is checked (415) before any is stored.
    """
    settings = services.settings
    try:
        form = await read_form(
            request.headers.get("content-type"),
            request.headers.get("content-length"),
            request.stream(),
            max_file_bytes=settings.max_upload_bytes,
            max_files=settings.api_max_files,
        )
    except UploadRejected as exc:
        raise HTTPException(exc.status, exc.message) from None
    accepted: list[DocumentAccepted] = []
    try:
        parser, metadata, external_id = _options(form.fields)
        if not form.files:
            raise HTTPException(422, "no file in the form; send each document as field 'file'")
        for part in form.files:  # all or nothing: every type is checked before any is stored
            await run_in_threadpool(_check_type, part)
        for part in form.files:  # one file in memory at a time
            result = await run_in_threadpool(
                _submit, services, part, tenant, parser, metadata, external_id
            )
            metrics.UPLOADS.labels("created" if result.created else "existing").inc()
            accepted.append(
                DocumentAccepted(
                    document_id=result.document_id,
                    job_id=result.job_id,
                    created=result.created,
                    status=result.status,
                    content_type=result.content_type,
                    filename=part.filename,
                    external_id=external_id,
                    version=result.version,
                    status_url=f"/v1/jobs/{result.job_id}",
                    document_url=f"/v1/documents/{result.document_id}",
                )
            )
    finally:
        form.close()
    if not any(a.created for a in accepted):
        response.status_code = status.HTTP_200_OK
    return UploadPublic(documents=accepted)


def _public(document: Document, conn: Connection | None = None) -> DocumentPublic:
    """With ``conn`` (one document): also its dead letter and where it waits."""
    failed = document.status == DocumentStatus.FAILED
    return DocumentPublic(
        document_id=document.id,
        filename=document.filename,
        content_type=document.content_type,
        size_bytes=document.size_bytes,
        sha256=document.sha256,
        metadata=document.metadata_,
        parser=document.parser,
        status=document.status,
        external_id=document.external_id,
        version=document.version,
        current_job_id=document.current_job_id,
        page_count=document.page_count,
        chunk_count=document.chunk_count,
        embedding_model=document.embedding_model,
        error=(
            error_of(conn, document)
            if conn is not None
            else ErrorInfo(
                stage=document.failed_stage,
                error_class=document.error_class,
                message=document.error_message,
            )
        )
        if failed
        else None,
        wait=wait_of(conn, document) if conn is not None else None,
        uploaded_at=document.uploaded_at,
        completed_at=document.completed_at,
        failed_at=document.failed_at,
        updated_at=document.updated_at,
        status_url=_job_url(document.current_job_id),
    )


def _owned(services: Services, tenant: str, document_id: uuid.UUID) -> Document:
    with Session(services.engine) as session:
        document = session.execute(
            select(Document).where(Document.id == document_id, Document.tenant == tenant)
        ).scalar_one_or_none()
    if document is None:
        raise HTTPException(404, "no such document")
    return document


@router.get("", responses=_ERRORS)
def list_documents(
    services: ServicesDep,
    tenant: TenantDep,
    status_: Annotated[DocumentStatus | None, Query(alias="status")] = None,
    external_id: Annotated[str | None, Query(max_length=MAX_EXTERNAL_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Page[DocumentPublic]:
    """The tenant's documents, newest first."""
    where = [Document.tenant == tenant]
    if status_ is not None:
        where.append(Document.status == status_.value)
    if external_id is not None:
        where.append(Document.external_id == external_id)
    with Session(services.engine) as session:
        total = session.execute(select(func.count()).select_from(Document).where(*where)).scalar()
        rows = session.execute(
            select(Document)
            .where(*where)
            .order_by(Document.uploaded_at.desc(), Document.id)
            .limit(limit)
            .offset(offset)
        ).scalars()
        items = [_public(d) for d in rows]
    return Page[DocumentPublic](items=items, total=total or 0, limit=limit, offset=offset)


@router.get("/{document_id}", responses=_ERRORS)
def get_document(
    document_id: uuid.UUID, services: ServicesDep, tenant: TenantDep
) -> DocumentPublic:
    document = _owned(services, tenant, document_id)
    with services.engine.connect() as conn:
        return _public(document, conn)


_VECTOR_FIELDS = tuple(ChunkVectorPublic.model_fields)


@router.get("/{document_id}/chunks", responses=_ERRORS)
def list_chunks(
    document_id: uuid.UUID,
    services: ServicesDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Page[ChunkPublic]:
    """The document's chunks in reading order, with page numbers and heading paths.

    Each chunk lists its vectors: every model's identity and the lineage of the
    text it embedded (parser, chunker, source record).
    """
    _owned(services, tenant, document_id)
    with services.engine.connect() as conn:
        total = conn.execute(
            select(func.count())
            .select_from(ChunkBuffer)
            .where(ChunkBuffer.document_id == document_id)
        ).scalar_one()
        rows = conn.execute(
            select(
                ChunkBuffer.id,
                ChunkBuffer.chunk_index,
                ChunkBuffer.text,
                ChunkBuffer.token_count,
                ChunkBuffer.pages,
                ChunkBuffer.heading_path,
            )
            .where(ChunkBuffer.document_id == document_id)
            .order_by(ChunkBuffer.chunk_index)
            .limit(limit)
            .offset(offset)
        ).all()
        vectors: dict[uuid.UUID, list[ChunkVectorPublic]] = {r.id: [] for r in rows}
        for v in conn.execute(
            select(*(getattr(VectorBuffer, f) for f in _VECTOR_FIELDS), VectorBuffer.chunk_id)
            .where(VectorBuffer.chunk_id.in_(list(vectors)))
            .order_by(VectorBuffer.model)
        ):
            vectors[v.chunk_id].append(
                ChunkVectorPublic(**{f: getattr(v, f) for f in _VECTOR_FIELDS})
            )
    items = [
        ChunkPublic(
            chunk_id=r.id,
            chunk_index=r.chunk_index,
            text=r.text,
            token_count=r.token_count,
            pages=list(r.pages),
            heading_path=list(r.heading_path),
            vectors=vectors[r.id],
        )
        for r in rows
    ]
    return Page[ChunkPublic](items=items, total=total, limit=limit, offset=offset)


@router.post("/{document_id}/reprocess", status_code=status.HTTP_202_ACCEPTED, responses=_ERRORS)
def reprocess(
    document_id: uuid.UUID,
    services: ServicesDep,
    tenant: TenantDep,
    from_stage: Annotated[ReprocessStage, Query()] = "parse",
) -> ReprocessPublic:
    """Run the document again from ``from_stage`` as a new job (complete or failed only)."""
    try:
        done = lifecycle.reprocess(services, tenant, document_id, from_stage)
    except lifecycle.NotFound:
        raise HTTPException(404, "no such document") from None
    except lifecycle.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    return ReprocessPublic(
        document_id=document_id,
        job_id=done.job_id,
        from_stage=from_stage,
        status=done.status.value,
        status_url=f"/v1/jobs/{done.job_id}",
    )


@router.delete("/{document_id}", responses=_ERRORS)
def delete_document(
    document_id: uuid.UUID, services: ServicesDep, tenant: TenantDep
) -> DeletedPublic:
    """Remove the document, its chunks and vectors; tombstones go to its topics' keys."""
    try:
        deleted = lifecycle.delete_document(services, tenant, document_id)
    except lifecycle.NotFound:
        raise HTTPException(404, "no such document") from None
    except lifecycle.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    return DeletedPublic(
        document_id=document_id, chunks_deleted=deleted.chunks, vectors_deleted=deleted.vectors
    )
