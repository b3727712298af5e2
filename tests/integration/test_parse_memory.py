"""The parse stage stores the same parsed JSON whether a document goes through memory or is
streamed (a large one: upload read in slices, JSON spooled to a file and written in slices)."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import func, select

from ragstream import topology
from ragstream.consumers.base import Incoming, StageContext
from ragstream.consumers.parse import SPOOL_ABOVE_BYTES, ParseStage
from ragstream.consumers.worker import build_runner
from ragstream.db import blobs
from ragstream.db.engine import make_engine
from ragstream.db.models import Blob, Document, ParseBuffer
from ragstream.parsing import parse_bytes
from ragstream.schemas.codec import make_codec
from ragstream.schemas.events import DocumentUploaded
from ragstream.settings import Settings
from tests import corpus
from tests.pipeline import prepare, read_topic

pytestmark = pytest.mark.integration


def _large_text(megabytes: float) -> bytes:
    """Paragraphs with non-ASCII text, CRLF line ends and form feeds, as uploads have them."""
    rng = random.Random(5)
    words = ["stream", "Größe", "naïve", "日本語", "données", "offset", "\tkey", "«value»"]
    parts: list[str] = []
    size, number = 0, 0
    while size < megabytes * 1024 * 1024:
        lines = [" ".join(rng.choices(words, k=rng.randint(3, 14))) for _ in range(3)]
        paragraph = f"Paragraph {number}.\r\n" + "\r\n".join(lines)
        parts.append(paragraph + ("\f" if number % 97 == 0 else ""))
        size += len(paragraph.encode()) + 4
        number += 1
    return "\r\n\r\n".join(parts).encode()


def test_stored_parsed_json_matches_an_in_process_parse(settings: Settings) -> None:
    large = _large_text(6)
    files = [
        ("notes.txt", corpus.text(seed=3)),
        ("notes.md", corpus.markdown(seed=4)),
        ("large.txt", large),
    ]
    expected = {name: parse_bytes(data, name) for name, data in files}
    assert len(large) > blobs.SLICE_BYTES
    assert len(expected["large.txt"].to_json()) > SPOOL_ABOVE_BYTES  # the streamed path

    submitter = prepare(settings)
    ids = {name: submitter.submit(data, filename=name).document_id for name, data in files}
    stats = build_runner(settings, "parse").run(max_messages=3, idle_timeout_s=15)
    assert (stats.processed, stats.failed) == (3, 0)

    engine = make_engine(settings)
    with engine.connect() as conn:
        for name, document_id in ids.items():
            status = conn.execute(
                select(Document.status).where(Document.id == document_id)
            ).scalar_one()
            row = conn.execute(
                select(ParseBuffer).where(ParseBuffer.document_id == document_id)
            ).one()
            assert status == "parsed", name
            assert blobs.get(conn, row.text_blob_sha256) == expected[name].to_json(), name
            assert row.block_count == len(expected[name].blocks), name
    parsed_events = read_topic(settings, topology.PARSED, expect=3)
    assert len(parsed_events) == 3
    engine.dispose()


def test_a_redelivered_large_document_is_stored_once(settings: Settings) -> None:
    large = _large_text(5)
    submitter = prepare(settings)
    document_id = submitter.submit(large, filename="large.txt").document_id
    engine = make_engine(settings)
    codec = make_codec(settings)
    ctx = StageContext(settings=settings, engine=engine, codec=codec)
    (record,) = read_topic(settings, topology.UPLOADED, expect=1)
    message = Incoming(
        topic=record.topic() or "",
        partition=record.partition() or 0,
        offset=record.offset() or 0,
        key=record.key(),
        value=record.value(),
        headers=[],
        event=codec.decode(record.value() or b"", DocumentUploaded),
    )

    outputs = [ParseStage().process_one(message, ctx) for _ in range(2)]

    expected = parse_bytes(large, "large.txt").to_json()
    shas = {out.upserts[0][1]["text_blob_sha256"] for out in outputs}
    assert shas == {blobs.sha256_of(expected)}
    # Stored before the stage's transaction, streamed: no statement carries the JSON.
    assert all(not out.statements for out in outputs)
    with engine.connect() as conn:
        assert blobs.get(conn, shas.pop()) == expected
        assert conn.execute(select(func.count()).select_from(Blob)).scalar_one() == 2
    assert outputs[0].upserts[0][1]["document_id"] == document_id
    engine.dispose()
