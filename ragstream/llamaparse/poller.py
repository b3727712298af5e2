"""The poller: a lost webhook delays a document, it never strands it.

Every ``llamaparse_poll_interval_s`` it asks LlamaParse about jobs that have
waited that long since their submission (or last poll): a finished job is
completed through the same idempotent write as the webhook. A job still
unfinished past ``llamaparse_callback_timeout_s`` is submitted again, up to
``llamaparse_max_attempts``, and after that its document fails with
``parse: LlamaParse callback timed out``. Results stored but not yet published
(a crash between commit and publish) are published again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select, update

from ragstream.context import StageContext
from ragstream.db import repository
from ragstream.db.models import Document, LlamaParseJob
from ragstream.errors import RagstreamError
from ragstream.llamaparse import results
from ragstream.llamaparse.client import LlamaParseClient
from ragstream.llamaparse.stage import submit
from ragstream.producers.producer import EventProducer
from ragstream.schemas.events import utc_now

log = structlog.get_logger(__name__)

REPUBLISH_AFTER_S = 30.0
BATCH = 100


@dataclass
class PollStats:
    polled: int = 0
    completed: int = 0
    failed: int = 0
    resubmitted: int = 0
    republished: int = 0


class Poller:
    def __init__(self, ctx: StageContext, producer: EventProducer) -> None:
        self.ctx = ctx
        self.producer = producer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="llamaparse-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.ctx.settings.llamaparse_poll_interval_s):
            try:
                self.run_once()
            except Exception as exc:  # the next round tries again; a poller never dies
                log.warning(
                    "llamaparse_poll_failed", error_class=type(exc).__name__, error=str(exc)
                )

    def run_once(self, now: datetime | None = None) -> PollStats:
        now = now or utc_now()
        stats = PollStats()
        settings = self.ctx.settings
        due = now - timedelta(seconds=settings.llamaparse_poll_interval_s)
        with self.ctx.engine.connect() as conn:
            jobs = conn.execute(
                select(
                    LlamaParseJob.id,
                    LlamaParseJob.document_id,
                    LlamaParseJob.job_id,
                    LlamaParseJob.attempt,
                    LlamaParseJob.callback_due_at,
                )
                .where(
                    LlamaParseJob.status == "pending",
                    func.coalesce(LlamaParseJob.last_polled_at, LlamaParseJob.submitted_at) <= due,
                )
                .order_by(LlamaParseJob.submitted_at)
                .limit(BATCH)
            ).all()
            unpublished = conn.execute(
                select(LlamaParseJob.id).where(
                    LlamaParseJob.status == "received",
                    LlamaParseJob.published_at.is_(None),
                    LlamaParseJob.received_at <= now - timedelta(seconds=REPUBLISH_AFTER_S),
                )
            ).scalars()
            republish = list(unpublished)
        for job_id in republish:
            stats.republished += results.publish_parsed(self.ctx, self.producer, job_id)
        if not jobs:
            return stats
        with LlamaParseClient(settings) as client:
            for job in jobs:
                stats.polled += 1
                try:
                    self._poll(client, job, now, stats)
                except RagstreamError as exc:
                    log.warning("llamaparse_poll_job_failed", job=job.id, error=exc.message)
        return stats

    def _poll(self, client: LlamaParseClient, job: Any, now: datetime, stats: PollStats) -> None:
        self._stamp(job.id)
        status = client.status(job.id)
        if status.succeeded:
            pages = client.result(job.id)
            outcome = results.complete(self.ctx, self.producer, job.id, pages, via="poller")
            stats.completed += outcome is results.Outcome.COMPLETED
            return
        if status.failed:
            message = f"LlamaParse job {status.status.lower()}: {status.error or 'no reason given'}"
            outcome = results.fail(self.ctx, job.id, message, error_class="LlamaParseFailed")
            stats.failed += outcome is results.Outcome.COMPLETED
            return
        if now < job.callback_due_at:
            return
        if job.attempt < self.ctx.settings.llamaparse_max_attempts:
            stats.resubmitted += self._resubmit(client, job)
            return
        outcome = results.fail(self.ctx, job.id, results.TIMED_OUT, error_class="LlamaParseTimeout")
        stats.failed += outcome is results.Outcome.COMPLETED

    def _stamp(self, llamaparse_job_id: str) -> None:
        with self.ctx.engine.begin() as conn:
            conn.execute(
                update(LlamaParseJob)
                .where(LlamaParseJob.id == llamaparse_job_id)
                .values(last_polled_at=func.statement_timestamp())
            )

    def _resubmit(self, client: LlamaParseClient, job: Any) -> bool:
        """Give up on the overdue job and submit the document again, as the same job."""
        with self.ctx.engine.connect() as conn:
            document = conn.execute(
                select(Document.sha256, Document.filename, Document.current_job_id).where(
                    Document.id == job.document_id
                )
            ).one_or_none()
            if document is None or document.current_job_id != job.job_id or not document.sha256:
                return False
            data = self.ctx.blobs.get(conn, document.sha256)
        row = submit(
            client,
            self.ctx.settings,
            data,
            document.filename,
            job.document_id,
            job.job_id,
            attempt=job.attempt + 1,
        )
        with self.ctx.engine.begin() as conn:
            abandoned = conn.execute(
                update(LlamaParseJob)
                .where(LlamaParseJob.id == job.id, LlamaParseJob.status == "pending")
                .values(status="abandoned", updated_at=func.statement_timestamp())
            ).rowcount
            if not abandoned:  # the webhook won meanwhile; the new submission is moot
                return False
            repository.upsert(conn, LlamaParseJob, [row])
        log.warning("llamaparse_resubmitted", job=job.id, new_job=row["id"], attempt=row["attempt"])
        return True
