"""PDF fan-out limits (issue 14, item 8d): a page-count cap, and many parts in one split.

A PDF over ``PDF_MAX_PAGES`` fails in parse with its page count in the error,
before any part is recorded or sent. A split into more parts than one
statement's bind parameters can carry (~10,900 rows of six columns) is
recorded in pieces, in the same transaction.
"""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from sqlalchemy import func, select

from ragstream import topology
from ragstream.consumers import parts
from ragstream.consumers.base import Incoming, StageContext
from ragstream.consumers.worker import build_runner
from ragstream.db.engine import make_engine
from ragstream.db.models import Document, DocumentPart
from ragstream.documents import ParsedPayload
from ragstream.parsing import parse_document
from ragstream.schemas.codec import make_codec
from ragstream.schemas.events import DocumentUploaded
from ragstream.settings import Settings
from tests import corpus
from tests.pipeline import prepare, read_topic

pytestmark = pytest.mark.integration


def test_a_pdf_over_the_page_cap_fails_in_parse_with_its_page_count(settings: Settings) -> None:
    settings = settings.model_copy(update={"pdf_part_pages": 4, "pdf_max_pages": 10})
    submitter = prepare(settings)
    long_id = submitter.submit(corpus.pdf(seed=81, pages=12), filename="long.pdf").document_id
    short_id = submitter.submit(corpus.pdf(seed=82, pages=6), filename="ok.pdf").document_id
    stats = build_runner(settings, "parse").run(max_messages=4, idle_timeout_s=10)
    assert stats.failed == 1, stats
    engine = make_engine(settings)
    with engine.connect() as conn:
        docs = {d.id: d for d in conn.execute(select(Document)).all()}
        recorded = conn.execute(
            select(func.count())
            .select_from(DocumentPart)
            .where(DocumentPart.document_id == long_id)
        ).scalar_one()
    engine.dispose()
    failed = docs[long_id]
    assert failed.status == "failed" and failed.failed_stage == "parse"
    assert "12 pages" in (failed.error_message or "") and "10" in (failed.error_message or "")
    assert "PDF_MAX_PAGES" in (failed.error_message or "")
    assert recorded == 0
    assert docs[short_id].status == "parsed"  # 6 pages, 2 parts: under the cap
    keys = [m.key() for m in read_topic(settings, topology.UPLOADED, expect=10, timeout_s=5)]
    assert not [k for k in keys if k and k.startswith(str(long_id).encode() + b":")]


def test_a_split_into_more_parts_than_one_statement_can_carry_is_recorded_whole(
    settings: Settings,
) -> None:
    """12,000 one-page parts (72,000 bind parameters as one statement), at the repository level."""
    settings = settings.model_copy(update={"pdf_part_pages": 1})
    data = corpus.pdf(seed=83, pages=1)
    submitter = prepare(settings)
    document_id = submitter.submit(data, filename="huge.pdf").document_id
    (message,) = read_topic(settings, topology.UPLOADED, expect=1)
    codec = make_codec(settings)
    event = codec.decode(message.value(), DocumentUploaded)  # type: ignore[arg-type]
    incoming = Incoming(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        value=message.value(),
        headers=[],
        event=event,
    )
    first = ParsedPayload.of(
        parse_document(data, filename="huge.pdf", timeout_s=60, memory_mb=1024)
    )
    first = dataclasses.replace(first, page_count=12_000)
    engine = make_engine(settings)
    ctx = StageContext(settings=settings, engine=engine, codec=codec)
    out = parts.fan_out(incoming, first, ctx)
    assert len(out.events) == 11_999
    for _ in range(2):  # a redelivered split writes the same, adds nothing
        with engine.begin() as conn:
            for statement in out.statements:
                conn.execute(statement)
    with engine.connect() as conn:
        rows = conn.execute(
            select(func.count(), func.min(DocumentPart.part_index), func.max(DocumentPart.page_end))
            .where(DocumentPart.document_id == document_id)
            .where(DocumentPart.job_id == uuid.UUID(event.job_id))
        ).one()
        first_part = conn.execute(
            select(DocumentPart.parsed_blob_sha256).where(
                DocumentPart.document_id == document_id, DocumentPart.part_index == 0
            )
        ).scalar_one()
    engine.dispose()
    assert tuple(rows) == (12_000, 0, 12_000)
    assert first_part is not None  # part 0 is stored parsed in the same transaction
