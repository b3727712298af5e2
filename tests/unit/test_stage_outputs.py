"""The stages' pure output builders, without a broker or a database: what a chunked
document, an embedded batch and a finished document write and emit."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

from ragstream import crypto, ids
from ragstream.chunking import CHUNKER_VERSION, Chunk
from ragstream.consumers.base import Incoming
from ragstream.consumers.chunk import chunked_output
from ragstream.consumers.embed import cache_key, embedded_output
from ragstream.consumers.finalize import completions
from ragstream.db.models import ChunkBuffer, VectorBuffer
from ragstream.embedding import make_embedder
from ragstream.schemas.events import ChunkCreated, ChunkEmbedded, DocumentParsed
from ragstream.settings import Settings
from ragstream.state import DocumentStatus
from tests.events import document_parsed

NAMES = Settings(topic_prefix="p.")
DOC = uuid.uuid4()
JOB = ids.job_id(DOC, "upload")
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
KEY = crypto.Key(DOC, uuid.uuid4(), os.urandom(32))


def _incoming(offset: int, event: object) -> Incoming:
    return Incoming("p.t", 1, offset, None, b"", [], event)


def _parsed() -> DocumentParsed:
    return document_parsed(
        DOC, JOB, AT, content_type="text/markdown", parser="markdown", block_count=2
    )


def test_a_chunked_document_writes_its_chunks_replaces_others_and_emits_sealed_events() -> None:
    chunks = [
        Chunk(0, "Tides rise twice a day.", 6, (1,), ("Tides",)),
        Chunk(1, "Locks lift boats.", 4, (2,), ("Locks",)),
    ]
    out = chunked_output(
        NAMES,
        _parsed(),
        _incoming(7, None),
        KEY,
        chunks,
        config_hash="h",
        text_search_config="english",
    )
    ids_ = [ids.chunk_id(DOC, CHUNKER_VERSION, i) for i in (0, 1)]
    assert [row["id"] for model, row in out.upserts if model is ChunkBuffer] == ids_
    assert out.upserts[1][1]["source_offset"] == 7 and out.upserts[1][1]["pages"] == [2]
    assert "NOT IN" in str(out.statements[0])  # another chunker's rows go
    assert [e.topic for e in out.events] == ["p.documents.chunked"] * 2
    first = out.events[0].event
    assert isinstance(first, ChunkCreated) and first.chunk_count == 2
    assert crypto.is_sealed(first.text) and KEY.open(first.text) == "Tides rise twice a day."
    [done] = out.transitions
    assert (done.status, done.fields) == (
        DocumentStatus.CHUNKED,
        {"chunk_count": 2, "text_search_config": "english"},
    )


def _chunk_event(index: int, text: str) -> ChunkCreated:
    return ChunkCreated(
        chunk_id=str(ids.chunk_id(DOC, CHUNKER_VERSION, index)),
        document_id=str(DOC),
        job_id=str(JOB),
        tenant="t",
        chunk_index=index,
        chunk_count=2,
        text=text,
        token_count=3,
        pages=(1,),
        heading_path=(),
        chunker_version=CHUNKER_VERSION,
        chunker_config_hash="h",
        parser="markdown",
        parser_version="1",
        created_at=AT,
    )


def test_an_embedded_batch_writes_a_row_per_chunk_and_emits_only_for_the_active_model() -> None:
    embedder = make_embedder(Settings(embedder="hash"))
    events = [_chunk_event(0, "same text"), _chunk_event(1, "same text")]
    batch = [_incoming(3, events[0]), _incoming(4, events[1])]
    vector = [0.5] * embedder.dimensions
    vectors = {cache_key(embedder.name, embedder.version, "same text"): vector}
    active = embedded_output(NAMES, embedder, True, batch, events, vectors)
    rows = [row for model, row in active.upserts if model is VectorBuffer]
    assert [r["id"] for r in rows] == [
        ids.embedding_id(uuid.UUID(e.chunk_id), embedder.name) for e in events
    ]
    assert [r["source_offset"] for r in rows] == [3, 4] and rows[0]["embedding"] == vector
    assert all(isinstance(e.event, ChunkEmbedded) for e in active.events)
    assert [e.topic for e in active.events] == ["p.documents.embedded"] * 2
    building = embedded_output(NAMES, embedder, False, batch, events, vectors)
    assert len(building.upserts) == 2 and building.events == []


def _embedded(document: uuid.UUID, job: uuid.UUID) -> ChunkEmbedded:
    return ChunkEmbedded(
        embedding_id=str(uuid.uuid4()),
        chunk_id=str(uuid.uuid4()),
        document_id=str(document),
        job_id=str(job),
        tenant="t",
        chunk_index=0,
        chunk_count=3,
        model="hash-384",
        model_version="1",
        dimensions=2,
        vector=(0.1, 0.2),
        embedded_at=AT,
    )


def test_a_document_completes_once_every_chunk_has_a_vector_of_the_model_that_counts() -> None:
    done, short, unchunked = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    latest = {d: _embedded(d, ids.job_id(d, "upload")) for d in (done, short, unchunked)}
    out = completions(
        latest,
        {done: 3, short: 3, unchunked: None},
        {done: ("live", 3), short: ("live", 2), unchunked: ("live", 5)},
    )
    [complete] = out
    assert (complete.document_id, complete.status) == (done, DocumentStatus.COMPLETE)
    assert complete.job_id == ids.job_id(done, "upload")
    assert complete.fields == {"embedding_model": "live"}
