"""The whole pipeline, as real worker processes on the real broker and database."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from ragstream.consumers.worker import build_runner
from ragstream.db.engine import make_engine
from ragstream.settings import Settings
from tests import corpus
from tests.pipeline import (
    Workers,
    expected_chunks,
    prepare,
    submit_all,
    table_counts,
    wait_terminal,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(settings, tmp_path / "logs")
    yield running
    running.stop_all()


def _content_checksum(settings: Settings) -> dict[str, str]:
    engine = make_engine(settings)
    row = "md5(string_agg({}, ',' ORDER BY id))"
    queries = {
        "documents": f"SELECT {row.format('id::text || status || chunk_count')} FROM documents",
        "chunks": f"SELECT {row.format('id::text || md5(text)')} FROM document_chunk_buffer",
        "vectors": f"SELECT {row.format('embedding::text')} FROM document_vector_buffer",
    }
    with engine.connect() as conn:
        result = {name: str(conn.execute(text(q)).scalar_one()) for name, q in queries.items()}
    engine.dispose()
    return result


def test_fifty_mixed_documents_complete_with_exact_counts(
    settings: Settings, workers: Workers
) -> None:
    files = corpus.mixed(50, seed=1)
    expected = expected_chunks(settings, files)
    submitter = prepare(settings)
    workers.start_all()
    started = time.monotonic()
    ids = submit_all(submitter, files)
    states = wait_terminal(settings, ids, timeout_s=240, workers=workers)
    elapsed = time.monotonic() - started

    assert [s.status for s in states.values()].count("complete") == 50, workers.logs()
    by_id = dict(zip(ids, (name for name, _ in files), strict=True))
    for document_id, progress in states.items():
        assert progress.chunks == expected[by_id[document_id]], by_id[document_id]
        assert progress.vectors == progress.chunks
    counts = table_counts(settings)
    total = sum(expected.values())
    assert counts["document_chunk_buffer"] == (total, total)
    assert counts["document_vector_buffer"] == (total, total)
    print(f"e2e: 50 documents, {total} chunks, {elapsed:.1f}s upload->all complete")

    # Same content again: recognised, nothing new anywhere.
    before = _content_checksum(settings)
    again = submit_all(submitter, files[:10])
    assert again == ids[:10]
    assert table_counts(settings) == counts
    assert _content_checksum(settings) == before


def test_replay_of_chunked_into_embed_changes_nothing(settings: Settings, workers: Workers) -> None:
    files = corpus.mixed(10, seed=2)
    submitter = prepare(settings)
    workers.start_all()
    ids = submit_all(submitter, files)
    wait_terminal(settings, ids, timeout_s=180, workers=workers)
    counts, checksum = table_counts(settings), _content_checksum(settings)

    # Replay documents.chunked from earliest into the embed stage: a new group reads it all.
    runner = build_runner(settings, "embed", group_id=f"{settings.topic_prefix}embed-replay")
    stats = runner.run(idle_timeout_s=5)
    assert stats.processed == counts["document_chunk_buffer"][0]
    time.sleep(2)  # let finalize see the re-emitted events
    assert table_counts(settings) == counts
    assert _content_checksum(settings) == checksum


@pytest.mark.long  # make test runs tests/chaos/test_kills.py, which kills every stage
def test_sigkill_embed_worker_mid_run_loses_and_duplicates_nothing(
    settings: Settings, workers: Workers
) -> None:
    files = corpus.mixed(30, seed=3)
    expected = sum(expected_chunks(settings, files).values())
    slow = settings.model_copy(update={"max_batch_size": 4})
    workers.settings = slow
    submitter = prepare(settings)
    workers.start_all(["parse", "chunk", "finalize"])
    workers.start("embed")
    ids = submit_all(submitter, files)
    engine = make_engine(settings)
    kills = 0
    deadline = time.monotonic() + 120
    # Kill the embed worker as soon as it has written some vectors but not all, a few times.
    while kills < 3 and time.monotonic() < deadline:
        with engine.connect() as conn:
            vectors = conn.execute(text("SELECT count(*) FROM document_vector_buffer")).scalar_one()
        if vectors > kills * expected // 4:
            kills += workers.kill("embed", signal.SIGKILL)
            workers.start("embed")
        time.sleep(0.2)
    engine.dispose()
    states = wait_terminal(settings, ids, timeout_s=180, workers=workers)
    assert kills >= 1
    assert all(s.status == "complete" for s in states.values()), workers.logs()
    counts = table_counts(settings)
    assert counts["document_chunk_buffer"] == (expected, expected)
    assert counts["document_vector_buffer"] == (expected, expected)
    print(f"crash: {kills} SIGKILLs of embed, {expected} chunks, 0 lost, 0 duplicates")
