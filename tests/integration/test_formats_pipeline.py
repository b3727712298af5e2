"""PPTX, XLSX and e-mail through the real pipeline to complete; a zip bomb to failed + DLQ."""

from __future__ import annotations

import io
import zipfile

import pytest
from sqlalchemy import func, select

from ragstream.consumers.worker import build_runner
from ragstream.db.engine import make_engine
from ragstream.db.models import ChunkBuffer, Document
from ragstream.ops import dlq
from ragstream.settings import Settings
from ragstream.state import DocumentStatus
from tests.pipeline import prepare
from tests.unit.test_formats import eml_bytes, pptx_bytes, xlsx_bytes

pytestmark = pytest.mark.integration


def _bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/workbook.xml", "<w/>")
        archive.writestr("xl/s.xml", b"\0" * (2 * 1024 * 1024))
    return buffer.getvalue()


def test_formats_complete_and_a_zip_bomb_fails_to_the_dlq(settings: Settings) -> None:
    submitter = prepare(settings)
    good = {
        submitter.submit(data, filename=name).document_id
        for name, data in (
            ("deck.pptx", pptx_bytes()),
            ("book.xlsx", xlsx_bytes()),
            ("mail.eml", eml_bytes()),
        )
    }
    bomb = submitter.submit(_bomb(), filename="bomb.xlsx").document_id
    stats = build_runner(settings, "parse").run(max_messages=4, idle_timeout_s=20)
    assert (stats.processed, stats.failed) == (3, 1)
    build_runner(settings, "chunk").run(max_messages=3, idle_timeout_s=20)
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            chunks = conn.execute(select(func.count()).select_from(ChunkBuffer)).scalar_one()
        for stage in ("embed", "finalize"):
            build_runner(settings, stage).run(max_messages=chunks, idle_timeout_s=20)
        with engine.connect() as conn:
            rows = {
                row.id: row
                for row in conn.execute(
                    select(
                        Document.id, Document.status, Document.failed_stage, Document.error_message
                    )
                )
            }
        assert {rows[i].status for i in good} == {DocumentStatus.COMPLETE.value}
        assert rows[bomb].status == DocumentStatus.FAILED.value
        assert rows[bomb].failed_stage == "parse"
        assert "zip bomb" in (rows[bomb].error_message or "")
    finally:
        engine.dispose()
    (summary,) = dlq.summarize(settings, "parse")
    assert summary.by_class == {"CorruptDocument": 1}
