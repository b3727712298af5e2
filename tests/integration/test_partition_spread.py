"""A document's chunks are shared out evenly over the partitions of documents.chunked.

Hashing chunk ids would leave partitions, and so the embed workers owning
them, with unequal shares; the one with most then finishes last while the
others idle. Consecutive partitions per document keep every share within one
chunk of the others.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select

from ragstream import topology
from ragstream.consumers.worker import build_runner
from ragstream.db.engine import make_engine
from ragstream.db.models import ChunkBuffer
from ragstream.producers.producer import document_spread
from ragstream.settings import Settings
from tests import corpus
from tests.pipeline import prepare, read_topic

pytestmark = pytest.mark.integration


def test_a_documents_chunks_fill_the_partitions_evenly(settings: Settings) -> None:
    files = [(f"doc-{i}.md", corpus.markdown(seed=300 + i, sections=12)) for i in range(3)]
    submitter = prepare(settings)
    ids = [submitter.submit(data, filename=name).document_id for name, data in files]
    for stage in ("parse", "chunk"):
        stats = build_runner(settings, stage).run(max_messages=len(files), idle_timeout_s=15)
        assert stats.processed == len(files)

    engine = make_engine(settings)
    with engine.connect() as conn:
        chunks = conn.execute(select(func.count()).select_from(ChunkBuffer)).scalar_one()
    engine.dispose()
    messages = read_topic(settings, topology.CHUNKED, expect=chunks)
    assert len(messages) == chunks
    assert len(messages) >= 3 * settings.partitions * len(ids), "several chunks per partition"
    by_document: dict[uuid.UUID, Counter[int]] = {}
    for message in messages:
        event = submitter.codec.decode(message.value())  # type: ignore[attr-defined]
        document_id = uuid.UUID(event.document_id)
        by_document.setdefault(document_id, Counter())[message.partition()] += 1  # type: ignore[attr-defined]
        expected = document_spread(document_id, event.chunk_index) % settings.partitions
        assert message.partition() == expected  # type: ignore[attr-defined]
    assert set(by_document) == set(ids)
    for document_id, shares in by_document.items():
        counts = [shares.get(p, 0) for p in range(settings.partitions)]
        assert max(counts) - min(counts) <= 1, (document_id, counts)
