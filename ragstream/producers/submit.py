"""The one way to submit a document; the CLI and the HTTP API both call :func:`submit_document`.

Order matters: the bytes and the document row are committed first, then the
``DocumentUploaded`` event is published and its acknowledgement awaited. So no
event ever points at a missing blob, and a caller told "accepted" has a
document the pipeline will see.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.dialects.postgresql import insert

from ragstream import ids, tracing
from ragstream.blobstore import BlobStore
from ragstream.db import blobs
from ragstream.db.models import Document, Job
from ragstream.parsing import sniff_content_type
from ragstream.producers.producer import EventProducer
from ragstream.schemas.codec import Codec
from ragstream.schemas.events import PARSER_CHOICES
from ragstream.schemas.outgoing import document_uploaded
from ragstream.settings import Settings
from ragstream.state import DocumentStatus


@dataclass(frozen=True)
class Submitted:
    document_id: uuid.UUID
    job_id: uuid.UUID
    created: bool  # False: the same content was already submitted
    status: str
    content_type: str
    version: int = 1


@dataclass
class Submitter:
    settings: Settings
    engine: Engine
    producer: EventProducer
    codec: Codec

    @cached_property
    def store(self) -> BlobStore:
        return BlobStore(self.settings, self.engine)

    def submit(
        self,
        data: bytes,
        *,
        filename: str | None = None,
        tenant: str | None = None,
        metadata: dict[str, str] | None = None,
        parser: str | None = None,
        external_id: str | None = None,
    ) -> Submitted:
        """Store, record and publish one document; raises a RagstreamError for bad input.

        With ``external_id``, new content under an id already known becomes the
        next version of that document; the current version stays searchable until
        the new one is complete.

        Runs in a ``submit`` span: a child of the caller's (an HTTP request's), or a
        new trace's root. A new job records that trace's id.
        """
        with tracing.span("submit"):
            return self._submit(
                data,
                filename=filename,
                tenant=tenant,
                metadata=metadata,
                parser=parser,
                external_id=external_id,
            )

    def _submit(
        self,
        data: bytes,
        *,
        filename: str | None,
        tenant: str | None,
        metadata: dict[str, str] | None,
        parser: str | None,
        external_id: str | None,
    ) -> Submitted:
        tenant = tenant or self.settings.tenant
        parser = parser or self.settings.default_parser
        if parser not in PARSER_CHOICES:
            raise ValueError(f"parser must be one of {sorted(PARSER_CHOICES)}, not {parser!r}")
        content_type = sniff_content_type(data, filename)  # unsupported or empty: refused here
        sha = blobs.sha256_of(data)
        with self.engine.begin() as conn:
            sha = self.store.put(conn, data)
            row = record_document(
                conn,
                tenant=tenant,
                sha=sha,
                size=len(data),
                filename=filename,
                content_type=content_type,
                metadata=metadata,
                parser=parser,
                external_id=external_id,
            )
        # A document still waiting in `uploaded` may never have had its event acknowledged
        # (a crash or an outage right after the commit): publish again. The event id is
        # the same, and every stage is idempotent, so an extra copy is harmless.
        if row.status == DocumentStatus.UPLOADED.value:
            self.publish(
                row.document_id,
                row.job_id,
                tenant=tenant,
                sha=sha,
                size=len(data),
                filename=filename,
                metadata=metadata,
                parser=row.parser,
                uploaded_at=row.uploaded_at,
            )
        return Submitted(
            row.document_id,
            row.job_id,
            row.created,
            row.status,
            content_type,
            version=row.version,
        )

    def publish(
        self,
        document_id: uuid.UUID,
        job_id: uuid.UUID,
        *,
        tenant: str,
        sha: str,
        size: int,
        filename: str | None,
        metadata: dict[str, str] | None,
        parser: str,
        uploaded_at: datetime,
    ) -> None:
        out = document_uploaded(
            self.settings,
            document_id,
            job_id,
            tenant=tenant,
            sha=sha,
            size=size,
            filename=filename,
            metadata=metadata,
            parser=parser,
            uploaded_at=uploaded_at,
        )
        # The trace starts here, or continues the caller's (an HTTP request's traceparent).
        with tracing.span(
            "upload",
            kind=tracing.SpanKind.PRODUCER,
            attributes={"ragstream.document_id": str(document_id), "ragstream.job_id": str(job_id)},
        ):
            self.producer.send(
                out.topic, key=out.key, value=self.codec.encode(out.event), headers=tracing.header()
            )
            self.producer.wait()


@dataclass(frozen=True)
class Recorded:
    """A document's row as :func:`record_document` left it."""

    document_id: uuid.UUID
    job_id: uuid.UUID  # its current job
    created: bool
    status: str
    parser: str
    version: int
    uploaded_at: datetime


def record_document(
    conn: Connection,
    *,
    tenant: str,
    sha: str,
    size: int,
    filename: str | None,
    content_type: str | None,
    metadata: dict[str, str] | None,
    parser: str,
    external_id: str | None,
) -> Recorded:
    """The document row and upload job of stored content; the same content again records nothing.

    Called in the transaction that stored the blob, by an upload and by the parse
    stage for an event from another service.
    """
    document_id = ids.document_id(tenant, sha)
    job_id = ids.job_id(document_id, "upload")
    version = 1 if external_id is None else _next_version(conn, tenant, external_id)
    inserted = conn.execute(
        insert(Document)
        .values(
            id=document_id,
            tenant=tenant,
            sha256=sha,
            filename=filename,
            content_type=content_type,
            size_bytes=size,
            metadata_=metadata or {},
            parser=parser,
            status=DocumentStatus.UPLOADED.value,
            current_job_id=job_id,
            uploaded_at=func.statement_timestamp(),
            external_id=external_id,
            version=version,
        )
        .on_conflict_do_nothing(index_elements=[Document.id])
        .returning(Document.id)
    ).first()
    created = inserted is not None
    if created:
        conn.execute(
            insert(Job)
            .values(
                id=job_id,
                document_id=document_id,
                kind="upload",
                status=DocumentStatus.UPLOADED.value,
                trace_id=tracing.current_trace_id(),
            )
            .on_conflict_do_nothing(index_elements=[Job.id])
        )
    row = conn.execute(
        select(
            Document.status,
            Document.current_job_id,
            Document.uploaded_at,
            Document.parser,
            Document.version,
        ).where(Document.id == document_id)
    ).one()
    return Recorded(
        document_id,
        row.current_job_id or job_id,
        created,
        row.status,
        row.parser,
        row.version,
        row.uploaded_at,
    )


def _next_version(conn: Connection, tenant: str, external_id: str) -> int:
    """The version new content under ``external_id`` gets; serialised per external id."""
    conn.execute(
        select(func.pg_advisory_xact_lock(func.hashtextextended(f"{tenant}\x1f{external_id}", 0)))
    )
    latest = conn.execute(
        select(func.max(Document.version)).where(
            Document.tenant == tenant, Document.external_id == external_id
        )
    ).scalar_one()
    return int(latest or 0) + 1
