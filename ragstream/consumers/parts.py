"""Large PDFs parsed as page ranges, in parallel across the parse group, then merged once.

The parse of a PDF reads its first ``pdf_part_pages`` pages only. A longer
document is split there: its parts are recorded (part 0 already parsed), and
one ``DocumentUploaded`` per further part goes back to ``documents.uploaded``,
keyed ``<document id>:<part>`` and placed on consecutive partitions so the
parts spread over the workers. Each part stores its text; the one that finds every part parsed
(under the document's row lock, so exactly one can) merges them in page order
and emits the document's one ``DocumentParsed``. From there on the document is
one document again. Redelivery of any of these messages repeats the same
idempotent writes.
"""

from __future__ import annotations

import dataclasses
import uuid

from sqlalchemy import Update, func, select, update
from sqlalchemy.dialects.postgresql import insert

from ragstream.consumers.base import Incoming, StageContext, StageOutput
from ragstream.db import blobs
from ragstream.db.models import Document, DocumentPart
from ragstream.documents import ParsedDocument, ParsedPayload
from ragstream.errors import CorruptDocument
from ragstream.parsing.blocks import BlockBuilder
from ragstream.parsing.core import NO_TEXT
from ragstream.parsing.sandbox import parse_payload
from ragstream.schemas import outgoing
from ragstream.schemas.events import DocumentUploaded, utc_now
from ragstream.state import DocumentStatus

PART_ROWS_PER_STATEMENT = 5000


def page_ranges(page_count: int, part_pages: int) -> list[tuple[int, int]]:
    """(first, last) pages of each part, 1-based and inclusive."""
    return [
        (first, min(first + part_pages - 1, page_count))
        for first in range(1, page_count + 1, part_pages)
    ]


def fan_out(message: Incoming, first: ParsedPayload, ctx: StageContext) -> StageOutput:
    """Record the parts of a document whose first part is ``first``; send out the others."""
    event: DocumentUploaded = message.event
    document_id, job_id = uuid.UUID(event.document_id), uuid.UUID(event.job_id)
    ranges = page_ranges(first.page_count or 0, ctx.settings.pdf_part_pages)
    payload = first.payload
    out = StageOutput()
    out.statements.append(blobs.put_statement(payload))
    rows = [
        {
            "document_id": document_id,
            "job_id": job_id,
            "part_index": index,
            "part_count": len(ranges),
            "page_start": start,
            "page_end": end,
        }
        for index, (start, end) in enumerate(ranges)
    ]
    # A redelivered split must not forget parts parsed meanwhile: insert, never overwrite.
    # In pieces: one statement carries at most 65535 bind parameters (six per row here).
    for start in range(0, len(rows), PART_ROWS_PER_STATEMENT):
        piece = rows[start : start + PART_ROWS_PER_STATEMENT]
        out.statements.append(insert(DocumentPart).values(piece).on_conflict_do_nothing())
    out.statements.append(_parsed(document_id, job_id, 0, blobs.sha256_of(payload), first))
    now = utc_now()
    out.events += [
        outgoing.document_part(ctx, event, index, ranges, emitted_at=now)
        for index in range(1, len(ranges))
    ]
    return out


def parse_part(message: Incoming, data: bytes, ctx: StageContext) -> ParsedDocument | None:
    """Parse one part and store it; the merged document if this was the last part in."""
    event: DocumentUploaded = message.event
    document_id, job_id = uuid.UUID(event.document_id), uuid.UUID(event.job_id)
    assert event.part_index is not None and event.page_start and event.page_end
    parsed = parse_payload(
        data,
        filename=event.filename,
        timeout_s=ctx.settings.parser_timeout_s,
        memory_mb=ctx.settings.parser_memory_mb,
        pages=(event.page_start, event.page_end),
    )
    payload = parsed.payload
    with ctx.engine.begin() as conn:
        # The document's row lock: of two last parts finishing together, the second
        # to take it sees the first one's row, so exactly one of them merges.
        status = conn.execute(
            select(Document.status).where(Document.id == document_id).with_for_update()
        ).scalar_one_or_none()
        if status is None:
            return None  # deleted meanwhile
        conn.execute(blobs.put_statement(payload))
        conn.execute(
            _parsed(document_id, job_id, event.part_index, blobs.sha256_of(payload), parsed)
        )
        stored = conn.execute(
            select(DocumentPart.parsed_blob_sha256)
            .where(DocumentPart.document_id == document_id, DocumentPart.job_id == job_id)
            .order_by(DocumentPart.part_index)
        ).scalars()
        shas = list(stored)
    if status == DocumentStatus.FAILED.value or not shas or any(s is None for s in shas):
        return None
    with ctx.engine.connect() as conn:
        parts = [ParsedDocument.from_json(blobs.get(conn, sha)) for sha in shas if sha]
    return merge(parts)


def merge(parts: list[ParsedDocument]) -> ParsedDocument:
    """The parts as one document, in page order; heading paths run across part boundaries."""
    builder = BlockBuilder()
    for part in parts:
        for block in part.blocks:
            if block.kind == "heading":
                builder.heading(block.text, block.level, page=block.page)
            elif block.kind == "ocr":
                builder.ocr_paragraph(block.text, page=block.page)
            else:
                builder.paragraph(block.text, page=block.page)
    if not len(builder):
        raise CorruptDocument(NO_TEXT)
    # The lineage of a part read by OCR ("pypdfium2+tesseract") covers the plain parts too.
    first = max(parts, key=lambda part: "+" in part.parser)
    return dataclasses.replace(first, blocks=builder.blocks)


def _parsed(
    document_id: uuid.UUID, job_id: uuid.UUID, index: int, sha: str, parsed: ParsedPayload
) -> Update:
    return (
        update(DocumentPart)
        .where(
            DocumentPart.document_id == document_id,
            DocumentPart.job_id == job_id,
            DocumentPart.part_index == index,
        )
        .values(parsed_blob_sha256=sha, block_count=parsed.block_count, parsed_at=func.now())
    )
