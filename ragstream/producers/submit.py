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

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.postgresql import insert

from ragstream import ids, topology
from ragstream.db import blobs
from ragstream.db.models import Document, Job
from ragstream.parsing import sniff_content_type
from ragstream.producers.producer import EventProducer
from ragstream.schemas.codec import Codec
from ragstream.schemas.events import DocumentUploaded
from ragstream.settings import Settings
from ragstream.state import DocumentStatus


@dataclass(frozen=True)
class Submitted:
    document_id: uuid.UUID
    job_id: uuid.UUID
    created: bool  # False: the same content was already submitted
    status: str
    content_type: str


@dataclass
class Submitter:
    settings: Settings
    engine: Engine
    producer: EventProducer
    codec: Codec

    def submit(
        self,
        data: bytes,
        *,
        filename: str | None = None,
        tenant: str | None = None,
        metadata: dict[str, str] | None = None,
        parser: str = "local",
    ) -> Submitted:
        """Store, record and publish one document; raises a RagstreamError for bad input."""
        tenant = tenant or self.settings.tenant
        content_type = sniff_content_type(data, filename)  # unsupported or empty: refused here
        sha = blobs.sha256_of(data)
        document_id = ids.document_id(tenant, sha)
        job_id = ids.job_id(document_id, "upload")
        with self.engine.begin() as conn:
            conn.execute(blobs.put_statement(data))
            inserted = conn.execute(
                insert(Document)
                .values(
                    id=document_id,
                    tenant=tenant,
                    sha256=sha,
                    filename=filename,
                    content_type=content_type,
                    size_bytes=len(data),
                    metadata_=metadata or {},
                    parser=parser,
                    status=DocumentStatus.UPLOADED.value,
                    current_job_id=job_id,
                    uploaded_at=func.statement_timestamp(),
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
                    )
                    .on_conflict_do_nothing(index_elements=[Job.id])
                )
            row = conn.execute(
                select(Document.status, Document.current_job_id, Document.uploaded_at).where(
                    Document.id == document_id
                )
            ).one()
        current_job = row.current_job_id or job_id
        # A document still waiting in `uploaded` may never have had its event acknowledged
        # (a crash or an outage right after the commit): publish again. The event id is
        # the same, and every stage is idempotent, so an extra copy is harmless.
        if row.status == DocumentStatus.UPLOADED.value:
            self.publish(
                document_id,
                current_job,
                tenant=tenant,
                sha=sha,
                size=len(data),
                filename=filename,
                metadata=metadata,
                parser=parser,
                uploaded_at=row.uploaded_at,
            )
        return Submitted(document_id, current_job, created, row.status, content_type)

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
        event = DocumentUploaded(
            event_id=str(ids.event_id("DocumentUploaded", document_id, job_id)),
            document_id=str(document_id),
            job_id=str(job_id),
            tenant=tenant,
            blob_sha256=sha,
            blob_uri=blobs.uri_for(sha),
            size_bytes=size,
            filename=filename,
            parser=parser,
            metadata=metadata or {},
            uploaded_at=uploaded_at,
        )
        self.producer.send(
            self.settings.topic(topology.UPLOADED),
            key=str(document_id),
            value=self.codec.encode(event),
        )
        self.producer.wait()
