"""Upload events from other services: the object read, stored and recorded, then parsed.

An upload event whose ``document_id`` and ``job_id`` are null was published by
another service (the public contract of ``DocumentUploaded``). The parse stage
reads its object once, in pieces (:func:`ragstream.blobstore.read_object`), stores
it in the blob store and records the document under its content's id, as an HTTP
upload of the same bytes would be, then publishes the event ragstream itself
publishes for an upload. Parsing, reprocessing and replay then work from
ragstream's own copy, whatever happens to the object afterwards.

An event whose object cannot be read (an unknown scheme, a URL outside the
allow-list, an absent object, one over the size limit, another hash than the event
says) still leaves a document to look at: ``failed`` at parse with the reason, under
an id derived from the event (its content is unknown), and its message in the DLQ.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy.dialects.postgresql import insert

from ragstream import ids, tracing
from ragstream.blobstore import read_object
from ragstream.consumers.base import Failure, Incoming, StageContext, StageOutput
from ragstream.db.models import Document, Job
from ragstream.errors import PermanentError
from ragstream.producers.submit import record_document
from ragstream.schemas import outgoing
from ragstream.schemas.events import DocumentUploaded
from ragstream.state import DocumentStatus


def admit(message: Incoming, ctx: StageContext) -> StageOutput:
    """Read, store and record the object of an event from another service."""
    event: DocumentUploaded = message.event
    metadata = _metadata(event)
    try:
        with (
            read_object(
                event.blob_uri,
                ctx.settings,
                ctx.engine,
                max_bytes=ctx.settings.max_upload_bytes,
                expected_sha256=event.blob_sha256,
                expected_size=event.size_bytes,
            ) as read,
            ctx.engine.begin() as conn,
        ):
            sha = ctx.blobs.put_file(conn, read.file, read.size)
            row = record_document(
                conn,
                tenant=event.tenant,
                sha=sha,
                size=read.size,
                filename=event.filename,
                content_type=None,  # sniffed by the parser, as for every upload
                metadata=metadata,
                parser=event.parser,
                external_id=event.external_id,
            )
    except PermanentError as exc:
        return unreadable(message, exc)
    if row.status != DocumentStatus.UPLOADED.value:
        return StageOutput()  # this content is already past its upload
    return StageOutput(
        events=[
            outgoing.document_uploaded(
                ctx,
                row.document_id,
                row.job_id,
                tenant=event.tenant,
                sha=sha,
                size=read.size,
                filename=event.filename,
                metadata=metadata,
                parser=row.parser,
                uploaded_at=row.uploaded_at,
            )
        ]
    )


def unreadable(message: Incoming, error: PermanentError) -> StageOutput:
    """A failed document for an event from another service whose object was never read.

    Its id comes from the event's id, so a redelivered event records nothing new.
    The failure carries the ids, so the runner marks the document failed and the
    dead letter names it.
    """
    event: DocumentUploaded = message.event
    document_id = ids.unread_document_id(event.tenant, event.event_id)
    job_id = ids.job_id(document_id, "upload")
    document = {
        "id": document_id,
        "tenant": event.tenant,
        "sha256": None,
        "filename": event.filename,
        "size_bytes": event.size_bytes or 0,
        "metadata_": _metadata(event),
        "parser": event.parser,
        "status": DocumentStatus.UPLOADED.value,
        "current_job_id": job_id,
        "uploaded_at": event.uploaded_at,
        "external_id": event.external_id,
    }
    job = {
        "id": job_id,
        "document_id": document_id,
        "kind": "upload",
        "status": DocumentStatus.UPLOADED.value,
        "trace_id": tracing.current_trace_id(),
    }
    with_ids = dataclasses.replace(event, document_id=str(document_id), job_id=str(job_id))
    return StageOutput(
        statements=[
            insert(Document).values(**document).on_conflict_do_nothing(),
            insert(Job).values(**job).on_conflict_do_nothing(),
        ],
        failures=[Failure(dataclasses.replace(message, event=with_ids), error)],
    )


def _metadata(event: DocumentUploaded) -> dict[str, str]:
    """The event's labels, and where its object was read from."""
    return {**event.metadata, "source_uri": event.blob_uri}
