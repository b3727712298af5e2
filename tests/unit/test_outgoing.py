"""Each event built next to its schema (the stages emit these): topic (prefixed), key, spread,
deterministic ids, the fields it was given."""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from datetime import UTC, datetime

from ragstream import crypto, ids
from ragstream.schemas import outgoing
from ragstream.schemas.codec import SingleObjectCodec
from ragstream.schemas.events import ChunkCreated, DocumentParsed, DocumentUploaded


class Names:
    def topic(self, name: str) -> str:
        return f"p.{name}"


DOC = uuid.uuid4()
JOB = ids.job_id(DOC, "upload")
AT = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)


def test_document_uploaded() -> None:
    out = outgoing.document_uploaded(
        Names(),
        DOC,
        JOB,
        tenant="t",
        sha="ab" * 32,
        size=12,
        filename="a.pdf",
        metadata={"k": "v"},
        parser="local",
        uploaded_at=AT,
    )
    assert (out.topic, out.key, out.spread) == ("p.documents.uploaded", str(DOC), None)
    assert isinstance(out.event, DocumentUploaded)
    assert out.event.event_id == str(ids.event_id("DocumentUploaded", DOC, JOB))
    assert out.event.blob_uri.endswith("ab" * 32)
    codec = SingleObjectCodec()
    assert codec.decode(codec.encode(out.event), DocumentUploaded) == out.event


def test_document_parsed_is_the_parse_stage_s_event() -> None:
    fields = dict(
        text_blob_sha256="cd" * 32,
        content_type="application/pdf",
        parser="local",
        parser_version="1",
        block_count=3,
        page_count=2,
        parsed_at=AT,
    )
    out = outgoing.document_parsed(Names(), DOC, JOB, "t", **fields)  # type: ignore[arg-type]
    assert (out.topic, out.key, out.spread) == ("p.documents.parsed", str(DOC), None)
    assert isinstance(out.event, DocumentParsed)
    assert out.event.event_id == str(ids.event_id("DocumentParsed", DOC, JOB))
    assert (out.event.document_id, out.event.job_id, out.event.tenant) == (str(DOC), str(JOB), "t")
    assert out.event.text_blob_uri.endswith("cd" * 32)
    assert (out.event.block_count, out.event.page_count, out.event.parsed_at) == (3, 2, AT)


def test_chunk_created_is_sealed_keyed_by_chunk_and_spread() -> None:
    chunk = ids.chunk_id(DOC, "c1", 4)
    key = crypto.Key(DOC, uuid.uuid4(), os.urandom(32))
    fields = dict(
        chunk_id=chunk,
        document_id=DOC,
        job_id=JOB,
        tenant="t",
        chunk_index=4,
        chunk_count=9,
        text="hello",
        token_count=1,
        pages=[1],
        heading_path=["H"],
        chunker_version="c1",
        chunker_config_hash="h",
        parser="local",
        parser_version="1",
        created_at=AT,
    )
    out = outgoing.chunk_created(Names(), key=key, **fields)  # type: ignore[arg-type]
    assert (out.topic, out.key) == ("p.documents.chunked", str(chunk))
    assert out.spread == outgoing.document_spread(DOC, 4)
    assert isinstance(out.event, ChunkCreated)
    assert crypto.is_sealed(out.event.text) and key.open(out.event.text) == "hello"
    assert out.event.event_id == str(ids.event_id("ChunkCreated", chunk, JOB))
    opened = crypto.open_chunk(out.event, {DOC: key})
    assert (opened.text, opened.heading_path, opened.pages) == ("hello", ("H",), (1,))
    assert replace(opened, text=out.event.text, heading_path=out.event.heading_path) == out.event


def test_chunk_embedded_follows_its_chunk() -> None:
    key = crypto.Key(DOC, uuid.uuid4(), os.urandom(32))
    created = outgoing.chunk_created(
        Names(),
        key=key,
        chunk_id=uuid.uuid4(),
        document_id=DOC,
        job_id=JOB,
        tenant="t",
        chunk_index=0,
        chunk_count=1,
        text="x",
        token_count=1,
        pages=[],
        heading_path=[],
        chunker_version="c1",
        chunker_config_hash="h",
        parser="local",
        parser_version="1",
        created_at=AT,
    )
    assert isinstance(created.event, ChunkCreated)
    chunk = crypto.open_chunk(created.event, {DOC: key})
    emb = ids.embedding_id(uuid.UUID(chunk.chunk_id), "hash")
    out = outgoing.chunk_embedded(
        Names(),
        chunk,
        embedding_id=emb,
        model="hash",
        model_version="1",
        vector=[0.5, 0.25],
        embedded_at=AT,
    )
    assert (out.topic, out.key) == ("p.documents.embedded", str(DOC))
    assert out.event.event_id == str(ids.event_id("ChunkEmbedded", emb, JOB))
    assert out.event.dimensions == 2  # type: ignore[attr-defined]


def test_tombstones_cover_every_key_of_the_document() -> None:
    chunks = [(uuid.uuid4(), 0), (uuid.uuid4(), 1)]
    stones = outgoing.document_tombstones(Names(), DOC, chunks=chunks, parts=[0, 1, 2])
    assert [(s.topic, s.key, s.spread) for s in stones] == [
        ("p.documents.uploaded", str(DOC), None),
        ("p.documents.parsed", str(DOC), None),
        ("p.documents.embedded", str(DOC), None),
        ("p.documents.uploaded", f"{DOC}:1", outgoing.document_spread(DOC, 1)),
        ("p.documents.uploaded", f"{DOC}:2", outgoing.document_spread(DOC, 2)),
        ("p.documents.chunked", str(chunks[0][0]), outgoing.document_spread(DOC, 0)),
        ("p.documents.chunked", str(chunks[1][0]), outgoing.document_spread(DOC, 1)),
    ]


def test_document_part() -> None:
    whole = outgoing.document_uploaded(
        Names(), DOC, JOB, tenant="t", sha="ab" * 32, size=12, filename="long.pdf",
        metadata=None, parser="local", uploaded_at=AT,
    ).event  # fmt: skip
    assert isinstance(whole, DocumentUploaded)
    pages = [(1, 32), (33, 64), (65, 70)]
    parts = [outgoing.document_part(Names(), whole, i, pages, emitted_at=AT) for i in (1, 2)]
    assert [(p.topic, p.key) for p in parts] == [
        ("p.documents.uploaded", f"{DOC}:1"),
        ("p.documents.uploaded", f"{DOC}:2"),
    ]
    # Consecutive partitions for consecutive parts; the same part, the same spread and id.
    assert parts[1].spread == parts[0].spread + 1 == outgoing.document_spread(DOC, 2)
    first, second = (p.event for p in parts)
    assert isinstance(first, DocumentUploaded) and isinstance(second, DocumentUploaded)
    assert (first.part_index, first.part_count, first.page_start, first.page_end) == (1, 3, 33, 64)
    assert (second.page_start, second.page_end) == (65, 70)
    again = outgoing.document_part(Names(), whole, 1, pages, emitted_at=AT).event
    assert again == first and first.event_id != second.event_id != whole.event_id
    assert first.blob_sha256 == whole.blob_sha256 and first.filename == "long.pdf"
