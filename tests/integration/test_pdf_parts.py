"""A large PDF is parsed as page ranges across parse workers, then merged into one document."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from ragstream import topology
from ragstream.consumers.parts import page_ranges
from ragstream.consumers.runner import StageRunner
from ragstream.consumers.worker import build_runner
from ragstream.db import blobs
from ragstream.db.engine import make_engine
from ragstream.db.models import ChunkBuffer, Document, DocumentPart, ParseBuffer
from ragstream.documents import ParsedDocument
from ragstream.parsing import parse_document
from ragstream.settings import Settings
from tests import corpus
from tests.integration.test_api_server import serve, upload
from tests.pipeline import prepare, read_topic

pytestmark = pytest.mark.integration


def test_page_ranges_cover_every_page_once() -> None:
    assert page_ranges(100, 32) == [(1, 32), (33, 64), (65, 96), (97, 100)]
    assert page_ranges(64, 32) == [(1, 32), (33, 64)]
    assert page_ranges(33, 32) == [(1, 32), (33, 33)]


def test_a_long_pdf_is_parsed_in_parts_by_two_workers_and_merged_once(settings: Settings) -> None:
    settings = settings.model_copy(update={"pdf_part_pages": 8})
    pages = 30
    data = corpus.pdf(seed=71, pages=pages)
    short_name, short = corpus.mixed(1, seed=72)[0]
    submitter = prepare(settings)
    long_id = submitter.submit(data, filename="long.pdf").document_id
    short_id = submitter.submit(short, filename=short_name).document_id

    # Two parse workers share the parts: 1 split + 3 parts + 1 short document = 5 messages.
    # They stop once both documents are parsed (waiting for idleness would only add time).
    runners = [build_runner(settings, "parse") for _ in range(2)]
    stats = []

    def work(runner: StageRunner) -> None:
        stats.append(runner.run(idle_timeout_s=60))

    workers = [threading.Thread(target=work, args=(r,)) for r in runners]
    for w in workers:
        w.start()
    engine = make_engine(settings)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            statuses = conn.execute(
                select(Document.status).where(Document.id.in_([long_id, short_id]))
            ).scalars()
            if sorted(statuses) == ["parsed", "parsed"]:
                break
        time.sleep(0.2)
    for r in runners:
        r.stop()
    for w in workers:
        w.join(60)
    assert sum(s.processed for s in stats) == 5 and sum(s.failed for s in stats) == 0

    # The parts sit on consecutive partitions, so no worker gets them all.
    messages = read_topic(settings, topology.UPLOADED, expect=5)
    part_partitions = {
        int(m.key().decode().split(":")[1]): m.partition() for m in messages if b":" in m.key()
    }
    assert sorted(part_partitions) == [1, 2, 3]
    assert sorted(part_partitions.values()) == [0, 1, 2]  # the topic's 3 partitions
    assert all(part_partitions[i + 1] == (part_partitions[i] + 1) % 3 for i in (1, 2)), (
        part_partitions
    )

    with engine.connect() as conn:
        docs = {d.id: d for d in conn.execute(select(Document)).all()}
        parts = conn.execute(select(DocumentPart).where(DocumentPart.document_id == long_id)).all()
        parse_rows = conn.execute(
            select(ParseBuffer).where(ParseBuffer.document_id == long_id)
        ).all()
        merged = ParsedDocument.from_json(blobs.get(conn, parse_rows[0].text_blob_sha256))
    assert docs[long_id].status == "parsed" and docs[short_id].status == "parsed"
    assert docs[long_id].page_count == pages
    assert [
        (p.part_index, p.page_start, p.page_end) for p in sorted(parts, key=lambda p: p.part_index)
    ] == [(0, 1, 8), (1, 9, 16), (2, 17, 24), (3, 25, 30)]
    assert all(p.parsed_blob_sha256 for p in parts)
    assert len(parse_rows) == 1

    # The merged document has the whole document's text, page by page, in order.
    whole = parse_document(data, filename="long.pdf", timeout_s=60, memory_mb=1024)
    assert merged.page_count == whole.page_count == pages
    assert [b.text for b in merged.blocks] == [b.text for b in whole.blocks]
    assert [b.page for b in merged.blocks] == sorted(b.page for b in merged.blocks)
    assert {b.page for b in merged.blocks} == set(range(1, pages + 1))

    # One DocumentParsed: the chunk stage sees the document once.
    chunk = build_runner(settings, "chunk").run(idle_timeout_s=8)
    assert chunk.processed == 2
    with engine.connect() as conn:
        chunk_docs = conn.execute(
            select(ChunkBuffer.document_id, func.count()).group_by(ChunkBuffer.document_id)
        ).all()
    assert {d for d, _ in chunk_docs} == {long_id, short_id}


def test_the_job_shows_the_parts_parsed_so_far(settings: Settings) -> None:
    settings = settings.model_copy(update={"pdf_part_pages": 10})
    for server in serve(settings):
        with server.client() as client:
            accepted = upload(client, ("long.pdf", corpus.pdf(seed=73, pages=25))).json()
            job_url = accepted["documents"][0]["status_url"]
            assert client.get(job_url).json()["parts_total"] is None  # not split yet
            # The first message splits the document: part 0 is parsed, two are sent out.
            first = build_runner(server.settings, "parse").run(max_messages=1, idle_timeout_s=10)
            assert first.processed == 1
            job = client.get(job_url).json()
            assert (job["parts_total"], job["parts_parsed"]) == (3, 1)
            assert job["status"] != "complete" and job["current_stage"] == "parse"
            rest = build_runner(server.settings, "parse").run(max_messages=2, idle_timeout_s=10)
            assert rest.processed == 2
            job = client.get(job_url).json()
            assert (job["parts_total"], job["parts_parsed"]) == (3, 3)
            assert job["current_stage"] == "chunk"
