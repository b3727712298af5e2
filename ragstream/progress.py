"""Where documents are: status counts, per-document progress and per-stage consumer lag."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import Engine, func, select

from ragstream import topology
from ragstream.db.models import ChunkBuffer, Document, VectorBuffer
from ragstream.kafka import consumer_config
from ragstream.settings import Settings
from ragstream.state import HAPPY_PATH, DocumentStatus, is_terminal


@dataclass(frozen=True)
class DocumentProgress:
    document_id: uuid.UUID
    status: str
    failed_stage: str | None
    error: str | None
    chunks: int
    vectors: int

    @property
    def terminal(self) -> bool:
        return is_terminal(self.status)

    def reached(self, status: DocumentStatus) -> bool:
        """True once the document has passed ``status`` on the happy path."""
        if self.status == DocumentStatus.FAILED:
            return False
        return HAPPY_PATH.index(DocumentStatus(self.status)) >= HAPPY_PATH.index(status)


def documents_progress(
    engine: Engine, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, DocumentProgress]:
    wanted = list(set(ids))
    if not wanted:
        return {}
    chunks = (
        select(ChunkBuffer.document_id, func.count().label("n"))
        .where(ChunkBuffer.document_id.in_(wanted))
        .group_by(ChunkBuffer.document_id)
        .subquery()
    )
    vectors = (
        select(VectorBuffer.document_id, func.count().label("n"))
        .where(VectorBuffer.document_id.in_(wanted))
        .group_by(VectorBuffer.document_id)
        .subquery()
    )
    query = (
        select(
            Document.id,
            Document.status,
            Document.failed_stage,
            Document.error_message,
            func.coalesce(chunks.c.n, 0),
            func.coalesce(vectors.c.n, 0),
        )
        .outerjoin(chunks, chunks.c.document_id == Document.id)
        .outerjoin(vectors, vectors.c.document_id == Document.id)
        .where(Document.id.in_(wanted))
    )
    with engine.connect() as conn:
        return {
            row[0]: DocumentProgress(row[0], row[1], row[2], row[3], int(row[4]), int(row[5]))
            for row in conn.execute(query)
        }


def status_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(Document.status, func.count()).group_by(Document.status))
        return {status: int(n) for status, n in rows}


def stage_lag(settings: Settings) -> dict[str, int]:
    """Messages each stage's consumer group has not committed yet, summed over partitions."""
    lag: dict[str, int] = {}
    for spec in topology.STAGES.values():
        topic = settings.topic(spec.input_topic)
        consumer = Consumer(consumer_config(settings, settings.topic_prefix + spec.group_id))
        try:
            metadata = consumer.list_topics(topic, timeout=10)
            partitions = metadata.topics[topic].partitions if topic in metadata.topics else {}
            tps = [TopicPartition(topic, p) for p in partitions]
            committed = consumer.committed(tps, timeout=10) if tps else []
            total = 0
            for tp in committed:
                low, high = consumer.get_watermark_offsets(tp, timeout=10)
                position = tp.offset if tp.offset >= 0 else low
                total += max(high - position, 0)
            lag[spec.name] = total
        finally:
            consumer.close()
    return lag
