"""parse: documents.uploaded -> documents.parsed. Bytes in, structured text out."""

from __future__ import annotations

import uuid
from datetime import datetime

from ragstream import ids, topology
from ragstream.consumers import parts
from ragstream.consumers.base import Incoming, Outgoing, Stage, StageContext, StageOutput
from ragstream.db import blobs
from ragstream.db.models import ParseBuffer
from ragstream.db.repository import Transition
from ragstream.documents import ParsedDocument, ParsedPayload
from ragstream.errors import CorruptDocument
from ragstream.parsing.core import NO_TEXT
from ragstream.parsing.sandbox import parse_payload
from ragstream.schemas.events import DocumentParsed, DocumentUploaded, utc_now
from ragstream.state import DocumentStatus


class ParseStage(Stage):
    name = "parse"
    consumes = DocumentUploaded
    started_status = DocumentStatus.PARSING

    def process_one(self, message: Incoming, ctx: StageContext) -> StageOutput:
        event: DocumentUploaded = message.event
        if event.parser == "llamaparse":
            from ragstream.llamaparse.stage import submit_to_llamaparse

            return submit_to_llamaparse(message, ctx)
        with ctx.engine.connect() as conn:
            data = blobs.get(conn, event.blob_sha256)
        parsed: ParsedPayload
        if event.part_index is not None:
            merged = parts.parse_part(message, data, ctx)
            if merged is None:  # other parts are still being parsed
                return StageOutput()
            parsed = ParsedPayload.of(merged)
        else:
            # A PDF is read up to the part size first: a longer one is split there.
            parsed = parse_payload(
                data,
                filename=event.filename,
                timeout_s=ctx.settings.parser_timeout_s,
                memory_mb=ctx.settings.parser_memory_mb,
                pages=(1, ctx.settings.pdf_part_pages),
            )
            del data  # a large document is not held twice while it is stored
            if parsed.page_count and parsed.page_count > ctx.settings.pdf_part_pages:
                return parts.fan_out(message, parsed, ctx)
            if not parsed.block_count:
                raise CorruptDocument(NO_TEXT)
        return parsed_output(
            ctx,
            uuid.UUID(event.document_id),
            uuid.UUID(event.job_id),
            event.tenant,
            parsed,
            source=message,
        )


def parsed_output(
    ctx: StageContext,
    document_id: uuid.UUID,
    job_id: uuid.UUID,
    tenant: str,
    parsed: ParsedDocument | ParsedPayload,
    *,
    source: Incoming | None,
) -> StageOutput:
    """The writes and the event of a parsed document, whichever parser produced it."""
    if isinstance(parsed, ParsedDocument):
        parsed = ParsedPayload.of(parsed)
    payload = parsed.payload
    text_sha = blobs.sha256_of(payload)
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
                "block_count": parsed.block_count,
                "source_topic": source.topic if source else None,
                "source_partition": source.partition if source else None,
                "source_offset": source.offset if source else None,
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
            str(document_id),
            parsed_event(
                document_id,
                job_id,
                tenant,
                text_blob_sha256=text_sha,
                content_type=parsed.content_type,
                parser=parsed.parser,
                parser_version=parsed.parser_version,
                block_count=parsed.block_count,
                page_count=parsed.page_count,
                parsed_at=utc_now(),
            ),
        )
    )
    return out


def parsed_event(
    document_id: uuid.UUID,
    job_id: uuid.UUID,
    tenant: str,
    *,
    text_blob_sha256: str,
    content_type: str,
    parser: str,
    parser_version: str,
    block_count: int,
    page_count: int | None,
    parsed_at: datetime,
) -> DocumentParsed:
    """The DocumentParsed of one job; also what a reprocess from ``chunk`` re-emits."""
    return DocumentParsed(
        event_id=str(ids.event_id("DocumentParsed", document_id, job_id)),
        document_id=str(document_id),
        job_id=str(job_id),
        tenant=tenant,
        text_blob_sha256=text_blob_sha256,
        text_blob_uri=blobs.uri_for(text_blob_sha256),
        content_type=content_type,
        parser=parser,
        parser_version=parser_version,
        block_count=block_count,
        page_count=page_count,
        parsed_at=parsed_at,
    )
