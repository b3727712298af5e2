"""Pipeline runs: submit documents the one way there is, follow them, and time them.

Times come from the database clock that stamps every status change, so a
document's latency is ``completed_at - uploaded_at`` exactly, and a run's wall
time does not depend on how often the bench looks.
"""

from __future__ import annotations

import math
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from ragstream.benchmark.corpus import Doc
from ragstream.benchmark.stack import StageMetrics, database_now
from ragstream.db.engine import make_engine
from ragstream.db.models import ChunkBuffer, Document
from ragstream.embedding.budget import token_budget
from ragstream.producers.producer import EventProducer
from ragstream.producers.submit import Submitter
from ragstream.progress import DocumentProgress, documents_progress
from ragstream.schemas.codec import make_codec
from ragstream.settings import Settings
from ragstream.state import HAPPY_PATH, STATUS_TIMESTAMP_FIELD, DocumentStatus


@dataclass
class Ingest:
    """One ingestion of a set of documents, start to last completion."""

    documents: int
    complete: int
    failed: int
    chunks: int
    wall_s: float
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def documents_per_s(self) -> float:
        return self.complete / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.wall_s if self.wall_s > 0 else 0.0


class Session:
    """A submitter and an engine on one bench database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings)
        self.producer = EventProducer(settings)
        self.submitter = Submitter(settings, self.engine, self.producer, make_codec(settings))

    def close(self) -> None:
        self.producer.close()
        self.engine.dispose()

    def submit(self, docs: Sequence[Doc]) -> list[uuid.UUID]:
        return [self.submitter.submit(d.data, filename=d.name).document_id for d in docs]

    def wait(
        self,
        ids: Sequence[uuid.UUID],
        *,
        timeout_s: float,
        until: DocumentStatus = DocumentStatus.COMPLETE,
        poll_s: float = 1.0,
    ) -> dict[uuid.UUID, DocumentProgress]:
        """Poll until every document reached ``until`` or ended (or the timeout passed).

        Times come from the database's stamps, so looking less often loses no
        accuracy, and the bench's queries do not take CPU from the pipeline.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            states = documents_progress(self.engine, ids)
            done = len(states) == len(set(ids)) and all(
                s.terminal or s.reached(until) for s in states.values()
            )
            if done or time.monotonic() > deadline:
                return states
            time.sleep(poll_s)

    def ingest(self, docs: Sequence[Doc], *, timeout_s: float) -> tuple[Ingest, list[uuid.UUID]]:
        """Submit ``docs``, wait for all of them, and time the whole from the first upload."""
        started = database_now(self.settings)
        ids = self.submit(docs)
        states = self.wait(ids, timeout_s=timeout_s)
        return self.measure(ids, started, states), ids

    def measure(
        self, ids: Sequence[uuid.UUID], started: float, states: dict[uuid.UUID, DocumentProgress]
    ) -> Ingest:
        wanted = list(set(ids))
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    Document.status,
                    func.extract("epoch", Document.uploaded_at),
                    func.extract("epoch", Document.completed_at),
                ).where(Document.id.in_(wanted))
            ).all()
            chunks = conn.execute(
                select(func.count())
                .select_from(ChunkBuffer)
                .where(ChunkBuffer.document_id.in_(wanted))
            ).scalar_one()
        ends = [float(done) for status, _, done in rows if status == "complete" and done]
        latencies = [
            float(done) - float(up) for status, up, done in rows if status == "complete" and done
        ]
        errors = [
            f"{s.status} at {s.failed_stage}: {s.error}"
            for s in states.values()
            if s.status != DocumentStatus.COMPLETE
        ]
        return Ingest(
            documents=len(wanted),
            complete=len(ends),
            failed=sum(1 for status, _, _ in rows if status == "failed"),
            chunks=int(chunks),
            wall_s=(max(ends) - started) if ends else 0.0,
            latencies_s=sorted(latencies),
            errors=errors[:10],
        )

    def latency_probe(
        self, docs: Sequence[Doc], *, timeout_s: float
    ) -> tuple[list[float], dict[str, float]]:
        """One document at a time on an idle pipeline: upload-to-complete of each.

        Also the median time between consecutive status stamps, which says
        where the time goes (waiting for a stage to pick a document up, or the
        stage's own work).
        """
        latencies = []
        steps: dict[str, list[float]] = {}
        for doc in docs:
            (document_id,) = self.submit([doc])
            self.wait([document_id], timeout_s=timeout_s, poll_s=0.02)
            result = self.measure([document_id], 0.0, {})
            latencies += result.latencies_s
            for name, seconds in self._steps(document_id).items():
                steps.setdefault(name, []).append(seconds)
        medians = {name: round(statistics.median(v), 4) for name, v in steps.items()}
        return sorted(latencies), medians

    def seconds_between(
        self, document_id: uuid.UUID, first: DocumentStatus, then: DocumentStatus
    ) -> float | None:
        """Time from one status stamp of a document to another, by the database clock."""
        columns = [getattr(Document, STATUS_TIMESTAMP_FIELD[s]) for s in (first, then)]
        with self.engine.connect() as conn:
            start, end = conn.execute(select(*columns).where(Document.id == document_id)).one()
        return (end - start).total_seconds() if start and end else None

    def _steps(self, document_id: uuid.UUID) -> dict[str, float]:
        path = list(HAPPY_PATH)
        columns = [getattr(Document, STATUS_TIMESTAMP_FIELD[s]) for s in path]
        with self.engine.connect() as conn:
            row = conn.execute(select(*columns).where(Document.id == document_id)).one()
        return {
            f"{a.value}->{b.value}": (t1 - t0).total_seconds()
            for a, b, t0, t1 in zip(path, path[1:], row, row[1:], strict=False)
            if t0 is not None and t1 is not None
        }

    def truncated_chunks(self) -> int:
        """Chunks longer than the model reads, counted with the model's own tokenizer."""
        budget = token_budget(self.settings)
        with self.engine.connect() as conn:
            texts = list(conn.execute(select(ChunkBuffer.text)).scalars())
        return sum(1 for t in texts if budget.count_tokens(t) > budget.max_input_tokens)


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99 by the nearest-rank method (no interpolation between two documents)."""
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 4)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99)}


def stage_figures(metrics: dict[str, StageMetrics], wall_s: float) -> dict[str, Any]:
    """Per stage: messages, busy seconds, messages per busy second and per wall second, share."""
    busy_total = sum(m.busy_s for m in metrics.values()) or 1.0
    return {
        stage: {
            "messages": int(m.messages),
            "busy_s": round(m.busy_s, 3),
            "msgs_per_busy_s": round(m.messages / m.busy_s, 2) if m.busy_s else None,
            "msgs_per_s": round(m.messages / wall_s, 2) if wall_s else None,
            "time_share": round(m.busy_s / busy_total, 4),
        }
        for stage, m in sorted(metrics.items())
    }


def metrics_delta(
    after: dict[str, StageMetrics], before: dict[str, StageMetrics]
) -> dict[str, StageMetrics]:
    out = {}
    for stage, a in after.items():
        b = before.get(stage, StageMetrics())
        out[stage] = StageMetrics(
            busy_s=a.busy_s - b.busy_s,
            batches=a.batches - b.batches,
            messages=a.messages - b.messages,
            dlq=a.dlq - b.dlq,
            embedded_texts=a.embedded_texts - b.embedded_texts,
            cache_hits=a.cache_hits - b.cache_hits,
        )
    return out
