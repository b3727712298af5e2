"""The accounting itself must catch a lost vector, a duplicated chunk and a missing failure."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from ragstream.consumers.worker import build_runner
from ragstream.db.engine import make_engine
from ragstream.settings import Settings
from tests import corpus
from tests.chaos.harness import Expected, Workload, account
from tests.chaos.hostile import Hostile, truncated_pdf
from tests.pipeline import prepare

pytestmark = pytest.mark.chaos


def test_the_accounting_reports_loss_duplicates_and_unexpected_outcomes(
    settings: Settings,
) -> None:
    bad = [Hostile("a-truncated.pdf", truncated_pdf(101), "failed", "CorruptDocument")]
    workload = Workload(settings, corpus.mixed(3, seed=101), bad)
    workload.submit(prepare(settings))
    build_runner(settings, "parse").run(max_messages=4, idle_timeout_s=30)
    build_runner(settings, "chunk").run(max_messages=3, idle_timeout_s=30)  # the bad one failed
    chunks = sum(workload.chunks().values())
    for stage in ("embed", "finalize"):
        build_runner(settings, stage).run(max_messages=chunks, idle_timeout_s=30)
    clean = account(settings, workload, name="clean", faults=0, recovery_s=0.0)
    assert (clean.lost, clean.duplicates, clean.problems) == (0, 0, [])
    assert clean.dlq_distinct == 1 and clean.chunks == clean.expected_chunks > 0

    engine = make_engine(settings)
    with engine.begin() as conn:
        conn.execute(
            text(
                "DELETE FROM document_vector_buffer"
                " WHERE id = (SELECT id FROM document_vector_buffer ORDER BY id LIMIT 1)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO document_chunk_buffer (id, document_id, job_id, chunk_index, text,"
                " token_count, pages, heading_path, chunker_version, chunker_config_hash, parser,"
                " parser_version) SELECT gen_random_uuid(), document_id, job_id, chunk_index, text,"
                " token_count, pages, heading_path, chunker_version, chunker_config_hash, parser,"
                " parser_version FROM document_chunk_buffer LIMIT 1"
            )
        )
    engine.dispose()
    (failing,) = [d for d, e in workload.submitted.items() if e.outcome == "failed"]
    workload.submitted[failing] = Expected(
        "a-truncated.pdf", "failed", "parse", "ParserLimitExceeded"
    )
    broken = account(settings, workload, name="broken", faults=0, recovery_s=0.0)
    assert broken.lost == 2  # the document short of a vector, the one failed for another reason
    assert broken.duplicates == 1
    assert any("vector rows" in p for p in broken.problems)
    assert any("DLQ holds" in p for p in broken.problems)
