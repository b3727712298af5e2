"""The parse stage's LlamaParse path: submit the file with our webhook URL, then wait.

The document stays ``parsing`` and no ``DocumentParsed`` is emitted here; the
webhook or the poller completes it (:mod:`ragstream.llamaparse.results`). A
redelivered upload event whose job is already with LlamaParse is not submitted
again.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select

from ragstream.consumers.base import Incoming, StageOutput
from ragstream.context import StageContext
from ragstream.db.models import LlamaParseJob
from ragstream.llamaparse.client import LlamaParseClient
from ragstream.schemas.events import DocumentUploaded, utc_now
from ragstream.settings import Settings

WEBHOOK_PATH = "/v1/webhooks/llamaparse"


def webhook_url(settings: Settings) -> str:
    return settings.public_url + WEBHOOK_PATH


def submit_to_llamaparse(message: Incoming, ctx: StageContext) -> StageOutput:
    event: DocumentUploaded = message.event
    document_id, job_id = uuid.UUID(event.document_id), uuid.UUID(event.job_id)
    with ctx.engine.connect() as conn:
        open_jobs = conn.execute(
            select(func.count())
            .select_from(LlamaParseJob)
            .where(
                LlamaParseJob.job_id == job_id,
                LlamaParseJob.status.in_(("pending", "received")),
            )
        ).scalar_one()
        if open_jobs:
            return StageOutput()
        assert event.blob_sha256 is not None  # an event from another service is admitted first
        data = ctx.blobs.get(conn, event.blob_sha256)
    with LlamaParseClient(ctx.settings) as client:
        row = submit(client, ctx.settings, data, event.filename, document_id, job_id, attempt=1)
    row |= {
        "source_topic": message.topic,
        "source_partition": message.partition,
        "source_offset": message.offset,
    }
    return StageOutput(upserts=[(LlamaParseJob, row)])


def submit(
    client: LlamaParseClient,
    settings: Settings,
    data: bytes,
    filename: str | None,
    document_id: uuid.UUID,
    job_id: uuid.UUID,
    *,
    attempt: int,
) -> dict[str, object]:
    """Upload to LlamaParse; the ``llamaparse_jobs`` row that records the submission."""
    llamaparse_id = client.upload(data, filename=filename, webhook_url=webhook_url(settings))
    now = utc_now()
    return {
        "id": llamaparse_id,
        "document_id": document_id,
        "job_id": job_id,
        "attempt": attempt,
        "status": "pending",
        "submitted_at": now,
        "callback_due_at": now + timedelta(seconds=settings.llamaparse_callback_timeout_s),
    }
