"""Taking a LlamaParse result: the one idempotent write the webhook and the poller share.

:func:`complete` claims the job row under a lock (``pending`` -> ``received``)
in the same transaction as the parsed document's writes and, for a webhook,
the delivery id; whoever comes second finds the job received and changes
nothing. The ``DocumentParsed`` event is published after the commit and the
job stamped ``published_at``; a crash in between leaves it unstamped, and
the poller publishes it again (same event id, so downstream it is one event).
"""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert

from ragstream.consumers.parse import parsed_output
from ragstream.context import StageContext
from ragstream.db import repository
from ragstream.db.models import Document, LlamaParseJob, ParseBuffer, WebhookDelivery
from ragstream.db.repository import Transition
from ragstream.documents import Block, ParsedDocument
from ragstream.llamaparse.client import Page
from ragstream.parsing.markdown import parse_markdown
from ragstream.producers.producer import EventProducer
from ragstream.schemas.outgoing import document_parsed
from ragstream.state import DocumentStatus

log = structlog.get_logger(__name__)

PARSER = "llamaparse"
PARSER_VERSION = "llamaparse-api-v1"
TIMED_OUT = "LlamaParse callback timed out"


class Outcome(StrEnum):
    COMPLETED = "completed"  # this call stored the result (or the failure)
    DUPLICATE = "duplicate"  # this webhook id was accepted before
    ALREADY_DONE = "already_done"  # the job was completed by the other path
    UNKNOWN = "unknown"  # no such job (yet): the sender should retry
    STALE = "stale"  # the document moved on (reprocessed, deleted)
    IGNORED = "ignored"  # an event that needs no action (e.g. parse.pending)


def to_parsed_document(pages: list[Page], content_type: str) -> ParsedDocument:
    """Markdown pages to blocks with their page numbers; headings stay open across pages."""
    blocks: list[Block] = []
    open_headings: list[tuple[int, str]] = []
    for page in pages:
        for block in parse_markdown(page.markdown).blocks:
            if block.kind == "heading":
                while open_headings and open_headings[-1][0] >= block.level:
                    open_headings.pop()
            path = tuple(text for _, text in open_headings)
            blocks.append(replace(block, page=page.number, heading_path=path))
            if block.kind == "heading":
                open_headings.append((block.level, block.text))
    return ParsedDocument(
        blocks=tuple(blocks),
        content_type=content_type,
        parser=PARSER,
        parser_version=PARSER_VERSION,
        page_count=max((p.number for p in pages), default=None),
    )


def complete(
    ctx: StageContext,
    producer: EventProducer,
    llamaparse_job_id: str,
    pages: list[Page],
    *,
    via: str,
    delivery_id: str | None = None,
) -> Outcome:
    """Store the parsed pages of a LlamaParse job and publish ``DocumentParsed``, once."""
    with ctx.engine.begin() as conn:
        job = _lock_job(conn, llamaparse_job_id)
        if job is None:
            return Outcome.UNKNOWN  # nothing recorded: the sender's retry must be processed
        if delivery_id is not None and not _record_delivery(conn, delivery_id, llamaparse_job_id):
            return Outcome.DUPLICATE
        if job.status != "pending":
            outcome = Outcome.ALREADY_DONE
        else:
            outcome = _store(ctx, conn, llamaparse_job_id, job, pages, via)
    publish_parsed(ctx, producer, llamaparse_job_id)
    return outcome


def fail(
    ctx: StageContext,
    llamaparse_job_id: str,
    message: str,
    *,
    error_class: str,
    delivery_id: str | None = None,
) -> Outcome:
    """Mark the job and its document failed at parse, once."""
    with ctx.engine.begin() as conn:
        job = _lock_job(conn, llamaparse_job_id)
        if job is None:
            return Outcome.UNKNOWN  # nothing recorded: the sender's retry must be processed
        if delivery_id is not None and not _record_delivery(conn, delivery_id, llamaparse_job_id):
            return Outcome.DUPLICATE
        if job.status != "pending":
            return Outcome.ALREADY_DONE
        return _fail_locked(conn, llamaparse_job_id, job, message, error_class)


def publish_parsed(ctx: StageContext, producer: EventProducer, llamaparse_job_id: str) -> bool:
    """Publish the job's ``DocumentParsed`` unless that is done; True if it was sent now."""
    with ctx.engine.connect() as conn:
        row = conn.execute(
            select(
                LlamaParseJob.document_id,
                LlamaParseJob.job_id,
                LlamaParseJob.published_at,
                LlamaParseJob.status,
                Document.tenant,
                Document.current_job_id,
                Document.parsed_at,
                ParseBuffer.text_blob_sha256,
                ParseBuffer.content_type,
                ParseBuffer.parser,
                ParseBuffer.parser_version,
                ParseBuffer.block_count,
                ParseBuffer.page_count,
            )
            .join(Document, Document.id == LlamaParseJob.document_id)
            .join(ParseBuffer, ParseBuffer.document_id == LlamaParseJob.document_id)
            .where(LlamaParseJob.id == llamaparse_job_id)
        ).one_or_none()
    if row is None or row.status != "received" or row.published_at is not None:
        return False
    if row.current_job_id != row.job_id or row.parsed_at is None:
        return False  # reprocessed since: the new job publishes its own
    out = document_parsed(
        ctx,
        row.document_id,
        row.job_id,
        row.tenant,
        text_blob_sha256=row.text_blob_sha256,
        content_type=row.content_type,
        parser=row.parser,
        parser_version=row.parser_version,
        block_count=row.block_count,
        page_count=row.page_count,
        parsed_at=row.parsed_at,
    )
    producer.send(out.topic, out.key, ctx.codec.encode(out.event))
    producer.wait()
    with ctx.engine.begin() as conn:
        conn.execute(
            update(LlamaParseJob)
            .where(LlamaParseJob.id == llamaparse_job_id)
            .values(published_at=func.statement_timestamp(), updated_at=func.statement_timestamp())
        )
    return True


def _record_delivery(conn: Connection, delivery_id: str, subject: str) -> bool:
    inserted = conn.execute(
        insert(WebhookDelivery)
        .values(id=delivery_id, source="llamaparse", subject=subject)
        .on_conflict_do_nothing(index_elements=[WebhookDelivery.id])
        .returning(WebhookDelivery.id)
    ).first()
    return inserted is not None


def _lock_job(conn: Connection, llamaparse_job_id: str) -> Any:
    return conn.execute(
        select(LlamaParseJob.status, LlamaParseJob.document_id, LlamaParseJob.job_id)
        .where(LlamaParseJob.id == llamaparse_job_id)
        .with_for_update()
    ).one_or_none()


def _finish_job(conn: Connection, llamaparse_job_id: str, **values: Any) -> None:
    now = func.statement_timestamp()
    conn.execute(
        update(LlamaParseJob)
        .where(LlamaParseJob.id == llamaparse_job_id)
        .values(received_at=now, updated_at=now, **values)
    )


def _fail_locked(
    conn: Connection, llamaparse_job_id: str, job: Any, message: str, error_class: str
) -> Outcome:
    _finish_job(conn, llamaparse_job_id, status="failed", error_message=message)
    changed = repository.apply_transition(
        conn,
        Transition(
            job.document_id,
            job.job_id,
            DocumentStatus.FAILED,
            {
                "failed_stage": "parse",
                "error_class": error_class,
                "error_message": f"parse: {message}"[:2000],
            },
        ),
    )
    log.warning("llamaparse_failed", job=llamaparse_job_id, error=message, changed=changed)
    return Outcome.COMPLETED if changed else Outcome.STALE


def _store(
    ctx: StageContext,
    conn: Connection,
    llamaparse_job_id: str,
    job: Any,
    pages: list[Page],
    via: str,
) -> Outcome:
    document = conn.execute(
        select(Document.tenant, Document.content_type, Document.current_job_id).where(
            Document.id == job.document_id
        )
    ).one()
    if document.current_job_id != job.job_id:
        _finish_job(conn, llamaparse_job_id, status="abandoned", received_via=via)
        return Outcome.STALE
    parsed = to_parsed_document(pages, document.content_type or "application/octet-stream")
    if not parsed.blocks:
        return _fail_locked(
            conn, llamaparse_job_id, job, "LlamaParse returned no text", "CorruptDocument"
        )
    out = parsed_output(ctx, job.document_id, job.job_id, document.tenant, parsed, source=None)
    for statement in out.statements:
        conn.execute(statement)
    for model, row in out.upserts:
        repository.upsert(conn, model, [row])
    for transition in out.transitions:
        repository.apply_transition(conn, transition)
    (parse_row,) = [row for model, row in out.upserts if model is ParseBuffer]
    _finish_job(
        conn,
        llamaparse_job_id,
        status="received",
        received_via=via,
        result_blob_sha256=parse_row["text_blob_sha256"],
    )
    log.info("llamaparse_received", job=llamaparse_job_id, via=via, blocks=len(parsed.blocks))
    return Outcome.COMPLETED
