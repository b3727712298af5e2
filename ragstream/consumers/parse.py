"""parse: documents.uploaded -> documents.parsed. Bytes in, structured text out."""

from __future__ import annotations

import uuid

from ragstream import ids, topology
from ragstream.consumers.base import Incoming, Outgoing, Stage, StageContext, StageOutput
from ragstream.db import blobs
from ragstream.db.models import ParseBuffer
from ragstream.db.repository import Transition
from ragstream.parsing import parse_document
from ragstream.schemas.events import DocumentParsed, DocumentUploaded, utc_now
from ragstream.state import DocumentStatus


class ParseStage(Stage):
    name = "parse"
    consumes = DocumentUploaded
    started_status = DocumentStatus.PARSING

    def process_one(self, message: Incoming, ctx: StageContext) -> StageOutput:
        event: DocumentUploaded = message.event
        with ctx.engine.connect() as conn:
            data = blobs.get(conn, event.blob_sha256)
        parsed = parse_document(
            data,
            filename=event.filename,
            timeout_s=ctx.settings.parser_timeout_s,
            memory_mb=ctx.settings.parser_memory_mb,
        )
        payload = parsed.to_json()
        text_sha = blobs.sha256_of(payload)
        document_id = uuid.UUID(event.document_id)
        job_id = uuid.UUID(event.job_id)
        out = StageOutput()
        out.statements.append(blobs.put_statement(payload))
        out.upserts.append(
            (
                ParseBuffer,
                {
                    "id": document_id,
                    "document_id": document_id,
                    "job_id": job_id,
                    "text_blob_sha256": text_sha,
                    "content_type": parsed.content_type,
                    "parser": parsed.parser,
                    "parser_version": parsed.parser_version,
                    "page_count": parsed.page_count,
                    "block_count": len(parsed.blocks),
                    "source_topic": message.topic,
                    "source_partition": message.partition,
                    "source_offset": message.offset,
                },
            )
        )
        out.transitions.append(
            Transition(
                document_id,
                job_id,
                DocumentStatus.PARSED,
                {"content_type": parsed.content_type, "page_count": parsed.page_count},
            )
        )
        out.events.append(
            Outgoing(
                ctx.topic(topology.PARSED),
                event.document_id,
                DocumentParsed(
                    event_id=str(ids.event_id("DocumentParsed", document_id, job_id)),
                    document_id=event.document_id,
                    job_id=event.job_id,
                    tenant=event.tenant,
                    text_blob_sha256=text_sha,
                    text_blob_uri=blobs.uri_for(text_sha),
                    content_type=parsed.content_type,
                    parser=parsed.parser,
                    parser_version=parsed.parser_version,
                    block_count=len(parsed.blocks),
                    page_count=parsed.page_count,
                    parsed_at=utc_now(),
                ),
            )
        )
        return out
