"""What a stage is: a function from a batch of input events to writes and output events.

A stage never touches Kafka offsets, transactions or the DLQ; the runner does.
Per-message permanent errors are caught here, in one place, and become
failures that the runner sends to the DLQ.

An event of a job that is no longer its document's current job (the document
was reprocessed since, under a new job) is skipped here too, for every stage:
it writes nothing and emits nothing, and the runner still moves past it. Its
chunks may hold another chunker's text under the same chunk ids, so letting it
through could leave a complete document with another job's vectors.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import structlog
from sqlalchemy import Executable

from ragstream.consumers.metrics import STALE_EVENTS
from ragstream.context import StageContext
from ragstream.db import repository
from ragstream.db.models import Base
from ragstream.db.repository import Transition
from ragstream.errors import PermanentError, RagstreamError
from ragstream.logs import message_fields
from ragstream.schemas.events import Event
from ragstream.schemas.outgoing import Outgoing
from ragstream.state import DocumentStatus

log = structlog.get_logger(__name__)

__all__ = [
    "Failure",
    "Incoming",
    "Outgoing",
    "Stage",
    "StageContext",
    "StageOutput",
    "current_only",
]


@dataclass
class Incoming:
    """One consumed record, decoded when it could be."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    event: Any = None  # the decoded Event; None when undecodable

    @property
    def document_id(self) -> uuid.UUID | None:
        raw = getattr(self.event, "document_id", None)
        return uuid.UUID(raw) if raw else None

    @property
    def job_id(self) -> uuid.UUID | None:
        raw = getattr(self.event, "job_id", None)
        return uuid.UUID(raw) if raw else None

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True)
class Failure:
    message: Incoming
    error: RagstreamError


@dataclass
class StageOutput:
    upserts: list[tuple[type[Base], dict[str, Any]]] = field(default_factory=list)
    # Content-addressed rows: stored only when their key is absent (a present one is the same).
    inserts: list[tuple[type[Base], dict[str, Any]]] = field(default_factory=list)
    statements: list[Executable] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    events: list[Outgoing] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    def extend(self, other: StageOutput) -> None:
        self.upserts += other.upserts
        self.inserts += other.inserts
        self.statements += other.statements
        self.transitions += other.transitions
        self.events += other.events
        self.failures += other.failures


class Stage(ABC):
    """A stage's logic. Subclasses set the class attributes and implement one method."""

    name: ClassVar[str]
    consumes: ClassVar[type[Event]]
    # The status a document enters when this stage picks it up (None: no such status).
    started_status: ClassVar[DocumentStatus | None] = None
    # Whether a message this stage cannot process marks its document failed (besides the DLQ).
    fails_documents: ClassVar[bool] = True
    # Most messages in one batch, below the ``max_batch_size`` setting (None: that setting).
    # A stage that turns one message into hundreds (a document into its chunks) takes
    # one at a time: its output is committed and published per document, so the next
    # stage starts on the first document instead of waiting for the whole batch.
    batch_limit: ClassVar[int | None] = None
    # Where this stage's dead letters go (None: the DLQ of its input topic).
    dlq_topic: ClassVar[str | None] = None

    def setup(self, ctx: StageContext) -> None:  # noqa: B027 - optional hook
        """Load what the stage needs once per process (models, tokenizers)."""

    def process(self, batch: list[Incoming], ctx: StageContext) -> StageOutput:
        """The batch's events of current jobs, through :meth:`process_current`; the rest skipped."""
        current = current_only(self.name, batch, ctx)
        if not current:
            return StageOutput()
        return self.process_current(current, ctx)

    def process_current(self, batch: list[Incoming], ctx: StageContext) -> StageOutput:
        """Default: one message at a time; a permanent error fails that message only."""
        out = StageOutput()
        for message in batch:
            try:
                out.extend(self.process_one(message, ctx))
            except PermanentError as exc:
                out.extend(self.failed(message, exc))
        return out

    def failed(self, message: Incoming, error: PermanentError) -> StageOutput:
        """What a message that failed for good leaves: by default its failure alone (the
        runner marks its document failed and dead-letters it)."""
        return StageOutput(failures=[Failure(message, error)])

    @abstractmethod
    def process_one(self, message: Incoming, ctx: StageContext) -> StageOutput:
        """The work for one input event."""


def current_only(stage: str, batch: list[Incoming], ctx: StageContext) -> list[Incoming]:
    """The messages whose job is their document's current job, with one query for the batch.

    A message of an older job (its document was reprocessed since) is left out,
    counted and logged. One without a document or a job, or whose document has
    no row or no current job, is kept: what to do with it is the stage's call
    (a deleted document's events, for one, are skipped by their stage).
    """
    documents = {m.document_id for m in batch if m.document_id is not None}
    if not documents:
        return batch
    with ctx.engine.connect() as conn:
        current = repository.current_jobs(conn, documents)
    kept: list[Incoming] = []
    for m in batch:
        document_id, job_id = m.document_id, m.job_id
        now = current.get(document_id) if document_id is not None else None
        if job_id is None or now is None or now == job_id:
            kept.append(m)
            continue
        STALE_EVENTS.labels(stage).inc()
        log.info(
            "stale_event_skipped",
            **message_fields(stage, m.topic, m.partition, m.offset, document_id, job_id),
            current_job_id=str(now),
        )
    return kept
