"""parse: documents.uploaded -> documents.parsed. Bytes in, structured text out.

A large document never sits whole in this process: the upload goes from the
blob store to the parser sandbox in slices, and a large parsed JSON comes back
into a temporary file and goes from there to the blob store in slices.
"""

from __future__ import annotations

import uuid

from ragstream.consumers import admit, parts
from ragstream.consumers.base import Failure, Incoming, Stage, StageContext, StageOutput
from ragstream.db import blobs
from ragstream.db.models import ParseBuffer
from ragstream.db.repository import Transition
from ragstream.documents import ParsedDocument, ParsedPayload, SpooledPayload
from ragstream.errors import CorruptDocument, ParserLimitExceeded, PermanentError
from ragstream.parsing.core import NO_TEXT
from ragstream.parsing.sandbox import parse_spooled
from ragstream.schemas import outgoing
from ragstream.schemas.events import DocumentUploaded, utc_now
from ragstream.state import DocumentStatus

# A parsed JSON larger than this is stored streamed, in its own transaction; a smaller
# one (most documents) is written by the runner's transaction with the rest.
SPOOL_ABOVE_BYTES = 4 * blobs.SLICE_BYTES


class ParseStage(Stage):
    name = "parse"
    consumes = DocumentUploaded
    started_status = DocumentStatus.PARSING
    batch_limit = 1

    def failed(self, message: Incoming, error: PermanentError) -> StageOutput:
        """An event from another service that fails before its object is stored still
        leaves a failed document (see :mod:`ragstream.consumers.admit`)."""
        if isinstance(message.event, DocumentUploaded) and message.event.external:
            return admit.unreadable(message, error)
        return StageOutput(failures=[Failure(message, error)])

    def process_one(self, message: Incoming, ctx: StageContext) -> StageOutput:
        event: DocumentUploaded = message.event
        if event.external:
            return admit.admit(message, ctx)
        assert event.blob_sha256 is not None  # ragstream's own events carry it
        if event.parser == "llamaparse":
            from ragstream.llamaparse.stage import submit_to_llamaparse

            return submit_to_llamaparse(message, ctx)
        document_id, job_id = uuid.UUID(event.document_id), uuid.UUID(event.job_id)
        if event.part_index is not None:
            with ctx.engine.connect() as conn:
                data = ctx.blobs.get(conn, event.blob_sha256)
            merged = parts.parse_part(message, data, ctx)
            if merged is None:  # other parts are still being parsed
                return StageOutput()
            return parsed_output(ctx, document_id, job_id, event.tenant, merged, source=message)
        upload = ctx.blobs.open_stream(event.blob_sha256)
        # A PDF is read up to the part size first: a longer one is split there.
        parsed = parse_spooled(
            upload.whole if upload.whole is not None else upload,
            filename=event.filename,
            timeout_s=ctx.settings.parser_timeout_s,
            memory_mb=ctx.settings.parser_memory_mb,
            pages=(1, ctx.settings.pdf_part_pages),
            spool_above=SPOOL_ABOVE_BYTES,
        )
        del upload
        try:
            if parsed.page_count and parsed.page_count > ctx.settings.pdf_max_pages:
                raise ParserLimitExceeded(
                    f"the document has {parsed.page_count} pages, more than the limit of "
                    f"{ctx.settings.pdf_max_pages} (RAGSTREAM_PDF_MAX_PAGES)"
                )
            if parsed.page_count and parsed.page_count > ctx.settings.pdf_part_pages:
                first = parsed.load() if isinstance(parsed, SpooledPayload) else parsed
                return parts.fan_out(message, first, ctx)
            if not parsed.block_count:
                raise CorruptDocument(NO_TEXT)
            stored = None
            if isinstance(parsed, SpooledPayload):
                # A blob nobody refers to yet is harmless, and a retry finds it stored.
                with ctx.engine.begin() as conn:
                    stored = blobs.put_file(conn, parsed.file, parsed.size)
            return parsed_output(
                ctx, document_id, job_id, event.tenant, parsed, source=message, stored_sha256=stored
            )
        finally:
            if isinstance(parsed, SpooledPayload):
                parsed.close()


def parsed_output(
    ctx: StageContext,
    document_id: uuid.UUID,
    job_id: uuid.UUID,
    tenant: str,
    parsed: ParsedDocument | ParsedPayload | SpooledPayload,
    *,
    source: Incoming | None,
    stored_sha256: str | None = None,
) -> StageOutput:
    """The writes and the event of a parsed document, whichever parser produced it.

    A spooled document's JSON is stored before (:func:`blobs.put_file`, too large
    for one statement); ``stored_sha256`` is its key.
    """
    if isinstance(parsed, ParsedDocument):
        parsed = ParsedPayload.of(parsed)
    out = StageOutput()
    if isinstance(parsed, ParsedPayload):
        text_sha = blobs.sha256_of(parsed.payload)
        out.statements.append(blobs.put_statement(parsed.payload))
    elif stored_sha256 is None:
        raise ValueError("a spooled document is stored before its output is made")
    else:
        text_sha = stored_sha256
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
        outgoing.document_parsed(
            ctx,
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
        )
    )
    return out
