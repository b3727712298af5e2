"""Events of a superseded job (the document was reprocessed since) change nothing, at every stage.

A reprocess makes a new job current (``documents.current_job_id``). The old
job's events may still be queued, or be replayed: each stage must skip them
(counted in ``ragstream_stale_events_total{stage}``), write nothing for them,
emit nothing downstream, and still move its offsets past them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from prometheus_client import REGISTRY
from sqlalchemy import Engine, select

from ragstream import crypto, topology
from ragstream.api import lifecycle
from ragstream.api.services import Services
from ragstream.consumers.worker import build_runner
from ragstream.db.engine import make_engine
from ragstream.db.models import ChunkBuffer, Document, Job, ParseBuffer, VectorBuffer
from ragstream.kafka import consumer_config
from ragstream.producers.producer import EventProducer
from ragstream.schemas.codec import make_codec
from ragstream.schemas.events import ChunkCreated
from ragstream.settings import Settings
from tests import corpus
from tests.pipeline import prepare, read_topic

pytestmark = pytest.mark.integration

ORDER = ("parse", "chunk", "embed", "finalize")


def _stale(stage: str) -> float:
    value = REGISTRY.get_sample_value("ragstream_stale_events_total", {"stage": stage})
    return value or 0.0


def _records(settings: Settings, logical: str) -> int:
    """How many records the world's topic ``logical`` holds (sum of high watermarks)."""
    topic = settings.topic(logical)
    consumer = Consumer(consumer_config(settings, f"count-{uuid.uuid4().hex[:8]}"))
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(settings.partitions)
        )
    finally:
        consumer.close()


def _committed(settings: Settings, stage: str) -> int:
    spec = topology.STAGES[stage]
    topic = settings.topic(spec.input_topic)
    consumer = Consumer(consumer_config(settings, settings.topic_prefix + spec.group_id))
    parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
    committed = consumer.committed(parts, timeout=10)
    consumer.close()
    return sum(tp.offset for tp in committed if tp.offset >= 0)


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def _rows(engine: Engine, document_id: uuid.UUID) -> dict[str, Any]:
    """Every row the pipeline writes for the document, as plain values."""
    with engine.connect() as conn:
        found: dict[str, Any] = {}
        for model, column in (
            (Document, Document.id),
            (Job, Job.document_id),
            (ParseBuffer, ParseBuffer.document_id),
            (ChunkBuffer, ChunkBuffer.document_id),
            (VectorBuffer, VectorBuffer.document_id),
        ):
            rows = conn.execute(select(model.__table__).where(column == document_id)).all()
            found[model.__tablename__] = sorted(
                (tuple((k, _plain(v)) for k, v in row._mapping.items()) for row in rows),
                key=repr,
            )
    return found


def _run(settings: Settings, stage: str, messages: int) -> int:
    stats = build_runner(settings, stage).run(max_messages=messages, idle_timeout_s=10)
    return stats.processed


def _run_from(settings: Settings, stage: str, chunks: int) -> None:
    for name in ORDER[ORDER.index(stage) :]:
        expect = 1 if name in ("parse", "chunk") else chunks
        assert _run(settings, name, expect) == expect, name


def _current_job(engine: Engine, document_id: uuid.UUID) -> uuid.UUID:
    with engine.connect() as conn:
        job = conn.execute(
            select(Document.current_job_id).where(Document.id == document_id)
        ).scalar_one()
    assert job is not None
    return job


def _complete_one(settings: Settings, seed: int) -> tuple[uuid.UUID, int]:
    """One document through the whole pipeline; its id and its chunk count."""
    submitter = prepare(settings)
    document_id = submitter.submit(corpus.text(seed, sections=4), filename="a.txt").document_id
    assert _run(settings, "parse", 1) == 1
    assert _run(settings, "chunk", 1) == 1
    engine = make_engine(settings)
    with engine.connect() as conn:
        chunks = len(
            conn.execute(select(ChunkBuffer.id).where(ChunkBuffer.document_id == document_id)).all()
        )
    engine.dispose()
    assert chunks >= 2
    assert _run(settings, "embed", chunks) == chunks
    assert _run(settings, "finalize", chunks) == chunks
    return document_id, chunks


def _altered(settings: Settings, engine: Engine, value: bytes) -> bytes:
    """A ChunkCreated record of the same chunk and job with other text, sealed like the original."""
    codec = make_codec(settings)
    event = codec.decode(value, ChunkCreated)
    with engine.connect() as conn:
        keys = crypto.keys_for(conn, {uuid.UUID(event.document_id)})
    opened = crypto.open_chunk(event, keys)
    other = dataclasses.replace(opened, text=f"stale text of the old job: {opened.text[::-1]}")
    return codec.encode(crypto.seal_chunk(other, keys[uuid.UUID(event.document_id)]))


@pytest.mark.parametrize("stage", ORDER)
def test_a_replayed_event_of_a_superseded_job_changes_nothing(
    settings: Settings, stage: str
) -> None:
    document_id, chunks = _complete_one(settings, seed=31)
    engine = make_engine(settings)
    old_job = _current_job(engine, document_id)
    spec = topology.STAGES[stage]
    expect = chunks if stage in ("embed", "finalize") else 1
    old = read_topic(settings, spec.input_topic, expect)
    assert len(old) == expect
    # A reprocess makes a new job current and runs to completion.
    services = Services.start(settings, poller=False)
    try:
        reprocess_from = stage if stage != "finalize" else "embed"
        job = lifecycle.reprocess(services, "default", document_id, reprocess_from)  # type: ignore[arg-type]
    finally:
        services.close()
    assert job.job_id != old_job
    _run_from(settings, reprocess_from, chunks)
    assert _current_job(engine, document_id) == job.job_id
    before = _rows(engine, document_id)
    assert before["documents"][0] and dict(before["documents"][0])["status"] == "complete"
    output = spec.output_topic
    published = _records(settings, output) if output else 0
    committed = _committed(settings, stage)
    skipped = _stale(stage)
    # The old job's events come again (replay, or still queued): the embed stage's
    # with other text, as a chunker with another config would have made them.
    producer = EventProducer(settings)
    for msg in old:
        value = msg.value()
        assert value is not None
        if stage == "embed":
            value = _altered(settings, engine, value)
        producer.send(settings.topic(spec.input_topic), key=msg.key(), value=value)
    producer.wait()
    producer.close(timeout_s=10)
    assert _run(settings, stage, len(old)) == len(old)
    assert _rows(engine, document_id) == before
    assert _stale(stage) - skipped == len(old)
    if output:
        assert _records(settings, output) == published  # nothing went downstream
    assert _committed(settings, stage) == committed + len(old)  # handled: the offsets moved
    engine.dispose()


def test_old_chunk_events_queued_behind_a_reprocess_never_overwrite_its_vectors(
    settings: Settings,
) -> None:
    document_id, chunks = _complete_one(settings, seed=32)
    engine = make_engine(settings)
    old_job = _current_job(engine, document_id)
    old = read_topic(settings, topology.CHUNKED, chunks)
    assert len(old) == chunks
    services = Services.start(settings, poller=False)
    try:
        job = lifecycle.reprocess(services, "default", document_id, "embed")
    finally:
        services.close()
    # Behind the new job's chunk events, the old job's, with other text.
    producer = EventProducer(settings)
    for msg in old:
        value = msg.value()
        assert value is not None
        producer.send(
            settings.topic(topology.CHUNKED), key=msg.key(), value=_altered(settings, engine, value)
        )
    producer.wait()
    producer.close(timeout_s=10)
    skipped = _stale("embed")
    embedded = _records(settings, topology.EMBEDDED)
    assert _run(settings, "embed", 2 * chunks) == 2 * chunks
    assert _stale("embed") - skipped == chunks
    assert _records(settings, topology.EMBEDDED) == embedded + chunks  # only the new job's
    assert _run(settings, "finalize", chunks) == chunks
    with engine.connect() as conn:
        document = conn.execute(select(Document).where(Document.id == document_id)).one()
        texts = dict(
            conn.execute(
                select(ChunkBuffer.id, ChunkBuffer.text).where(
                    ChunkBuffer.document_id == document_id
                )
            ).all()
        )
        vectors = conn.execute(
            select(VectorBuffer.chunk_id, VectorBuffer.job_id, VectorBuffer.text_sha256).where(
                VectorBuffer.document_id == document_id
            )
        ).all()
    assert document.status == "complete" and document.current_job_id == job.job_id != old_job
    assert len(vectors) == chunks
    for chunk_id, vector_job, text_sha in vectors:
        assert vector_job == job.job_id
        assert text_sha == hashlib.sha256(texts[chunk_id].encode()).hexdigest()
    engine.dispose()
